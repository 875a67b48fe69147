package train

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseRecipe(t *testing.T) {
	r, err := ParseRecipe(strings.NewReader(`
teacher: t.pt
student: TinyCLIP-ViT-8M-16-Text-3M
data: [a.tar, "b-{0..3}.tar"]
batch: 64
steps: 100
weight_decay: 0
templates: "a photo of a {class}."
`))
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultRecipe()
	want.Teacher, want.Student = "t.pt", "TinyCLIP-ViT-8M-16-Text-3M"
	want.Data = StringList{"a.tar", "b-{0..3}.tar"}
	want.Batch, want.Steps, want.WeightDecay = 64, 100, 0
	want.Templates = StringList{"a photo of a {class}."}
	if !reflect.DeepEqual(*r, want) {
		t.Errorf("got  %+v\nwant %+v", *r, want)
	}
	for _, bad := range []string{
		"studnet: x\n",                  // unknown key
		"batch: many\n",                 // wrong type
		"student: a\n---\nstudent: b\n", // two documents
		"stages: [1]\n",                 // a stage that is not a mapping
		"stages: [{lr: x}]\n",           // a stage with a bad value
		"stages: [{stages: [{}]}]\n",    // nested stages
		"stages: [{studnet: x}]\n",      // unknown key in a stage
		"data: {a: 1}\n",                // neither string nor list
	} {
		if _, err := ParseRecipe(strings.NewReader(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if r, err := ParseRecipe(strings.NewReader("")); err != nil || !reflect.DeepEqual(*r, DefaultRecipe()) {
		t.Errorf("empty recipe: %+v, %v", r, err)
	}
}

func TestRecipeStages(t *testing.T) {
	r, err := ParseRecipe(strings.NewReader(`
teacher: big.pt
data: synthetic
steps: 10
lr: 0.001
stages:
  - {name: s75, student: mid.json}
  - {student: small.json, lr: 0.0005}
`))
	if err != nil {
		t.Fatal(err)
	}
	runs, err := r.Expand(func(x *Recipe) { x.Steps = 3 })
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 || runs[0].Name != "s75" || runs[1].Name != "stage-2" ||
		runs[0].Student != "mid.json" || runs[1].LR != 0.0005 || runs[0].LR != 0.001 ||
		runs[0].Teacher != "big.pt" || runs[0].Steps != 3 || runs[1].Steps != 3 || runs[1].Stages != nil {
		t.Errorf("stages: %+v", runs)
	}
	dup, _ := ParseRecipe(strings.NewReader("stages: [{name: a}, {name: a}]\n"))
	if _, err := dup.Expand(nil); err == nil {
		t.Error("two stages named a: no error")
	}
}

func TestRecipeValidate(t *testing.T) {
	ok := DefaultRecipe()
	ok.Student, ok.Data, ok.Steps, ok.Out, ok.Teacher = "x", StringList{"synthetic"}, 10, "o", "t"
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*Recipe){
		"no student":        func(r *Recipe) { r.Student = "" },
		"no data":           func(r *Recipe) { r.Data = nil },
		"no out":            func(r *Recipe) { r.Out = "" },
		"bad inherit":       func(r *Recipe) { r.Inherit = "auto-magic" },
		"manual, no source": func(r *Recipe) { r.Inherit, r.Teacher = InheritManual, "" },
		"batch 1":           func(r *Recipe) { r.Batch = 1 },
		"accum 3 of 32":     func(r *Recipe) { r.Accum = 3 },
		"no steps":          func(r *Recipe) { r.Steps = Unset },
		"lr 0":              func(r *Recipe) { r.LR = 0 },
		"alpha 2":           func(r *Recipe) { r.Alpha = 2 },
		"bad stage name":    func(r *Recipe) { r.Name = "../x" },
	} {
		r := ok
		mod(&r)
		if err := r.Validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	zero := ok
	zero.Steps, zero.Data = 0, nil // exporting the initial student needs no data
	if err := zero.Validate(); err != nil {
		t.Errorf("steps 0 without data: %v", err)
	}
}

func FuzzParseRecipe(f *testing.F) {
	for _, s := range []string{
		"student: a\nsteps: 3\n",
		"data: [a, b]\nstages: [{name: x, lr: 0.1}]\n",
		"batch: 1e3\n",
		"!!binary x",
		"stages: [{}, {}]\n",
		"&a [*a]",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRecipe(strings.NewReader(s))
		if err != nil {
			return
		}
		runs, err := r.Expand(nil)
		if err != nil {
			return
		}
		for _, run := range runs {
			_ = run.Validate() // must not panic
			if _, err := run.Marshal(); err != nil {
				t.Fatalf("%q: %v", s, err)
			}
		}
	})
}

// writeTinyModels writes the tiny teacher (random weights) as a model
// directory and the student and a middle-sized config as config.json files.
func writeTinyModels(t *testing.T, dir string) (teacher, student, mid string) {
	t.Helper()
	ta := parseArch(t, tinyTeacherJSON)
	tw, err := Init(ta, 11)
	if err != nil {
		t.Fatal(err)
	}
	teacher = filepath.Join(dir, "teacher")
	if err := WriteModel(teacher, ta, tw); err != nil {
		t.Fatal(err)
	}
	student = filepath.Join(dir, "student.json")
	mid = filepath.Join(dir, "mid.json")
	os.WriteFile(student, []byte(tinyStudentJSON), 0o644)
	os.WriteFile(mid, []byte(`{"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 3, "width": 48, "head_width": 16, "patch_size": 8},
		"text_cfg": {"width": 48, "heads": 3, "layers": 2}}`), 0o644)
	return teacher, student, mid
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestDistillRecipe runs recipes end to end: a distillation with
// evaluation, its resume once complete, zero steps (the inherited student
// exactly), and two stages where the second inherits from the first.
func TestDistillRecipe(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	teacher, student, mid := writeTinyModels(t, dir)
	out := filepath.Join(dir, "run")
	r, err := ParseRecipe(strings.NewReader(`
teacher: ` + teacher + `
student: ` + student + `
data: synthetic:48
batch: 8
steps: 4
lr: 0.001
warmup: 1
checkpoint_every: 2
eval_every: 2
eval_data: synthetic:32
eval_captions: synthetic:24
out: ` + out + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Distill(ctx, r, DistillOptions{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].Steps != 4 || res[0].FinalHF == "" {
		t.Fatalf("results %+v", res)
	}
	for _, k := range []string{"zeroshot/top1", "zeroshot/top5", "retrieval/i2t_r1", "retrieval/t2i_r5"} {
		if v, ok := res[0].Eval[k]; !ok || v < 0 || v > 1 {
			t.Errorf("evaluation %s = %v (%v)", k, v, ok)
		}
	}
	saved, err := os.ReadFile(filepath.Join(out, RunFile))
	if err != nil {
		t.Fatal(err)
	}
	again, err := ParseRecipe(bytes.NewReader(saved))
	if err != nil || again.Steps != 4 || again.Warmup != 1 {
		t.Errorf("saved recipe: %+v, %v", again, err)
	}
	// Resuming a finished run changes nothing; a fresh run is refused.
	before := readBytes(t, filepath.Join(out, FinalDir, ModelFile))
	if _, err := Distill(ctx, r, DistillOptions{Logger: quiet(), Resume: true}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, readBytes(t, filepath.Join(out, FinalDir, ModelFile))) {
		t.Error("resuming a finished run changed the model")
	}
	if _, err := Distill(ctx, r, DistillOptions{Logger: quiet()}); err == nil {
		t.Error("a second fresh run into the same directory: no error")
	}
	// Resuming with another learning rate is refused, naming it.
	r2 := *r
	r2.LR = 0.002
	if _, err := Distill(ctx, &r2, DistillOptions{Logger: quiet(), Resume: true}); err == nil || !strings.Contains(err.Error(), "lr") {
		t.Errorf("changed lr: %v", err)
	}

	// Zero steps: the inherited student, untouched.
	zero := DefaultRecipe()
	zero.Teacher, zero.Student, zero.Steps, zero.Out = teacher, student, 0, filepath.Join(dir, "zero")
	zres, err := Distill(ctx, &zero, DistillOptions{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	tm, err := openModel(teacher, "")
	if err != nil {
		t.Fatal(err)
	}
	want, err := Inherit(tm.ck.Tensors, tm.arch, parseArch(t, tinyStudentJSON))
	tm.ck.Close()
	if err != nil {
		t.Fatal(err)
	}
	got, err := openModel(zres[0].Final, "")
	if err != nil {
		t.Fatal(err)
	}
	defer got.ck.Close()
	if d := sameTensors(want, got.ck.Tensors); d != "" {
		t.Errorf("steps 0: %s", d)
	}

	// Two stages: teacher → mid → student, the second inheriting from the
	// first's final model.
	staged, err := ParseRecipe(strings.NewReader(`
teacher: ` + teacher + `
data: synthetic:32
batch: 8
steps: 2
lr: 0.001
out: ` + filepath.Join(dir, "staged") + `
stages:
  - {name: s75, student: ` + mid + `}
  - {name: s50, student: ` + student + `}
`))
	if err != nil {
		t.Fatal(err)
	}
	sres, err := Distill(ctx, staged, DistillOptions{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if len(sres) != 2 || sres[1].Final != filepath.Join(dir, "staged", "s50", FinalDir) {
		t.Fatalf("stages: %+v", sres)
	}
	y := string(readBytes(t, filepath.Join(dir, "staged", "s50", RunFile)))
	if !strings.Contains(y, "inherit_from: "+filepath.Join(dir, "staged", "s75", FinalDir)) {
		t.Errorf("stage 2 does not inherit from stage 1:\n%s", y)
	}
}
