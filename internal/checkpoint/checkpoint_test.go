package checkpoint

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/tinyclip-go/tinyclip/internal/checkpoint/pickle"
	"github.com/tinyclip-go/tinyclip/internal/checkpoint/safetensors"
	"github.com/tinyclip-go/tinyclip/internal/config"
	"github.com/tinyclip-go/tinyclip/internal/fixtures"
	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

// manifest is the part of fixtures/models/manifest.json the tests use.
type manifest struct {
	Models []struct {
		Name   string `json:"name"`
		Config string `json:"config"`
		Files  []struct {
			Path   string `json:"path"`
			Format string `json:"format"`
			Layout string `json:"layout"`
			Keys   int    `json:"keys"`
			Config string `json:"config"`
			Dir    string `json:"dir"`
		} `json:"files"`
		NeedsConfig bool `json:"needs_config"`
	} `json:"models"`
}

func loadManifest(t *testing.T) *manifest {
	t.Helper()
	b, err := os.ReadFile(fixtures.Path(t, "fixtures", "models", "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Models) != 4 {
		t.Fatalf("manifest lists %d models, want 4", len(m.Models))
	}
	return &m
}

func modelPath(t *testing.T, rel string) string {
	return fixtures.Path(t, "fixtures", "models", filepath.FromSlash(rel))
}

// rawCount counts the tensors a weight file stores, before normalisation.
func rawCount(t *testing.T, path, format string) int {
	t.Helper()
	if format == FormatSafetensors {
		f, err := safetensors.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		return len(f.Tensors)
	}
	f, err := pickle.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return len(f.Tensors)
}

// sameValues compares two tensor sets by name: same names, shapes and
// float32 values bit for bit.
func sameValues(t *testing.T, got, want map[string]*tensor.Tensor) {
	t.Helper()
	if len(got) != len(want) {
		var extra, missing []string
		for k := range got {
			if want[k] == nil {
				extra = append(extra, k)
			}
		}
		for k := range want {
			if got[k] == nil {
				missing = append(missing, k)
			}
		}
		t.Errorf("%d tensors, want %d; extra %v, missing %v", len(got), len(want), extra, missing)
	}
	for k, w := range want {
		g := got[k]
		if g == nil {
			t.Errorf("%s missing", k)
			continue
		}
		if g.Name != k {
			t.Errorf("%s: Name %q", k, g.Name)
		}
		if !slices.Equal(g.Shape, w.Shape) {
			t.Errorf("%s: shape %v, want %v", k, g.Shape, w.Shape)
			continue
		}
		gv, err1 := g.Float32()
		wv, err2 := w.Float32()
		if err1 != nil || err2 != nil {
			t.Errorf("%s: %v %v", k, err1, err2)
			continue
		}
		for i := range gv {
			if math.Float32bits(gv[i]) != math.Float32bits(wv[i]) {
				t.Errorf("%s[%d] = %v, want %v (%s vs %s)", k, i, gv[i], wv[i], g.DType, w.DType)
				break
			}
		}
	}
}

// TestManifestFiles opens every weight file of the manifest: the format and
// stored key count are the listed ones, and after normalisation the tensors
// equal the model's open_clip file element for element.
func TestManifestFiles(t *testing.T) {
	m := loadManifest(t)
	for _, model := range m.Models {
		ref, err := Open(modelPath(t, model.Name+"/open_clip/open_clip_model.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		for _, file := range model.Files {
			t.Run(file.Path, func(t *testing.T) {
				path := modelPath(t, file.Path)
				c, err := Open(path)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if c.Format != file.Format {
					t.Errorf("format %q, want %q", c.Format, file.Format)
				}
				if n := rawCount(t, path, file.Format); n != file.Keys {
					t.Errorf("file stores %d tensors, manifest says %d", n, file.Keys)
				}
				if c.Config != nil || c.Preprocess != nil || c.TokenizerPath != "" {
					t.Errorf("a single file gave configs: %+v %+v %q", c.Config, c.Preprocess, c.TokenizerPath)
				}
				if !slices.Equal(c.Files, []string{path}) || c.Path != path {
					t.Errorf("Path %q, Files %v", c.Path, c.Files)
				}
				sameValues(t, c.Tensors, ref.Tensors)
				if ls := c.Tensors["logit_scale"]; ls == nil || len(ls.Shape) != 0 {
					t.Errorf("logit_scale %+v", ls)
				}
				for k := range c.Tensors {
					if strings.HasSuffix(k, "position_ids") {
						t.Errorf("%s kept", k)
					}
				}
			})
		}
		ref.Close()
	}
}

// TestDirectories opens the model directories: official (config.json +
// one .pt), open_clip and Hugging Face.
func TestDirectories(t *testing.T) {
	m := loadManifest(t)
	for _, model := range m.Models {
		official, err := config.Parse(mustRead(t, modelPath(t, model.Config)))
		if err != nil {
			t.Fatal(err)
		}
		ref, err := Open(modelPath(t, model.Name+"/open_clip/open_clip_model.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		t.Run(model.Name+"/open_clip", func(t *testing.T) {
			c, err := Open(modelPath(t, model.Name+"/open_clip"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if c.Format != FormatSafetensors || !reflect.DeepEqual(c.Config, official) {
				t.Errorf("format %q, config %+v, want %+v", c.Format, c.Config, official)
			}
			want := &PreprocessConfig{Variant: VariantOpenCLIP, Size: 224, CropHeight: 224, CropWidth: 224,
				Mean: clipMean, Std: clipStd, RescaleFactor: 1.0 / 255, Interpolation: "bicubic", ResizeMode: "shortest"}
			if !reflect.DeepEqual(c.Preprocess, want) {
				t.Errorf("preprocess %+v", c.Preprocess)
			}
			sameValues(t, c.Tensors, ref.Tensors)
		})
		t.Run(model.Name+"/official", func(t *testing.T) {
			c, err := Open(modelPath(t, model.Name))
			if model.Name == "resnet" { // two .pt files: the caller must pick one
				if !errors.Is(err, ErrUnsupportedFormat) || !strings.Contains(err.Error(), "several weight files") {
					t.Errorf("err = %v, want an ambiguity error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if c.Format != FormatTorchZip || !reflect.DeepEqual(c.Config, official) {
				t.Errorf("format %q, config %+v", c.Format, c.Config)
			}
			if model.NeedsConfig && (c.Config.AutoPruned == nil || c.Config.AutoPruned.HeadDim != 4) {
				t.Errorf("auto_pruned missing from %+v", c.Config)
			}
			sameValues(t, c.Tensors, ref.Tensors)
		})
		for _, file := range model.Files {
			if file.Dir == "" {
				continue
			}
			t.Run(file.Dir, func(t *testing.T) {
				c, err := Open(modelPath(t, file.Dir))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				act := "gelu"
				if official.QuickGELU {
					act = "quick_gelu"
				}
				if c.Config == nil || c.Config.VisionCfg.HiddenAct != act || c.Config.TextCfg.HiddenAct != act {
					t.Fatalf("config %+v, want hidden_act %s", c.Config, act)
				}
				ga, err := config.FromConfig(c.Config)
				if err != nil {
					t.Fatal(err)
				}
				wa, err := config.FromConfig(official)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(ga, wa) {
					t.Errorf("HF config resolves to %+v, want %+v", ga, wa)
				}
				sameValues(t, c.Tensors, ref.Tensors)
			})
		}
		ref.Close()
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func writeZipPT(t *testing.T, path string, ts []*tensor.Tensor) {
	t.Helper()
	var b bytes.Buffer
	if err := pickle.WriteTorchZip(&b, ts); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, b.Bytes())
}

func list(m map[string]*tensor.Tensor) []*tensor.Tensor {
	var ts []*tensor.Tensor
	for _, t := range m {
		ts = append(ts, t)
	}
	return ts
}

// TestMadeDirectories covers directory forms the fixtures lack: sharded HF
// weights, pytorch_model.bin, preprocessor and tokenizer files, an open_clip
// directory with only a .bin, and the weight-file choice.
func TestMadeDirectories(t *testing.T) {
	hfSrc, err := safetensors.Open(modelPath(t, "vit-p32-quickgelu/hf/model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer hfSrc.Close()
	ref, err := Open(modelPath(t, "vit-p32-quickgelu/open_clip/open_clip_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	hfConfig := mustRead(t, modelPath(t, "vit-p32-quickgelu/hf/config.json"))
	ocConfig := mustRead(t, modelPath(t, "vit-p32-quickgelu/open_clip/open_clip_config.json"))
	root := t.TempDir()

	// Sharded safetensors: vision tensors in shard 1, the rest in shard 2.
	sharded := filepath.Join(root, "sharded")
	var s1, s2 []*tensor.Tensor
	wm := map[string]string{}
	for _, n := range hfSrc.Names {
		tt := hfSrc.Tensors[n]
		if strings.HasPrefix(n, "vision_model.") {
			s1 = append(s1, tt)
			wm[n] = "model-00001-of-00002.safetensors"
		} else {
			s2 = append(s2, tt)
			wm[n] = "model-00002-of-00002.safetensors"
		}
	}
	os.MkdirAll(sharded, 0o755)
	if err := safetensors.WriteFile(filepath.Join(sharded, "model-00001-of-00002.safetensors"), s1, nil); err != nil {
		t.Fatal(err)
	}
	if err := safetensors.WriteFile(filepath.Join(sharded, "model-00002-of-00002.safetensors"), s2, nil); err != nil {
		t.Fatal(err)
	}
	idx, _ := json.Marshal(map[string]any{"metadata": map[string]any{}, "weight_map": wm})
	writeFile(t, filepath.Join(sharded, "model.safetensors.index.json"), idx)
	writeFile(t, filepath.Join(sharded, "config.json"), hfConfig)
	writeFile(t, filepath.Join(sharded, "preprocessor_config.json"), []byte(`{"crop_size": {"height": 224, "width": 224},
		"do_center_crop": true, "do_normalize": true, "do_resize": true, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25],
		"resample": 3, "size": {"shortest_edge": 224}, "rescale_factor": 0.00392156862745098}`))
	writeFile(t, filepath.Join(sharded, "vocab.json"), []byte(`{}`))
	writeFile(t, filepath.Join(sharded, "tokenizer.json"), []byte(`{}`))

	// HF directory with pytorch_model.bin (torch zip of the HF names).
	bin := filepath.Join(root, "bin")
	writeZipPT(t, filepath.Join(bin, "pytorch_model.bin"), list(hfSrc.Tensors))
	writeFile(t, filepath.Join(bin, "config.json"), hfConfig)
	writeFile(t, filepath.Join(bin, "vocab.json"), []byte(`{}`))

	// open_clip directory with only open_clip_pytorch_model.bin (legacy).
	ocBin := filepath.Join(root, "ocbin")
	var lb bytes.Buffer
	if err := pickle.WriteLegacy(&lb, list(ref.Tensors)); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(ocBin, "open_clip_pytorch_model.bin"), lb.Bytes())
	writeFile(t, filepath.Join(ocBin, "open_clip_config.json"), ocConfig)

	// Official-style directory without config: .safetensors preferred to .pt.
	noCfg := filepath.Join(root, "nocfg")
	writeZipPT(t, filepath.Join(noCfg, "weights.pt"), []*tensor.Tensor{tensor.FromFloat32("logit_scale", []int{1}, []float32{1})})
	if err := safetensors.WriteFile(filepath.Join(noCfg, "weights.safetensors"), list(ref.Tensors), nil); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(noCfg, ".hidden.safetensors"), []byte("junk"))

	for _, tc := range []struct {
		dir, format, tokenizer string
		files, hfPre           bool
	}{
		{sharded, FormatSafetensors, "tokenizer.json", true, true},
		{bin, FormatTorchZip, "vocab.json", false, false},
		{ocBin, FormatTorchLegacy, "", false, false},
		{noCfg, FormatSafetensors, "", false, false},
	} {
		t.Run(filepath.Base(tc.dir), func(t *testing.T) {
			c, err := Open(tc.dir)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if c.Format != tc.format {
				t.Errorf("format %q, want %q", c.Format, tc.format)
			}
			if tc.files && len(c.Files) != 2 {
				t.Errorf("files %v, want the two shards", c.Files)
			}
			wantTok := ""
			if tc.tokenizer != "" {
				wantTok = filepath.Join(tc.dir, tc.tokenizer)
			}
			if c.TokenizerPath != wantTok {
				t.Errorf("tokenizer %q, want %q", c.TokenizerPath, wantTok)
			}
			if tc.dir == noCfg {
				if c.Config != nil {
					t.Errorf("config %+v from a directory without one", c.Config)
				}
			} else if c.Config == nil || !c.Config.QuickGELU {
				t.Errorf("config %+v", c.Config)
			}
			if tc.hfPre {
				want := &PreprocessConfig{Variant: VariantHF, Size: 224, CropHeight: 224, CropWidth: 224,
					Mean: [3]float32{0.5, 0.5, 0.5}, Std: [3]float32{0.25, 0.25, 0.25}, RescaleFactor: 0.00392156862745098,
					Interpolation: "bicubic", ResizeMode: "shortest"}
				if !reflect.DeepEqual(c.Preprocess, want) {
					t.Errorf("preprocess %+v", c.Preprocess)
				}
			}
			sameValues(t, c.Tensors, ref.Tensors)
		})
	}

	// Directory errors.
	twoST := filepath.Join(root, "two")
	for _, n := range []string{"a.safetensors", "b.safetensors"} {
		if err := safetensors.WriteFile(filepath.Join(twoST, n), list(ref.Tensors), nil); err != nil {
			os.MkdirAll(twoST, 0o755)
			if err := safetensors.WriteFile(filepath.Join(twoST, n), list(ref.Tensors), nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	empty := filepath.Join(root, "empty")
	writeFile(t, filepath.Join(empty, "config.json"), mustRead(t, modelPath(t, "vit-p16/config.json")))
	hfNoWeights := filepath.Join(root, "hfnow")
	writeFile(t, filepath.Join(hfNoWeights, "config.json"), hfConfig)
	ocNoWeights := filepath.Join(root, "ocnow")
	writeFile(t, filepath.Join(ocNoWeights, "open_clip_config.json"), ocConfig)
	badShard := filepath.Join(root, "badshard")
	writeFile(t, filepath.Join(badShard, "config.json"), hfConfig)
	writeFile(t, filepath.Join(badShard, "model.safetensors.index.json"), []byte(`{"weight_map": {"logit_scale": "../x.safetensors"}}`))
	missingShard := filepath.Join(root, "missingshard")
	writeFile(t, filepath.Join(missingShard, "config.json"), hfConfig)
	idx2, _ := json.Marshal(map[string]any{"weight_map": map[string]string{"logit_scale": "model-00001-of-00002.safetensors", "extra": "model-00001-of-00002.safetensors"}})
	writeFile(t, filepath.Join(missingShard, "model.safetensors.index.json"), idx2)
	if err := safetensors.WriteFile(filepath.Join(missingShard, "model-00001-of-00002.safetensors"), s2, nil); err != nil {
		t.Fatal(err)
	}
	badCfg := filepath.Join(root, "badcfg")
	writeFile(t, filepath.Join(badCfg, "config.json"), []byte(`{"model_type": "clip", "vision_config": {"hidden_act": "swish"}}`))
	foreign := filepath.Join(root, "foreign")
	writeFile(t, filepath.Join(foreign, "config.json"), []byte(`{"model_type": "bert", "hidden_size": 768}`))
	writeZipPT(t, filepath.Join(foreign, "pytorch_model.bin"), list(ref.Tensors))
	for _, tc := range []struct {
		dir  string
		is   error
		want string
	}{
		{foreign, ErrUnsupportedFormat, "neither a TinyCLIP/open_clip model config nor a Hugging Face CLIPConfig"},
		{twoST, ErrUnsupportedFormat, "several weight files (a.safetensors, b.safetensors)"},
		{empty, ErrUnsupportedFormat, "no weight file"},
		{hfNoWeights, ErrUnsupportedFormat, "Hugging Face directory without"},
		{ocNoWeights, ErrUnsupportedFormat, "open_clip directory without"},
		{badShard, nil, "not a plain file name"},
		{missingShard, nil, `tensor "extra" listed`},
		{badCfg, nil, `"swish" is not supported`},
	} {
		t.Run("error/"+filepath.Base(tc.dir), func(t *testing.T) {
			_, err := Open(tc.dir)
			if err == nil || tc.is != nil && !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %v mentioning %q", err, tc.is, tc.want)
			}
		})
	}
}

// stored zips a hand-written data.pkl (and storages) like torch.save.
func stored(t *testing.T, files ...string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for i := 0; i < len(files); i += 2 {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: files[i], Method: zip.Store})
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(files[i+1]))
	}
	zw.Close()
	return b.Bytes()
}

// TestMalformedFiles checks that broken and foreign files give clear errors
// that name the file and wrap the right sentinel.
func TestMalformedFiles(t *testing.T) {
	dir := t.TempDir()
	put := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		writeFile(t, p, data)
		return p
	}
	// {"state_dict": OrderedDict(), "args": argparse.Namespace()}, by hand.
	snapshot := "\x80\x02}q\x00(X\x0a\x00\x00\x00state_dictq\x01ccollections\nOrderedDict\nq\x02)Rq\x03" +
		"X\x04\x00\x00\x00argsq\x04cargparse\nNamespace\nq\x05)Rq\x06u."
	evalPkl := "\x80\x02cbuiltins\neval\nX\x04\x00\x00\x00id()\x85R."
	type tc struct {
		name string
		path string
		is   error
		want string
	}
	cases := []tc{
		{"argparse snapshot", put("snap.pt", stored(t, "snap/data.pkl", snapshot, "snap/version", "3\n")), ErrForbiddenGlobal, `argparse.Namespace in top-level entry "args"`},
		{"builtins eval", put("eval.pt", stored(t, "e/data.pkl", evalPkl)), ErrForbiddenGlobal, "builtins.eval"},
		{"legacy with numpy", put("np.pt", []byte("\x80\x02cnumpy.core.multiarray\nscalar\n.")), ErrForbiddenGlobal, "numpy.core.multiarray.scalar"},
		{"torchscript", put("ts.pt", stored(t, "RN50/data.pkl", snapshot, "RN50/constants.pkl", "x", "RN50/code/__torch__/m.py", "x")), ErrUnsupportedFormat, "TorchScript archive, not a state dict"},
		{"json", put("config.json", mustRead(t, modelPath(t, "vit-p16/config.json"))), ErrUnsupportedFormat, "JSON file"},
		{"empty", put("empty.bin", nil), ErrUnsupportedFormat, "empty"},
		{"text", put("notes.txt", []byte("hello world, these are not weights")), ErrUnsupportedFormat, "neither"},
		{"unknown opcode", put("op.pt", stored(t, "a/data.pkl", "\x80\x02}\xfe.")), pickle.ErrFormat, "unknown opcode 0xfe"},
		{"safetensors bad header", put("bad.safetensors", append([]byte{4, 0, 0, 0, 0, 0, 0, 0}, "{\"a\"xx"...)), safetensors.ErrFormat, "header"},
	}
	// l0_module keys and conflicting aliases, written as torch zips.
	one := tensor.FromFloat32("", []int{2}, []float32{1, 2})
	named := func(n string, t *tensor.Tensor) *tensor.Tensor { c := *t; c.Name = n; return &c }
	masked := put("masked.pt", nil)
	writeZipPT(t, masked, []*tensor.Tensor{named("_image_encoder.module.visual.proj", one), named("_image_encoder.module.visual.l0_module.hidden_loga", one)})
	cases = append(cases, tc{"l0_module", masked, ErrUnsupportedFormat, "masked training snapshot"})
	for _, c := range []struct {
		name string
		b    *tensor.Tensor
		want string
	}{
		{"values", tensor.FromFloat32("", []int{2}, []float32{1, 3}), "different values"},
		{"shape", tensor.FromFloat32("", []int{2, 1}, []float32{1, 2}), "[2] vs F32 [2 1]"},
		{"dtype", &tensor.Tensor{DType: tensor.I32, Shape: []int{2}, Data: one.Data}, "F32 [2] vs I32 [2]"},
	} {
		p := put("conflict-"+c.name+".pt", nil)
		writeZipPT(t, p, []*tensor.Tensor{named("_image_encoder.module.visual.proj", one), named("image_encoder_without_ddp.visual.proj", c.b)})
		cases = append(cases, tc{"conflicting alias " + c.name, p, ErrConflict, c.want})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Open(c.path)
			if !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.path) {
				t.Errorf("err = %v, want %v mentioning %q and the file", err, c.is, c.want)
			}
		})
	}
	if _, err := Open(filepath.Join(dir, "missing.pt")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// TestTruncatedFiles cuts every weight format at several points.
func TestTruncatedFiles(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []struct {
		rel string
		is  error
	}{
		{"vit-p32-quickgelu/tinyclip_fp16.pt", pickle.ErrFormat},
		{"resnet/tinyclip_fp32_legacy.pt", pickle.ErrFormat},
		{"auto-pruned/open_clip/open_clip_model.safetensors", safetensors.ErrFormat},
	} {
		data := mustRead(t, modelPath(t, f.rel))
		for _, cut := range []int{12, 64, 1000, len(data) / 4, len(data) / 2, len(data) - 10, len(data) - 1} {
			p := filepath.Join(dir, fmt.Sprintf("cut-%d-%s", cut, filepath.Base(f.rel)))
			writeFile(t, p, data[:cut])
			_, err := Open(p)
			if !errors.Is(err, f.is) || !strings.Contains(err.Error(), p) {
				t.Errorf("%s cut at %d: err = %v, want %v naming the file", f.rel, cut, err, f.is)
			}
		}
	}
}

func f32(name string, shape []int, vs ...float32) *tensor.Tensor {
	return tensor.FromFloat32(name, shape, vs)
}

func TestNormalize(t *testing.T) {
	a, b := f32("", []int{2}, 1, 2), f32("", []int{2}, 3, 4)
	for _, tc := range []struct {
		name string
		in   map[string]*tensor.Tensor
		want map[string]*tensor.Tensor
	}{
		{"open_clip unchanged", map[string]*tensor.Tensor{"visual.proj": a, "logit_scale": f32("", nil, 1)},
			map[string]*tensor.Tensor{"visual.proj": a, "logit_scale": f32("", nil, 1)}},
		{"whole-model DDP", map[string]*tensor.Tensor{"module.visual.proj": a, "module.positional_embedding": b},
			map[string]*tensor.Tensor{"visual.proj": a, "positional_embedding": b}},
		{"tower DDP", map[string]*tensor.Tensor{"_image_encoder.module.visual.proj": a, "_text_encoder.module.ln_final.weight": b,
			"_logit_scale.module.logit_scale": f32("", []int{1}, 4.5)},
			map[string]*tensor.Tensor{"visual.proj": a, "ln_final.weight": b, "logit_scale": f32("", nil, 4.5)}},
		{"no DDP", map[string]*tensor.Tensor{"_image_encoder.visual.proj": a, "_text_encoder.text_projection": b, "_logit_scale.logit_scale": f32("", nil, 1)},
			map[string]*tensor.Tensor{"visual.proj": a, "text_projection": b, "logit_scale": f32("", nil, 1)}},
		{"doubled module", map[string]*tensor.Tensor{"_logit_scale.module.module.logit_scale": f32("", nil, 1), "module._image_encoder.module.visual.proj": a},
			map[string]*tensor.Tensor{"logit_scale": f32("", nil, 1), "visual.proj": a}},
		{"aliases folded", map[string]*tensor.Tensor{"_image_encoder.module.visual.proj": a, "image_encoder_without_ddp.visual.proj": f32("", []int{2}, 1, 2),
			"text_encoder_without_ddp.ln_final.weight": b, "_text_encoder.module.ln_final.weight": b},
			map[string]*tensor.Tensor{"visual.proj": a, "ln_final.weight": b}},
		{"dropped entries", map[string]*tensor.Tensor{"visual.proj": a, "input_resolution": f32("", nil, 224), "context_length": f32("", nil, 77),
			"vocab_size": f32("", nil, 1), "attn_mask": b, "transformer.attn_mask": b, "text_model.embeddings.position_ids": b, "position_ids": b},
			map[string]*tensor.Tensor{"visual.proj": a}},
		{"HF names, DDP-wrapped", map[string]*tensor.Tensor{"module.visual_projection.weight": f32("", []int{1, 2}, 1, 2), "module.logit_scale": f32("", nil, 1)},
			map[string]*tensor.Tensor{"visual.proj": f32("", []int{2, 1}, 1, 2), "logit_scale": f32("", nil, 1)}},
		{"other names kept", map[string]*tensor.Tensor{"_image_encoder.other": a, "visual.trunk.x": b},
			map[string]*tensor.Tensor{"_image_encoder.other": a, "visual.trunk.x": b}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.want {
				c := *v
				c.Name = k
				if c.Shape == nil {
					c.Shape = []int{}
				}
				tc.want[k] = &c
			}
			in := map[string]*tensor.Tensor{}
			for k, v := range tc.in {
				in[k] = v
			}
			got, err := Normalize(in)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Errorf("got %d tensors, want %d", len(got), len(tc.want))
			}
			for k, w := range tc.want {
				g := got[k]
				if g == nil || g.Name != k || g.DType != w.DType || !slices.Equal(g.Shape, w.Shape) || !bytes.Equal(g.Data, w.Data) {
					t.Errorf("%s = %+v, want %+v", k, g, w)
				}
			}
			if !reflect.DeepEqual(in, tc.in) {
				t.Errorf("input map modified")
			}
		})
	}
	for _, tc := range []struct {
		name string
		in   map[string]*tensor.Tensor
		is   error
		want string
	}{
		{"l0 mask", map[string]*tensor.Tensor{"_image_encoder.module.l0_module.heads_loga": a}, ErrUnsupportedFormat, "l0_module"},
		{"conflict", map[string]*tensor.Tensor{"module.visual.proj": a, "visual.proj": b}, ErrConflict, "module.visual.proj and visual.proj both map to visual.proj"},
		{"empty name", map[string]*tensor.Tensor{"module": a}, nil, "no name left"},
		{"nil tensor", map[string]*tensor.Tensor{"x": nil}, nil, "nil"},
		{"HF collision", map[string]*tensor.Tensor{"visual.proj": a, "visual_projection.weight": f32("", []int{1, 2}, 1, 2)}, nil, "already has"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Normalize(tc.in)
			if err == nil || tc.is != nil && !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %v mentioning %q", err, tc.is, tc.want)
			}
		})
	}
}

func TestPreprocessConfigs(t *testing.T) {
	def := PreprocessConfig{Size: 224, CropHeight: 224, CropWidth: 224, Mean: clipMean, Std: clipStd,
		RescaleFactor: 1.0 / 255, Interpolation: "bicubic", ResizeMode: "shortest"}
	with := func(v string, f func(*PreprocessConfig)) *PreprocessConfig {
		p := def
		p.Variant = v
		if f != nil {
			f(&p)
		}
		return &p
	}
	for _, tc := range []struct {
		name, json string
		hf         bool
		want       *PreprocessConfig
		err        string
	}{
		{"open_clip none", `{"model_cfg": {}}`, false, nil, ""},
		{"open_clip defaults", `{"preprocess_cfg": {}}`, false, with(VariantOpenCLIP, nil), ""},
		{"open_clip full", `{"preprocess_cfg": {"size": 256, "mean": [0.5, 0.5, 0.5], "std": [1, 1, 1], "interpolation": "bilinear", "resize_mode": "longest", "fill_color": 128}}`,
			false, with(VariantOpenCLIP, func(p *PreprocessConfig) {
				p.Size, p.CropHeight, p.CropWidth, p.Mean, p.Std, p.Interpolation, p.ResizeMode, p.FillColor = 256, 256, 256, [3]float32{.5, .5, .5}, [3]float32{1, 1, 1}, "bilinear", "longest", 128
			}), ""},
		{"open_clip size pair", `{"preprocess_cfg": {"size": [240, 320], "resize_mode": "squash"}}`, false,
			with(VariantOpenCLIP, func(p *PreprocessConfig) { p.Size, p.CropHeight, p.CropWidth, p.ResizeMode = 0, 240, 320, "squash" }), ""},
		{"open_clip bad mean", `{"preprocess_cfg": {"mean": [1, 2]}}`, false, nil, "want 3 numbers"},
		{"open_clip bad size", `{"preprocess_cfg": {"size": "big"}}`, false, nil, "preprocess_cfg.size"},
		{"open_clip bad fill", `{"preprocess_cfg": {"fill_color": 300}}`, false, nil, "fill_color"},
		{"hf defaults", `{}`, true, with(VariantHF, nil), ""},
		{"hf legacy ints", `{"size": 256, "crop_size": 240, "resample": 2}`, true,
			with(VariantHF, func(p *PreprocessConfig) {
				p.Size, p.CropHeight, p.CropWidth, p.Interpolation = 256, 240, 240, "bilinear"
			}), ""},
		{"hf switched off", `{"do_resize": false, "do_center_crop": false, "do_rescale": false, "do_normalize": false}`, true,
			with(VariantHF, func(p *PreprocessConfig) {
				p.Size, p.ResizeMode, p.CropHeight, p.CropWidth, p.RescaleFactor, p.Mean, p.Std = 0, "", 0, 0, 1, [3]float32{}, [3]float32{1, 1, 1}
			}), ""},
		{"hf height width", `{"size": {"height": 224, "width": 224}}`, true,
			with(VariantHF, func(p *PreprocessConfig) { p.Size, p.ResizeMode = 0, "squash" }), ""},
		{"hf squash then other crop", `{"size": {"height": 256, "width": 256}}`, true, nil, "not supported"},
		{"hf bad resample", `{"resample": 9}`, true, nil, "resample"},
		{"hf bad size", `{"size": {"longest_edge": 3}}`, true, nil, "size"},
		{"hf bad flag", `{"do_resize": "yes"}`, true, nil, "do_resize"},
		{"hf bad rescale", `{"rescale_factor": -1}`, true, nil, "rescale_factor"},
		{"hf not object", `[]`, true, nil, "not a JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got *PreprocessConfig
			var err error
			if tc.hf {
				got, err = parseHFPreprocess([]byte(tc.json))
			} else {
				got, err = parseOpenCLIPPreprocess([]byte(tc.json))
			}
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("err = %v, want it to mention %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestParseConfig(t *testing.T) {
	official, err := config.Parse(mustRead(t, modelPath(t, "vit-p16/config.json")))
	if err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{"vit-p16/config.json", "vit-p16/open_clip/open_clip_config.json"} {
		c, err := ParseConfig(mustRead(t, modelPath(t, rel)))
		if err != nil || !reflect.DeepEqual(c, official) {
			t.Errorf("%s: %+v, %v; want %+v", rel, c, err, official)
		}
	}
	c, err := ParseConfig(mustRead(t, modelPath(t, "vit-p16/hf/config.json")))
	if err != nil || c.VisionCfg.HiddenAct != "gelu" || c.EmbedDim != 16 || *c.VisionCfg.PatchSize != 16 {
		t.Errorf("HF config: %+v, %v", c, err)
	}
	for _, bad := range []string{`{"model_type": "bert"}`, `not json`, `{"model_type": "clip", "text_config": {"hidden_act": "swish"}}`} {
		if _, err := ParseConfig([]byte(bad)); err == nil {
			t.Errorf("ParseConfig(%s) succeeded", bad)
		}
	}
}
