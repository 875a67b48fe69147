package train

import (
	"context"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/tinyclip-go/tinyclip/internal/config"
	"github.com/tinyclip-go/tinyclip/internal/engine"
)

// benchArch resolves a registry model.
func benchArch(b *testing.B, name string) *config.Arch {
	b.Helper()
	info, ok := config.Lookup(name)
	if !ok {
		b.Fatalf("%s not in the registry", name)
	}
	a, err := config.FromConfig(info.Config)
	if err != nil {
		b.Fatal(err)
	}
	return a
}

// randomBatch returns n normal-distributed images of side sz and caption
// rows of 9 tokens (SOT, 7 words, EOT), the length of "a photo of a {class}."
func randomBatch(n, sz int) ([]float32, [][]int) {
	rng := rand.New(rand.NewPCG(3, 4))
	img := make([]float32, n*3*sz*sz)
	for i := range img {
		img[i] = float32(rng.NormFloat64())
	}
	tok := make([][]int, n)
	for i := range tok {
		row := []int{49406}
		for range 7 {
			row = append(row, 1+rng.IntN(49000))
		}
		tok[i] = append(row, 49407)
	}
	return img, tok
}

// BenchmarkStep times whole distillation steps (teacher forward on the
// engine, student forward/backward/clip/AdamW in GoMLX) after a warm-up step
// that compiles the graph: the fixture's ViT case at batch 8, and
// TinyCLIP-ViT-8M-16-Text-3M distilled from a random TinyCLIP-ViT-40M-32-Text-19M
// at batch 32 (image size 224). It reports ms/step, samples/s, and the
// share of the teacher. Build with GOEXPERIMENT=simd for GoMLX's SIMD
// kernels.
func BenchmarkStep(b *testing.B) {
	ctx := context.Background()
	b.Run("fixture-vit/b8", func(b *testing.B) {
		c, _ := loadStepCase(b, "vit")
		st, err := NewStudent(c.arch, c.initial)
		if err != nil {
			b.Fatal(err)
		}
		s, err := NewStep(st, c.teacher, len(c.tokens), DefaultHyper(c.arch))
		if err != nil {
			b.Fatal(err)
		}
		benchSteps(ctx, b, s, c.teacher, c.images, c.tokens)
	})
	b.Run("ViT-8M-16<ViT-40M-32/b32", func(b *testing.B) {
		sa := benchArch(b, "TinyCLIP-ViT-8M-16-Text-3M")
		ta := benchArch(b, "TinyCLIP-ViT-40M-32-Text-19M")
		sw, err := Init(sa, 1)
		if err != nil {
			b.Fatal(err)
		}
		tw, err := Init(ta, 2)
		if err != nil {
			b.Fatal(err)
		}
		tm, err := engine.Build(ta, tw, engine.Options{})
		if err != nil {
			b.Fatal(err)
		}
		teacher := NewEngineTeacher(tm)
		st, err := NewStudent(sa, sw)
		if err != nil {
			b.Fatal(err)
		}
		s, err := NewStep(st, teacher, 32, DefaultHyper(sa))
		if err != nil {
			b.Fatal(err)
		}
		img, tok := randomBatch(32, 224)
		benchSteps(ctx, b, s, teacher, img, tok)
	})
}

func benchSteps(ctx context.Context, b *testing.B, s *Step, teacher Teacher, img []float32, tok [][]int) {
	b.Helper()
	if _, err := s.Run(ctx, img, tok, 1e-4); err != nil { // compiles
		b.Fatal(err)
	}
	var teacherTime time.Duration
	cpu0 := cpuTime()
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		if _, _, err := teacherFeatures(ctx, teacher, img, tok, len(tok)); err != nil {
			b.Fatal(err)
		}
		teacherTime += time.Since(t0)
		if _, err := s.Run(ctx, img, tok, 1e-4); err != nil {
			b.Fatal(err)
		}
	}
	cpu := cpuTime() - cpu0
	// The loop ran the teacher twice per step (once above, once inside Run):
	// subtract one teacher pass from the step time.
	total := b.Elapsed() - teacherTime
	per := total.Seconds() / float64(b.N)
	b.ReportMetric(per*1e3, "ms/step")
	b.ReportMetric(float64(len(tok))/per, "samples/s")
	b.ReportMetric(teacherTime.Seconds()/float64(b.N)*1e3, "teacher-ms")
	b.ReportMetric(cpu.Seconds()/float64(b.N)*1e3, "cpu-ms/iter")
	b.ReportMetric(0, "ns/op")
}

// cpuTime is the process's user+system CPU time (a load-independent
// measure to compare variants on a shared machine).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkStudentStep times the student part of a step alone (CLIP loss,
// no teacher) for TinyCLIP-ViT-8M-16-Text-3M at batch 8, reporting CPU time
// per step as well as wall time.
func BenchmarkStudentStep(b *testing.B) {
	ctx := context.Background()
	sa := benchArch(b, "TinyCLIP-ViT-8M-16-Text-3M")
	sw, err := Init(sa, 1)
	if err != nil {
		b.Fatal(err)
	}
	st, err := NewStudent(sa, sw)
	if err != nil {
		b.Fatal(err)
	}
	s, err := NewStep(st, nil, 8, DefaultHyper(sa))
	if err != nil {
		b.Fatal(err)
	}
	img, tok := randomBatch(8, 224)
	if _, err := s.Run(ctx, img, tok, 1e-4); err != nil {
		b.Fatal(err)
	}
	cpu0 := cpuTime()
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.Run(ctx, img, tok, 1e-4); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N)*1e3, "ms/step")
	b.ReportMetric((cpuTime()-cpu0).Seconds()/float64(b.N)*1e3, "cpu-ms/step")
	b.ReportMetric(0, "ns/op")
}
