package config

import (
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/tinyclip-go/tinyclip/internal/fixtures"
)

// inventedArchs are irregular architectures no config file holds: zero-head
// layers, zero-width and absent MLPs, widths no head width divides, image
// sizes that are no multiple of the patch, other ResNet stage depths.
func inventedArchs() map[string]*Arch {
	return map[string]*Arch{
		"odd vit": {EmbedDim: 7,
			Vision: VisionArch{Kind: KindViT, ImageSize: 100, Embed: 7, PatchSize: 7, // grid 14, 2 pixels unused
				Transformer: Transformer{Width: 37, HeadDim: 5, Act: QuickGELU, Blocks: []Block{
					{Heads: 3, MLP: 0, HasMLP: true}, {Heads: 0, MLP: 11, HasMLP: true},
					{Heads: 2, HasMLP: false}, {Heads: 7, MLP: 1, HasMLP: true}}}},
			Text: TextArch{ContextLength: 13, VocabSize: 101, Embed: 7,
				Transformer: Transformer{Width: 13, HeadDim: 3, Act: GELUTanh, Blocks: []Block{
					{Heads: 0, MLP: 5, HasMLP: true}, {Heads: 4, MLP: 52, HasMLP: true}, {Heads: 1, HasMLP: false}}}}},
		"resnet other depths": {EmbedDim: 9,
			Vision: VisionArch{Kind: KindResNet, ImageSize: 64, Embed: 9,
				Layers: [4]int{2, 1, 3, 1}, Width: 6, PoolHeads: 4, PoolHeadDim: 48},
			Text: TextArch{ContextLength: 5, VocabSize: 50, Embed: 9,
				Transformer: Transformer{Width: 12, HeadDim: 4, Act: ReLU, Blocks: blocks(rep(3, 2), rep(48, 2))}}},
		"resnet odd width, pruned text": {EmbedDim: 3,
			Vision: VisionArch{Kind: KindResNet, ImageSize: 32, Embed: 3,
				Layers: [4]int{1, 1, 1, 2}, Width: 5, PoolHeads: 1, PoolHeadDim: 160},
			Text: TextArch{ContextLength: 77, VocabSize: 49408, Embed: 3,
				Transformer: Transformer{Width: 30, HeadDim: 64, Act: QuickGELU, Blocks: []Block{
					{Heads: 1, MLP: 120, HasMLP: true}, {Heads: 0, MLP: 0, HasMLP: true}}}}},
		"regular, head width 32": {EmbedDim: 8,
			Vision: VisionArch{Kind: KindViT, ImageSize: 32, Embed: 8, PatchSize: 8,
				Transformer: Transformer{Width: 96, HeadDim: 32, Act: QuickGELU, Blocks: blocks(rep(3, 2), rep(384, 2))}},
			Text: TextArch{ContextLength: 77, VocabSize: 49408, Embed: 8,
				Transformer: Transformer{Width: 16, HeadDim: 8, Act: QuickGELU, Blocks: blocks(rep(2, 1), rep(64, 1))}}},
		"vision quick, text gelu": {EmbedDim: 8,
			Vision: VisionArch{Kind: KindViT, ImageSize: 64, Embed: 8, PatchSize: 32,
				Transformer: Transformer{Width: 128, HeadDim: 64, Act: QuickGELU, Blocks: blocks(rep(2, 1), rep(512, 1))}},
			Text: TextArch{ContextLength: 77, VocabSize: 49408, Embed: 8,
				Transformer: Transformer{Width: 64, HeadDim: 64, Act: GELU, Blocks: blocks(rep(1, 1), rep(256, 1))}}},
	}
}

// roundTrip checks FromConfig(a.Config()) == a, through JSON as well, and
// Resolve(a.Config(), a.TensorShapes()) == a; when every head is 64 wide and
// every activation GELU, also Resolve(nil, ...) == a.
func roundTrip(t *testing.T, name string, a *Arch) {
	t.Helper()
	if err := a.Validate(); err != nil {
		t.Fatalf("%s: Validate: %v", name, err)
	}
	cfg := a.Config()
	got, err := FromConfig(cfg)
	if err != nil {
		t.Fatalf("%s: FromConfig(Config()): %v", name, err)
	}
	if !reflect.DeepEqual(got, a) {
		t.Errorf("%s: FromConfig(Config()):\n got %+v\nwant %+v", name, got, a)
	}
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := Parse(js)
	if err != nil {
		t.Fatalf("%s: Parse(%s): %v", name, js, err)
	}
	if got, err := FromConfig(parsed); err != nil || !reflect.DeepEqual(got, a) {
		t.Errorf("%s: FromConfig(Parse(json)) = %+v, %v\nwant %+v (json %s)", name, got, err, a, js)
	}
	shapes := a.TensorShapes()
	if got, err := Resolve(cfg, shapes); err != nil || !reflect.DeepEqual(got, a) {
		t.Errorf("%s: Resolve(Config(), TensorShapes()) = %+v, %v\nwant %+v", name, got, err, a)
	}
	if headWidth64(a) && a.Text.Transformer.Act == GELU && (a.Vision.Kind == KindResNet || a.Vision.Transformer.Act == GELU) &&
		a.Vision.ImageSize%max(a.Vision.PatchSize, 1) == 0 {
		if got, err := Resolve(nil, shapes); err != nil || !reflect.DeepEqual(got, a) {
			t.Errorf("%s: Resolve(nil, TensorShapes()) = %+v, %v\nwant %+v", name, got, err, a)
		}
	}
}

func headWidth64(a *Arch) bool {
	return a.Text.Transformer.HeadDim == 64 &&
		(a.Vision.Kind == KindViT && a.Vision.Transformer.HeadDim == 64 || a.Vision.Kind == KindResNet && a.Vision.PoolHeadDim == 64)
}

func TestRoundTripRegistry(t *testing.T) {
	n := 0
	for _, m := range Models() {
		if m.Config == nil {
			continue
		}
		a, err := FromConfig(m.Config)
		if err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
		roundTrip(t, m.Name, a)
		n++
	}
	if n != 12 {
		t.Errorf("%d registry configs, want 12", n)
	}
}

func TestRoundTripInvented(t *testing.T) {
	for name, a := range inventedArchs() {
		roundTrip(t, name, a)
	}
	for _, fm := range fixtureModels() {
		roundTrip(t, fm.name, fm.arch)
	}
}

// Resolve with the config-less default reads an ViT image size as patch·grid.
func TestResolveImageSizeFromShapes(t *testing.T) {
	a := inventedArchs()["odd vit"]
	a.Vision.Transformer.HeadDim = 64
	a.Text.Transformer.HeadDim = 64
	a.Vision.Transformer.Act, a.Text.Transformer.Act = GELU, GELU
	got, err := Resolve(nil, a.TensorShapes())
	if err != nil {
		t.Fatal(err)
	}
	if got.Vision.ImageSize != 98 {
		t.Errorf("image size %d, want 98 (7·14)", got.Vision.ImageSize)
	}
	got.Vision.ImageSize = 100
	if !reflect.DeepEqual(got, a) {
		t.Errorf("got %+v\nwant %+v", got, a)
	}
}

// What Config writes for irregular towers: the spec §1.3 extension keys.
func TestConfigIrregularForm(t *testing.T) {
	auto := fixtureModels()[3].arch
	c := auto.Config()
	vc, tc := c.VisionCfg, c.TextCfg
	if vc.Width != 40 || vc.HeadWidth != 4 || !slices.Equal(vc.LayerHeads, []int{5, 0, 12}) ||
		!slices.Equal(vc.LayerMLP, []int{0, 77, 150}) || !slices.Equal(vc.Layers, IntOrList{3}) {
		t.Errorf("vision_cfg %+v", vc)
	}
	if tc.Width != 10 || tc.HeadWidth != 4 || tc.Layers != 3 || tc.Heads != 3 ||
		!slices.Equal(tc.LayerHeads, []int{2, 3, 0}) || !slices.Equal(tc.LayerMLP, []int{17, 0, 48}) {
		t.Errorf("text_cfg %+v", tc)
	}
	odd := inventedArchs()["odd vit"].Config()
	if !slices.Equal(odd.VisionCfg.LayerMLP, []int{0, 11, -1, 1}) || odd.VisionCfg.HiddenAct != "quick_gelu" ||
		odd.TextCfg.HiddenAct != "gelu_tanh" || odd.QuickGELU {
		t.Errorf("odd vit config %+v", odd)
	}
	reg := fixtureModels()[1].arch.Config()
	if reg.VisionCfg.LayerHeads != nil || reg.VisionCfg.LayerMLP != nil || reg.TextCfg.LayerHeads != nil ||
		reg.TextCfg.HeadWidth != 0 || reg.TextCfg.Heads != 2 || reg.VisionCfg.HeadWidth != 16 || !reg.QuickGELU {
		t.Errorf("regular config %+v", reg)
	}
}

func TestConfigJSONRoundTrip(t *testing.T) {
	for _, model := range []string{"vit-p16", "vit-p32-quickgelu", "resnet", "auto-pruned"} {
		for _, file := range []string{"config.json", "open_clip/open_clip_config.json"} {
			data, err := os.ReadFile(fixtures.Path(t, "fixtures", "models", model, file))
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := Parse(data)
			if err != nil {
				t.Fatal(err)
			}
			js, err := json.Marshal(cfg)
			if err != nil {
				t.Fatal(err)
			}
			again, err := Parse(js)
			if err != nil || !reflect.DeepEqual(again, cfg) {
				t.Errorf("%s/%s: %+v, %v after a JSON round trip, want %+v", model, file, again, err, cfg)
			}
			// The JSON holds the same keys and values as the file.
			var a, b map[string]any
			if err := json.Unmarshal(data, &a); err != nil {
				t.Fatal(err)
			}
			if m, ok := a["model_cfg"]; ok {
				a = m.(map[string]any)
			}
			if err := json.Unmarshal(js, &b); err != nil {
				t.Fatal(err)
			}
			if vc := a["vision_cfg"].(map[string]any); vc["patch_size"] == nil {
				delete(vc, "patch_size") // null is written as an absent key
			}
			if !reflect.DeepEqual(a, b) {
				t.Errorf("%s/%s: marshalled %s", model, file, js)
			}
		}
	}
}

func TestFromConfigErrors(t *testing.T) {
	p16 := `"patch_size": 16`
	text := `"text_cfg": {"width": 512, "heads": 8, "layers": 12}`
	vit := func(vision string) string {
		return `{"embed_dim": 512, "vision_cfg": {` + vision + `}, ` + text + `}`
	}
	tests := []struct {
		name, json, want string
	}{
		{"no embed", `{"vision_cfg": {"layers": 12, "width": 768, ` + p16 + `}, ` + text + `}`, "embed_dim: 0 out of range"},
		{"negative embed", `{"embed_dim": -1, "vision_cfg": {"layers": 12, "width": 768, ` + p16 + `}, ` + text + `}`, "embed_dim: -1 out of range"},
		{"no vision width", vit(`"layers": 12, ` + p16), "vision_cfg.width: 0 out of range"},
		{"huge width", vit(`"layers": 12, "width": 1000000000, ` + p16), "vision_cfg.width: 1000000000 out of range"},
		{"huge layers", vit(`"layers": 1000000, "width": 768, ` + p16), "vision_cfg.layers: 1000000 out of range"},
		{"no layers", vit(`"width": 768, ` + p16), "a ViT needs one layer count"},
		{"no patch", vit(`"layers": 12, "width": 768`), "vision_cfg.patch_size: missing"},
		{"3 stages", vit(`"layers": [3, 4, 6], "width": 64`), "a ViT needs one layer count"},
		{"patch > image", vit(`"layers": 12, "width": 768, "patch_size": 32, "image_size": 16`), "vision_cfg.image_size: 16 out of range [32"},
		{"too many tokens", vit(`"layers": 12, "width": 768, "patch_size": 1, "image_size": 1024`), "1048577 tokens"},
		{"negative patch", vit(`"layers": 12, "width": 768, "patch_size": -16`), "patch_size: -16 out of range"},
		{"width < head width", vit(`"layers": 12, "width": 32, ` + p16), "head_width 64 does not split width 32"},
		{"mlp ratio", vit(`"layers": 12, "width": 768, "mlp_ratio": -1, ` + p16), "mlp_ratio: -1 out of range"},
		{"huge mlp ratio", vit(`"layers": 12, "width": 768, "mlp_ratio": 1e300, ` + p16), "mlp_ratio"},
		{"hidden_act", vit(`"layers": 12, "width": 768, "hidden_act": "swish", ` + p16), `vision_cfg.hidden_act: unsupported activation "swish"`},
		{"layer_heads length", vit(`"layers": 2, "width": 768, "layer_heads": [1], ` + p16), "1 layer head counts for 2 layers"},
		{"layer_mlp < -1", vit(`"layers": 1, "width": 768, "layer_mlp": [-2], ` + p16), "MLP width -2 out of range"},
		{"identity layer", vit(`"layers": 1, "width": 768, "layer_heads": [0], "layer_mlp": [-1], ` + p16), "neither attention heads nor an MLP"},
		{"too many heads", vit(`"layers": 1, "width": 768, "layer_heads": [2000], ` + p16), "out of range"},
		{"resnet width 1", `{"embed_dim": 1024, "vision_cfg": {"layers": [3, 4, 6, 3], "width": 1}, ` + text + `}`, "vision_cfg.width: 1 out of range [2"},
		{"resnet stage 0", `{"embed_dim": 1024, "vision_cfg": {"layers": [3, 0, 6, 3], "width": 64}, ` + text + `}`, "vision_cfg.layers[1]: 0 out of range"},
		{"resnet image size", `{"embed_dim": 1024, "vision_cfg": {"layers": [3, 4, 6, 3], "width": 64, "image_size": 100}, ` + text + `}`, "multiple of 32"},
		{"resnet head width", `{"embed_dim": 1024, "vision_cfg": {"layers": [3, 4, 6, 3], "width": 5, "head_width": 53}, ` + text + `}`, "head_width 53 does not split the pool width 160"},
		{"resnet per-layer", `{"embed_dim": 1024, "vision_cfg": {"layers": [3, 4, 6, 3], "width": 64, "layer_heads": [1]}, ` + text + `}`, "per-layer heads or MLP widths on a ModifiedResNet"},
		{"text heads", `{"embed_dim": 512, "vision_cfg": {"layers": 12, "width": 768, ` + p16 + `}, "text_cfg": {"width": 100, "heads": 8, "layers": 12}}`, "8 heads do not split width 100"},
		{"text default heads", `{"embed_dim": 512, "vision_cfg": {"layers": 12, "width": 768, ` + p16 + `}, "text_cfg": {"width": 100, "layers": 12}}`, "8 heads do not split width 100"},
		{"text head width", `{"embed_dim": 512, "vision_cfg": {"layers": 12, "width": 768, ` + p16 + `}, "text_cfg": {"width": 512, "heads": 8, "head_width": 32, "layers": 12}}`, "head width 64, but the config gives head width 32"},
		{"text no layers", `{"embed_dim": 512, "vision_cfg": {"layers": 12, "width": 768, ` + p16 + `}, "text_cfg": {"width": 512}}`, "text_cfg.layers: 0 out of range"},
		{"text vocab", `{"embed_dim": 512, "vision_cfg": {"layers": 12, "width": 768, ` + p16 + `}, "text_cfg": {"width": 512, "layers": 1, "vocab_size": -5}}`, "vocab_size: -5 out of range"},
		{"auto head dim", `{"embed_dim": 16, "vision_cfg": {"layers": 1, "width": 48, "head_width": 4, "patch_size": 32}, "text_cfg": {"width": 12, "heads": 3, "layers": 1}, "auto_pruned": {"head_dim": 8}}`, "vision_cfg.head_width 4 disagrees with auto_pruned.head_dim 8"},
		{"auto layers", `{"embed_dim": 16, "vision_cfg": {"layers": 2, "width": 48, "patch_size": 32}, "text_cfg": {"width": 12, "heads": 3, "layers": 1}, "auto_pruned": {"head_dim": 4, "vision": {"width": 40, "heads": [1], "mlp_width": [1]}}}`, "1 vision_cfg head counts for 2 layers"},
		{"auto lists", `{"embed_dim": 16, "vision_cfg": {"layers": 1, "width": 48, "patch_size": 32}, "text_cfg": {"width": 12, "heads": 3, "layers": 1}, "auto_pruned": {"head_dim": 4, "text": {"width": 10}}}`, "text_cfg tower needs heads and mlp_width"},
		{"auto vs layer_heads", `{"embed_dim": 16, "vision_cfg": {"layers": 1, "width": 48, "patch_size": 32, "layer_heads": [2]}, "text_cfg": {"width": 12, "heads": 3, "layers": 1}, "auto_pruned": {"head_dim": 4, "vision": {"width": 40, "heads": [1], "mlp_width": [1]}}}`, "layer_heads [2] disagrees with auto_pruned heads [1]"},
	}
	for _, tt := range tests {
		cfg, err := Parse([]byte(tt.json))
		if err != nil {
			t.Errorf("%s: Parse: %v", tt.name, err)
			continue
		}
		_, err = FromConfig(cfg)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
	if _, err := FromConfig(nil); err == nil {
		t.Error("FromConfig(nil) succeeded")
	}
}

// Defaults for keys a config leaves out are open_clip's.
func TestFromConfigDefaults(t *testing.T) {
	cfg, err := Parse([]byte(`{"embed_dim": 512, "vision_cfg": {"layers": 2, "width": 128, "patch_size": 32},
		"text_cfg": {"width": 256, "layers": 1}}`))
	if err != nil {
		t.Fatal(err)
	}
	a, err := FromConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := &Arch{EmbedDim: 512,
		Vision: VisionArch{Kind: KindViT, ImageSize: 224, Embed: 512, PatchSize: 32,
			Transformer: Transformer{Width: 128, HeadDim: 64, Act: GELU, Blocks: blocks(rep(2, 2), rep(512, 2))}},
		Text: TextArch{ContextLength: 77, VocabSize: 49408, Embed: 512,
			Transformer: Transformer{Width: 256, HeadDim: 32, Act: GELU, Blocks: blocks(rep(8, 1), rep(1024, 1))}}}
	if !reflect.DeepEqual(a, want) {
		t.Errorf("got %+v\nwant %+v", a, want)
	}
	// Official ViT rule heads = width // head_width: 96 // 64 = 1 head of 96.
	cfg.VisionCfg.Width = 96
	cfg.VisionCfg.MLPRatio = 2.5
	if a, err = FromConfig(cfg); err != nil {
		t.Fatal(err)
	}
	if tr := a.Vision.Transformer; tr.HeadDim != 96 || tr.Blocks[0].Heads != 1 || tr.Blocks[0].MLP != 240 {
		t.Errorf("width 96: %+v", tr)
	}
}

// Sizes near the limits must neither overflow the counts nor take long.
func TestLimits(t *testing.T) {
	big := func(kind string) *Arch {
		tr := Transformer{Width: maxWidth, HeadDim: 64, Act: GELU, Blocks: make([]Block, maxLayers)}
		for i := range tr.Blocks {
			tr.Blocks[i] = Block{Heads: maxWidth / 64, MLP: maxMLP, HasMLP: true}
		}
		a := &Arch{EmbedDim: maxWidth,
			Text: TextArch{ContextLength: maxContext, VocabSize: maxVocab, Embed: maxWidth, Transformer: tr}}
		if kind == KindViT {
			a.Vision = VisionArch{Kind: KindViT, ImageSize: 256, PatchSize: 1, Embed: maxWidth, Transformer: tr}
		} else {
			a.Vision = VisionArch{Kind: KindResNet, ImageSize: 8192, Embed: maxWidth, Width: maxWidth / 32,
				Layers: [4]int{maxLayers, maxLayers, maxLayers, maxLayers}, PoolHeads: maxWidth / 64, PoolHeadDim: 64}
		}
		return a
	}
	for _, kind := range []string{KindViT, KindResNet} {
		a := big(kind)
		if err := a.Validate(); err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		m, p := a.MACs(), a.Params()
		// The same sums in float64 must agree to float64 precision: an int64
		// overflow would be off by 2^64.
		fm := float64(m.Image) + float64(m.Text)
		if m.Image <= 0 || m.Text <= 0 || m.Total() <= 0 || p.Total <= 0 || fm > 9e18 {
			t.Errorf("%s: counts overflow: %+v %+v", kind, m, p)
		}
	}
	a := big(KindViT)
	a.Vision.ImageSize = 257 // 257² + 1 tokens > limit
	if err := a.Validate(); err == nil {
		t.Error("Validate accepted too many tokens")
	}
}

func FuzzConfig(f *testing.F) {
	for _, m := range Models() {
		if m.Config != nil {
			js, _ := json.Marshal(m.Config)
			f.Add(js)
		}
	}
	for _, a := range inventedArchs() {
		js, _ := json.Marshal(a.Config())
		f.Add(js)
	}
	f.Add([]byte(`{"model_cfg": {"embed_dim": 16, "vision_cfg": {"image_size": 224, "layers": 3, "width": 48, "head_width": 4, "patch_size": 32}, "text_cfg": {"width": 12, "heads": 3, "layers": 3}, "auto_pruned": {"head_dim": 4, "vision": {"width": 40, "heads": [5, 0, 12], "mlp_width": [0, 77, 150]}, "text": {"width": 10, "heads": [2, 3, 0], "mlp_width": [17, 0, 48]}}}}`))
	f.Add([]byte(`{"embed_dim": 1e9, "vision_cfg": {"layers": [1000000000, 1, 1, 1], "width": 1000000000}}`))
	f.Add([]byte(`{"embed_dim": 8, "vision_cfg": {"layers": 1, "width": -8, "patch_size": 0}, "text_cfg": {"width": 8, "layers": -1}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data)
		if err != nil {
			return
		}
		a, err := FromConfig(cfg)
		if err != nil {
			return
		}
		if err := a.Validate(); err != nil {
			t.Fatalf("FromConfig returned an invalid arch: %v", err)
		}
		if p, m := a.Params(), a.MACs(); p.Total <= 0 || m.Image <= 0 || m.Text <= 0 || m.Total() <= 0 {
			t.Fatalf("counts %+v %+v", p, m)
		}
		c2 := a.Config()
		js, err := json.Marshal(c2)
		if err != nil {
			t.Fatal(err)
		}
		c3, err := Parse(js)
		if err != nil {
			t.Fatalf("Parse(Config()): %v", err)
		}
		b, err := FromConfig(c3)
		if err != nil || !reflect.DeepEqual(a, b) {
			t.Fatalf("round trip: %+v, %v\nwant %+v\njson %s", b, err, a, js)
		}
		shapes := a.TensorShapes()
		if r, err := Resolve(cfg, shapes); err != nil || !reflect.DeepEqual(r, a) {
			t.Fatalf("Resolve(cfg, TensorShapes) = %+v, %v\nwant %+v", r, err, a)
		}
	})
}

// FuzzResolve damages the shapes of a valid model (deleting, reshaping,
// adding tensors) and checks that Resolve never panics and, when it
// succeeds, that the shapes really are the architecture's.
func FuzzResolve(f *testing.F) {
	f.Add(uint8(0), []byte{})
	f.Add(uint8(1), []byte{0, 3, 0, 1, 7, 2, 2, 9, 200})
	f.Add(uint8(2), []byte{1, 0, 0, 1, 0, 255, 3, 1, 1})
	f.Add(uint8(3), []byte{2, 40, 5})
	archs := []*Arch{fixtureModels()[3].arch, fixtureModels()[2].arch, inventedArchs()["odd vit"], inventedArchs()["resnet other depths"]}
	f.Fuzz(func(t *testing.T, which uint8, ops []byte) {
		a := archs[int(which)%len(archs)]
		shapes := a.TensorShapes()
		names := make([]string, 0, len(shapes))
		for n := range shapes {
			names = append(names, n)
		}
		slices.Sort(names)
		for i := 0; i+2 < len(ops) && i < 60; i += 3 {
			name := names[int(ops[i+1])%len(names)]
			switch ops[i] % 4 {
			case 0:
				delete(shapes, name)
			case 1: // change one dimension
				s := slices.Clone(shapes[name])
				if len(s) > 0 {
					s[int(ops[i+2])%len(s)] = int(int8(ops[i+2]))
				}
				shapes[name] = s
			case 2: // change the rank
				shapes[name] = append(slices.Clone(shapes[name]), int(ops[i+2]))
			case 3: // add a layer-like tensor
				shapes[strings.Replace(name, ".0.", "."+string(rune('0'+ops[i+2]%12))+".", 1)+"x"] = []int{int(ops[i+2])}
			}
		}
		r, err := Resolve(a.Config(), shapes)
		if err != nil {
			return
		}
		if err := Check(r, shapes); err != nil {
			t.Fatalf("Resolve accepted shapes Check rejects: %v", err)
		}
	})
}
