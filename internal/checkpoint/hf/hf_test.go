package hf

import (
	"bytes"
	"errors"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/tinyclip-go/tinyclip/internal/checkpoint/safetensors"
	"github.com/tinyclip-go/tinyclip/internal/config"
	"github.com/tinyclip-go/tinyclip/internal/fixtures"
	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

func readFixture(t *testing.T, elem ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(fixtures.Path(t, append([]string{"fixtures", "models"}, elem...)...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFixtureConfigs checks that each HF config.json describes the same
// architecture as the model's official config.json, activation included.
func TestFixtureConfigs(t *testing.T) {
	for _, tc := range []struct {
		model, act string
		quick      bool
	}{
		{"vit-p16", "gelu", false},
		{"vit-p32-quickgelu", "quick_gelu", true},
	} {
		t.Run(tc.model, func(t *testing.T) {
			data := readFixture(t, tc.model, "hf", "config.json")
			if !IsCLIPConfig(data) {
				t.Error("IsCLIPConfig = false")
			}
			got, err := ParseConfig(data)
			if err != nil {
				t.Fatal(err)
			}
			if got.VisionCfg.HiddenAct != tc.act || got.TextCfg.HiddenAct != tc.act || got.QuickGELU != tc.quick {
				t.Errorf("activations %q %q quick_gelu %v, want %q, %v", got.VisionCfg.HiddenAct, got.TextCfg.HiddenAct, got.QuickGELU, tc.act, tc.quick)
			}
			if got.VisionCfg.LayerMLP != nil || got.TextCfg.LayerMLP != nil {
				t.Errorf("per-layer MLP lists set for a regular model")
			}
			official, err := config.Parse(readFixture(t, tc.model, "config.json"))
			if err != nil {
				t.Fatal(err)
			}
			ga, err := config.FromConfig(got)
			if err != nil {
				t.Fatal(err)
			}
			wa, err := config.FromConfig(official)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(ga, wa) {
				t.Errorf("architecture\n got %+v\nwant %+v", ga, wa)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	got, err := ParseConfig([]byte(`{"model_type": "clip"}`))
	if err != nil {
		t.Fatal(err)
	}
	p := 32
	want := &config.Config{
		EmbedDim:  512,
		QuickGELU: true,
		VisionCfg: config.VisionConfig{ImageSize: 224, Layers: config.IntOrList{12}, Width: 768, HeadWidth: 64,
			PatchSize: &p, MLPRatio: 4, HiddenAct: "quick_gelu"},
		TextCfg: config.TextConfig{ContextLength: 77, VocabSize: 49408, Width: 512, Heads: 8, Layers: 12,
			MLPRatio: 4, HiddenAct: "quick_gelu"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("defaults\n got %+v\nwant %+v", got, want)
	}
}

func TestConfigVariants(t *testing.T) {
	for _, tc := range []struct {
		name, json string
		check      func(*config.Config) bool
	}{
		{"dict overrides", `{"text_config": {"hidden_size": 512, "num_attention_heads": 8}, "text_config_dict": {"hidden_size": 256, "intermediate_size": 1024},
			"vision_config_dict": {"patch_size": 16, "hidden_act": "gelu"}}`,
			func(c *config.Config) bool {
				return c.TextCfg.Width == 256 && c.TextCfg.MLPRatio == 4 && *c.VisionCfg.PatchSize == 16 &&
					c.VisionCfg.HiddenAct == "gelu" && c.TextCfg.HiddenAct == "quick_gelu" && !c.QuickGELU
			}},
		{"null sub-config", `{"text_config": null, "vision_config": {"hidden_size": 256, "num_attention_heads": 4}}`,
			func(c *config.Config) bool { return c.VisionCfg.HeadWidth == 64 && c.TextCfg.Width == 512 }},
		{"no model_type", `{"projection_dim": 64, "text_config": {}}`, func(c *config.Config) bool { return c.EmbedDim == 64 }},
		{"gelu_new", `{"vision_config": {"hidden_act": "gelu_new"}, "text_config": {"hidden_act": "gelu_pytorch_tanh"}}`,
			func(c *config.Config) bool {
				return c.VisionCfg.HiddenAct == "gelu_tanh" && c.TextCfg.HiddenAct == "gelu_tanh"
			}},
		{"relu", `{"vision_config": {"hidden_act": "relu"}, "text_config": {"hidden_act": "gelu"}}`,
			func(c *config.Config) bool { return c.VisionCfg.HiddenAct == "relu" && c.TextCfg.HiddenAct == "gelu" }},
		{"inexact mlp ratio", `{"vision_config": {"hidden_size": 100, "num_attention_heads": 4, "intermediate_size": 29, "num_hidden_layers": 2}}`,
			func(c *config.Config) bool { return slices.Equal(c.VisionCfg.LayerMLP, []int{29, 29}) }},
		{"float ints", `{"projection_dim": 16.0}`, func(c *config.Config) bool { return c.EmbedDim == 16 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tc.json))
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(c) {
				t.Errorf("config %+v", c)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ name, json, want string }{
		{"not json", `{`, "not a JSON object"},
		{"array", `[]`, "not a JSON object"},
		{"other model", `{"model_type": "siglip"}`, "not \"clip\""},
		{"unknown act", `{"text_config": {"hidden_act": "silu"}}`, `"silu" is not supported`},
		{"act not string", `{"text_config": {"hidden_act": 1}}`, "want a string"},
		{"heads do not divide", `{"vision_config": {"hidden_size": 100, "num_attention_heads": 3}}`, "not a multiple"},
		{"zero heads", `{"vision_config": {"num_attention_heads": 0}}`, "must be positive"},
		{"negative", `{"text_config": {"num_hidden_layers": -1}}`, "non-negative integer"},
		{"fraction", `{"text_config": {"hidden_size": 1.5}}`, "non-negative integer"},
		{"string int", `{"projection_dim": "512"}`, "non-negative integer"},
		{"eps", `{"vision_config": {"layer_norm_eps": 1e-6}}`, "layer_norm_eps"},
		{"channels", `{"vision_config": {"num_channels": 1}}`, "num_channels"},
		{"sub-config not object", `{"vision_config": 3}`, "not an object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.json))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestIsCLIPConfig(t *testing.T) {
	for _, tc := range []struct {
		data []byte
		want bool
	}{
		{readFixture(t, "vit-p16", "config.json"), false},
		{readFixture(t, "vit-p16", "open_clip", "open_clip_config.json"), false},
		{readFixture(t, "vit-p32-quickgelu", "hf", "config.json"), true},
		{[]byte(`{"vision_config": {}}`), true},
		{[]byte(`{"model_type": "clip_vision_model"}`), false},
		{[]byte(`not json`), false},
	} {
		if got := IsCLIPConfig(tc.data); got != tc.want {
			t.Errorf("IsCLIPConfig(%.60s) = %v, want %v", tc.data, got, tc.want)
		}
	}
}

func TestParseIndex(t *testing.T) {
	m, err := ParseIndex([]byte(`{"metadata": {"total_size": 8}, "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}`))
	if err != nil || len(m) != 2 || m["b"] != "model-00002-of-00002.safetensors" {
		t.Errorf("ParseIndex = %v, %v", m, err)
	}
	for _, bad := range []string{`{}`, `{"weight_map": {}}`, `{"weight_map": {"a": "../x.bin"}}`, `{"weight_map": {"a": "/etc/passwd"}}`,
		`{"weight_map": {"a": ".."}}`, `{"weight_map": {"a": "sub\\x.bin"}}`, `{"weight_map": {"a": ""}}`, `{"weight_map": []}`} {
		if _, err := ParseIndex([]byte(bad)); err == nil {
			t.Errorf("ParseIndex(%s) succeeded", bad)
		}
	}
}

func openST(t *testing.T, elem ...string) map[string]*tensor.Tensor {
	t.Helper()
	f, err := safetensors.Open(fixtures.Path(t, append([]string{"fixtures", "models"}, elem...)...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f.Tensors
}

func sameTensor(a, b *tensor.Tensor) bool {
	return a.DType == b.DType && slices.Equal(a.Shape, b.Shape) && bytes.Equal(a.Data, b.Data)
}

// TestFixtureKeys maps each HF fixture to open_clip names and compares with
// the model's open_clip file (same dtypes, so byte equality), and back.
func TestFixtureKeys(t *testing.T) {
	for _, tc := range []struct {
		model   string
		hfKeys  int
		dropped int // position_ids
	}{
		{"vit-p16", 78, 0},
		{"vit-p32-quickgelu", 80, 2},
	} {
		t.Run(tc.model, func(t *testing.T) {
			h := openST(t, tc.model, "hf", "model.safetensors")
			oc := openST(t, tc.model, "open_clip", "open_clip_model.safetensors")
			if len(h) != tc.hfKeys || !HasHFNames(h) || HasHFNames(oc) {
				t.Fatalf("%d HF keys; HasHFNames %v / %v", len(h), HasHFNames(h), HasHFNames(oc))
			}
			got, err := ToOpenCLIP(h)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(oc) {
				t.Errorf("%d tensors, want %d", len(got), len(oc))
			}
			for k, w := range oc {
				g := got[k]
				if g == nil || !sameTensor(g, w) || g.Name != k {
					t.Errorf("%s differs: %+v", k, g)
				}
			}
			back, err := FromOpenCLIP(oc)
			if err != nil {
				t.Fatal(err)
			}
			if len(back) != tc.hfKeys-tc.dropped {
				t.Errorf("FromOpenCLIP gives %d tensors, want %d", len(back), tc.hfKeys-tc.dropped)
			}
			for k, g := range back {
				if w := h[k]; w == nil || !sameTensor(g, w) || g.Name != k {
					t.Errorf("%s differs from the HF file", k)
				}
			}
		})
	}
}

func f32(name string, shape []int, vs ...float32) *tensor.Tensor {
	return tensor.FromFloat32(name, shape, vs)
}

func TestToOpenCLIPDetails(t *testing.T) {
	base := func() map[string]*tensor.Tensor {
		return map[string]*tensor.Tensor{
			"text_model.encoder.layers.0.self_attn.q_proj.weight": f32("", []int{1, 2}, 1, 2),
			"text_model.encoder.layers.0.self_attn.k_proj.weight": f32("", []int{1, 2}, 3, 4),
			"text_model.encoder.layers.0.self_attn.v_proj.weight": f32("", []int{1, 2}, 5, 6),
			"text_projection.weight":                              f32("", []int{2, 3}, 1, 2, 3, 4, 5, 6),
			"vision_model.encoder.layers.0.extra":                 f32("", []int{1}, 1),
			"something.else":                                      f32("", []int{1}, 1),
		}
	}
	got, err := ToOpenCLIP(base())
	if err != nil {
		t.Fatal(err)
	}
	if w, _ := got["transformer.resblocks.0.attn.in_proj_weight"].Float32(); !slices.Equal(w, []float32{1, 2, 3, 4, 5, 6}) ||
		!slices.Equal(got["transformer.resblocks.0.attn.in_proj_weight"].Shape, []int{3, 2}) {
		t.Errorf("in_proj_weight = %v", w)
	}
	if p, _ := got["text_projection"].Float32(); !slices.Equal(p, []float32{1, 4, 2, 5, 3, 6}) {
		t.Errorf("text_projection = %v (want the transpose)", p)
	}
	for _, k := range []string{"vision_model.encoder.layers.0.extra", "something.else"} {
		if got[k] == nil {
			t.Errorf("%s not passed through", k)
		}
	}
	for _, tc := range []struct {
		name string
		edit func(map[string]*tensor.Tensor)
		want string
	}{
		{"missing k", func(m map[string]*tensor.Tensor) {
			delete(m, "text_model.encoder.layers.0.self_attn.k_proj.weight")
		}, "k_proj part is missing"},
		{"dtype mismatch", func(m map[string]*tensor.Tensor) {
			m["text_model.encoder.layers.0.self_attn.v_proj.weight"] = &tensor.Tensor{DType: tensor.F16, Shape: []int{1, 2}, Data: make([]byte, 4)}
		}, "v_proj part F16"},
		{"shape mismatch", func(m map[string]*tensor.Tensor) {
			m["text_model.encoder.layers.0.self_attn.v_proj.weight"] = f32("", []int{1, 1}, 1)
		}, "v_proj part F32 [1 1]"},
		{"collision", func(m map[string]*tensor.Tensor) { m["text_projection"] = f32("", []int{1}, 1) }, "already has"},
		{"projection not 2-D", func(m map[string]*tensor.Tensor) { m["text_projection.weight"] = f32("", []int{6}, 1, 2, 3, 4, 5, 6) }, "2-D"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := base()
			tc.edit(m)
			_, err := ToOpenCLIP(m)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestFromOpenCLIPRejectsResNet(t *testing.T) {
	oc := openST(t, "resnet", "open_clip", "open_clip_model.safetensors")
	if _, err := FromOpenCLIP(oc); !errors.Is(err, ErrNotRepresentable) {
		t.Errorf("err = %v, want ErrNotRepresentable", err)
	}
	bad := map[string]*tensor.Tensor{"visual.transformer.resblocks.0.attn.in_proj_weight": f32("", []int{2, 1}, 1, 2)}
	if _, err := FromOpenCLIP(bad); err == nil || !strings.Contains(err.Error(), "q, k and v") {
		t.Errorf("in_proj of 2 rows: err = %v", err)
	}
}
