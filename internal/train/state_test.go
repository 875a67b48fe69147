package train

import (
	"bytes"
	"context"
	"errors"
	"math"
	"testing"

	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

// sameTensors reports the first difference between two tensor maps, bit
// for bit ("" when identical).
func sameTensors(a, b map[string]*tensor.Tensor) string {
	if len(a) != len(b) {
		return "different tensor counts"
	}
	for name, x := range a {
		y, ok := b[name]
		if !ok {
			return name + " missing"
		}
		if x.DType != y.DType || len(x.Shape) != len(y.Shape) || !bytes.Equal(x.Data, y.Data) {
			return name + " differs"
		}
	}
	return ""
}

// runSteps runs the fixture batch at the schedule's learning rates for
// steps from..to−1.
func runSteps(t *testing.T, s *Step, c *stepCase, from, to int) {
	t.Helper()
	for k := from; k < to; k++ {
		if _, err := s.Run(context.Background(), c.images, c.tokens, CosineLR(c.base, c.warmup, c.total, k)); err != nil {
			t.Fatalf("step %d: %v", k, err)
		}
	}
}

// TestDeterministicAndResume checks that the step is deterministic (two
// fresh runs give bit-identical weights, BatchNorm statistics and AdamW
// moments) and that State/Restore into a fresh student and step continues
// bit-identically to an uninterrupted run.
func TestDeterministicAndResume(t *testing.T) {
	for _, fam := range []string{"vit", "rn"} {
		t.Run(fam, func(t *testing.T) {
			c, hp := loadStepCase(t, fam)
			a := c.newStep(t, hp)
			runSteps(t, a, c, 0, 1)
			mid, err := a.State()
			if err != nil {
				t.Fatal(err)
			}
			runSteps(t, a, c, 1, 3)
			want, err := a.State()
			if err != nil {
				t.Fatal(err)
			}

			again := c.newStep(t, hp)
			runSteps(t, again, c, 0, 3)
			got, err := again.State()
			if err != nil {
				t.Fatal(err)
			}
			if d := sameTensors(got.Weights, want.Weights); d != "" {
				t.Errorf("second run: weights: %s", d)
			}
			if d := sameTensors(got.Moments, want.Moments); d != "" {
				t.Errorf("second run: AdamW moments: %s", d)
			}

			resumed := c.newStep(t, hp)
			if err := resumed.Restore(mid); err != nil {
				t.Fatal(err)
			}
			if resumed.Count() != 1 {
				t.Fatalf("restored count %d, want 1", resumed.Count())
			}
			runSteps(t, resumed, c, 1, 3)
			got, err = resumed.State()
			if err != nil {
				t.Fatal(err)
			}
			if got.Step != want.Step {
				t.Errorf("resumed step count %d, want %d", got.Step, want.Step)
			}
			if d := sameTensors(got.Weights, want.Weights); d != "" {
				t.Errorf("resumed run: weights: %s", d)
			}
			if d := sameTensors(got.Moments, want.Moments); d != "" {
				t.Errorf("resumed run: AdamW moments: %s", d)
			}
		})
	}
}

// TestRestoreRejectsMismatch checks that a state of another architecture or
// with missing tensors is refused and leaves the step usable.
func TestRestoreRejectsMismatch(t *testing.T) {
	vc, vhp := loadStepCase(t, "vit")
	rc, rhp := loadStepCase(t, "rn")
	vs := vc.newStep(t, vhp)
	rs := rc.newStep(t, rhp)
	rnState, err := rs.State()
	if err != nil {
		t.Fatal(err)
	}
	if err := vs.Restore(rnState); err == nil {
		t.Error("a ResNet state was restored into a ViT step")
	}
	st, err := vs.State()
	if err != nil {
		t.Fatal(err)
	}
	delete(st.Weights, "visual.proj")
	if err := vs.Restore(st); err == nil {
		t.Error("a state without visual.proj was restored")
	}
	if err := vs.Restore(nil); err == nil {
		t.Error("a nil state was restored")
	}
	runSteps(t, vs, vc, 0, 1)
}

// TestNonFiniteLossSkipsUpdate feeds a NaN pixel: the loss is NaN, Run
// reports ErrNonFinite, and as in the official loop the weights, moments
// and step count stay while logit_scale is reset to ln 50.
func TestNonFiniteLossSkipsUpdate(t *testing.T) {
	c, hp := loadStepCase(t, "vit")
	s := c.newStep(t, hp)
	before, err := s.State()
	if err != nil {
		t.Fatal(err)
	}
	images := append([]float32(nil), c.images...)
	images[5] = float32(math.NaN())
	m, err := s.Run(context.Background(), images, c.tokens, 1e-4)
	if !errors.Is(err, ErrNonFinite) {
		t.Fatalf("Run error %v, want ErrNonFinite", err)
	}
	if !m.Skipped || !math.IsNaN(m.Loss) {
		t.Errorf("metrics %+v: want Skipped and a NaN loss", m)
	}
	after, err := s.State()
	if err != nil {
		t.Fatal(err)
	}
	if after.Step != 0 || s.Count() != 0 {
		t.Errorf("step count %d after a skipped step", after.Step)
	}
	scale := f32(t, after.Weights["logit_scale"])[0]
	if scale != float32(math.Log(50)) {
		t.Errorf("logit_scale %v after a skipped step, want ln 50", scale)
	}
	delete(after.Weights, "logit_scale")
	delete(before.Weights, "logit_scale")
	if d := sameTensors(after.Weights, before.Weights); d != "" {
		t.Errorf("weights changed by a skipped step: %s", d)
	}
	if d := sameTensors(after.Moments, before.Moments); d != "" {
		t.Errorf("moments changed by a skipped step: %s", d)
	}
	// Training goes on from there.
	if _, err := s.Run(context.Background(), c.images, c.tokens, 1e-4); err != nil {
		t.Fatal(err)
	}
	if s.Count() != 1 {
		t.Errorf("count %d after one good step", s.Count())
	}
}

// TestParamGroups checks Decayed against the official optimizer's
// parameter groups recorded in both step fixtures.
func TestParamGroups(t *testing.T) {
	for _, fam := range []string{"vit", "rn"} {
		c, hp := loadStepCase(t, fam)
		seen := 0
		for _, g := range hp.Groups {
			for _, name := range g.Params {
				w, ok := c.initial[name]
				if !ok {
					t.Fatalf("%s: %s not in the student", fam, name)
				}
				if got, want := Decayed(name, len(w.Shape)), g.WeightDecay > 0; got != want {
					t.Errorf("%s: Decayed(%s, %d) = %v, official group weight decay %v", fam, name, len(w.Shape), got, g.WeightDecay)
				}
				seen++
			}
		}
		s := c.newStep(t, hp)
		if seen != len(s.params) {
			t.Errorf("%s: fixture groups list %d parameters, the step trains %d", fam, seen, len(s.params))
		}
	}
}

// TestCosineLR checks the schedule's landmarks: warm-up ramp, the base at
// the end of warm-up, half the base half-way, zero at the end.
func TestCosineLR(t *testing.T) {
	for _, c := range []struct {
		step int
		want float64
	}{{0, 1e-4 / 10}, {4, 5e-4 / 10}, {9, 1e-4}, {10, 1e-4}, {60, 0.5e-4}, {110, 0}} {
		if got := CosineLR(1e-4, 10, 110, c.step); math.Abs(got-c.want) > 1e-18 {
			t.Errorf("CosineLR(step %d) = %v, want %v", c.step, got, c.want)
		}
	}
}

// TestCLIPWithoutTeacher trains the fixture student with the plain CLIP
// loss and a learnable logit scale (no --logit-scale): the loss on the fixed
// batch falls, and the scale moves but stays within [0, ln 100].
func TestCLIPWithoutTeacher(t *testing.T) {
	c, _ := loadStepCase(t, "vit")
	st, err := NewStudent(c.arch, c.initial)
	if err != nil {
		t.Fatal(err)
	}
	h := DefaultHyper(c.arch)
	h.LogitScale = 0
	s, err := NewStep(st, nil, len(c.tokens), h)
	if err != nil {
		t.Fatal(err)
	}
	var first, last Metrics
	for k := range 8 {
		m, err := s.Run(context.Background(), c.images, c.tokens, 1e-3)
		if err != nil {
			t.Fatal(err)
		}
		if k == 0 {
			first = m
		}
		last = m
	}
	if !math.IsNaN(first.SoftI2T) || math.IsNaN(first.Hard) || first.Hard != first.Loss {
		t.Errorf("metrics %+v: want only the CLIP term", first)
	}
	if !(last.Loss < first.Loss) {
		t.Errorf("CLIP loss %v after 8 steps, %v before", last.Loss, first.Loss)
	}
	scale := float64(f32(t, mustState(t, s).Weights["logit_scale"])[0])
	if scale == float64(InitialLogitScale) || scale < 0 || scale > math.Log(100) {
		t.Errorf("logit_scale %v after training, want moved from %v and within [0, ln 100]", scale, InitialLogitScale)
	}
}

func mustState(t *testing.T, s *Step) *State {
	t.Helper()
	st, err := s.State()
	if err != nil {
		t.Fatal(err)
	}
	return st
}
