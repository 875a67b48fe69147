package engine

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/tinyclip-go/tinyclip/internal/config"
	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

// TestFusedAttentionIdentical checks that the fused QKV product and
// attention loop (fusedAttention) gives bit-identical features to the
// separate product and attention loops, on every kernel and precision, for
// towers of one and several sequences of up to fuseMaxRows rows (ViT-40M/32
// and ViT-8M/16 shapes, two layers each).
func TestFusedAttentionIdentical(t *testing.T) {
	archs := []struct {
		name string
		arch config.Arch
	}{
		{"p32w512", config.Arch{EmbedDim: 64,
			Vision: config.VisionArch{Kind: config.KindViT, ImageSize: 224, Embed: 64, PatchSize: 32,
				Transformer: regular(512, 64, 2, 2048, config.GELU)},
			Text: text(64, regular(512, 64, 2, 2048, config.GELU))}},
		{"p16w256", config.Arch{EmbedDim: 64,
			Vision: config.VisionArch{Kind: config.KindViT, ImageSize: 224, Embed: 64, PatchSize: 16,
				Transformer: regular(256, 64, 2, 1024, config.QuickGELU)},
			Text: text(64, regular(256, 64, 2, 1024, config.QuickGELU))}},
	}
	tokens := [][]int{
		{49406, 320, 1125, 539, 320, 2368, 269, 49407},
		{49406, 320, 1125, 539, 320, 1929, 269, 49407},
		{49406, 320, 49407},
	}
	pixels := randomPixels(4, 224)
	ctx := context.Background()
	defer func() { fuseAttention = true }()
	for _, a := range archs {
		ts := randomTensors(&a.arch, 3)
		for _, kern := range kernels() {
			for _, prec := range precisions() {
				for _, threads := range []int{2, 3} {
					for _, n := range []int{1, 4} {
						name := fmt.Sprintf("%s/%s/%s/threads=%d/n=%d", a.name, kern.name, prec, threads, n)
						if kern == genericKernel && (a.name != "p32w512" || n > 1) {
							continue // slow; one shape suffices for the generic kernel
						}
						m, err := Build(&a.arch, ts, Options{Threads: threads, Precision: prec, kernel: kern})
						if err != nil {
							t.Fatal(err)
						}
						sameWithAndWithout(t, name+" (fused attention)", &fuseAttention, func() ([]float32, error) {
							img, err := m.EncodeImages(ctx, pixels[:n*3*224*224], n)
							if err != nil {
								return nil, err
							}
							txt, err := m.EncodeTexts(ctx, tokens[:min(n, len(tokens))])
							return append(img, txt...), err
						})
					}
				}
			}
		}
	}
}

// TestSplitQueriesIdentical checks that attention split into query blocks
// per head (a 197-token ViT image with few heads per thread) gives
// bit-identical features to one task per head.
func TestSplitQueriesIdentical(t *testing.T) {
	arch := config.Arch{EmbedDim: 32,
		Vision: config.VisionArch{Kind: config.KindViT, ImageSize: 224, Embed: 32, PatchSize: 16,
			Transformer: regular(128, 64, 2, 256, config.GELU)},
		Text: text(32, regular(64, 64, 1, 128, config.GELU))}
	ts := randomTensors(&arch, 5)
	pixels := randomPixels(1, 224)
	ctx := context.Background()
	defer func() { splitQueries = true }()
	for _, kern := range kernels() {
		for _, prec := range precisions() {
			m, err := Build(&arch, ts, Options{Threads: 2, Precision: prec, kernel: kern})
			if err != nil {
				t.Fatal(err)
			}
			sameWithAndWithout(t, fmt.Sprintf("%s/%s (queries split)", kern.name, prec), &splitQueries, func() ([]float32, error) {
				return m.EncodeImages(ctx, pixels, 1)
			})
		}
	}
}

// TestResNetChain checks that ResNet blocks run as one loop per block at
// batch 1 (bottleneck.chain: conv3 and the next block's conv1 inside the
// tasks of conv2) give the features of separate loops, at thread counts
// where conv2 splits rows (the tasks chain) and where it splits channels
// (the fallback). Only kernels with an implicit-convolution variant
// (AVX-512) chain; the others run as before and must match too.
func TestResNetChain(t *testing.T) {
	arch := config.Arch{EmbedDim: 32,
		Vision: config.VisionArch{Kind: config.KindResNet, ImageSize: 96, Embed: 32,
			Layers: [4]int{2, 2, 3, 2}, Width: 16, PoolHeads: 8, PoolHeadDim: 64},
		Text: text(32, regular(64, 32, 1, 128, config.GELU))}
	ts := randomTensors(&arch, 5)
	// Larger conv3 and conv1 weights than randomTensors gives, so that
	// the features depend on every block's products (with its scale the
	// shortcut carries nearly all of them).
	for name, tt := range ts {
		if strings.HasSuffix(name, "conv3.weight") || strings.HasSuffix(name, "conv1.weight") {
			v, _ := tt.Float32()
			for i := range v {
				v[i] *= 8
			}
			ts[name] = tensor.FromFloat32(name, tt.Shape, v)
		}
	}
	pixels := randomPixels(2, 96)
	ctx := context.Background()
	defer func() { chainBlocks = true }()
	for _, kern := range kernels() {
		for _, threads := range []int{1, 2, 3} {
			m, err := Build(&arch, ts, Options{Threads: threads, kernel: kern})
			if err != nil {
				t.Fatal(err)
			}
			var got [2][]float32
			for i, chain := range []bool{false, true} {
				chainBlocks = chain
				for j := range 2 { // one image at a time: the chained path
					f, err := m.EncodeImages(ctx, pixels[j*3*96*96:(j+1)*3*96*96], 1)
					if err != nil {
						t.Fatal(err)
					}
					got[i] = append(got[i], f...)
				}
			}
			if d := relErr(got[1], got[0], 32); d > 1e-6 {
				t.Errorf("%s/threads=%d: chained vs separate loops: relative difference %.3g", kern.name, threads, d)
			}
		}
	}
}

// TestRowTailIdentical checks that running the output projection, LN₂ and
// the MLP of a block as one loop over row blocks (rowTail: a 197-token
// image at several threads) gives bit-identical features to a loop per
// product, on every kernel and precision, with an odd MLP width too.
func TestRowTailIdentical(t *testing.T) {
	archs := []config.Arch{
		{EmbedDim: 32,
			Vision: config.VisionArch{Kind: config.KindViT, ImageSize: 224, Embed: 32, PatchSize: 16,
				Transformer: regular(128, 64, 2, 512, config.GELU)},
			Text: text(32, regular(64, 64, 1, 128, config.GELU))},
		{EmbedDim: 32,
			Vision: config.VisionArch{Kind: config.KindViT, ImageSize: 224, Embed: 32, PatchSize: 16,
				Transformer: regular(96, 32, 2, 333, config.QuickGELU)},
			Text: text(32, regular(64, 64, 1, 128, config.GELU))},
	}
	pixels := randomPixels(1, 224)
	ctx := context.Background()
	defer func() { rowTails = true }()
	for ai, arch := range archs {
		ts := randomTensors(&arch, 6)
		for _, kern := range kernels() {
			for _, prec := range precisions() {
				for _, threads := range []int{2, 3} {
					m, err := Build(&arch, ts, Options{Threads: threads, Precision: prec, kernel: kern})
					if err != nil {
						t.Fatal(err)
					}
					name := fmt.Sprintf("arch %d/%s/%s/threads=%d (row tail)", ai, kern.name, prec, threads)
					sameWithAndWithout(t, name, &rowTails, func() ([]float32, error) {
						return m.EncodeImages(ctx, pixels, 1)
					})
				}
			}
		}
	}
}

// sameWithAndWithout runs encode with *flag off and then on (leaving it
// on) and reports the first value whose bits differ, naming the case.
func sameWithAndWithout(t *testing.T, name string, flag *bool, encode func() ([]float32, error)) {
	t.Helper()
	var got [2][]float32
	for i, on := range []bool{false, true} {
		*flag = on
		f, err := encode()
		if err != nil {
			t.Fatal(err)
		}
		got[i] = f
	}
	if len(got[0]) != len(got[1]) {
		t.Fatalf("%s: %d values off, %d on", name, len(got[0]), len(got[1]))
	}
	for j := range got[0] {
		if math.Float32bits(got[0][j]) != math.Float32bits(got[1][j]) {
			t.Errorf("%s: value %d: %v on, %v off", name, j, got[1][j], got[0][j])
			return
		}
	}
}
