package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tinyclip-go/tinyclip/internal/fixtures"
	"github.com/tinyclip-go/tinyclip/internal/hub/hubtest"
	"github.com/tinyclip-go/tinyclip/internal/npy"
)

// runCLI runs one command line in-process.
func runCLI(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), &env{strings.NewReader(stdin), &out, &errb}, args)
	return out.String(), errb.String(), code
}

func TestTokenizeFixtures(t *testing.T) {
	dir := fixtures.Path(t, "fixtures", "tokenizer")
	in, err := os.ReadFile(filepath.Join(dir, "strings.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(dir, "ids.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	out, stderr, code := runCLI(t, string(in), "tokenize")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	got := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	wl := strings.Split(strings.TrimSuffix(string(want), "\n"), "\n")
	if len(got) != len(wl) {
		t.Fatalf("%d output lines, want %d", len(got), len(wl))
	}
	bad := 0
	for i := range wl {
		var g, w []int
		if err := json.Unmarshal([]byte(got[i]), &g); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		if err := json.Unmarshal([]byte(wl[i]), &w); err != nil {
			t.Fatal(err)
		}
		if !equalInts(g, w) {
			bad++
			if bad < 5 {
				t.Errorf("line %d: got %v, want %v", i+1, g, w)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d lines differ", bad, len(wl))
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestTokenizeErrors(t *testing.T) {
	for _, c := range []struct{ name, stdin, want string }{
		{"not a string", "[1,2]\n", "line 1: want a JSON string"},
		{"bad json", "\"a\"\n\"unterminated\n", "line 2"},
		{"empty line", "\"a\"\n\n", "line 2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, stderr, code := runCLI(t, c.stdin, "tokenize")
			if code != 1 || !strings.Contains(stderr, c.want) {
				t.Errorf("exit %d, stderr %q; want 1 and %q", code, stderr, c.want)
			}
		})
	}
	if _, _, code := runCLI(t, "", "tokenize", "extra"); code != 2 {
		t.Errorf("positional argument: exit %d, want 2", code)
	}
}

func TestPreprocess(t *testing.T) {
	pre := fixtures.Path(t, "fixtures", "preprocess")
	out := t.TempDir()
	imgs := []string{
		filepath.Join(pre, "inputs", "png_rgb_1000x667.png"),
		filepath.Join(pre, "inputs", "png_p_trns_200x256.png"),
	}
	// Flags after the positional arguments work too.
	if _, stderr, code := runCLI(t, "", append([]string{"preprocess", imgs[0]}, "--out", out, imgs[1])...); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if _, stderr, code := runCLI(t, "", append([]string{"preprocess", "--uint8", "--out", filepath.Join(out, "u8")}, imgs...)...); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, img := range imgs {
		base := filepath.Base(img)
		got, err := npy.ReadFile(filepath.Join(out, base+".npy"))
		if err != nil {
			t.Fatal(err)
		}
		want, err := npy.ReadFile(filepath.Join(pre, "expected", base+".f32.npy.gz"))
		if err != nil {
			t.Fatal(err)
		}
		if len(got.F32) != len(want.F32) || got.Shape[0] != 3 {
			t.Fatalf("%s: shape %v, want %v", base, got.Shape, want.Shape)
		}
		for i := range want.F32 {
			if got.F32[i] != want.F32[i] {
				t.Fatalf("%s: element %d = %v, want %v (bit-exact)", base, i, got.F32[i], want.F32[i])
			}
		}
		g8, err := npy.ReadFile(filepath.Join(out, "u8", base+".npy"))
		if err != nil {
			t.Fatal(err)
		}
		w8, err := npy.ReadFile(filepath.Join(pre, "expected", base+".u8.npy.gz"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(g8.U8, w8.U8) || g8.Shape[2] != 3 {
			t.Errorf("%s: uint8 output differs from the fixture", base)
		}
	}
	// A decompression bomb is refused with a clear error naming the file.
	bomb := filepath.Join(pre, "malformed", "bomb_100000x100000.png")
	_, stderr, code := runCLI(t, "", "preprocess", "--out", out, bomb)
	if code != 1 || !strings.Contains(stderr, "bomb_100000x100000.png") || !strings.Contains(stderr, "too large") {
		t.Errorf("bomb: exit %d, stderr %q", code, stderr)
	}
}

func TestEmbed(t *testing.T) {
	dir := fixtures.Path(t, "fixtures", "models")
	model := filepath.Join(dir, "vit-p16", "tinyclip_fp32.pt")
	cfg := filepath.Join(dir, "vit-p16", "config.json")
	img := filepath.Join(dir, "inputs", "a_square.png")
	out, stderr, code := runCLI(t, "", "embed", "--model", model, "--config", cfg, "--raw",
		"--text", "a photo of a cat", "--image", img, "--text", "")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var lines []struct {
		Input     string    `json:"input"`
		Type      string    `json:"type"`
		Embedding []float32 `json:"embedding"`
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l struct {
			Input     string    `json:"input"`
			Type      string    `json:"type"`
			Embedding []float32 `json:"embedding"`
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, l)
	}
	if len(lines) != 3 || lines[0].Type != "text" || lines[1].Type != "image" || lines[1].Input != img || lines[2].Input != "" {
		t.Fatalf("unexpected output order or content: %+v", lines)
	}
	feats, _ := npy.ReadFile(filepath.Join(dir, "vit-p16", "expected", "text_features.npy"))
	imgFeats, _ := npy.ReadFile(filepath.Join(dir, "vit-p16", "expected", "image_features.npy"))
	e := feats.Shape[1]
	check := func(name string, got, want []float32) {
		var norm, mx float64
		for i := range want {
			norm += float64(want[i]) * float64(want[i])
			mx = math.Max(mx, math.Abs(float64(got[i]-want[i])))
		}
		if r := mx / math.Sqrt(norm); r > 1e-4 {
			t.Errorf("%s: relative error %.2e", name, r)
		}
	}
	check("text 0", lines[0].Embedding, feats.F32[0:e])   // texts.json[0] = "a photo of a cat"
	check("text 1", lines[2].Embedding, feats.F32[e:2*e]) // texts.json[1] = ""
	// a_square.png is a PNG, so preprocessing is exact end to end.
	check("image 0", lines[1].Embedding, imgFeats.F32[0:e])

	// Without --raw the embeddings are unit vectors.
	out, _, code = runCLI(t, "", "embed", "--model", filepath.Join(dir, "vit-p16"), "--text", "a dog")
	if code != 0 {
		t.Fatal(out)
	}
	var l struct{ Embedding []float64 }
	json.Unmarshal([]byte(out), &l)
	var n float64
	for _, v := range l.Embedding {
		n += v * v
	}
	if math.Abs(n-1) > 1e-5 {
		t.Errorf("norm² %v, want 1", n)
	}
}

func TestEmbedErrors(t *testing.T) {
	dir := fixtures.Path(t, "fixtures", "models")
	pre := fixtures.Path(t, "fixtures", "preprocess", "malformed")
	tmp := t.TempDir()
	trunc := filepath.Join(tmp, "trunc.safetensors")
	b, _ := os.ReadFile(filepath.Join(dir, "vit-p16", "open_clip", "open_clip_model.safetensors"))
	os.WriteFile(trunc, b[:len(b)/2], 0o644)
	for _, c := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"no model", []string{"embed", "--text", "x"}, 2, []string{"--model"}},
		{"nothing to embed", []string{"embed", "--model", filepath.Join(dir, "vit-p16")}, 2, []string{"nothing to embed"}},
		{"missing file", []string{"embed", "--model", filepath.Join(tmp, "nope.pt"), "--text", "x"}, 1, []string{"nope.pt"}},
		{"truncated", []string{"embed", "--model", trunc, "--text", "x"}, 1, []string{"trunc.safetensors", "truncated"}},
		{"wrong config", []string{"embed", "--model", filepath.Join(dir, "vit-p16", "tinyclip_fp32.pt"),
			"--config", filepath.Join(dir, "vit-p32-quickgelu", "config.json"), "--text", "x"}, 1, []string{"visual."}},
		{"corrupt image", []string{"embed", "--model", filepath.Join(dir, "vit-p16"), "--image", filepath.Join(pre, "truncated.png")}, 1, []string{"truncated.png"}},
		{"bomb", []string{"embed", "--model", filepath.Join(dir, "vit-p16"), "--image", filepath.Join(pre, "bomb_65000x65000.jpg")}, 1, []string{"bomb_65000x65000.jpg", "too large"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, stderr, code := runCLI(t, "", c.args...)
			if code != c.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, c.code, stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q does not mention %q", stderr, w)
				}
			}
		})
	}
}

func TestClassify(t *testing.T) {
	dir := fixtures.Path(t, "fixtures", "models")
	img := filepath.Join(dir, "inputs", "b_wide.png")
	out, stderr, code := runCLI(t, "", "classify", "--model", filepath.Join(dir, "vit-p16"),
		"--labels", "a photo of a cat,a dog", "--json", img, filepath.Join(dir, "inputs", "a_square.png"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines: %q", len(lines), out)
	}
	// Expected from the fixture: probabilities are softmax(exp(s)·cos) over
	// the two labels, i.e. over logits_per_image columns 0 and 5 (texts.json).
	logits, _ := npy.ReadFile(filepath.Join(dir, "vit-p16", "expected", "logits_per_image.npy"))
	for i, line := range lines {
		var r struct {
			Image  string
			Labels []string
			Probs  []float64
			Best   string
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		row := []int{1, 0}[i] // b_wide is image 1, a_square image 0
		l0, l1 := float64(logits.F32[row*8+0]), float64(logits.F32[row*8+5])
		p0 := 1 / (1 + math.Exp(l1-l0))
		if math.Abs(r.Probs[0]-p0) > 2e-3 || math.Abs(r.Probs[0]+r.Probs[1]-1) > 1e-6 {
			t.Errorf("%s: probs %v, want [%v %v]", r.Image, r.Probs, p0, 1-p0)
		}
	}
	// Text output and errors.
	out, _, code = runCLI(t, "", "classify", "--model", filepath.Join(dir, "vit-p16"), "--label", "a cat", "--label", "a dog, maybe", img)
	if code != 0 || !strings.Contains(out, "a dog, maybe") || !strings.Contains(out, "%") {
		t.Errorf("text output: exit %d, %q", code, out)
	}
	if _, stderr, code := runCLI(t, "", "classify", "--model", filepath.Join(dir, "vit-p16"), img); code != 2 || !strings.Contains(stderr, "labels") {
		t.Errorf("no labels: exit %d, %q", code, stderr)
	}
	if _, stderr, code := runCLI(t, "", "classify", "--model", filepath.Join(dir, "vit-p16"), "--labels", "a,,b", img); code != 2 || !strings.Contains(stderr, "empty label") {
		t.Errorf("empty label: exit %d, %q", code, stderr)
	}
	// Without --model the zoo default, TinyCLIP-ViT-8M-16-Text-3M, is
	// downloaded from the hub (here a fake one serving the fixture model in
	// the Hugging Face layout under the real repository id).
	repo, err := hubtest.LoadDir("wkcn/TinyCLIP-ViT-8M-16-Text-3M-YFCC15M", filepath.Join(dir, "vit-p16", "hf"))
	if err != nil {
		t.Fatal(err)
	}
	srv := hubtest.New(repo)
	defer srv.Close()
	home := t.TempDir()
	t.Setenv("HF_HOME", home)
	t.Setenv("HF_HUB_CACHE", "")
	t.Setenv("HF_TOKEN", "")
	t.Setenv("HF_ENDPOINT", srv.URL)
	t.Setenv("HF_HUB_OFFLINE", "")
	defOut, stderr, code := runCLI(t, "", "classify", "--labels", "a photo of a cat,a dog", "--json", img)
	if code != 0 {
		t.Fatalf("default model: exit %d, %s", code, stderr)
	}
	var r struct{ Probs []float64 }
	if err := json.Unmarshal([]byte(defOut), &r); err != nil {
		t.Fatal(err)
	}
	l0, l1 := float64(logits.F32[8+0]), float64(logits.F32[8+5]) // b_wide is image 1
	if p0 := 1 / (1 + math.Exp(l1-l0)); len(r.Probs) != 2 || math.Abs(r.Probs[0]-p0) > 2e-3 {
		t.Errorf("default model: probs %v, want [%v %v]", r.Probs, p0, 1-p0)
	}
	if _, err := os.Stat(filepath.Join(home, "hub", "models--wkcn--TinyCLIP-ViT-8M-16-Text-3M-YFCC15M", "refs", "main")); err != nil {
		t.Errorf("not in the hub cache: %v", err)
	}
	// Offline, the cached copy is used without a request.
	t.Setenv("HF_HUB_OFFLINE", "1")
	srv.ResetRequests()
	if _, stderr, code := runCLI(t, "", "classify", "--labels", "a,b", img); code != 0 {
		t.Errorf("offline with a cache: exit %d, %s", code, stderr)
	}
	if n := len(srv.Requests()); n != 0 {
		t.Errorf("offline run made %d requests", n)
	}
	// Offline with an empty cache: a clear error.
	t.Setenv("HF_HOME", t.TempDir())
	_, stderr, code = runCLI(t, "", "classify", "--labels", "a,b", img)
	if code != 1 || !strings.Contains(stderr, "wkcn/TinyCLIP-ViT-8M-16-Text-3M") || !strings.Contains(stderr, "HF_HUB_OFFLINE") || !strings.Contains(stderr, "--model") {
		t.Errorf("offline without a cache: exit %d, %q", code, stderr)
	}
}

func TestModels(t *testing.T) {
	out, _, code := runCLI(t, "", "models")
	if code != 0 {
		t.Fatal(out)
	}
	for _, want := range []string{"TinyCLIP-ViT-8M-16-Text-3M", "8,276,992", "1.787 + 0.191 = 1.978", "ViT-B-32", "RN50", "TinyCLIP-auto-ViT-22M-32-Text-10M"} {
		if !strings.Contains(out, want) {
			t.Errorf("models output lacks %q", want)
		}
	}
	out, _, code = runCLI(t, "", "models", "--json")
	if code != 0 {
		t.Fatal(out)
	}
	var list []struct {
		Name        string  `json:"name"`
		TotalParams int64   `json:"total_params"`
		GMACs       float64 `json:"gmacs"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, m := range list {
		if m.Name == "TinyCLIP-ViT-39M-16-Text-19M" {
			found = true
			if m.TotalParams != 83101185 || math.Abs(m.GMACs-9.481) > 5e-4 {
				t.Errorf("%s: %d params, %.4f GMACs", m.Name, m.TotalParams, m.GMACs)
			}
		}
	}
	if !found {
		t.Error("ViT-39M/16 missing from models --json")
	}
}

func TestUsage(t *testing.T) {
	if _, stderr, code := runCLI(t, ""); code != 2 || !strings.Contains(stderr, "classify") {
		t.Errorf("no command: exit %d, %q", code, stderr)
	}
	if _, _, code := runCLI(t, "", "frobnicate"); code != 2 {
		t.Errorf("unknown command: exit %d", code)
	}
	if _, _, code := runCLI(t, "", "embed", "-h"); code != 0 {
		t.Errorf("-h: exit %d", code)
	}
}
