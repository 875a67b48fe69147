package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tinyclip-go/tinyclip/internal/fixtures"
	"github.com/tinyclip-go/tinyclip/internal/npy"
)

// TestIndexAndSearch runs index, search and export on the four fixture
// images with the resnet fixture model. Its expected rankings come from the
// model's official logits_per_image.npy: on this model "a dog" (text 5)
// scores a_square.png highest (1.563 vs 1.469 for c_tall.jpg, logit scale
// 6.73); see internal/search/fixture_test.go for the full comparison.
func TestIndexAndSearch(t *testing.T) {
	models := fixtures.Path(t, "fixtures", "models")
	inputs := filepath.Join(models, "inputs")
	dir := t.TempDir()
	for _, name := range []string{"a_square.png", "b_wide.png", "c_tall.jpg", "d_square.jpg"} {
		b, err := os.ReadFile(filepath.Join(inputs, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	db := filepath.Join(t.TempDir(), "photos.db")
	resnet := []string{"--model", filepath.Join(models, "resnet", "tinyclip_bf16.pt"), "--config", filepath.Join(models, "resnet", "config.json")}
	cfgOnly := resnet[2:]

	out, stderr, code := runCLI(t, "", append([]string{"index", dir, "--db", db}, resnet...)...)
	if code != 0 || !strings.Contains(out, "4 images in the index") || !strings.Contains(out, "4 added") {
		t.Fatalf("index: exit %d\n%s%s", code, out, stderr)
	}
	if stderr != "" {
		t.Errorf("index wrote to a non-terminal stderr: %q", stderr)
	}

	// JSON output, explicit model.
	out, stderr, code = runCLI(t, "", append([]string{"search", "--db", db, "--json", "-k", "4", "a dog"}, resnet...)...)
	if code != 0 {
		t.Fatalf("search: exit %d: %s", code, stderr)
	}
	var res struct {
		Model   string
		Results []struct {
			Path  string
			Score float32
		}
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("search --json: %v\n%s", err, out)
	}
	if len(res.Results) != 4 || filepath.Base(res.Results[0].Path) != "a_square.png" || !strings.HasSuffix(res.Model, "tinyclip_bf16.pt") {
		t.Errorf("search a dog: %+v", res)
	}

	// Plain output; the model comes from the index, words are joined.
	out, stderr, code = runCLI(t, "", append([]string{"search", "--db", db, "-k", "2", "a", "dog"}, cfgOnly...)...)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if code != 0 || len(lines) != 2 || !strings.HasSuffix(lines[0], string(filepath.Separator)+"a_square.png") || !strings.Contains(lines[0], "  ") {
		t.Errorf("plain search: exit %d\n%s%s", code, out, stderr)
	}

	// By image: the image itself first, with score 1.
	out, stderr, code = runCLI(t, "", append([]string{"search", "--db", db, "--image", filepath.Join(dir, "c_tall.jpg"), "-k", "1"}, cfgOnly...)...)
	if code != 0 || !strings.HasPrefix(out, "1.0000  ") || !strings.HasSuffix(strings.TrimSpace(out), "c_tall.jpg") {
		t.Errorf("image search: exit %d\n%s%s", code, out, stderr)
	}

	// Re-index after a move and a deletion: nothing is embedded again.
	if err := os.Rename(filepath.Join(dir, "b_wide.png"), filepath.Join(dir, "moved.png")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "d_square.jpg")); err != nil {
		t.Fatal(err)
	}
	out, stderr, code = runCLI(t, "", append([]string{"index", dir, "--db", db}, cfgOnly...)...)
	if code != 0 || !strings.Contains(out, "3 images in the index") || !strings.Contains(out, "0 added, 0 updated, 1 reused, 2 unchanged, 2 removed") {
		t.Errorf("re-index: exit %d\n%s%s", code, out, stderr)
	}

	// Export only.
	exp := filepath.Join(t.TempDir(), "export")
	out, stderr, code = runCLI(t, "", "index", "--db", db, "--export", exp)
	if code != 0 || !strings.Contains(out, "exported 3 embeddings") {
		t.Fatalf("export: exit %d\n%s%s", code, out, stderr)
	}
	arr, err := npy.ReadFile(filepath.Join(exp, "embeddings.npy"))
	if err != nil {
		t.Fatal(err)
	}
	if arr.Descr != "<f4" || len(arr.Shape) != 2 || arr.Shape[0] != 3 || arr.Shape[1] != 20 {
		t.Errorf("embeddings.npy %s %v, want <f4 [3 20]", arr.Descr, arr.Shape)
	}
	paths, _ := os.ReadFile(filepath.Join(exp, "paths.txt"))
	if n := strings.Count(string(paths), "\n"); n != 3 || !strings.Contains(string(paths), "moved.png\n") {
		t.Errorf("paths.txt: %q", paths)
	}

	// Another model is refused, clearly.
	vit := []string{"--model", filepath.Join(models, "vit-p16", "tinyclip_fp32.pt"), "--config", filepath.Join(models, "vit-p16", "config.json")}
	for _, cmd := range [][]string{
		append([]string{"search", "--db", db, "a dog"}, vit...),
		append([]string{"index", dir, "--db", db}, vit...),
	} {
		if _, stderr, code := runCLI(t, "", cmd...); code != 1 || !strings.Contains(stderr, "different model") || !strings.Contains(stderr, "tinyclip_bf16.pt") {
			t.Errorf("%s with another model: exit %d, %q", cmd[0], code, stderr)
		}
	}

	notImage := filepath.Join(dir, "notes.jpg")
	os.WriteFile(notImage, []byte("not an image"), 0o644)
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"index", dir}, 2, "--db FILE is required"},
		{[]string{"index", "--db", db}, 2, "give the folder"},
		{[]string{"index", dir, dir, "--db", db}, 2, "one folder at a time"},
		{[]string{"index", filepath.Join(dir, "a_square.png"), "--db", db}, 2, "not a folder"},
		{[]string{"index", "--db", filepath.Join(dir, "missing.db"), "--export", exp}, 1, "missing.db"},
		{[]string{"search", "--db", db}, 2, "nothing to search for"},
		{[]string{"search", "a dog"}, 2, "--db FILE is required"},
		{[]string{"search", "--db", db, "-k", "0", "a dog"}, 2, "-k must be"},
		{[]string{"search", "--db", filepath.Join(dir, "missing.db"), "a dog"}, 1, "missing.db"},
		{append([]string{"search", "--db", db, "--image", notImage}, cfgOnly...), 1, "notes.jpg"},
	} {
		if _, stderr, code := runCLI(t, "", c.args...); code != c.code || !strings.Contains(stderr, c.msg) {
			t.Errorf("%q: exit %d, %q; want exit %d with %q", c.args, code, stderr, c.code, c.msg)
		}
	}
}
