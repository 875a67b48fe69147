package main

import (
	"archive/tar"
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tinyclip-go/tinyclip/internal/config"
	"github.com/tinyclip-go/tinyclip/internal/data"
	"github.com/tinyclip-go/tinyclip/internal/train"
)

const (
	distillTeacherJSON = `{"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 4, "width": 48, "head_width": 16, "patch_size": 8},
		"text_cfg": {"width": 48, "heads": 3, "layers": 4}}`
	distillStudentJSON = `{"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
		"text_cfg": {"width": 32, "heads": 2, "layers": 2}}`
)

// distillModels writes a random tiny teacher model directory and a student
// config.json.
func distillModels(t *testing.T) (teacher, student string) {
	t.Helper()
	dir := t.TempDir()
	cfg, err := config.Parse([]byte(distillTeacherJSON))
	if err != nil {
		t.Fatal(err)
	}
	ta, err := config.FromConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w, err := train.Init(ta, 3)
	if err != nil {
		t.Fatal(err)
	}
	teacher = filepath.Join(dir, "teacher")
	if err := train.WriteModel(teacher, ta, w); err != nil {
		t.Fatal(err)
	}
	student = filepath.Join(dir, "student.json")
	if err := os.WriteFile(student, []byte(distillStudentJSON), 0o644); err != nil {
		t.Fatal(err)
	}
	return teacher, student
}

// writeDistillData writes synthetic samples as a webdataset shard (training
// data), an ImageFolder (zero-shot evaluation) and a caption CSV
// (retrieval).
func writeDistillData(t *testing.T) (shard, folder, csvPath string) {
	t.Helper()
	dir := t.TempDir()
	syn, err := data.NewSynthetic(data.SyntheticOptions{N: 48, Seed: 9, Size: 32})
	if err != nil {
		t.Fatal(err)
	}
	shard = filepath.Join(dir, "train-000.tar")
	f, err := os.Create(shard)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	folder = filepath.Join(dir, "heldout")
	csvPath = filepath.Join(dir, "captions.csv")
	csv := "image_path,caption\n"
	for i := 0; i < syn.Len(); i++ {
		img, err := syn.Read(i)
		if err != nil {
			t.Fatal(err)
		}
		s := syn.Sample(i)
		key := fmt.Sprintf("%06d", i)
		if i < 32 {
			for _, m := range []struct {
				name string
				b    []byte
			}{{key + ".png", img}, {key + ".txt", []byte(s.Captions[0])}} {
				tw.WriteHeader(&tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.b)), Typeflag: tar.TypeReg})
				tw.Write(m.b)
			}
			continue
		}
		class := syn.Classes()[s.Label]
		os.MkdirAll(filepath.Join(folder, class), 0o755)
		os.WriteFile(filepath.Join(folder, class, key+".png"), img, 0o644)
		csv += filepath.Join("heldout", class, key+".png") + ",\"" + s.Captions[0] + "\"\n"
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	os.WriteFile(csvPath, []byte(csv), 0o644)
	return shard, folder, csvPath
}

// TestDistillFiles trains on a webdataset shard and evaluates zero-shot
// on an ImageFolder and retrieval on a caption CSV.
func TestDistillFiles(t *testing.T) {
	teacher, student := distillModels(t)
	shard, folder, csvPath := writeDistillData(t)
	out := filepath.Join(t.TempDir(), "run")
	stdout, stderr, code := runCLI(t, "", "distill", "--allow-slow", "--teacher", teacher, "--student", student,
		"--data", shard, "--steps", "2", "--batch", "8", "--lr", "1e-3", "--eval-data", folder,
		"--eval-templates", filepath.Join(t.TempDir(), "missing.txt"), "--eval-captions", csvPath, "--out", out)
	if code != 1 || !strings.Contains(stderr, "missing.txt") {
		t.Fatalf("missing template file: exit %d: %s", code, stderr)
	}
	stdout, stderr, code = runCLI(t, "", "distill", "--allow-slow", "--teacher", teacher, "--student", student,
		"--data", shard, "--steps", "2", "--batch", "8", "--lr", "1e-3", "--eval-data", folder,
		"--eval-captions", csvPath, "--out", out, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var res []struct {
		Eval map[string]float64 `json:"eval"`
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil || len(res) != 1 {
		t.Fatalf("%v: %s", err, stdout)
	}
	if res[0].Eval["zeroshot/images"] != 16 || res[0].Eval["retrieval/images"] != 16 {
		t.Errorf("evaluation %v, want 16 held-out images each", res[0].Eval)
	}
	if _, ok := res[0].Eval["retrieval/t2i_r5"]; !ok {
		t.Errorf("no retrieval recall: %v", res[0].Eval)
	}
}

// TestDistillCommand trains a few steps from flags alone, checks the
// output directory and that `tinyclip embed` loads the result; resumes the
// finished run; and exports the untrained student with --steps 0.
func TestDistillCommand(t *testing.T) {
	teacher, student := distillModels(t)
	out := filepath.Join(t.TempDir(), "run")
	args := []string{"distill", "--allow-slow", "--teacher", teacher, "--student", student, "--inherit", "manual",
		"--data", "synthetic:48", "--steps", "3", "--batch", "8", "--lr", "1e-3", "--checkpoint-every", "2",
		"--eval-data", "synthetic:32", "--out", out, "--json"}
	stdout, stderr, code := runCLI(t, "", args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var res []struct {
		Steps   int                `json:"steps"`
		Final   string             `json:"final"`
		FinalHF string             `json:"final_hf"`
		Eval    map[string]float64 `json:"eval"`
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	if len(res) != 1 || res[0].Steps != 3 || res[0].Final != filepath.Join(out, "final") || res[0].FinalHF == "" {
		t.Fatalf("results %+v", res)
	}
	if _, ok := res[0].Eval["zeroshot/top1"]; !ok {
		t.Errorf("no zero-shot accuracy: %v", res[0].Eval)
	}
	for _, f := range []string{"log.jsonl", "curves.png", "recipe.yaml", "latest", "ckpt-2", "ckpt-3", "final/config.json", "final-hf/config.json"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("output: %v", err)
		}
	}
	for _, model := range []string{res[0].Final, res[0].FinalHF} {
		checkEmbeds(t, model, 32)
	}

	// A second run into the same directory needs --resume.
	if _, stderr, code := runCLI(t, "", args...); code == 0 || !strings.Contains(stderr, "resume") {
		t.Errorf("second run: exit %d: %s", code, stderr)
	}
	if _, stderr, code := runCLI(t, "", append(args, "--resume")...); code != 0 {
		t.Errorf("resume of a finished run: exit %d: %s", code, stderr)
	}

	// --steps 0 needs no data and writes the inherited student.
	zero := filepath.Join(t.TempDir(), "zero")
	stdout, stderr, code = runCLI(t, "", "distill", "--allow-slow", "--teacher", teacher, "--student", student, "--steps", "0", "--out", zero)
	if code != 0 {
		t.Fatalf("--steps 0: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "final: "+filepath.Join(zero, "final")) {
		t.Errorf("--steps 0 output: %q", stdout)
	}
}

// TestDistillRecipeFlags checks that flags override the recipe (and every
// stage), and the command's errors.
func TestDistillRecipeFlags(t *testing.T) {
	dir := t.TempDir()
	recipe := filepath.Join(dir, "r.yaml")
	os.WriteFile(recipe, []byte(`
teacher: big
student: TinyCLIP-ViT-8M-16-Text-3M
data: synthetic
steps: 500
lr: 0.0001
out: o
stages:
  - {name: a, lr: 0.0002}
  - {name: b, steps: 7}
`), 0o644)
	for i, r := range printedStages(t, 2, "--config", recipe, "--steps", "9", "--batch", "16") {
		wantLR := []float64{0.0002, 0.0001}[i]
		if r.Steps != 9 || r.Batch != 16 || r.LR != wantLR || r.Teacher != "big" {
			t.Errorf("stage %d: %+v", i, r)
		}
	}

	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"distill", "--bogus"}, 2, "bogus"},
		{[]string{"distill", "extra"}, 2, "unexpected argument"},
		{[]string{"distill", "--config", filepath.Join(dir, "missing.yaml")}, 1, "missing.yaml"},
		{[]string{"distill", "--allow-slow", "--student", "no-such-model", "--data", "synthetic", "--steps", "1", "--out", filepath.Join(dir, "x")}, 1, "no-such-model"},
		{[]string{"distill", "--allow-slow", "--student", "TinyCLIP-ViT-8M-16-Text-3M", "--steps", "1", "--out", filepath.Join(dir, "y")}, 1, "no training data"},
	} {
		_, stderr, code := runCLI(t, "", c.args...)
		if code != c.code || !strings.Contains(stderr, c.msg) {
			t.Errorf("%v: exit %d, %q", c.args, code, firstLine(stderr))
		}
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("studnet: x\n"), 0o644)
	if _, stderr, code := runCLI(t, "", "distill", "--config", bad, "--print"); code != 1 || !strings.Contains(stderr, "studnet") {
		t.Errorf("unknown recipe key: exit %d, %q", code, stderr)
	}

	// Without GOEXPERIMENT=simd the command refuses unless --allow-slow.
	_, stderr, code := runCLI(t, "", "distill", "--student", "TinyCLIP-ViT-8M-16-Text-3M", "--steps", "0", "--out", filepath.Join(dir, "z"))
	if train.SIMD {
		if code != 0 {
			t.Errorf("simd build: exit %d: %s", code, stderr)
		}
	} else if code != 1 || !strings.Contains(stderr, "GOEXPERIMENT=simd") {
		t.Errorf("plain build without --allow-slow: exit %d, %q", code, stderr)
	}
}

func firstLine(s string) string {
	sc := bufio.NewScanner(strings.NewReader(s))
	if sc.Scan() {
		return sc.Text()
	}
	return ""
}

// TestDistillAuto runs auto weight inheritance from flags: masked steps,
// the fuse at --prune-step, plain steps; the final pruned student (per-layer
// dimensions in its config) and the masked checkpoint written before the
// fuse, pruned by `tinyclip prune`, both load in `tinyclip embed`. Also
// the auto flags in --print of a staged recipe, and the errors.
func TestDistillAuto(t *testing.T) {
	teacher, student := distillModels(t)
	out := filepath.Join(t.TempDir(), "auto")
	stdout, stderr, code := runCLI(t, "", "distill", "--allow-slow", "--teacher", teacher, "--inherit", "auto",
		"--target-sparsity", "0.5", "--sparsity-warmup", "1", "--prune-step", "3", "--l0-lr", "2",
		"--data", "synthetic:48", "--steps", "4", "--batch", "8", "--lr", "1e-3", "--checkpoint-every", "2", "--out", out, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var res []struct {
		Steps   int    `json:"steps"`
		Final   string `json:"final"`
		FinalHF string `json:"final_hf"`
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil || len(res) != 1 || res[0].Steps != 4 {
		t.Fatalf("%v: %s", err, stdout)
	}
	var cfg map[string]any
	if err := json.Unmarshal(readFile(t, filepath.Join(res[0].Final, "config.json")), &cfg); err != nil {
		t.Fatal(err)
	}
	vc, _ := cfg["vision_cfg"].(map[string]any)
	if _, ok := vc["layer_mlp"]; !ok {
		t.Errorf("the pruned student's config has no per-layer dimensions: %v", cfg)
	}
	if res[0].FinalHF != "" {
		t.Errorf("an irregular student exported as HF: %s", res[0].FinalHF)
	}
	pruned := filepath.Join(t.TempDir(), "pruned")
	if _, stderr, code := runCLI(t, "", "prune", "--model", filepath.Join(out, "ckpt-2"), "--out", pruned); code != 0 {
		t.Fatalf("prune of the masked checkpoint: exit %d: %s", code, stderr)
	}
	for _, model := range []string{res[0].Final, pruned} {
		checkEmbeds(t, model, 32)
	}

	// Flags override the auto keys of every stage.
	dir := t.TempDir()
	recipe := filepath.Join(dir, "auto.yaml")
	os.WriteFile(recipe, []byte(`
teacher: big.pt
inherit: auto
data: synthetic
steps: 100
out: o
stages:
  - {name: s75, target_sparsity: 0.25, prune_step: 30}
  - {name: s50, start_sparsity: 0.25, target_sparsity: 0.5, prune_step: 50}
`), 0o644)
	for i, r := range printedStages(t, 2, "--config", recipe, "--sparsity-warmup", "7", "--lambda-lr", "-0.5") {
		if r.Inherit != "auto" || r.SparsityWarmup != 7 || r.LambdaLR != -0.5 || r.L0LR != 0.02 ||
			r.PruneStep != []int{30, 50}[i] || r.TargetSparsity != []float64{0.25, 0.5}[i] {
			t.Errorf("stage %d: %+v", i+1, r)
		}
	}

	base := []string{"distill", "--allow-slow", "--teacher", teacher, "--data", "synthetic:16", "--steps", "2", "--batch", "8"}
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--inherit", "auto", "--target-sparsity", "0.5"}, "prune_step"},
		{[]string{"--inherit", "auto", "--prune-step", "1"}, "target_sparsity"},
		{[]string{"--inherit", "auto", "--target-sparsity", "0.5", "--prune-step", "1", "--accum", "2"}, "accumulation"},
		{[]string{"--inherit", "auto", "--target-sparsity", "0.5", "--prune-step", "1", "--warmup", "5"}, "warm-up"},
		{[]string{"--inherit", "auto", "--target-sparsity", "0.5", "--prune-step", "1", "--student", student}, "teacher's architecture"},
		{[]string{"--student", student, "--target-sparsity", "0.5"}, "inherit auto"},
	} {
		args := append(append(append([]string{}, base...), c.args...), "--out", filepath.Join(dir, "x"))
		_, stderr, code := runCLI(t, "", args...)
		if code != 1 || !strings.Contains(stderr, c.msg) {
			t.Errorf("%v: exit %d, %q", c.args, code, firstLine(stderr))
		}
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// printedStages runs "tinyclip distill ARGS --print" and returns the stage
// recipes it prints (YAML documents separated by "---"), failing unless
// there are want of them.
func printedStages(t *testing.T, want int, args ...string) []*train.Recipe {
	t.Helper()
	stdout, stderr, code := runCLI(t, "", append(append([]string{"distill"}, args...), "--print")...)
	if code != 0 {
		t.Fatalf("distill %v --print: exit %d: %s", args, code, stderr)
	}
	docs := strings.Split(stdout, "---\n")
	if len(docs) != want {
		t.Fatalf("%d documents, want %d: %s", len(docs), want, stdout)
	}
	stages := make([]*train.Recipe, len(docs))
	for i, d := range docs {
		r, err := train.ParseRecipe(strings.NewReader(d))
		if err != nil {
			t.Fatal(err)
		}
		stages[i] = r
	}
	return stages
}

// checkEmbeds runs "tinyclip embed --model MODEL --text ..." and checks that
// it prints an embedding of dim values.
func checkEmbeds(t *testing.T, model string, dim int) {
	t.Helper()
	out, stderr, code := runCLI(t, "", "embed", "--model", model, "--text", "a red circle.")
	if code != 0 {
		t.Fatalf("embed %s: exit %d: %s", model, code, stderr)
	}
	var line struct {
		Embedding []float32 `json:"embedding"`
	}
	if err := json.NewDecoder(strings.NewReader(out)).Decode(&line); err != nil || len(line.Embedding) != dim {
		t.Errorf("embed %s: %v, %q", model, err, out)
	}
}
