package config

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
)

// zooCounts is spec §1.2 (parameters) and §10 (GMACs to 3 decimals, README
// MACs); exact MACs are the output of spec/macs.py (count(cfg)["image_macs"],
// ["text_macs"]) for the same configs.
var zooCounts = []struct {
	name                          string
	params                        Params
	imageMACs, textMACs           int64
	imageG, textG, totalG, readme string
}{
	{"TinyCLIP-ViT-39M-16-Text-19M", Params{38587392, 19216896, 25296896, 83101185}, 7990718464, 1490016256, "7.991", "1.490", "9.481", "9.5"},
	{"TinyCLIP-ViT-8M-16-Text-3M", Params{8276992, 2520576, 12648448, 23446017}, 1786639360, 190903808, "1.787", "0.191", "1.978", "2.0"},
	{"TinyCLIP-ResNet-30M-Text-29M", Params{29583780, 28936192, 25296896, 83816869}, 4692868096, 2235155456, "4.693", "2.235", "6.928", "6.9"},
	{"TinyCLIP-ResNet-19M-Text-19M", Params{18596766, 19479040, 25296896, 63372703}, 2915680768, 1490278400, "2.916", "1.490", "4.406", "4.4"},
	{"TinyCLIP-ViT-61M-32-Text-29M", Params{61411200, 28674048, 25296896, 115382145}, 3084185600, 2234893312, "3.084", "2.235", "5.319", "5.3"},
	{"TinyCLIP-ViT-40M-32-Text-19M", Params{39691776, 19216896, 25296896, 84205569}, 1995489280, 1490016256, "1.996", "1.490", "3.486", "3.5"},
	{"ViT-B-32", Params{87849216, 38131200, 25296896, 151277313}, 4408811520, 2979770368, "4.409", "2.980", "7.389", ""},
	{"ViT-B-32-quickgelu", Params{87849216, 38131200, 25296896, 151277313}, 4408811520, 2979770368, "4.409", "2.980", "7.389", ""},
	{"ViT-B-16", Params{86192640, 38131200, 25296896, 149620737}, 17563453440, 2979770368, "17.564", "2.980", "20.543", ""},
	{"ViT-B-16-quickgelu", Params{86192640, 38131200, 25296896, 149620737}, 17563453440, 2979770368, "17.564", "2.980", "20.543", ""},
	{"RN50", Params{38316896, 38393344, 25296896, 102007137}, 6111469568, 2980032512, "6.112", "2.980", "9.092", ""},
	{"RN50-quickgelu", Params{38316896, 38393344, 25296896, 102007137}, 6111469568, 2980032512, "6.112", "2.980", "9.092", ""},
}

// gRound formats MACs in G rounded half-up to the given decimals, exactly
// (integer arithmetic).
func gRound(macs int64, decimals int) string {
	unit := int64(math.Pow10(9 - decimals))
	r := (macs + unit/2) / unit
	p := int64(math.Pow10(decimals))
	return fmt.Sprintf("%d.%0*d", r/p, decimals, r%p)
}

// specTower reproduces how spec §10 got its per-tower 3-decimal GMACs: from
// macs.py's 4-decimal print, rounded again (1.99549 → 1.9955 → 1.996).
func specTower(macs int64) string {
	r4 := (macs + 50000) / 100000
	r3 := (r4 + 5) / 10
	return fmt.Sprintf("%d.%03d", r3/1000, r3%1000)
}

func TestRegistryCounts(t *testing.T) {
	models := Models()
	byName := map[string]ModelInfo{}
	for _, m := range models {
		byName[m.Name] = m
	}
	for _, tt := range zooCounts {
		m, ok := byName[tt.name]
		if !ok {
			t.Errorf("%s: not in the registry", tt.name)
			continue
		}
		a, err := FromConfig(m.Config)
		if err != nil {
			t.Errorf("%s: FromConfig: %v", tt.name, err)
			continue
		}
		if got := a.Params(); got != tt.params || m.Params != tt.params {
			t.Errorf("%s: Params %+v (registry %+v), want %+v", tt.name, got, m.Params, tt.params)
		}
		want := MACs{Image: tt.imageMACs, Text: tt.textMACs}
		if got := a.MACs(); got != want || m.MACs != want {
			t.Errorf("%s: MACs %+v (registry %+v), want %+v", tt.name, got, m.MACs, want)
		}
		got := m.MACs
		if specTower(got.Image) != tt.imageG || specTower(got.Text) != tt.textG || gRound(got.Total(), 3) != tt.totalG {
			t.Errorf("%s: GMACs %s + %s = %s, spec %s + %s = %s", tt.name,
				specTower(got.Image), specTower(got.Text), gRound(got.Total(), 3), tt.imageG, tt.textG, tt.totalG)
		}
		if tt.readme != "" {
			if g := gRound(got.Total(), 1); g != tt.readme {
				t.Errorf("%s: %s GMACs after rounding, README %s", tt.name, g, tt.readme)
			}
			if r := m.Releases[0].ReadmeGMACs; fmt.Sprintf("%.1f", r) != tt.readme {
				t.Errorf("%s: registry README MACs %v, want %s", tt.name, r, tt.readme)
			}
		}
	}
}

// The closed forms of spec §1.2 and §10 for regular towers (head width 64),
// checked on the registry ViTs and on other regular shapes.
func TestClosedForms(t *testing.T) {
	cfgs := []*Config{}
	for _, m := range Models() {
		if m.Config != nil && !m.Config.IsResNet() {
			cfgs = append(cfgs, m.Config)
		}
	}
	for _, c := range []struct{ e, w, l, p, size, tw, tl, ctx, vocab int }{
		{64, 128, 3, 14, 224, 64, 2, 77, 49408},
		{256, 192, 5, 8, 96, 128, 4, 32, 1000},
		{32, 64, 1, 30, 100, 64, 1, 5, 7},
	} {
		cfg := vitCfg(c.e, c.w, c.l, c.p, c.tw, c.tw/64, c.tl)
		cfg.VisionCfg.ImageSize = c.size
		cfg.TextCfg.ContextLength, cfg.TextCfg.VocabSize = c.ctx, c.vocab
		cfgs = append(cfgs, cfg)
	}
	for _, cfg := range cfgs {
		a, err := FromConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		vc, tc := cfg.VisionCfg, cfg.TextCfg
		W, L, P, E := int64(vc.Width), int64(vc.Layers[0]), int64(*vc.PatchSize), int64(cfg.EmbedDim)
		G := int64(vc.ImageSize) / P
		T := G*G + 1
		TW, TL, C, V := int64(tc.Width), int64(tc.Layers), int64(tc.ContextLength), int64(tc.VocabSize)
		want := Params{
			Image:          W*3*P*P + W + T*W + 4*W + W*E + L*(12*W*W+13*W),
			TextNoTokenEmb: C*TW + 2*TW + TW*E + TL*(12*TW*TW+13*TW),
			TokenEmb:       V * TW,
		}
		want.Total = want.Image + want.TextNoTokenEmb + want.TokenEmb + 1
		if got := a.Params(); got != want {
			t.Errorf("%+v: Params %+v, closed form %+v", cfg, got, want)
		}
		wantM := MACs{
			Image: G*G*W*3*P*P + L*(T*12*W*W+2*T*T*W) + W*E,
			Text:  TL*(C*12*TW*TW+2*C*C*TW) + TW*E,
		}
		if got := a.MACs(); got != wantM {
			t.Errorf("%+v: MACs %+v, closed form %+v", cfg, got, wantM)
		}
	}
}

func TestRegistryEntries(t *testing.T) {
	type rel struct {
		tag, pretrain string
		top1, gmacs   float64
		pairs         int
		hf            string
	}
	tests := []struct {
		name     string
		inh      Inheritance
		auto     bool
		estimate string // spec §10 GMACs estimate, 1 decimal
		rels     []rel
	}{
		{"TinyCLIP-ViT-39M-16-Text-19M", InheritManual, false, "", []rel{{"YFCC15M", "YFCC-15M", 63.5, 9.5, 1469, "wkcn/TinyCLIP-ViT-39M-16-Text-19M-YFCC15M"}}},
		{"TinyCLIP-ViT-8M-16-Text-3M", InheritManual, false, "", []rel{{"YFCC15M", "YFCC-15M", 41.1, 2.0, 4150, "wkcn/TinyCLIP-ViT-8M-16-Text-3M-YFCC15M"}}},
		{"TinyCLIP-ResNet-30M-Text-29M", InheritManual, false, "", []rel{{"LAION400M", "LAION-400M", 59.1, 6.9, 1811, ""}}},
		{"TinyCLIP-ResNet-19M-Text-19M", InheritManual, false, "", []rel{{"LAION400M", "LAION-400M", 56.4, 4.4, 3024, ""}}},
		{"TinyCLIP-ViT-61M-32-Text-29M", InheritManual, false, "", []rel{{"LAION400M", "LAION-400M", 62.4, 5.3, 3191, "wkcn/TinyCLIP-ViT-61M-32-Text-29M-LAION400M"}}},
		{"TinyCLIP-ViT-40M-32-Text-19M", InheritManual, false, "", []rel{{"LAION400M", "LAION-400M", 59.8, 3.5, 4641, "wkcn/TinyCLIP-ViT-40M-32-Text-19M-LAION400M"}}},
		{"TinyCLIP-auto-ViT-63M-32-Text-31M", InheritAuto, true, "5.5", []rel{
			{"LAION400M", "LAION-400M", 63.9, 5.6, 2905, ""}, {"LAIONYFCC400M", "LAION+YFCC-400M", 64.5, 5.6, 2909, ""}}},
		{"TinyCLIP-auto-ViT-45M-32-Text-18M", InheritAuto, true, "3.6", []rel{
			{"LAION400M", "LAION-400M", 61.4, 3.7, 3682, ""}, {"LAIONYFCC400M", "LAION+YFCC-400M", 62.7, 1.9, 3685, ""}}},
		{"TinyCLIP-auto-ViT-22M-32-Text-10M", InheritAuto, true, "1.9", []rel{{"LAION400M", "LAION-400M", 53.7, 1.9, 5504, ""}}},
		{"ViT-B-32", "", false, "", []rel{{"laion2b_e16", "LAION-2B", 0, 0, 0, ""}}},
		{"ViT-B-32-quickgelu", "", false, "", []rel{{"openai", "OpenAI", 0, 0, 0, ""}}},
		{"ViT-B-16", "", false, "", nil},
		{"ViT-B-16-quickgelu", "", false, "", []rel{{"openai", "OpenAI", 0, 0, 0, ""}}},
		{"RN50", "", false, "", nil},
		{"RN50-quickgelu", "", false, "", []rel{{"openai", "OpenAI", 0, 0, 0, ""}}},
	}
	models := Models()
	if len(models) != len(tests) {
		t.Fatalf("%d models, want %d", len(models), len(tests))
	}
	for i, tt := range tests {
		m := models[i]
		if m.Name != tt.name || m.Inheritance != tt.inh {
			t.Errorf("model %d: %s (%q), want %s (%q)", i, m.Name, m.Inheritance, tt.name, tt.inh)
			continue
		}
		if tt.auto {
			if m.Config != nil || m.Params != (Params{}) || m.MACs != (MACs{}) || m.Estimate == nil {
				t.Errorf("%s: auto model needs Config nil, zero counts and an Estimate", m.Name)
			} else if g := fmt.Sprintf("%.1f", m.Estimate.GMACs); g != tt.estimate {
				t.Errorf("%s: estimated GMACs %s, spec %s", m.Name, g, tt.estimate)
			}
		} else if m.Config == nil || m.Estimate != nil {
			t.Errorf("%s: needs a Config and no Estimate", m.Name)
		}
		if len(m.Releases) != len(tt.rels) {
			t.Errorf("%s: %d releases, want %d", m.Name, len(m.Releases), len(tt.rels))
			continue
		}
		for j, w := range tt.rels {
			r := m.Releases[j]
			if r.Tag != w.tag || r.Pretrain != w.pretrain || r.Top1 != w.top1 || r.ReadmeGMACs != w.gmacs ||
				r.PairsPerSec != w.pairs || r.HFRepo != w.hf {
				t.Errorf("%s release %d: %+v, want %+v", m.Name, j, r, w)
			}
			if strings.HasPrefix(m.Name, "TinyCLIP") {
				file := m.Name + "-" + w.tag + ".pt"
				if r.File != file || r.URL != "https://github.com/wkcn/TinyCLIP-model-zoo/releases/download/checkpoints/"+file {
					t.Errorf("%s release %d: file %q URL %q", m.Name, j, r.File, r.URL)
				}
			}
		}
		if quick := m.Config != nil && m.Config.QuickGELU; strings.HasSuffix(m.Name, "-quickgelu") != quick {
			t.Errorf("%s: quick_gelu %v", m.Name, m.Config != nil && m.Config.QuickGELU)
		}
	}
	if r := models[9].Releases[0]; r.File != "vit_b_32-laion2b_e16-af8dbd0c.pth" ||
		r.URL != "https://github.com/mlfoundations/open_clip/releases/download/v0.2-weights/vit_b_32-laion2b_e16-af8dbd0c.pth" {
		t.Errorf("ViT-B-32 laion2b_e16: %+v", r)
	}
}

// The registry configs are the official JSON files (TinyCLIP/open_clip
// model_configs), written out here by hand.
func TestRegistryConfigsAreOfficial(t *testing.T) {
	tests := map[string]string{
		"TinyCLIP-ViT-8M-16-Text-3M":   `{"embed_dim": 512, "vision_cfg": {"image_size": 224, "layers": 10, "width": 256, "patch_size": 16}, "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 256, "heads": 4, "layers": 3}}`,
		"TinyCLIP-ResNet-19M-Text-19M": `{"embed_dim": 1024, "vision_cfg": {"image_size": 224, "layers": [3, 4, 6, 3], "width": 44, "patch_size": null}, "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 6}}`,
		"ViT-B-32":                     `{"embed_dim": 512, "vision_cfg": {"image_size": 224, "layers": 12, "width": 768, "patch_size": 32}, "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12}}`,
		"RN50-quickgelu":               `{"embed_dim": 1024, "quick_gelu": true, "vision_cfg": {"image_size": 224, "layers": [3, 4, 6, 3], "width": 64, "patch_size": null}, "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12}}`,
	}
	for name, js := range tests {
		want, err := Parse([]byte(js))
		if err != nil {
			t.Fatal(err)
		}
		m, ok := Lookup(name)
		if !ok {
			t.Fatalf("%s: not found", name)
		}
		if !reflect.DeepEqual(m.Config, want) {
			got, _ := json.Marshal(m.Config)
			t.Errorf("%s: config %s, want %s", name, got, js)
		}
	}
}

func TestLookup(t *testing.T) {
	tests := []struct {
		query, name, tag string
	}{
		{"TinyCLIP-ViT-8M-16-Text-3M", "TinyCLIP-ViT-8M-16-Text-3M", ""},
		{"tinyclip-vit-8m-16-text-3m", "TinyCLIP-ViT-8M-16-Text-3M", ""},
		{"TinyCLIP-ViT-8M-16-Text-3M-YFCC15M", "TinyCLIP-ViT-8M-16-Text-3M", "YFCC15M"},
		{"wkcn/TinyCLIP-ViT-40M-32-Text-19M-LAION400M", "TinyCLIP-ViT-40M-32-Text-19M", "LAION400M"},
		{"TinyCLIP-ResNet-30M-Text-29M-LAION400M.pt", "TinyCLIP-ResNet-30M-Text-29M", "LAION400M"},
		{"TinyCLIP-auto-ViT-45M-32-Text-18M-LAIONYFCC400M", "TinyCLIP-auto-ViT-45M-32-Text-18M", "LAIONYFCC400M"},
		{"TINYCLIP-AUTO-VIT-22M-32-TEXT-10M-laion400m", "TinyCLIP-auto-ViT-22M-32-Text-10M", "LAION400M"},
		{"ViT-B-32-quickgelu", "ViT-B-32-quickgelu", ""},
		{"vit_b_32-laion2b_e16-af8dbd0c.pth", "ViT-B-32", "laion2b_e16"},
		{"rn50", "RN50", ""},
		{"TinyCLIP-ViT-8M-16-Text-3M-LAION400M", "", ""}, // no such release
		{"TinyCLIP-ViT-8M", "", ""},
		{"", "", ""},
	}
	for _, tt := range tests {
		m, r, ok := LookupRelease(tt.query)
		if ok != (tt.name != "") {
			t.Errorf("%q: found %v", tt.query, ok)
			continue
		}
		if !ok {
			continue
		}
		if m.Name != tt.name {
			t.Errorf("%q: %s, want %s", tt.query, m.Name, tt.name)
		}
		if (r == nil) != (tt.tag == "") || (r != nil && r.Tag != tt.tag) {
			t.Errorf("%q: release %+v, want tag %q", tt.query, r, tt.tag)
		}
		if m2, ok2 := Lookup(tt.query); !ok2 || m2.Name != m.Name {
			t.Errorf("Lookup(%q) disagrees with LookupRelease", tt.query)
		}
	}
}

// Results are copies: changing one does not change the registry.
func TestRegistryIsImmutable(t *testing.T) {
	m, _ := Lookup("ViT-B-32")
	m.Config.VisionCfg.Width = 1
	*m.Config.VisionCfg.PatchSize = 1
	m.Releases[0].Tag = "x"
	ms := Models()
	ms[0].Config.TextCfg.Layers = 99
	again, _ := Lookup("ViT-B-32")
	first := Models()[0]
	if again.Config.VisionCfg.Width != 768 || *again.Config.VisionCfg.PatchSize != 32 ||
		again.Releases[0].Tag != "laion2b_e16" || first.Config.TextCfg.Layers != 6 {
		t.Error("registry changed through a returned value")
	}
}

// An irregular architecture (head width 64) written by Config, counted by
// spec/macs.py from that JSON: macs.py understands the layer_heads/layer_mlp
// extension, and both counters agree.
func TestIrregularCountsMatchMacsPy(t *testing.T) {
	a := &Arch{EmbedDim: 512,
		Vision: VisionArch{Kind: KindViT, ImageSize: 224, Embed: 512, PatchSize: 32,
			Transformer: Transformer{Width: 640, HeadDim: 64, Act: GELU, Blocks: blocks([]int{7, 0, 12}, []int{1000, 3000, 0})}},
		Text: TextArch{ContextLength: 77, VocabSize: 49408, Embed: 512,
			Transformer: Transformer{Width: 400, HeadDim: 64, Act: GELU, Blocks: blocks([]int{3, 0}, []int{999, 2048})}}}
	wantJSON := `{"embed_dim":512,"vision_cfg":{"image_size":224,"layers":3,"width":640,"patch_size":32,"layer_heads":[7,0,12],"layer_mlp":[1000,3000,0]},"text_cfg":{"context_length":77,"vocab_size":49408,"width":400,"heads":3,"layers":2,"head_width":64,"layer_heads":[3,0],"layer_mlp":[999,2048]}}`
	if js, err := json.Marshal(a.Config()); err != nil || string(js) != wantJSON {
		t.Errorf("Config JSON %s, %v\nwant %s", js, err, wantJSON)
	}
	// python3 macs.py on wantJSON.
	wantP := Params{Image: 10579168, TextNoTokenEmb: 2988423, TokenEmb: 19763200, Total: 33330792}
	wantM := MACs{Image: 514393600, Text: 213831136}
	if p, m := a.Params(), a.MACs(); p != wantP || m != wantM {
		t.Errorf("counts %+v %+v, macs.py %+v %+v", p, m, wantP, wantM)
	}
}
