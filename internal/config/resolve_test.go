package config

import (
	"errors"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/tinyclip-go/tinyclip/internal/checkpoint/safetensors"
	"github.com/tinyclip-go/tinyclip/internal/fixtures"
)

// fixtureModel is one model of fixtures/models with its architecture and
// counts written out by hand from fixtures/models/README.md.
type fixtureModel struct {
	name   string
	arch   *Arch
	params Params
	// MACs from spec/macs.py's own tower functions (_blocks, resnet_tower)
	// called with the fixture's head widths: macs.py's count() assumes 64.
	macs MACs
	// BatchNorm running-statistics values and num_batches_tracked counters.
	bnStats, bnCounters int
}

func blocks(heads, mlps []int) []Block {
	b := make([]Block, len(heads))
	for i := range b {
		b[i] = Block{Heads: heads[i], MLP: mlps[i], HasMLP: true}
	}
	return b
}

func rep(v, n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = v
	}
	return s
}

func fixtureModels() []fixtureModel {
	text8 := func(e int, act Activation) TextArch {
		return TextArch{ContextLength: 77, VocabSize: 49408, Embed: e,
			Transformer: Transformer{Width: 8, HeadDim: 4, Act: act, Blocks: blocks(rep(2, 2), rep(32, 2))}}
	}
	return []fixtureModel{
		{
			name: "vit-p16",
			arch: &Arch{EmbedDim: 16,
				Vision: VisionArch{Kind: KindViT, ImageSize: 224, Embed: 16, PatchSize: 16,
					Transformer: Transformer{Width: 64, HeadDim: 16, Act: GELU, Blocks: blocks(rep(4, 2), rep(256, 2))}},
				Text: text8(16, GELU)},
			params: Params{Image: 163072, TextNoTokenEmb: 397768 - 395264, TokenEmb: 395264, Total: 560841},
			macs:   MACs{Image: 38935808, Text: 308128},
		},
		{
			name: "vit-p32-quickgelu",
			arch: &Arch{EmbedDim: 24,
				Vision: VisionArch{Kind: KindViT, ImageSize: 224, Embed: 24, PatchSize: 32,
					Transformer: Transformer{Width: 48, HeadDim: 16, Act: QuickGELU, Blocks: blocks(rep(3, 2), rep(192, 2))}},
				Text: text8(24, QuickGELU)},
			params: Params{Image: 207792, TextNoTokenEmb: 397832 - 395264, TokenEmb: 395264, Total: 605625},
			macs:   MACs{Image: 10471296, Text: 308192},
		},
		{
			name: "resnet",
			arch: &Arch{EmbedDim: 20,
				Vision: VisionArch{Kind: KindResNet, ImageSize: 224, Embed: 20,
					Layers: [4]int{1, 2, 1, 1}, Width: 4, PoolHeads: 4, PoolHeadDim: 32},
				Text: text8(20, GELU)},
			params:  Params{Image: 92278, TextNoTokenEmb: 397800 - 395264, TokenEmb: 395264, Total: 490079},
			macs:    MACs{Image: 15443456, Text: 308160},
			bnStats: 1312, bnCounters: 22,
		},
		{
			name: "auto-pruned",
			arch: &Arch{EmbedDim: 16,
				Vision: VisionArch{Kind: KindViT, ImageSize: 224, Embed: 16, PatchSize: 32,
					Transformer: Transformer{Width: 40, HeadDim: 4, Act: GELU,
						Blocks: blocks([]int{5, 0, 12}, []int{0, 77, 150})}},
				Text: TextArch{ContextLength: 77, VocabSize: 49408, Embed: 16,
					Transformer: Transformer{Width: 10, HeadDim: 4, Act: GELU,
						Blocks: blocks([]int{2, 3, 0}, []int{17, 0, 48})}}},
			params: Params{Image: 155791, TextNoTokenEmb: 497405 - 494080, TokenEmb: 494080, Total: 653197},
			macs:   MACs{Image: 7813760, Text: 399020},
		},
	}
}

// fixtureShapes returns the tensor shapes of a fixture model's open_clip
// safetensors file.
func fixtureShapes(t *testing.T, model string) map[string][]int {
	t.Helper()
	f, err := safetensors.Open(fixtures.Path(t, "fixtures", "models", model, "open_clip", "open_clip_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	shapes := make(map[string][]int, len(f.Tensors))
	for name, tt := range f.Tensors {
		shapes[name] = slices.Clone(tt.Shape)
	}
	return shapes
}

func fixtureConfig(t *testing.T, model, file string) *Config {
	t.Helper()
	data, err := os.ReadFile(fixtures.Path(t, "fixtures", "models", model, file))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse(data)
	if err != nil {
		t.Fatalf("%s/%s: %v", model, file, err)
	}
	return cfg
}

func TestResolveFixtures(t *testing.T) {
	for _, fm := range fixtureModels() {
		t.Run(fm.name, func(t *testing.T) {
			shapes := fixtureShapes(t, fm.name)
			for _, file := range []string{"config.json", "open_clip/open_clip_config.json"} {
				cfg := fixtureConfig(t, fm.name, file)
				got, err := Resolve(cfg, shapes)
				if err != nil {
					t.Fatalf("Resolve with %s: %v", file, err)
				}
				if !reflect.DeepEqual(got, fm.arch) {
					t.Errorf("Resolve with %s:\n got %+v\nwant %+v", file, got, fm.arch)
				}
				fromCfg, err := FromConfig(cfg)
				if err != nil {
					t.Fatalf("FromConfig(%s): %v", file, err)
				}
				if !reflect.DeepEqual(fromCfg, fm.arch) {
					t.Errorf("FromConfig(%s):\n got %+v\nwant %+v", file, fromCfg, fm.arch)
				}
			}
		})
	}
}

// Without a config the head width is 64, which divides no attention size of
// the fixtures (their heads are 4 to 32 wide): each must fail, naming the
// first attention tensor 64 does not fit.
func TestResolveFixturesWithoutConfig(t *testing.T) {
	tests := []struct {
		model string
		name  string
		rows  int
	}{
		{"vit-p16", "transformer.resblocks.0.attn.in_proj_weight", 24}, // vision: 192 rows = 1 head of 64
		{"vit-p32-quickgelu", "visual.transformer.resblocks.0.attn.in_proj_weight", 144},
		{"resnet", "transformer.resblocks.0.attn.in_proj_weight", 24}, // pool: 128 = 2 heads of 64
		{"auto-pruned", "visual.transformer.resblocks.0.attn.in_proj_weight", 60},
	}
	for _, tt := range tests {
		t.Run(tt.model, func(t *testing.T) {
			_, err := Resolve(nil, fixtureShapes(t, tt.model))
			var he *HeadWidthError
			if !errors.As(err, &he) {
				t.Fatalf("Resolve(nil): %v, want a *HeadWidthError", err)
			}
			if he.Name != tt.name || he.Rows != tt.rows || he.HeadWidth != 64 || he.FromConfig {
				t.Errorf("got %+v, want name %s rows %d head width 64", he, tt.name, tt.rows)
			}
			for _, s := range []string{tt.name, "head width 64", "pass the model's config"} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
		})
	}
}

func TestFixtureTensorShapes(t *testing.T) {
	for _, fm := range fixtureModels() {
		t.Run(fm.name, func(t *testing.T) {
			shapes := fixtureShapes(t, fm.name)
			got := fm.arch.TensorShapes()
			for name, want := range shapes {
				g, ok := got[name]
				if !ok {
					t.Errorf("%s %v: in the file, not in TensorShapes", name, want)
				} else if !slices.Equal(g, want) {
					t.Errorf("%s: TensorShapes %v, file %v", name, g, want)
				}
			}
			for name := range got {
				if _, ok := shapes[name]; !ok {
					t.Errorf("%s: in TensorShapes, not in the file", name)
				}
			}
			if err := Check(fm.arch, shapes); err != nil {
				t.Errorf("Check: %v", err)
			}
			var stats, counters int
			for name, s := range got {
				switch {
				case strings.HasSuffix(name, ".running_mean"), strings.HasSuffix(name, ".running_var"):
					stats += s[0]
				case strings.HasSuffix(name, ".num_batches_tracked"):
					counters++
				}
			}
			if stats != fm.bnStats || counters != fm.bnCounters {
				t.Errorf("BatchNorm buffers: %d running-stat values, %d counters; want %d, %d",
					stats, counters, fm.bnStats, fm.bnCounters)
			}
		})
	}
}

func TestFixtureCounts(t *testing.T) {
	for _, fm := range fixtureModels() {
		if got := fm.arch.Params(); got != fm.params {
			t.Errorf("%s: Params %+v, want %+v", fm.name, got, fm.params)
		}
		if got := fm.arch.MACs(); got != fm.macs {
			t.Errorf("%s: MACs %+v, want %+v", fm.name, got, fm.macs)
		}
	}
}

// TestResolveConfigDisagrees edits a fixture config so that it contradicts
// the shapes; Resolve must name the tensor and both values.
func TestResolveConfigDisagrees(t *testing.T) {
	tests := []struct {
		model string
		edit  func(c *Config)
		want  []string // substrings of the error
	}{
		{"vit-p16", func(c *Config) { c.VisionCfg.Width = 48; c.VisionCfg.HeadWidth = 16 },
			[]string{"visual.conv1.weight: width 64 in the checkpoint, 48 in the config"}},
		{"vit-p16", func(c *Config) { p := 32; c.VisionCfg.PatchSize = &p },
			[]string{"visual.conv1.weight: patch size 16 in the checkpoint, 32 in the config"}},
		{"vit-p16", func(c *Config) { c.VisionCfg.ImageSize = 448 },
			[]string{"visual.positional_embedding: token grid 14×14 in the checkpoint, 28×28"}},
		{"vit-p16", func(c *Config) { c.VisionCfg.Layers = IntOrList{3} },
			[]string{"visual.transformer.resblocks.*: 2 layers in the checkpoint, 3 in the config"}},
		{"vit-p16", func(c *Config) { c.EmbedDim = 24 },
			[]string{"visual.proj: embed dim 16 in the checkpoint, 24", "text_projection: embed dim 16 in the checkpoint, 24"}},
		{"vit-p16", func(c *Config) { c.TextCfg.ContextLength = 64 },
			[]string{"positional_embedding: context length 77 in the checkpoint, 64 in the config"}},
		{"vit-p16", func(c *Config) { c.TextCfg.VocabSize = 1000 },
			[]string{"token_embedding.weight: vocabulary size 49408 in the checkpoint, 1000 in the config"}},
		{"vit-p16", func(c *Config) { c.TextCfg.Width = 16; c.TextCfg.Heads = 4 },
			[]string{"positional_embedding: width 8 in the checkpoint, 16 in the config"}},
		{"vit-p16", func(c *Config) { c.VisionCfg.MLPRatio = 2 },
			[]string{"visual.transformer.resblocks.0.mlp.c_fc.weight: MLP width 256 in the checkpoint, 128 in the config",
				"visual.transformer.resblocks.1.mlp.c_fc.weight: MLP width 256 in the checkpoint, 128"}},
		{"vit-p16", func(c *Config) { c.VisionCfg = VisionConfig{Layers: IntOrList{1, 2, 1, 1}, Width: 4, HeadWidth: 32} },
			[]string{"the checkpoint has a ViT image tower, the config describes a ModifiedResNet"}},
		{"resnet", func(c *Config) { c.VisionCfg.Layers = IntOrList{1, 2, 2, 1} },
			[]string{"visual.layer3.*: blocks 1 in the checkpoint, 2 in the config"}},
		{"resnet", func(c *Config) { c.VisionCfg.Width = 8; c.VisionCfg.HeadWidth = 64 },
			[]string{"visual.layer1.0.conv1.weight: width 4 in the checkpoint, 8 in the config"}},
		// The unpruned base config alone does not describe the pruned shapes.
		{"auto-pruned", func(c *Config) { c.AutoPruned = nil },
			[]string{"visual.conv1.weight: width 40 in the checkpoint, 48 in the config",
				"visual.transformer.resblocks.1.attn.in_proj_weight: 0 heads in the checkpoint, 12 in the config",
				"transformer.resblocks.1.mlp.c_fc.weight: MLP width 0 in the checkpoint, 48 in the config"}},
		{"auto-pruned", func(c *Config) { c.AutoPruned.Vision.MLPWidth[1] = 78 },
			[]string{"visual.transformer.resblocks.1.mlp.c_fc.weight: MLP width 77 in the checkpoint, 78 in the config"}},
		{"auto-pruned", func(c *Config) { c.AutoPruned.Text.Heads = []int{2, 3, 1} },
			[]string{"transformer.resblocks.2.attn.in_proj_weight: 0 heads in the checkpoint, 1 in the config"}},
		{"auto-pruned", func(c *Config) { c.AutoPruned.Text.MLPWidth = []int{17, -1, 48} },
			[]string{"transformer.resblocks.1.mlp.*: MLP tensors present in the checkpoint, the config says no MLP"}},
		// A head width from the config that does not divide the shapes.
		{"auto-pruned", func(c *Config) { c.AutoPruned.HeadDim = 8; c.VisionCfg.HeadWidth = 8 },
			[]string{"visual.transformer.resblocks.0.attn.in_proj_weight: head width 8 from the config does not divide in_proj rows 60"}},
	}
	for _, tt := range tests {
		cfg := fixtureConfig(t, tt.model, "config.json")
		tt.edit(cfg)
		_, err := Resolve(cfg, fixtureShapes(t, tt.model))
		if err == nil {
			t.Errorf("%s: Resolve accepted a contradicting config %+v", tt.model, cfg)
			continue
		}
		for _, s := range tt.want {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%s: error\n%v\nlacks %q", tt.model, err, s)
			}
		}
	}
}

// What shapes cannot tell comes from the config without error.
func TestResolveConfigOnlyFacts(t *testing.T) {
	shapes := fixtureShapes(t, "vit-p16")
	cfg := fixtureConfig(t, "vit-p16", "config.json")
	cfg.QuickGELU = true
	cfg.VisionCfg.ImageSize = 230 // grid 230//16 = 14, as the shapes say
	cfg.TextCfg.HiddenAct = "gelu_tanh"
	a, err := Resolve(cfg, shapes)
	if err != nil {
		t.Fatal(err)
	}
	if a.Vision.Transformer.Act != QuickGELU || a.Text.Transformer.Act != GELUTanh || a.Vision.ImageSize != 230 {
		t.Errorf("got vision act %s, text act %s, image size %d; want quick_gelu, gelu_tanh, 230",
			a.Vision.Transformer.Act, a.Text.Transformer.Act, a.Vision.ImageSize)
	}
}

func TestCheckReportsEveryProblem(t *testing.T) {
	fm := fixtureModels()
	vit, resnet := fm[0].arch, fm[2].arch
	type want struct {
		missing, unexpected []string
		shape               []ShapeError
	}
	tests := []struct {
		name  string
		arch  *Arch
		model string
		edit  func(s map[string][]int)
		want  want
	}{
		{"untouched", vit, "vit-p16", func(map[string][]int) {}, want{}},
		{"logit_scale [1]", vit, "vit-p16", func(s map[string][]int) { s["logit_scale"] = []int{1} }, want{}},
		{"no num_batches_tracked", resnet, "resnet", func(s map[string][]int) {
			for k := range s {
				if strings.HasSuffix(k, "num_batches_tracked") {
					delete(s, k)
				}
			}
		}, want{}},
		{"removed", vit, "vit-p16", func(s map[string][]int) {
			delete(s, "visual.ln_pre.bias")
			delete(s, "logit_scale")
		}, want{missing: []string{"logit_scale", "visual.ln_pre.bias"}}},
		{"renamed", vit, "vit-p16", func(s map[string][]int) {
			s["visual.projection"] = s["visual.proj"]
			delete(s, "visual.proj")
		}, want{missing: []string{"visual.proj"}, unexpected: []string{"visual.projection"}}},
		{"reshaped", vit, "vit-p16", func(s map[string][]int) {
			s["visual.conv1.weight"] = []int{48, 3, 16, 16}
			s["transformer.resblocks.1.mlp.c_proj.weight"] = []int{32, 8}
			s["logit_scale"] = []int{2}
		}, want{shape: []ShapeError{
			{Name: "logit_scale", Got: []int{2}, Want: []int{}},
			{Name: "transformer.resblocks.1.mlp.c_proj.weight", Got: []int{32, 8}, Want: []int{8, 32}},
			{Name: "visual.conv1.weight", Got: []int{48, 3, 16, 16}, Want: []int{64, 3, 16, 16}},
		}}},
		{"all at once", resnet, "resnet", func(s map[string][]int) {
			delete(s, "visual.layer2.1.bn2.running_var")
			s["visual.layer2.0.downsample.1.running_mean"] = []int{16}
			s["attn_mask"] = []int{77, 77}
			s["visual.layer5.0.conv1.weight"] = []int{1, 1, 1, 1}
		}, want{
			missing:    []string{"visual.layer2.1.bn2.running_var"},
			unexpected: []string{"attn_mask", "visual.layer5.0.conv1.weight"},
			shape:      []ShapeError{{Name: "visual.layer2.0.downsample.1.running_mean", Got: []int{16}, Want: []int{32}}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			shapes := fixtureShapes(t, tt.model)
			tt.edit(shapes)
			err := Check(tt.arch, shapes)
			var gotMissing, gotUnexpected []string
			var gotShape []ShapeError
			if err != nil {
				for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
					var (
						me *MissingTensorError
						ue *UnexpectedTensorError
						se *ShapeError
					)
					switch {
					case errors.As(e, &me):
						gotMissing = append(gotMissing, me.Name)
					case errors.As(e, &ue):
						gotUnexpected = append(gotUnexpected, ue.Name)
					case errors.As(e, &se):
						gotShape = append(gotShape, *se)
					default:
						t.Errorf("unexpected error type %T: %v", e, e)
					}
				}
			}
			if !slices.Equal(gotMissing, tt.want.missing) || !slices.Equal(gotUnexpected, tt.want.unexpected) ||
				!reflect.DeepEqual(gotShape, tt.want.shape) {
				t.Errorf("Check:\n%v\ngot missing %v unexpected %v shapes %v\nwant %+v",
					err, gotMissing, gotUnexpected, gotShape, tt.want)
			}
			// errors.As finds each kind through the joined error.
			if len(tt.want.shape) > 0 {
				var se *ShapeError
				if !errors.As(err, &se) {
					t.Error("errors.As(*ShapeError) failed on the joined error")
				}
			}
			// Resolve reports the same problems (the shapes still identify the
			// architecture) unless an identifying tensor was removed.
			if err != nil && tt.name != "renamed" {
				cfg := fixtureConfig(t, tt.model, "config.json")
				if _, rerr := Resolve(cfg, shapes); rerr == nil {
					t.Error("Resolve accepted shapes that Check rejects")
				}
			}
		})
	}
}

func TestErrorMessages(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{&ShapeError{Name: "visual.conv1.weight", Got: []int{256, 3, 16, 16}, Want: []int{192, 3, 16, 16}},
			"visual.conv1.weight: shape [256 3 16 16], want [192 3 16 16]"},
		{&MissingTensorError{Name: "visual.proj", Want: []int{768, 512}},
			"visual.proj: missing tensor (want shape [768 512])"},
		{&UnexpectedTensorError{Name: "attn_mask", Shape: []int{77, 77}},
			"attn_mask: unexpected tensor (shape [77 77])"},
		{&HeadWidthError{Name: "transformer.resblocks.1.attn.in_proj_weight", Rows: 36, HeadWidth: 64},
			"config: transformer.resblocks.1.attn.in_proj_weight: head width 64 does not divide in_proj rows 36 (3·heads·head width); pass the model's config"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("got  %q\nwant %q", got, tt.want)
		}
	}
}

// Shapes that do not identify an architecture are errors, never panics.
func TestResolveMalformedShapes(t *testing.T) {
	base := fixtureShapes(t, "vit-p16")
	tests := []struct {
		name string
		edit func(s map[string][]int)
		want string
	}{
		{"empty", func(s map[string][]int) { clear(s) }, "no image tower"},
		{"conv1 rank", func(s map[string][]int) { s["visual.conv1.weight"] = []int{64} }, "no image tower"},
		{"pos rank", func(s map[string][]int) { s["visual.positional_embedding"] = []int{197} }, "visual.positional_embedding: shape [197], want 2 dimensions"},
		{"grid", func(s map[string][]int) { s["visual.positional_embedding"] = []int{196, 64} }, "196 positions is not a square grid"},
		{"no text", func(s map[string][]int) { delete(s, "positional_embedding") }, "positional_embedding: missing tensor"},
		{"layer gap", func(s map[string][]int) {
			for k := range s {
				if strings.HasPrefix(k, "transformer.resblocks.0.") {
					delete(s, k)
				}
			}
		}, "transformer.resblocks.0: no tensors for this layer, but 2 layers exist"},
		{"huge layer index", func(s map[string][]int) { s["transformer.resblocks.100000.ln_2.weight"] = []int{8} }, "beyond the limit"},
		{"negative dim", func(s map[string][]int) { s["visual.conv1.weight"] = []int{-64, 3, 16, 16} }, "negative dimension"},
		{"huge width", func(s map[string][]int) { s["visual.conv1.weight"] = []int{1 << 40, 3, 16, 16} }, "out of range"},
		{"embed dims differ", func(s map[string][]int) { s["text_projection"] = []int{8, 24} }, "visual.proj: embed dim 16, but text_projection gives 24"},
		{"in_proj rows zero", func(s map[string][]int) {
			s["visual.transformer.resblocks.0.attn.in_proj_weight"] = []int{0, 64}
		}, "does not divide in_proj rows 0"},
	}
	cfg := fixtureConfig(t, "vit-p16", "config.json")
	for _, tt := range tests {
		s := maps.Clone(base)
		tt.edit(s)
		_, err := Resolve(cfg, s)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
}
