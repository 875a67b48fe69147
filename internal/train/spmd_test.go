package train

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
)

// TestDataParallelStepFixtures runs the official loop's three iterations of
// the step fixtures through DataParallelStep and checks them by the
// fixture README's rules (as TestStepFixtures): on one device with the
// identity collectives (the path the Go backend runs, and SPMD's graph
// with one device), and with 2 and 4 devices emulated in one graph
// (shards of 4 and 2 pairs, features all-gathered, gradients summed),
// which at the same global batch must give the single-device results;
// with the engine teacher (features fed in) and with the teacher in the
// graph (run per shard).
func TestDataParallelStepFixtures(t *testing.T) {
	for _, c := range []struct {
		fam     string
		devices int
		mode    dpMode
		graphT  bool
	}{
		{"vit", 1, dpSingle, false},
		{"rn", 1, dpSingle, false},
		{"vit", 2, dpEmulated, false},
		{"vit", 4, dpEmulated, true},
	} {
		name := fmt.Sprintf("%s/devices=%d", c.fam, c.devices)
		if c.graphT {
			name += "/graph-teacher"
		}
		t.Run(name, func(t *testing.T) { testDataParallelFixture(t, c.fam, c.devices, c.mode, c.graphT) })
	}
}

// dpPublic makes testDataParallelFixture use NewDataParallelStep: GoMLX's
// SPMD strategy on backends that have it (XLA), the identity collectives
// on the Go backend.
const dpPublic dpMode = -1

// TestDataParallelSPMD runs the ViT step fixture through
// NewDataParallelStep on the default backend (TINYCLIP_BACKEND): on XLA
// that is GoMLX's SPMD strategy with one device (AllReduce over a single
// replica), on the Go backend the one-device path; and, where the backend
// has several devices (a multi-GPU host, XLA CPU with several host
// devices), over 2 and 4 devices — the acceptance check of the issue. On
// a single-device backend the multi-device cases are skipped and say so.
func TestDataParallelSPMD(t *testing.T) {
	b, err := defaultBackend()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1, 2, 4} {
		t.Run(fmt.Sprintf("devices=%d", n), func(t *testing.T) {
			if n > 1 && (isGoBackend(b) || b.NumDevices() < n) {
				t.Skipf("backend %s has %d device(s) and no collectives on the Go backend: needs %d devices", b.Name(), b.NumDevices(), n)
			}
			testDataParallelFixture(t, "vit", n, dpPublic, n == 2)
		})
	}
}

func testDataParallelFixture(t *testing.T, fam string, devices int, mode dpMode, graphTeacher bool) {
	ctx := context.Background()
	c, _ := loadStepCase(t, fam)
	iters, feats := c.expected(t)
	st, err := NewStudent(c.arch, c.initial)
	if err != nil {
		t.Fatal(err)
	}
	var teacher Teacher = c.teacher
	if graphTeacher {
		arch, w := fixtureTeacher(t, fam)
		if teacher, err = NewGraphTeacher(st.Backend(), arch, w, FP32); err != nil {
			t.Fatal(err)
		}
	}
	var d *DataParallelStep
	if mode == dpPublic {
		d, err = NewDataParallelStep(st, teacher, len(c.tokens), devices, DefaultHyper(c.arch))
	} else {
		d, err = newDataParallelStep(st, teacher, len(c.tokens), devices, DefaultHyper(c.arch), mode)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("mode %d (0 SPMD, 1 single device, 2 emulated) on %s", d.mode, st.Backend().Name())
	if graphTeacher != (d.s.fused != nil) {
		t.Fatalf("teacher in the graph: %v, want %v", d.s.fused != nil, graphTeacher)
	}
	sumLR := 0.0
	for k, it := range iters {
		lr := CosineLR(c.base, c.warmup, c.total, k)
		m, err := d.Run(ctx, c.images, c.tokens, lr)
		if err != nil {
			t.Fatalf("iteration %d: %v", k, err)
		}
		sumLR += lr
		checkStepIteration(t, c, fam, k, it, m, feats, d.State, sumLR)
		if !math.IsNaN(m.Hard) {
			t.Errorf("iteration %d: hard loss %v with alpha 1", k, m.Hard)
		}
		if m.Step != int64(k+1) {
			t.Errorf("iteration %d: step %d", k, m.Step)
		}
	}
}

// TestDataParallelHardLoss compares 2 emulated devices with one Step at the
// same global batch where the fixtures do not reach: the hard CLIP term
// (alpha 0.5: labels are each row's global column, rank·b + row) and the
// plain CLIP loss without a teacher. Losses and gradient norms agree
// within 1e-5 relative, the weights after two steps by the fixtures'
// weight rule (1e-5 relative + 0.1·Σlr, ≤ 1 % outliers).
func TestDataParallelHardLoss(t *testing.T) {
	ctx := context.Background()
	c, _ := loadStepCase(t, "vit")
	for _, withTeacher := range []bool{true, false} {
		t.Run(fmt.Sprintf("teacher=%v", withTeacher), func(t *testing.T) {
			h := DefaultHyper(c.arch)
			var teacher Teacher
			if withTeacher {
				h.Alpha = 0.5
				teacher = c.teacher
			}
			st1, err := NewStudent(c.arch, c.initial)
			if err != nil {
				t.Fatal(err)
			}
			one, err := NewStep(st1, teacher, len(c.tokens), h)
			if err != nil {
				t.Fatal(err)
			}
			st2, err := NewStudent(c.arch, c.initial)
			if err != nil {
				t.Fatal(err)
			}
			two, err := newDataParallelStep(st2, teacher, len(c.tokens), 2, h, dpEmulated)
			if err != nil {
				t.Fatal(err)
			}
			sumLR := 0.0
			for k := range 2 {
				lr := 1e-3
				sumLR += lr
				m1, err := one.Run(ctx, c.images, c.tokens, lr)
				if err != nil {
					t.Fatal(err)
				}
				m2, err := two.Run(ctx, c.images, c.tokens, lr)
				if err != nil {
					t.Fatal(err)
				}
				for _, q := range [][3]any{{"loss", m2.Loss, m1.Loss}, {"hard", m2.Hard, m1.Hard},
					{"soft i2t", m2.SoftI2T, m1.SoftI2T}, {"gradient norm", m2.GradNorm, m1.GradNorm}} {
					got, want := q[1].(float64), q[2].(float64)
					if math.IsNaN(want) && math.IsNaN(got) {
						continue
					}
					if !relClose(got, want, 1e-5) {
						t.Errorf("iteration %d: %s: 2 devices %.9g, 1 device %.9g", k, q[0], got, want)
					}
				}
				if math.IsNaN(m1.Hard) {
					t.Errorf("iteration %d: no hard loss computed", k)
				}
			}
			s1, err := one.State()
			if err != nil {
				t.Fatal(err)
			}
			s2, err := two.State()
			if err != nil {
				t.Fatal(err)
			}
			checkWeights(t, "weights after 2 steps, 2 devices vs 1", s2.Weights, s1.Weights, sumLR)
		})
	}
}

// TestDataParallelErrors: configurations the step cannot run fail with an
// error (never a panic), among them the SPMD strategy on the Go backend.
func TestDataParallelErrors(t *testing.T) {
	ctx := context.Background()
	c, _ := loadStepCase(t, "vit")
	st, err := NewStudent(c.arch, c.initial)
	if err != nil {
		t.Fatal(err)
	}
	h := DefaultHyper(c.arch)
	b := len(c.tokens)
	if isGoBackend(st.Backend()) {
		if _, err := NewDataParallelStep(st, c.teacher, b, 2, h); err == nil || !strings.Contains(err.Error(), "Go backend") {
			t.Errorf("2 devices on the Go backend: %v", err)
		}
		// GoMLX's SPMD strategy itself is not implemented by the Go
		// backend: forcing it gives an error from the first step.
		d, err := newDataParallelStep(st, c.teacher, b, 1, h, dpSPMD)
		if err != nil {
			t.Fatal(err)
		}
		_, err = d.Run(ctx, c.images, c.tokens, 1e-4)
		if err == nil {
			t.Error("SPMD on the Go backend ran")
		} else {
			t.Logf("SPMD on the Go backend: %v", firstLine(err.Error()))
		}
	}
	if _, err := newDataParallelStep(st, c.teacher, b, 3, h, dpEmulated); err == nil {
		t.Error("batch 8 over 3 devices accepted")
	}
	if _, err := newDataParallelStep(st, c.teacher, b, 0, h, dpEmulated); err == nil {
		t.Error("0 devices accepted")
	}
	rc, _ := loadStepCase(t, "rn")
	rst, err := NewStudent(rc.arch, rc.initial)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newDataParallelStep(rst, rc.teacher, b, 2, DefaultHyper(rc.arch), dpEmulated); err == nil || !strings.Contains(err.Error(), "ResNet") {
		t.Errorf("ResNet over 2 devices: %v", err)
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
