package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tinyclip-go/tinyclip"
	"github.com/tinyclip-go/tinyclip/internal/data"
	"github.com/tinyclip-go/tinyclip/internal/eval"
	"github.com/tinyclip-go/tinyclip/internal/fixtures"
	"github.com/tinyclip-go/tinyclip/internal/npy"
)

// The zero-shot fixture model: its predictions spread over several CIFAR
// classes (shared/reference/README.md; corrections.md, zero-shot row).
func resnetModel(t *testing.T) string {
	return fixtures.Path(t, "fixtures", "models", "resnet", "open_clip")
}

const refPython = "/usr/bin/python3"

// refclipScript returns the path of refclip.py, skipping the test when
// PyTorch is missing unless TINYCLIP_REQUIRE_REFCLIP is set (CI sets it),
// which turns the skip into a failure.
func refclipScript(t *testing.T) string {
	t.Helper()
	script := fixtures.Path(t, "reference", "refclip.py")
	if err := exec.Command(refPython, "-c", "import torch, PIL, numpy").Run(); err != nil {
		if os.Getenv("TINYCLIP_REQUIRE_REFCLIP") != "" {
			t.Fatalf("TINYCLIP_REQUIRE_REFCLIP is set but %s cannot import torch, PIL, numpy: %v", refPython, err)
		}
		t.Skipf("comparison with refclip.py skipped: %s cannot import torch, PIL, numpy", refPython)
	}
	return script
}

func runPython(t *testing.T, stdin []byte, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(refPython, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3 %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

type predLine struct {
	Path  string `json:"path"`
	Label int    `json:"label"`
	Pred  int    `json:"pred"`
	Top5  []int  `json:"top5"`
}

func readPredictions(t *testing.T, path string) []predLine {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []predLine
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var p predLine
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, p)
	}
	return out
}

// subsetTar writes an ImageFolder tar holding every step-th image of the
// shared CIFAR-10 training tar (same top folder and class folders).
func subsetTar(t *testing.T, dst string, step int) int {
	t.Helper()
	src, err := data.OpenTar(fixtures.Path(t, "data", "train", "cifar10-train.tar"), data.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	f, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	n := 0
	for i := 0; i < src.Len(); i += step {
		b, err := src.Read(i)
		if err != nil {
			t.Fatal(err)
		}
		h := &tar.Header{Name: "cifar10-train/" + src.Sample(i).Name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(b)
		n++
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return n
}

type zsJSON struct {
	Images           int     `json:"images"`
	Unreadable       int     `json:"unreadable"`
	Top1             float64 `json:"top1"`
	Top5             float64 `json:"top5"`
	ClassifierCached bool    `json:"classifier_cached"`
	ImagesPerSecond  float64 `json:"images_per_second"`
	PerClass         []struct {
		Class          string
		Correct, Total int
	} `json:"per_class"`
	UnreadableImages []struct{ Path, Error string } `json:"unreadable_images"`
}

// TestZeroShotMatchesRefclip runs 'tinyclip eval zeroshot' and refclip.py's
// zeroshot (the official recipe in PyTorch) on the same CIFAR-10 images with
// the resnet fixture model, CIFAR-10 class names and the 18 CIFAR templates,
// reading the tar in place, and compares the classifiers and the predictions
// image by image. To keep the test short it uses every 4th image (500 of
// the 2000); docs/evaluation.md gives the full-set comparison.
func TestZeroShotMatchesRefclip(t *testing.T) {
	if testing.Short() {
		t.Skip("comparison with refclip.py is not run with -short")
	}
	script := refclipScript(t)
	dir := t.TempDir()
	sub := filepath.Join(dir, "cifar10-sub.tar")
	n := subsetTar(t, sub, 4)
	zs := fixtures.Path(t, "data", "zeroshot")
	pyPred, pyCls := filepath.Join(dir, "py.jsonl"), filepath.Join(dir, "py.npy")
	pyOut := runPython(t, nil, script, "zeroshot", "--model", resnetModel(t),
		"--classes", filepath.Join(zs, "cifar10-classnames.txt"), "--templates", filepath.Join(zs, "cifar-templates-18.txt"),
		"--data", sub, "--predictions", pyPred, "--classifier-out", pyCls, "--json")
	var py zsJSON
	if err := json.Unmarshal(pyOut, &py); err != nil {
		t.Fatalf("refclip output: %v\n%s", err, pyOut)
	}

	goPred, goCls := filepath.Join(dir, "go.jsonl"), filepath.Join(dir, "go.npy")
	out, stderr, code := runCLI(t, "", "eval", "zeroshot", "--model", resnetModel(t), "--classes", "cifar10",
		"--templates", "cifar18", "--data", sub, "--predictions", goPred, "--classifier-out", goCls, "--json",
		"--no-cache", "--batch", "17", "--workers", "3")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var got zsJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}

	// The classifiers: same recipe, same text embeddings up to float
	// rounding.
	a, err := npy.ReadFile(pyCls)
	if err != nil {
		t.Fatal(err)
	}
	b, err := npy.ReadFile(goCls)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.F32) != len(b.F32) || len(a.F32) == 0 {
		t.Fatalf("classifier sizes %v and %v", a.Shape, b.Shape)
	}
	worst := 0.0
	for i := range a.F32 {
		worst = math.Max(worst, math.Abs(float64(a.F32[i]-b.F32[i])))
	}
	if worst > 1e-5 {
		t.Errorf("classifier differs from refclip's by %.2e > 1e-5", worst)
	}

	// The predictions, image by image.
	pp, gp := readPredictions(t, pyPred), readPredictions(t, goPred)
	if len(pp) != n || len(gp) != n {
		t.Fatalf("%d refclip and %d Go predictions for %d images", len(pp), len(gp), n)
	}
	same, sameTop5 := 0, 0
	for i := range pp {
		if pp[i].Path != gp[i].Path || pp[i].Label != gp[i].Label {
			t.Fatalf("image %d: refclip %s (label %d), Go %s (label %d): different order", i, pp[i].Path, pp[i].Label, gp[i].Path, gp[i].Label)
		}
		if pp[i].Pred == gp[i].Pred {
			same++
		} else if same+n/100 < i {
			t.Logf("%s: refclip predicts %d (top-5 %v), Go %d (top-5 %v)", pp[i].Path, pp[i].Pred, pp[i].Top5, gp[i].Pred, gp[i].Top5)
		}
		if fmt.Sprint(pp[i].Top5) == fmt.Sprint(gp[i].Top5) {
			sameTop5++
		}
	}
	t.Logf("%d images: same prediction for %d (%.2f%%), same top-5 list for %d; top-1 Go %.4f refclip %.4f; classifier max diff %.1e",
		n, same, 100*float64(same)/float64(n), sameTop5, got.Top1, py.Top1, worst)
	if float64(same) < 0.99*float64(n) {
		t.Errorf("same prediction for %d of %d images, want at least 99%%", same, n)
	}
	if math.Abs(got.Top1-py.Top1) > 0.01 || math.Abs(got.Top5-py.Top5) > 0.01 || got.Images != py.Images {
		t.Errorf("Go top-1 %.4f top-5 %.4f (%d images), refclip %.4f %.4f (%d)", got.Top1, got.Top5, got.Images, py.Top1, py.Top5, py.Images)
	}
}

// writePNG writes a w×h image filled by f.
func writePNG(t *testing.T, path string, img image.Image) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// testFolder makes an ImageFolder of 3 classes with RGB, palette and grey
// PNGs of various sizes, a damaged PNG and a text file.
func testFolder(t *testing.T) string {
	root := filepath.Join(t.TempDir(), "folder")
	rng := rand.New(rand.NewPCG(9, 9))
	for ci, class := range []string{"cat", "dog", "owl"} {
		for k := range 3 {
			w, h := 40+rng.IntN(200), 40+rng.IntN(200)
			var img image.Image
			switch k {
			case 0:
				m := image.NewNRGBA(image.Rect(0, 0, w, h))
				for i := range m.Pix {
					m.Pix[i] = uint8(rng.IntN(256))
				}
				img = m
			case 1:
				pal := color.Palette{color.RGBA{uint8(80 * ci), 0, 0, 255}, color.RGBA{0, 200, 40, 255}, color.RGBA{10, 10, 250, 255}}
				m := image.NewPaletted(image.Rect(0, 0, w, h), pal)
				for i := range m.Pix {
					m.Pix[i] = uint8(rng.IntN(3))
				}
				img = m
			default:
				m := image.NewGray(image.Rect(0, 0, w, h))
				for i := range m.Pix {
					m.Pix[i] = uint8(rng.IntN(256))
				}
				img = m
			}
			writePNG(t, filepath.Join(root, class, fmt.Sprintf("img%d.png", k)), img)
		}
	}
	os.WriteFile(filepath.Join(root, "dog", "broken.png"), []byte("\x89PNG\r\n\x1a\nnot really"), 0o644)
	os.WriteFile(filepath.Join(root, "owl", "notes.txt"), []byte("ignored"), 0o644)
	return root
}

// TestZeroShotFolder runs the whole command on an ImageFolder made here and
// checks each output against a direct computation with the library: the
// classifier of Model.ZeroShot, PreprocessRGB, EncodePixels and TopK, image
// by image (the command decodes on several goroutines and encodes in
// batches; order and values must not change).
func TestZeroShotFolder(t *testing.T) {
	root := testFolder(t)
	dir := t.TempDir()
	classes := filepath.Join(dir, "classes.txt")
	os.WriteFile(classes, []byte("cat\ndog\nowl\n"), 0o644)
	templates := filepath.Join(dir, "templates.txt")
	os.WriteFile(templates, []byte("a photo of a {}.\na drawing of a {}.\n"), 0o644)
	pred, plotFile := filepath.Join(dir, "pred.jsonl"), filepath.Join(dir, "confusion.png")
	cache := filepath.Join(dir, "cache")
	args := []string{"eval", "zeroshot", "--model", resnetModel(t), "--data", root, "--classes", classes,
		"--templates", templates, "--cache-dir", cache, "--batch", "2", "--workers", "3"}
	out, stderr, code := runCLI(t, "", append(args, "--json", "--predictions", pred, "--plot", plotFile)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var r zsJSON
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if r.Images != 9 || r.Unreadable != 1 || len(r.UnreadableImages) != 1 || r.UnreadableImages[0].Path != "dog/broken.png" {
		t.Errorf("images %d, unreadable %d %v; want 9 and dog/broken.png", r.Images, r.Unreadable, r.UnreadableImages)
	}
	if !strings.Contains(stderr, "unreadable image dog/broken.png") {
		t.Errorf("stderr does not report the damaged image: %q", stderr)
	}
	if r.ClassifierCached {
		t.Error("first run: classifier reported as cached")
	}

	// Direct computation.
	ctx := context.Background()
	m, err := tinyclip.Load(ctx, resnetModel(t))
	if err != nil {
		t.Fatal(err)
	}
	zsc, err := m.ZeroShot(ctx, []string{"cat", "dog", "owl"}, []string{"a photo of a {}.", "a drawing of a {}."})
	if err != nil {
		t.Fatal(err)
	}
	preds := readPredictions(t, pred)
	if len(preds) != 9 {
		t.Fatalf("%d predictions, want 9", len(preds))
	}
	correct := 0
	for i, p := range preds {
		wantPath := fmt.Sprintf("%s/img%d.png", []string{"cat", "dog", "owl"}[i/3], i%3)
		if p.Path != wantPath || p.Label != i/3 {
			t.Errorf("prediction %d: %s label %d, want %s label %d", i, p.Path, p.Label, wantPath, i/3)
			continue
		}
		b, _ := os.ReadFile(filepath.Join(root, wantPath))
		px, err := m.PreprocessRGB(b)
		if err != nil {
			t.Fatal(err)
		}
		emb, err := m.EncodePixels(ctx, px, 1)
		if err != nil {
			t.Fatal(err)
		}
		logits, _ := zsc.Logits(emb[0])
		want := eval.TopK(logits, 3)
		if fmt.Sprint(p.Top5) != fmt.Sprint(want) || p.Pred != want[0] {
			t.Errorf("%s: top %v, direct computation %v", p.Path, p.Top5, want)
		}
		if p.Pred == p.Label {
			correct++
		}
	}
	if math.Abs(r.Top1-float64(correct)/9) > 1e-12 {
		t.Errorf("top-1 %v, predictions say %d/9", r.Top1, correct)
	}
	for i, c := range r.PerClass {
		if c.Total != 3 {
			t.Errorf("class %d (%s): %d images, want 3", i, c.Class, c.Total)
		}
	}
	if img, err := os.ReadFile(plotFile); err != nil {
		t.Error(err)
	} else if _, err := png.Decode(bytes.NewReader(img)); err != nil {
		t.Errorf("--plot: %v", err)
	}

	// The same images as a webdataset shard with .cls labels, read in place:
	// the same predictions, the damaged image reported under its member name.
	shard := filepath.Join(dir, "shard.tar")
	f, err := os.Create(shard)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	folder, err := data.OpenImageFolder(root, data.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range folder.Len() {
		b, _ := os.ReadFile(folder.Path(i))
		for _, m := range []struct {
			name string
			data []byte
		}{{fmt.Sprintf("%06d.png", i), b}, {fmt.Sprintf("%06d.cls", i), []byte(fmt.Sprint(folder.Sample(i).Label))}} {
			tw.WriteHeader(&tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.data)), Typeflag: tar.TypeReg})
			tw.Write(m.data)
		}
	}
	tw.Close()
	f.Close()
	wdsPred := filepath.Join(dir, "wds.jsonl")
	_, stderr, code = runCLI(t, "", "eval", "zeroshot", "--model", resnetModel(t), "--data", shard, "--classes", classes,
		"--templates", templates, "--no-cache", "--predictions", wdsPred)
	if code != 0 || !strings.Contains(stderr, "unreadable image 000003.png") {
		t.Errorf("webdataset shard: exit %d, stderr %q", code, stderr)
	}
	if wp := readPredictions(t, wdsPred); len(wp) != len(preds) {
		t.Errorf("webdataset shard: %d predictions, want %d", len(wp), len(preds))
	} else {
		for i := range wp {
			if fmt.Sprint(wp[i].Top5) != fmt.Sprint(preds[i].Top5) || wp[i].Label != preds[i].Label {
				t.Errorf("shard sample %d (%s): %+v, folder %+v", i, wp[i].Path, wp[i], preds[i])
			}
		}
	}

	// Text output.
	out, _, code = runCLI(t, "", args...)
	if code != 0 || !strings.Contains(out, "top-1") || !strings.Contains(out, "images/s") || !strings.Contains(out, "owl") {
		t.Errorf("text output (exit %d):\n%s", code, out)
	}

	// --strict makes the damaged file fatal.
	_, stderr, code = runCLI(t, "", append(args, "--strict")...)
	if code != 1 || !strings.Contains(stderr, "dog/broken.png") {
		t.Errorf("--strict: exit %d, %q", code, stderr)
	}
}

// TestZeroShotCache checks the classifier cache from the command line: a
// second run loads the classifier; other templates, other classes, changed
// weights and a damaged cache file each lead to a rebuild.
func TestZeroShotCache(t *testing.T) {
	root := testFolder(t)
	dir := t.TempDir()
	cache := filepath.Join(dir, "cache")
	// A copy of the model whose weights can be changed.
	model := filepath.Join(dir, "model")
	os.MkdirAll(model, 0o755)
	for _, f := range []string{"open_clip_config.json", "open_clip_model.safetensors"} {
		b, err := os.ReadFile(filepath.Join(resnetModel(t), f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(model, f), b, 0o644)
	}
	cached := func(extra ...string) bool {
		t.Helper()
		args := append([]string{"eval", "zeroshot", "--model", model, "--data", root, "--cache-dir", cache, "--json"}, extra...)
		out, stderr, code := runCLI(t, "", args...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		var r zsJSON
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatal(err)
		}
		return r.ClassifierCached
	}
	// Classes from the folder names, the 80 OpenAI templates by default.
	if cached() {
		t.Error("empty cache: hit")
	}
	if !cached() {
		t.Error("second run: classifier rebuilt")
	}
	if cached("--templates", "simple7") {
		t.Error("other templates: hit")
	}
	if !cached("--templates", "simple7") {
		t.Error("other templates, second run: miss")
	}
	cls := filepath.Join(dir, "classes.txt")
	os.WriteFile(cls, []byte("cat\ndog\nbarn owl\n"), 0o644)
	if cached("--classes", cls) {
		t.Error("other class names: hit")
	}
	if cached("--no-cache") {
		t.Error("--no-cache: reported a cache hit")
	}

	// Change one weight (the lowest mantissa byte of the last float32 of the
	// file): the weights hash, hence the key, changes.
	st := filepath.Join(model, "open_clip_model.safetensors")
	b, _ := os.ReadFile(st)
	b[len(b)-4] ^= 1
	os.WriteFile(st, b, 0o644)
	if cached() {
		t.Error("changed weights: hit")
	}
	if !cached() {
		t.Error("changed weights, second run: miss")
	}

	// Damage every cache file: the command warns, rebuilds and rewrites.
	ents, _ := os.ReadDir(cache)
	for _, e := range ents {
		p := filepath.Join(cache, e.Name())
		b, _ := os.ReadFile(p)
		os.WriteFile(p, b[:len(b)/2], 0o644)
	}
	_, stderr, code := runCLI(t, "", "eval", "zeroshot", "--model", model, "--data", root, "--cache-dir", cache, "--json")
	if code != 0 || !strings.Contains(stderr, "ignoring the cached classifier") {
		t.Errorf("damaged cache: exit %d, stderr %q", code, stderr)
	}
	if !cached() {
		t.Error("after the rebuild: miss")
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp") {
			t.Errorf("temporary file %s left in the cache", e.Name())
		}
	}
}

func TestZeroShotErrors(t *testing.T) {
	model := resnetModel(t)
	empty := t.TempDir()
	root := testFolder(t)
	dir := t.TempDir()
	two := filepath.Join(dir, "two.txt")
	os.WriteFile(two, []byte("cat\ndog\n"), 0o644)
	order := filepath.Join(dir, "order.txt")
	os.WriteFile(order, []byte("owl\ncat\ndog\n"), 0o644)
	csvList := filepath.Join(dir, "list.csv")
	os.WriteFile(csvList, []byte("path,label\nx.png,0\n"), 0o644)
	for _, c := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no data", []string{"--model", model}, 2, "--data is required"},
		{"no model", []string{"--data", root}, 2, "--model is required"},
		{"empty folder", []string{"--model", model, "--data", empty}, 1, "no class sub-folders"},
		{"missing folder", []string{"--model", model, "--data", filepath.Join(empty, "nope")}, 1, "no such file"},
		{"unknown class list", []string{"--model", model, "--data", root, "--classes", "imagenet22k"}, 1, "neither built in (cifar10, cifar100, imagenet) nor an existing file"},
		{"unknown templates", []string{"--model", model, "--data", root, "--templates", filepath.Join(dir, "none.txt")}, 1, "template list"},
		{"too few classes", []string{"--model", model, "--data", root, "--classes", two}, 1, "3 class folders but the class list 2"},
		{"class order", []string{"--model", model, "--data", root, "--classes", order}, 1, "in another order"},
		{"CSV without classes", []string{"--model", model, "--data", csvList}, 2, "--classes is required"},
		{"positional", []string{"--model", model, root}, 2, "give the dataset with --data"},
		{"no evaluation", nil, 2, "missing evaluation"},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := []string{"eval"}
			if c.args != nil {
				args = append(args, "zeroshot", "--no-cache")
				args = append(args, c.args...)
			}
			_, stderr, code := runCLI(t, "", args...)
			if code != c.code || !strings.Contains(stderr, c.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr, c.code, c.want)
			}
		})
	}
}

type retJSON struct {
	Images, Captions, Unreadable int
	ImageToText                  eval.RankStats `json:"image_to_text"`
	TextToImage                  eval.RankStats `json:"text_to_image"`
}

// TestRetrieval runs 'tinyclip eval retrieval' on the shared caption sets:
// the CSVs (PNG images, one and two captions per image) and the webdataset
// shard (the same images as JPEG files, which decode to the PNGs' pixels), and
// compares the recalls with ones computed in Python from refclip.py's
// embeddings with CLIP_benchmark's recall_at_k.
func TestRetrieval(t *testing.T) {
	dir := t.TempDir()
	capDir := fixtures.Path(t, "data", "captions")
	// The CSVs name cifar10-test/<class>/NNNN.png relative to their folder.
	test, err := data.OpenTar(fixtures.Path(t, "data", "train", "cifar10-test.tar"), data.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer test.Close()
	for i := range test.Len() {
		b, err := test.Read(i)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "cifar10-test", filepath.FromSlash(test.Sample(i).Name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, b, 0o644)
	}
	for _, f := range []string{"captions.csv", "captions-2per-image.csv"} {
		b, err := os.ReadFile(filepath.Join(capDir, f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, f), b, 0o644)
	}
	run := func(dataPath string) retJSON {
		t.Helper()
		out, stderr, code := runCLI(t, "", "eval", "retrieval", "--model", resnetModel(t), "--data", dataPath, "--json", "--batch", "16")
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", dataPath, code, stderr)
		}
		var r retJSON
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	one := run(filepath.Join(dir, "captions.csv"))
	two := run(filepath.Join(dir, "captions-2per-image.csv"))
	shard := run(filepath.Join(capDir, "shard-000000.tar"))
	if one.Images != 90 || one.Captions != 90 || two.Images != 90 || two.Captions != 180 || shard.Images != 90 || shard.Captions != 90 {
		t.Fatalf("counts: csv %d/%d, 2 per image %d/%d, shard %d/%d", one.Images, one.Captions, two.Images, two.Captions, shard.Images, shard.Captions)
	}
	if fmt.Sprint(one) != fmt.Sprint(shard) {
		t.Errorf("shard (JPEG) and CSV (PNG) results differ:\n%+v\n%+v", shard, one)
	}
	for _, r := range []retJSON{one, two} {
		for _, st := range []eval.RankStats{r.ImageToText, r.TextToImage} {
			if !(st.Recall[1] <= st.Recall[5] && st.Recall[5] <= st.Recall[10] && st.Recall[10] <= 1) {
				t.Errorf("recalls not increasing: %v", st.Recall)
			}
		}
	}
	t.Logf("1 caption: i→t %v t→i %v; 2 captions: i→t %v t→i %v", one.ImageToText.Recall, one.TextToImage.Recall, two.ImageToText.Recall, two.TextToImage.Recall)

	if testing.Short() {
		return
	}
	script := refclipScript(t)
	// refclip embeddings of the same images and captions (PNG route).
	caps, err := data.OpenCaptionCSV(filepath.Join(dir, "captions-2per-image.csv"), data.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var imgList, txtList bytes.Buffer
	var owner []int
	for i := range caps.Len() {
		fmt.Fprintln(&imgList, caps.Path(i))
		for _, c := range caps.Sample(i).Captions {
			fmt.Fprintln(&txtList, c)
			owner = append(owner, i)
		}
	}
	imgFile, txtFile := filepath.Join(dir, "images.txt"), filepath.Join(dir, "texts.txt")
	os.WriteFile(imgFile, imgList.Bytes(), 0o644)
	os.WriteFile(txtFile, txtList.Bytes(), 0o644)
	embFile := filepath.Join(dir, "emb.jsonl")
	runPython(t, nil, script, "embed", "--model", resnetModel(t), "--images-from", imgFile, "--texts-from", txtFile, "--out", embFile)
	ownerJSON, _ := json.Marshal(owner)
	// open_clip's get_metrics on the first caption of each image (the pairs
	// of captions.csv) and CLIP_benchmark's recall_at_k on both captions,
	// transcribed.
	const metric = `
import sys, json, torch
owner = torch.tensor(json.loads(sys.argv[2]))
img, txt = [], []
for line in open(sys.argv[1]):
    r = json.loads(line)
    (img if r["kind"] == "image" else txt).append(r["embedding"])
img, txt = torch.tensor(img), torch.tensor(txt)
out = {}
first = txt[0::2]
logits = {"image_to_text": img @ first.t(), "text_to_image": first @ img.t()}
ground_truth = torch.arange(len(img)).view(-1, 1)
for name, logit in logits.items():
    ranking = torch.argsort(logit, descending=True)
    preds = torch.where(ranking == ground_truth)[1].numpy()
    out[name + "_mean_rank"] = float(preds.mean() + 1)
    out[name + "_median_rank"] = float(__import__("numpy").floor(__import__("numpy").median(preds)) + 1)
    for k in (1, 5, 10):
        out[name + "_R@%d" % k] = float((preds < k).mean())
scores = txt @ img.t()
positive = torch.zeros_like(scores, dtype=torch.bool)
positive[torch.arange(len(scores)), owner] = True
def recall_at_k(scores, positive_pairs, k):
    nb_texts, nb_images = scores.shape
    topk_indices = torch.topk(scores, k, dim=1)[1]
    nb_positive = positive_pairs.sum(dim=1)
    topk_indices_onehot = torch.nn.functional.one_hot(topk_indices, num_classes=nb_images)
    positive_pairs_reshaped = positive_pairs.view(nb_texts, 1, nb_images)
    nb_true_positive = (topk_indices_onehot * positive_pairs_reshaped).sum(dim=(1, 2))
    return nb_true_positive / nb_positive
for k in (1, 5, 10):
    out["2cap_text_to_image_R@%d" % k] = (recall_at_k(scores, positive, k) > 0).float().mean().item()
    out["2cap_image_to_text_R@%d" % k] = (recall_at_k(scores.T, positive.T, k) > 0).float().mean().item()
print(json.dumps(out))
`
	var ref map[string]float64
	if err := json.Unmarshal(runPython(t, nil, "-c", metric, embFile, string(ownerJSON)), &ref); err != nil {
		t.Fatal(err)
	}
	// Scores computed by other kernels can order two nearly equal values the
	// other way: allow one query per direction to move.
	cmp := func(what string, got, want float64, queries int) {
		if math.Abs(got-want) > 1.01/float64(queries) {
			t.Errorf("%s = %v, reference %v", what, got, want)
		}
	}
	for _, d := range []struct {
		name    string
		one, tw eval.RankStats
	}{{"image_to_text", one.ImageToText, two.ImageToText}, {"text_to_image", one.TextToImage, two.TextToImage}} {
		cmp(d.name+" mean rank (get_metrics)", d.one.MeanRank, ref[d.name+"_mean_rank"], 90)
		cmp(d.name+" median rank (get_metrics)", d.one.MedianRank, ref[d.name+"_median_rank"], 1)
		for _, k := range eval.RetrievalKs {
			cmp(fmt.Sprintf("%s R@%d (get_metrics)", d.name, k), d.one.Recall[k], ref[fmt.Sprintf("%s_R@%d", d.name, k)], 90)
			cmp(fmt.Sprintf("%s R@%d, 2 captions (CLIP_benchmark)", d.name, k), d.tw.Recall[k], ref[fmt.Sprintf("2cap_%s_R@%d", d.name, k)], d.tw.Queries)
		}
	}
	t.Logf("reference: %v", ref)
}

func TestRetrievalErrors(t *testing.T) {
	model := resnetModel(t)
	dir := t.TempDir()
	list := filepath.Join(dir, "caps.csv")
	writePNG(t, filepath.Join(dir, "a.png"), image.NewGray(image.Rect(0, 0, 30, 30)))
	os.WriteFile(filepath.Join(dir, "b.png"), []byte("damaged"), 0o644)
	os.WriteFile(list, []byte("image_path,caption\na.png,a grey square\nb.png,a damaged file\na.png,a dark image\n"), 0o644)
	out, stderr, code := runCLI(t, "", "eval", "retrieval", "--model", model, "--data", list, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var r retJSON
	json.Unmarshal([]byte(out), &r)
	if r.Images != 1 || r.Captions != 2 || r.Unreadable != 1 || !strings.Contains(stderr, "b.png") {
		t.Errorf("%+v, stderr %q: want 1 image with 2 captions, 1 unreadable", r, stderr)
	}
	if r.ImageToText.Recall[1] != 1 || r.TextToImage.Recall[1] != 1 {
		t.Errorf("a single image is always retrieved first: %+v", r)
	}
	if _, stderr, code := runCLI(t, "", "eval", "retrieval", "--model", model, "--data", list, "--strict"); code != 1 || !strings.Contains(stderr, "b.png") {
		t.Errorf("--strict: exit %d %q", code, stderr)
	}
	if _, stderr, code := runCLI(t, "", "eval", "retrieval", "--model", model, "--data", t.TempDir()); code != 1 || !strings.Contains(stderr, "no class sub-folders") {
		t.Errorf("empty folder: exit %d %q", code, stderr)
	}
	folder := testFolder(t)
	if _, stderr, code := runCLI(t, "", "eval", "retrieval", "--model", model, "--data", folder); code != 1 || !strings.Contains(stderr, "no caption") {
		t.Errorf("folder without captions: exit %d %q", code, stderr)
	}
}

// TestModelsPlot draws the zoo figure with published numbers only, with a
// saved bench report, and with a measurement of the smallest model.
func TestModelsPlot(t *testing.T) {
	dir := t.TempDir()
	check := func(name string, args ...string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		out, stderr, code := runCLI(t, "", append([]string{"models", "--plot", p}, args...)...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := png.Decode(bytes.NewReader(b)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return out
	}
	out := check("published.png")
	if !strings.Contains(out, "ViT-8M-16-Text-3M") || !strings.Contains(out, "4150") || !strings.Contains(out, "≈1.87") {
		t.Errorf("table:\n%s", out)
	}
	report := filepath.Join(dir, "bench.json")
	os.WriteFile(report, []byte(`{"model": "TinyCLIP-ViT-40M-32-Text-19M", "precision": "fp32", "rows": [
		{"batch": 1, "threads": 2, "images_per_s": 20, "texts_per_s": 300, "pairs_per_s": 18.75},
		{"batch": 8, "threads": 2, "images_per_s": 30, "texts_per_s": 600, "pairs_per_s": 28.57}]}`), 0o644)
	out = check("file.png", "--throughput", report)
	if !strings.Contains(out, "28.6") {
		t.Errorf("measured throughput from the report missing:\n%s", out)
	}
	if testing.Short() {
		return
	}
	out = check("measured.png", "--measure", "TinyCLIP-ViT-8M-16-Text-3M", "--measure-batch", "2")
	var line string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "ViT-8M-16-Text-3M ") {
			line = l
		}
	}
	if f := strings.Fields(line); len(f) < 7 || f[4] == "-" {
		t.Errorf("no measurement for ViT-8M: %q", line)
	}
	if _, _, code := runCLI(t, "", "models", "--measure", "all"); code != 2 {
		t.Errorf("--measure without --plot: exit %d, want 2", code)
	}
}
