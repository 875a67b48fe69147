package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tinyclip-go/tinyclip/internal/fixtures"
	"github.com/tinyclip-go/tinyclip/internal/train"
)

// TestBackendFlagErrors: an XLA backend in a binary without XLA support
// (the default CGO_ENABLED=0 build) fails at once with the error that
// says how to build one; malformed values are usage errors.
func TestBackendFlagErrors(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"bench", "distill", "--backend", "tpu"}, 2, "--backend"},
		{[]string{"bench", "distill", "--precision", "fp16"}, 2, "--precision"},
		{[]string{"distill", "--backend", "xla", "--out", dir}, 2, "name the plugin"},
		{[]string{"distill", "--precision", "amp", "--out", dir}, 2, "--precision"},
	} {
		_, stderr, code := runCLI(t, "", c.args...)
		if code != c.code || !strings.Contains(stderr, c.msg) {
			t.Errorf("%q: exit %d, stderr %q; want exit %d mentioning %q", c.args, code, stderr, c.code, c.msg)
		}
	}
	if train.XLA() {
		t.Skip("this binary has XLA support: the no-XLA error cannot occur (the plugin search is tested in internal/train)")
	}
	for _, args := range [][]string{
		{"bench", "distill", "--backend", "xla:cuda"},
		{"distill", "--backend", "xla:cuda", "--student", "TinyCLIP-ViT-8M-16-Text-3M", "--out", dir},
	} {
		start := time.Now()
		_, stderr, code := runCLI(t, "", args...)
		if code != 1 || !strings.Contains(stderr, "without XLA support") || !strings.Contains(stderr, "-tags xla") {
			t.Errorf("%q: exit %d, stderr %q; want exit 1 saying how to build with -tags xla", args, code, stderr)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%q took %v to fail", args, d)
		}
	}
}

// TestBenchDistill runs bench distill on the distillation fixtures' tiny
// teacher and student (random weights) on the Go backend and checks the
// report: positive timings whose split adds up to the step, the pipeline's
// throughput, finite losses; once with the teacher in the step graph in
// bf16, once data parallel on one device, once on synthetic data without
// timing the pipeline (as bench/gpu/run.sh's batch search runs it).
func TestBenchDistill(t *testing.T) {
	tc := fixtures.Path(t, "fixtures", "distill", "inherit", "vit", "teacher.config.json")
	sc := fixtures.Path(t, "fixtures", "distill", "inherit", "vit", "student-b.config.json")
	for _, extra := range [][]string{
		{"--teacher", "graph", "--precision", "bf16"},
		{"--devices", "1"},
		{"--data", "synthetic:4", "--data-batches", "0", "--split=false"},
	} {
		args := append([]string{"bench", "distill", "--teacher-config", tc, "--student-config", sc, "--batch", "4",
			"--steps", "2", "--data-size", "48", "--json"}, extra...)
		stdout, stderr, code := runCLI(t, "", args...)
		if code != 0 {
			t.Fatalf("%q: exit %d: %s", args, code, stderr)
		}
		var r benchDistillReport
		if err := json.Unmarshal([]byte(stdout), &r); err != nil {
			t.Fatalf("%q: %v\n%s", args, err, stdout)
		}
		if r.StepMs <= 0 || r.SamplesPerS <= 0 || r.Batch != 4 || len(r.Losses) != 3 {
			t.Errorf("%q: report %+v", args, r)
		}
		if extra[0] == "--data" {
			if r.Data.Batches != 0 || r.Data.ImagesPerS != 0 || r.DataKeepsUp != nil || r.Split != nil || !strings.HasPrefix(r.Data.Source, "synthetic") {
				t.Errorf("%q: untimed pipeline reported %+v, keeps up %v, split %v", args, r.Data, r.DataKeepsUp, r.Split)
			}
			continue
		}
		if r.Data.ImagesPerS <= 0 || r.Data.Batches != 2 || r.DataKeepsUp == nil || *r.DataKeepsUp != (r.Data.ImagesPerS >= r.SamplesPerS) {
			t.Errorf("%q: pipeline %+v, keeps up %v", args, r.Data, r.DataKeepsUp)
		}
		if r.Precision != strings.TrimPrefix(r.Precision, "x") || (extra[0] == "--teacher" && (r.Precision != "bf16" || r.TeacherKind != "graph")) {
			t.Errorf("%q: precision %s, teacher %s", args, r.Precision, r.TeacherKind)
		}
		for _, l := range r.Losses {
			if !(l > 0 && l < 100) {
				t.Errorf("%q: loss %v", args, l)
			}
		}
		if extra[0] == "--devices" {
			if r.Split != nil {
				t.Errorf("data-parallel report has a split: %v", r.Split)
			}
			continue
		}
		sum := r.Split["teacher"] + r.Split["student_forward"] + r.Split["student_backward"] + r.Split["optimizer"]
		if d := sum - r.StepMs; d > 1e-6*r.StepMs || d < -1e-6*r.StepMs {
			t.Errorf("split %v sums to %v, step %v", r.Split, sum, r.StepMs)
		}
		if *r.TeacherMs <= 0 || *r.LossMs <= 0 || *r.GradientsMs <= 0 {
			t.Errorf("timings %v %v %v", *r.TeacherMs, *r.LossMs, *r.GradientsMs)
		}
	}
}
