package train

import (
	"context"
	"testing"
)

// BenchmarkAutoStep compares a masked (auto-inheritance) training step with
// a plain one on the same model, TinyCLIP-ViT-8M-16-Text-3M at batch 8
// (224 px, CLIP loss, no teacher, so that only the student's cost is
// timed): "manual" is Step.Run, "masked" AutoStep.Run (gate samples,
// masked towers, Lagrangian, fourth AdamW, clamp). It reports wall and CPU
// ms per step and samples/s.
func BenchmarkAutoStep(b *testing.B) {
	ctx := context.Background()
	arch := benchArch(b, "TinyCLIP-ViT-8M-16-Text-3M")
	w, err := Init(arch, 1)
	if err != nil {
		b.Fatal(err)
	}
	img, tok := randomBatch(8, arch.Vision.ImageSize)
	report := func(b *testing.B, cpu0 int64) {
		per := b.Elapsed().Seconds() / float64(b.N)
		b.ReportMetric(per*1e3, "ms/step")
		b.ReportMetric(float64(len(tok))/per, "samples/s")
		b.ReportMetric(float64(cpuTime().Nanoseconds()-cpu0)/1e6/float64(b.N), "cpu-ms/step")
		b.ReportMetric(0, "ns/op")
	}
	b.Run("manual", func(b *testing.B) {
		st, err := NewStudent(arch, w)
		if err != nil {
			b.Fatal(err)
		}
		s, err := NewStep(st, nil, len(tok), DefaultHyper(arch))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Run(ctx, img, tok, 1e-4); err != nil { // compiles
			b.Fatal(err)
		}
		cpu0 := cpuTime().Nanoseconds()
		b.ResetTimer()
		for b.Loop() {
			if _, err := s.Run(ctx, img, tok, 1e-4); err != nil {
				b.Fatal(err)
			}
		}
		report(b, cpu0)
	})
	b.Run("masked", func(b *testing.B) {
		a, err := NewAutoStudent(arch, w, nil)
		if err != nil {
			b.Fatal(err)
		}
		s, err := NewAutoStep(a, nil, len(tok), DefaultHyper(arch), DefaultL0Config(0, 0.5, 1000, 1<<30), SeededNoise{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Run(ctx, img, tok, 0, 1e-4); err != nil { // compiles
			b.Fatal(err)
		}
		cpu0 := cpuTime().Nanoseconds()
		b.ResetTimer()
		i := int64(1)
		for b.Loop() {
			if _, err := s.Run(ctx, img, tok, i, 1e-4); err != nil {
				b.Fatal(err)
			}
			i++
		}
		report(b, cpu0)
	})
}
