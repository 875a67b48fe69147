package engine

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

func TestToBF16(t *testing.T) {
	for _, tt := range []struct {
		in   float32
		want uint16
	}{
		{1, 0x3F80}, {-2, 0xC000}, {0, 0}, {float32(math.Inf(1)), 0x7F80},
		{math.Float32frombits(0x3F808000), 0x3F80}, // tie, even stays
		{math.Float32frombits(0x3F818000), 0x3F82}, // tie, odd rounds up
		{math.Float32frombits(0x3F808001), 0x3F81}, // above the tie
	} {
		if got := toBF16(tt.in); got != tt.want {
			t.Errorf("toBF16(%#x) = %#x, want %#x", math.Float32bits(tt.in), got, tt.want)
		}
	}
	if v := fromBF16(toBF16(float32(math.NaN()))); v == v {
		t.Error("NaN did not stay NaN")
	}
	// The vector conversion agrees with the scalar one, tails included.
	r := rand.New(rand.NewPCG(3, 3))
	for _, n := range []int{1, 15, 16, 17, 100} {
		src := randSlice(r, n)
		got := make([]uint16, n+1)
		got[n] = 0xABCD
		bf16Convert(got[:n], src)
		for i, v := range src {
			if got[i] != toBF16(v) {
				t.Fatalf("n=%d: element %d: %#x, want %#x", n, i, got[i], toBF16(v))
			}
		}
		if got[n] != 0xABCD {
			t.Fatalf("n=%d: wrote past the end", n)
		}
	}
}

// TestSGEMMBF16 checks the BF16 GEMM against a float64 product of the
// BF16-rounded operands.
func TestSGEMMBF16(t *testing.T) {
	kern := defaultKernel()
	if kern.bf16 == nil {
		t.Logf("kernel %s has no BF16 variant on this CPU: Build falls back to FP32 (tested by TestPrecisionFallback)", kern.name)
		return
	}
	r := rand.New(rand.NewPCG(11, 12))
	for _, sz := range []struct{ m, n, k int }{
		{1, 1, 1}, {7, 13, 5}, {12, 32, 2}, {97, 129, 257}, {197, 96, 64}, {130, 260, 513}, {25, 44, 1100},
		{13, 22, 71}, {30, 88, 40}, {50, 56, 300},
		{26, 33, 1024}, {30, 40, 2047}, // A rows padded past k (padStride16), odd k
		{250, 40, 64}, // two equal row blocks on one thread (serialRows)
	} {
		for _, threads := range []int{1, 3} {
			t.Run(fmt.Sprintf("%dx%dx%d/threads=%d", sz.m, sz.n, sz.k, threads), func(t *testing.T) {
				m, n, k := sz.m, sz.n, sz.k
				lda, ldc := k+3, n+2
				a := randSlice(r, m*lda)
				s := randSlice(r, n*k)
				pb := packBT(kern, make([]float32, packedLen(kern, k, n)), s, k, n, k)
				pb.toBF16Packed()
				round := func(v float32) float64 { return float64(fromBF16(toBF16(v))) }
				want := make([]float64, m*n)
				bias := randSlice(r, n)
				c := randSlice(r, m*ldc)
				orig := append([]float32(nil), c...)
				for i := range m {
					for j := range n {
						var sum float64
						for kk := range k {
							sum += round(a[i*lda+kk]) * round(s[j*k+kk])
						}
						want[i*n+j] = sum + float64(orig[i*ldc+j]) + float64(bias[j])
					}
				}
				sgemm(threads, m, a, lda, pb, c, ldc, epilogue{acc: true, bias: bias})
				got := make([]float32, m*n)
				for i := range m {
					for j := range n {
						got[i*n+j] = c[i*ldc+j]
					}
					for j := n; j < ldc; j++ {
						if c[i*ldc+j] != orig[i*ldc+j] {
							t.Fatalf("wrote outside C at row %d column %d", i, j)
						}
					}
				}
				if d := maxRelDiff(got, want); d > 1e-5 {
					t.Errorf("C += A·B + bias: max relative difference %.3g", d)
				}
			})
		}
	}
}

// cosines returns the cosine similarity of each pair of rows.
func cosines(a, b []float32, width int) []float64 {
	var out []float64
	for r := 0; r*width < len(a); r++ {
		x, y := a[r*width:(r+1)*width], b[r*width:(r+1)*width]
		var xy, xx, yy float64
		for i := range x {
			xy += float64(x[i]) * float64(y[i])
			xx += float64(x[i]) * float64(x[i])
			yy += float64(y[i]) * float64(y[i])
		}
		out = append(out, xy/math.Sqrt(xx*yy))
	}
	return out
}

// bf16CosineFloor is the shipping bar of reduced precision (issue 3): the
// embedding cosine against FP32.
const bf16CosineFloor = 0.999

// checkBF16 builds the model in FP32 and BF16 and checks the cosine of every
// image and text embedding.
func checkBF16(t *testing.T, name string, fp, bf *Model, pixels []float32, n int, tokens [][]int) {
	t.Helper()
	if bf.Precision() != BF16 {
		t.Fatalf("%s: model precision %s, want bf16", name, bf.Precision())
	}
	ctx := context.Background()
	e := fp.EmbedDim()
	for _, kind := range []string{"image", "text"} {
		var want, got []float32
		var err1, err2 error
		if kind == "image" {
			want, err1 = fp.EncodeImages(ctx, pixels, n)
			got, err2 = bf.EncodeImages(ctx, pixels, n)
		} else {
			want, err1 = fp.EncodeTexts(ctx, tokens)
			got, err2 = bf.EncodeTexts(ctx, tokens)
		}
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		worst := 1.0
		for _, c := range cosines(got, want, e) {
			worst = math.Min(worst, c)
		}
		t.Logf("%s %s: min cosine bf16 vs fp32 %.6f", name, kind, worst)
		if worst < bf16CosineFloor {
			t.Errorf("%s %s: min cosine bf16 vs fp32 %.6f < %g", name, kind, worst, bf16CosineFloor)
		}
	}
}

func TestBF16Fixtures(t *testing.T) {
	if defaultKernel().bf16 == nil {
		t.Log("no AVX512-BF16 on this CPU: nothing to compare (see TestPrecisionFallback)")
		return
	}
	in := loadInputs(t)
	for _, fm := range fixtureModels {
		t.Run(fm.name, func(t *testing.T) {
			fp := buildFixture(t, fm.name, Options{})
			bf := buildFixture(t, fm.name, Options{Precision: BF16})
			checkBF16(t, fm.name, fp, bf, in.pixels, in.n, in.tokens)
		})
	}
}

// TestBF16ZooSize checks the cosine on a zoo-sized tower (ViT-8M/16 and
// Text-3M with random weights), where rounding errors have ten layers of
// width 256 to grow through.
func TestBF16ZooSize(t *testing.T) {
	if testing.Short() {
		t.Skip("zoo-sized model: skipped with -short")
	}
	if defaultKernel().bf16 == nil {
		t.Log("no AVX512-BF16 on this CPU")
		return
	}
	a := vit8M16
	ts := randomTensors(&a, 5)
	fp, err := Build(&a, ts, Options{})
	if err != nil {
		t.Fatal(err)
	}
	bf, err := Build(&a, ts, Options{Precision: BF16})
	if err != nil {
		t.Fatal(err)
	}
	tokens := [][]int{{49406, 320, 1125, 539, 320, 2368, 269, 49407}, {49406, 320, 1125, 539, 320, 1929, 269, 49407}}
	checkBF16(t, "vit8M16", fp, bf, randomPixels(2, 224), 2, tokens)
}

func TestPrecisionFallback(t *testing.T) {
	f := openTensors(t, "vit-p16")
	defer f.Close()
	arch := fixtureArch(t, "vit-p16")
	m, err := Build(arch, f.Tensors, Options{kernel: genericKernel, Precision: BF16})
	if err != nil {
		t.Fatal(err)
	}
	if m.Precision() != FP32 {
		t.Errorf("generic kernel with BF16 requested: precision %s, want the fp32 fallback", m.Precision())
	}
	if _, err := Build(arch, f.Tensors, Options{Precision: 7}); err == nil {
		t.Error("Build accepted precision 7")
	}
}

// TestSGEMMBF16SplitK checks that the parts of a BF16 product split in K
// pairs (sgemmBlockBF16K), summed, give the product of the BF16-rounded
// operands.
func TestSGEMMBF16SplitK(t *testing.T) {
	kern := defaultKernel()
	if kern.bf16 == nil {
		t.Logf("kernel %s has no BF16 variant on this CPU", kern.name)
		return
	}
	r := rand.New(rand.NewPCG(13, 14))
	for _, sz := range []struct{ m, n, k int }{{1, 70, 100}, {9, 512, 256}, {13, 40, 33}} {
		m, n, k := sz.m, sz.n, sz.k
		a := randSlice(r, m*k)
		s := randSlice(r, n*k)
		pb := packBT(kern, make([]float32, packedLen(kern, k, n)), s, k, n, k)
		pb.toBF16Packed()
		kp := padStride16(k)
		mr := kern.mr
		as, ab := bf16Scratch((m + mr - 1) / mr * mr * kp)
		bf16Rows(ab, kp, a, k, m, k)
		round := func(v float32) float64 { return float64(fromBF16(toBF16(v))) }
		want := make([]float64, m*n)
		for i := range m {
			for j := range n {
				for kk := range k {
					want[i*n+j] += round(a[i*k+kk]) * round(s[j*k+kk])
				}
			}
		}
		panels, _ := panelsOf(kern, n)
		pairs := (k + 1) / 2
		got := make([]float32, m*n)
		part := make([]float32, m*n)
		cuts := []int{0, pairs / 3, pairs / 3, pairs/2 + 1, pairs}
		for c := range len(cuts) - 1 {
			for i := range part {
				part[i] = float32(math.NaN())
			}
			sgemmBlockBF16K(ab, kp, pb, part, n, 0, m, 0, panels, cuts[c], cuts[c+1], &epilogue{})
			for i := range got {
				got[i] += part[i]
			}
		}
		putScratch(as)
		if d := maxRelDiff(got, want); d > 1e-5 {
			t.Errorf("%dx%dx%d: parts sum differs from the product by %.3g", m, n, k, d)
		}
	}
}
