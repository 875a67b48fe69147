package train

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// TestDistillBackendOptions runs a recipe with the backend options: bf16
// data-parallel steps on one device of the Go backend train and write a
// checkpoint; resuming it in fp32 is refused (the precision is part of the
// run); the combinations that are not implemented are errors; an XLA
// backend in a build without XLA support fails before anything is loaded.
func TestDistillBackendOptions(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	teacher, student, _ := writeTinyModels(t, dir)
	recipe := func(out string) *Recipe {
		r := DefaultRecipe()
		r.Teacher, r.Student, r.Data, r.Batch, r.Steps, r.LR, r.Warmup = teacher, student, StringList{"synthetic:32"}, 8, 2, 1e-3, 1
		r.Out = filepath.Join(dir, out)
		return &r
	}
	r := recipe("bf16")
	res, err := Distill(ctx, r, DistillOptions{Logger: quiet(), Backend: "go", Precision: BF16, Devices: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].Steps != 2 || !(res[0].Last.Loss > 0) {
		t.Fatalf("results %+v", res)
	}
	if _, err := Distill(ctx, r, DistillOptions{Logger: quiet(), Resume: true, Precision: BF16, Devices: 1}); err != nil {
		t.Errorf("resuming the finished bf16 run: %v", err)
	}
	_, err = Distill(ctx, r, DistillOptions{Logger: quiet(), Resume: true})
	if err == nil || !strings.Contains(err.Error(), "hyper") {
		t.Errorf("an fp32 resume of a bf16 run: %v, want a refusal naming the hyper-parameters (where the precision is)", err)
	}
	for _, c := range []struct {
		o    DistillOptions
		mod  func(*Recipe)
		want string
	}{
		{DistillOptions{Devices: 2}, nil, "Go backend"},
		{DistillOptions{Precision: BF16}, func(r *Recipe) { r.Accum = 2 }, "plain steps"},
		{DistillOptions{Devices: 1}, func(r *Recipe) { r.Accum = 2 }, "accumulation"},
		{DistillOptions{Precision: "fp16"}, nil, "precision"},
		{DistillOptions{Backend: "xla:cuda"}, nil, "xla"},
	} {
		r := recipe("bad")
		if c.mod != nil {
			c.mod(r)
		}
		c.o.Logger = quiet()
		_, err := Distill(ctx, r, c.o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one mentioning %q", c.o, err, c.want)
		}
		if c.o.Backend == "xla:cuda" && !XLA() && !errors.Is(err, ErrNoXLA) {
			t.Errorf("xla:cuda without XLA support: %v", err)
		}
	}
}
