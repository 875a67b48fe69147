package engine

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

func randSlice(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.NormFloat64())
	}
	return s
}

// maxRelDiff returns max_i |got−want| / max(1, max_i |want|).
func maxRelDiff(got []float32, want []float64) float64 {
	scale, diff := 1.0, 0.0
	for i, w := range want {
		scale = math.Max(scale, math.Abs(w))
		diff = math.Max(diff, math.Abs(float64(got[i])-w))
	}
	return diff / scale
}

// gemmRef computes A·B in float64; A is m×k (stride lda), B is k×n
// (element (kk, j) at b[kk*ldbK + j*ldbN]).
func gemmRef(m, n, k int, a []float32, lda int, b []float32, ldbK, ldbN int) []float64 {
	c := make([]float64, m*n)
	for i := range m {
		for j := range n {
			var s float64
			for kk := range k {
				s += float64(a[i*lda+kk]) * float64(b[kk*ldbK+j*ldbN])
			}
			c[i*n+j] = s
		}
	}
	return c
}

func TestSGEMM(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	sizes := []struct{ m, n, k int }{
		{1, 1, 1}, {7, 13, 5}, {2, 4, 3}, {3, 5, 0}, {97, 129, 257}, {50, 3, 600},
		{197, 96, 64}, {130, 260, 513}, {1, 700, 40}, {301, 17, 1100},
		{13, 22, 70}, {30, 88, 33}, {25, 56, 300}, // 24-wide last panels
		{250, 40, 64}, // two equal row blocks on one thread (serialRows)
	}
	for _, kern := range kernels() {
		for _, sz := range sizes {
			for _, threads := range []int{1, 3} {
				for _, trans := range []bool{false, true} {
					name := fmt.Sprintf("%s/%dx%dx%d/threads=%d/transB=%v", kern.name, sz.m, sz.n, sz.k, threads, trans)
					t.Run(name, func(t *testing.T) {
						m, n, k := sz.m, sz.n, sz.k
						lda, ldc := k+3, n+2
						a := randSlice(r, m*lda)
						var pb *packedB
						var want []float64
						if trans { // B = Sᵀ, S n×k with stride k+1
							s := randSlice(r, n*(k+1))
							pb = packBT(kern, make([]float32, packedLen(kern, k, n)), s, k+1, n, k)
							want = gemmRef(m, n, k, a, lda, s, 1, k+1)
						} else { // B k×n with stride n+1
							s := randSlice(r, k*(n+1))
							pb = packBN(kern, make([]float32, packedLen(kern, k, n)), s, n+1, k, n)
							want = gemmRef(m, n, k, a, lda, s, n+1, 1)
						}
						c := randSlice(r, m*ldc)
						orig := append([]float32(nil), c...)
						bias := randSlice(r, n)
						// Overwrite with bias and ReLU.
						sgemm(threads, m, a, lda, pb, c, ldc, epilogue{bias: bias, act: actReLU})
						got := make([]float32, m*n)
						exp := make([]float64, m*n)
						for i := range m {
							for j := range n {
								got[i*n+j] = c[i*ldc+j]
								exp[i*n+j] = math.Max(want[i*n+j]+float64(bias[j]), 0)
							}
							for j := n; j < ldc; j++ {
								if c[i*ldc+j] != orig[i*ldc+j] {
									t.Fatalf("wrote outside C at row %d column %d", i, j)
								}
							}
						}
						if d := maxRelDiff(got, exp); d > 1e-5 {
							t.Errorf("C = relu(A·B + bias): max relative difference %.3g", d)
						}
						// Accumulate.
						copy(c, orig)
						sgemm(threads, m, a, lda, pb, c, ldc, epilogue{acc: true})
						for i := range m {
							for j := range n {
								got[i*n+j] = c[i*ldc+j]
								exp[i*n+j] = float64(orig[i*ldc+j]) + want[i*n+j]
							}
						}
						if d := maxRelDiff(got, exp); d > 1e-5 {
							t.Errorf("C += A·B: max relative difference %.3g", d)
						}
					})
				}
			}
		}
	}
}

func TestParallelFor(t *testing.T) {
	for _, threads := range []int{1, 2, 5} {
		for _, tasks := range []int{0, 1, 3, 100} {
			hits := make([]int32, tasks)
			parallelFor(threads, tasks, func(i int) { hits[i]++ })
			for i, h := range hits {
				if h != 1 {
					t.Errorf("threads=%d tasks=%d: task %d ran %d times", threads, tasks, i, h)
				}
			}
		}
	}
	// Nested loops must not deadlock.
	var total [4][8]int
	parallelFor(2, 4, func(i int) {
		parallelFor(2, 8, func(j int) { total[i][j]++ })
	})
	for i := range total {
		for j := range total[i] {
			if total[i][j] != 1 {
				t.Fatalf("nested task (%d, %d) ran %d times", i, j, total[i][j])
			}
		}
	}
}

// TestParallelForConcurrent runs loops from several goroutines at once,
// some nested and some with more threads than helpers can serve, so that
// offers queue up, are taken after their loop closed, and loops are
// recycled while helpers still hold them; every task must run exactly once
// and every loop must return (run it with -race). It runs with sleeping
// threads and with polling ones (SetSpinWait).
func TestParallelForConcurrent(t *testing.T) {
	for _, spin := range []time.Duration{0, 50 * time.Microsecond} {
		t.Run(fmt.Sprintf("spin=%v", spin), func(t *testing.T) {
			defer SetSpinWait(SetSpinWait(spin))
			testParallelForConcurrent(t)
		})
	}
}

func testParallelForConcurrent(t *testing.T) {
	var wg sync.WaitGroup
	errs := make(chan string, 16)
	for g := range 6 {
		wg.Go(func() {
			for it := range 300 {
				threads := 1 + (g+it)%4
				tasks := (g*7 + it*13) % 37
				hits := make([]int32, tasks)
				parallelFor(threads, tasks, func(i int) {
					atomic.AddInt32(&hits[i], 1)
					if it%50 == 0 && i < 2 {
						var inner [5]int32
						parallelFor(2, 5, func(j int) { atomic.AddInt32(&inner[j], 1) })
						for j, h := range inner {
							if h != 1 {
								errs <- fmt.Sprintf("nested task %d ran %d times", j, h)
							}
						}
					}
				})
				for i, h := range hits {
					if h != 1 {
						errs <- fmt.Sprintf("goroutine %d loop %d: task %d ran %d times", g, it, i, h)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// TestSoftmaxBF16 checks the fused softmax-to-BF16 routine against softmax
// followed by bf16Convert, bit for bit (both round the same float32
// probabilities), tails and lengths of attention rows included.
func TestSoftmaxBF16(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	for _, kern := range kernels() {
		for _, n := range []int{1, 2, 15, 16, 17, 50, 77, 197} {
			x := randSlice(r, n)
			for i := range x {
				x[i] *= 4
			}
			want := append([]float32(nil), x...)
			kern.softmax(want)
			w16 := make([]uint16, n)
			bf16Convert(w16, want)
			got := make([]uint16, n+1)
			got[n] = 0xBEEF
			kern.softmaxBF16(got[:n], append([]float32(nil), x...))
			for i := range n {
				if got[i] != w16[i] {
					t.Fatalf("%s n=%d: element %d: %#x, want %#x", kern.name, n, i, got[i], w16[i])
				}
			}
			if got[n] != 0xBEEF {
				t.Fatalf("%s n=%d: wrote past the end", kern.name, n)
			}
		}
	}
}

func TestLayerNorm(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, w := range []int{1, 7, 64, 300} {
		rows := 5
		x := randSlice(r, rows*w)
		for i := range x {
			x[i] = x[i]*3 + 2
		}
		g, b := randSlice(r, w), randSlice(r, w)
		got := make([]float32, len(x))
		layerNorm(got, x, rows, w, g, b)
		want := make([]float64, len(x))
		for rr := range rows {
			row := x[rr*w : (rr+1)*w]
			var mean, v float64
			for _, e := range row {
				mean += float64(e)
			}
			mean /= float64(w)
			for _, e := range row {
				v += (float64(e) - mean) * (float64(e) - mean)
			}
			v /= float64(w)
			for i, e := range row {
				want[rr*w+i] = (float64(e)-mean)/math.Sqrt(v+1e-5)*float64(g[i]) + float64(b[i])
			}
		}
		if d := maxRelDiff(got, want); d > 1e-6 {
			t.Errorf("width %d: max relative difference %.3g", w, d)
		}
		// In place.
		layerNorm(x, x, rows, w, g, b)
		for i := range x {
			if x[i] != got[i] {
				t.Fatalf("width %d: in-place result differs at %d", w, i)
			}
		}
	}
}

func TestActivations(t *testing.T) {
	xs := []float32{-10, -5.5, -3, -1.5, -1, -0.5, -1e-3, 0, 1e-3, 0.25, 0.5, 1, 1.7, 3, 6, 10, 40}
	tests := []struct {
		act  activation
		name string
		ref  func(x float64) float64
	}{
		{actGELU, "gelu", func(x float64) float64 { return 0.5 * x * (1 + math.Erf(x/math.Sqrt2)) }},
		{actQuickGELU, "quick_gelu", func(x float64) float64 { return x / (1 + math.Exp(-1.702*x)) }},
		{actGELUTanh, "gelu_tanh", func(x float64) float64 {
			return 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x)))
		}},
		{actReLU, "relu", func(x float64) float64 { return math.Max(x, 0) }},
	}
	for _, tt := range tests {
		got := append([]float32(nil), xs...)
		tt.act.apply(got)
		for i, x := range xs {
			want := tt.ref(float64(x))
			if d := math.Abs(float64(got[i]) - want); d > 1e-7*math.Max(1, math.Abs(want)) {
				t.Errorf("%s(%v) = %v, want %v", tt.name, x, got[i], want)
			}
		}
	}
}

func TestExp64(t *testing.T) {
	worst := 0.0
	for x := -745.0; x <= 709; x += 0.0137 {
		got, want := exp64(x), math.Exp(x)
		if want > 1e-300 {
			worst = math.Max(worst, math.Abs(got-want)/want)
		} else if math.Abs(got-want) > 1e-300 {
			t.Fatalf("exp64(%v) = %v, want %v", x, got, want)
		}
	}
	if worst > 1e-9 {
		t.Errorf("max relative error %.3g", worst)
	}
	t.Logf("max relative error %.3g", worst)
	if exp64(-800) != 0 || !math.IsInf(exp64(800), 1) || !math.IsNaN(exp64(math.NaN())) {
		t.Error("wrong special cases")
	}
}

// TestGELU checks the table-based GELU against 0.5·x·(1+erf(x/√2)) in
// float64 on a dense grid: within one float32 ulp of the reference, or
// 1e-9·|x| for the tiny outputs of negative inputs.
func TestGELU(t *testing.T) {
	worstUlp, worstAbs := 0.0, 0.0
	check := func(x float32) {
		v := float64(x)
		want := 0.5 * v * math.Erfc(-v/math.Sqrt2)
		got := float64(gelu(x))
		w32 := float32(want)
		ulp := float64(math.Nextafter32(float32(math.Abs(float64(w32))), float32(math.Inf(1)))) - math.Abs(float64(w32))
		d := math.Abs(got - want)
		if d > ulp && d > 1e-9*math.Abs(v) {
			t.Fatalf("gelu(%v) = %v, want %v (error %.3g, ulp %.3g)", x, got, want, d, ulp)
		}
		worstUlp = math.Max(worstUlp, d/ulp)
		if v < -3 {
			worstAbs = math.Max(worstAbs, d)
		}
		// The erf form agrees where it is well conditioned.
		if v > -3 {
			e := 0.5 * v * (1 + math.Erf(v/math.Sqrt2))
			if math.Abs(got-e) > 2*ulp {
				t.Fatalf("gelu(%v) = %v, erf form %v", x, got, e)
			}
		}
	}
	for x := float32(-12); x <= 12; x += 1.0 / 4096 {
		check(x)
	}
	for _, x := range []float32{geluLo, geluHi, -1e-30, 1e-30, 0, 1e-7, -1e-7, 100, -100, 3e38, -3e38} {
		check(x)
	}
	if g := gelu(float32(math.NaN())); g == g {
		t.Errorf("gelu(NaN) = %v", g)
	}
	t.Logf("max error %.3g ulp; max absolute error below x = -3: %.3g", worstUlp, worstAbs)
}

func TestSoftmax(t *testing.T) {
	s := []float32{1, 2, 3, -1e30, 50}
	got := append([]float32(nil), s...)
	softmax(got)
	var sum float64
	for _, v := range s {
		sum += math.Exp(float64(v) - 50)
	}
	for i, v := range s {
		want := math.Exp(float64(v)-50) / sum
		if math.Abs(float64(got[i])-want) > 1e-7 {
			t.Errorf("softmax[%d] = %v, want %v", i, got[i], want)
		}
	}
}

// attentionRef is naive multi-head attention over one sequence of n rows of
// qkv (stride ld); queries are scaled here.
func attentionRef(qkv []float32, ld, n, heads, d int, causal bool) []float64 {
	a := heads * d
	out := make([]float64, n*a)
	scale := 1 / math.Sqrt(float64(d))
	for h := range heads {
		for i := range n {
			lim := n
			if causal {
				lim = i + 1
			}
			s := make([]float64, lim)
			m := math.Inf(-1)
			for j := range lim {
				var dot float64
				for c := range d {
					dot += float64(qkv[i*ld+h*d+c]) * scale * float64(qkv[j*ld+a+h*d+c])
				}
				s[j] = dot
				m = math.Max(m, dot)
			}
			var sum float64
			for j := range s {
				s[j] = math.Exp(s[j] - m)
				sum += s[j]
			}
			for j := range s {
				for c := range d {
					out[i*a+h*d+c] += s[j] / sum * float64(qkv[j*ld+2*a+h*d+c])
				}
			}
		}
	}
	return out
}

func TestAttendHead(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, tt := range []struct {
		n, heads, d int
		causal      bool
	}{
		{1, 1, 4, false}, {7, 2, 4, true}, {50, 3, 16, false}, {77, 2, 32, true}, {197, 1, 64, false},
	} {
		t.Run(fmt.Sprintf("n=%d/heads=%d/d=%d/causal=%v", tt.n, tt.heads, tt.d, tt.causal), func(t *testing.T) {
			a := tt.heads * tt.d
			ld := 3*a + 1
			off := 2
			qkv := randSlice(r, (off+tt.n)*ld)
			want := attentionRef(qkv[off*ld:], ld, tt.n, tt.heads, tt.d, tt.causal)
			// The engine expects pre-scaled queries.
			scaled := append([]float32(nil), qkv...)
			s := attnScale(tt.d)
			for i := range tt.n {
				for c := range a {
					scaled[(off+i)*ld+c] *= s
				}
			}
			for _, kern := range kernels() {
				out := make([]float32, tt.n*a)
				for h := range tt.heads {
					attendHead(kern, false, scaled, ld, off, tt.n, a, h, tt.d, 0, tt.n, tt.causal, out, a)
				}
				if d := maxRelDiff(out, want); d > 1e-5 {
					t.Errorf("%s: all queries: max relative difference %.3g", kern.name, d)
				}
				// One query only (the pooled row).
				q := tt.n - 1
				one := make([]float32, a)
				for h := range tt.heads {
					attendHead(kern, false, scaled, ld, off, tt.n, a, h, tt.d, q, q+1, tt.causal, one, a)
				}
				if d := maxRelDiff(one, want[q*a:(q+1)*a]); d > 1e-5 {
					t.Errorf("%s: query %d: max relative difference %.3g", kern.name, q, d)
				}
				if kern.bf16 == nil {
					continue
				}
				// BF16 products: each operand rounded to 8 significant
				// bits (relative error ≤ 2⁻⁹), sums in FP32.
				bf := make([]float32, tt.n*a)
				for h := range tt.heads {
					attendHead(kern, true, scaled, ld, off, tt.n, a, h, tt.d, 0, tt.n, tt.causal, bf, a)
				}
				if d := maxRelDiff(bf, want); d > 2e-2 || d == 0 {
					t.Errorf("%s bf16: max relative difference %.3g, want in (0, 2e-2]", kern.name, d)
				}
				// The pooled row alone gives the same row.
				for h := range tt.heads {
					attendHead(kern, true, scaled, ld, off, tt.n, a, h, tt.d, q, q+1, tt.causal, one, a)
				}
				bfq := make([]float64, a)
				for i, v := range bf[q*a : (q+1)*a] {
					bfq[i] = float64(v)
				}
				if d := maxRelDiff(one, bfq); d > 1e-6 {
					t.Errorf("%s bf16: query %d alone differs from all queries by %.3g", kern.name, q, d)
				}
			}
		})
	}
}

// convRef is a naive convolution of a CHW input with weight [cout, cin, k, k]
// and bias, returning a CHW output.
func convRef(x []float32, cin, h, w int, wt []float32, bias []float32, cout, k, stride, pad int) ([]float64, int, int) {
	oh, ow := (h+2*pad-k)/stride+1, (w+2*pad-k)/stride+1
	out := make([]float64, cout*oh*ow)
	for o := range cout {
		for oy := range oh {
			for ox := range ow {
				s := float64(bias[o])
				for c := range cin {
					for ky := range k {
						for kx := range k {
							iy, ix := oy*stride-pad+ky, ox*stride-pad+kx
							if iy < 0 || iy >= h || ix < 0 || ix >= w {
								continue
							}
							s += float64(x[(c*h+iy)*w+ix]) * float64(wt[((o*cin+c)*k+ky)*k+kx])
						}
					}
				}
				out[(o*oh+oy)*ow+ox] = s
			}
		}
	}
	return out, oh, ow
}

func TestConv(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, tt := range []struct{ cin, cout, h, w, k, stride int }{
		{3, 2, 9, 7, 3, 2}, {2, 5, 8, 8, 3, 1}, {4, 16, 6, 5, 1, 1}, {5, 7, 23, 19, 3, 1}, {3, 4, 17, 17, 3, 2},
		{5, 22, 9, 11, 3, 1}, {3, 88, 6, 7, 3, 1}, {6, 44, 7, 5, 3, 1},
	} {
		for _, kern := range kernels() {
			for threads := 1; threads <= 2; threads++ { // both paths of convLayer.forward
				t.Run(fmt.Sprintf("%v/%s/threads=%d", tt, kern.name, threads), func(t *testing.T) {
					x := randSlice(r, tt.cin*tt.h*tt.w)
					wt := randSlice(r, tt.cout*tt.cin*tt.k*tt.k)
					// BatchNorm parameters, folded by the loader.
					g, beta, mean, vr := randSlice(r, tt.cout), randSlice(r, tt.cout), randSlice(r, tt.cout), randSlice(r, tt.cout)
					for i := range vr {
						vr[i] = vr[i]*vr[i] + 0.1
					}
					pad := tt.k / 2
					want, oh, ow := convRef(x, tt.cin, tt.h, tt.w, wt, make([]float32, tt.cout), tt.cout, tt.k, tt.stride, pad)
					for o := range tt.cout {
						s := float64(g[o]) / math.Sqrt(float64(vr[o])+1e-5)
						for i := range oh * ow {
							want[o*oh*ow+i] = (want[o*oh*ow+i]-float64(mean[o]))*s + float64(beta[o])
						}
					}
					l := &loader{kern: kern, used: map[string]bool{}, tensors: map[string]*tensor.Tensor{
						"c.weight":        tensor.FromFloat32("c.weight", []int{tt.cout, tt.cin, tt.k, tt.k}, wt),
						"bn.weight":       tensor.FromFloat32("bn.weight", []int{tt.cout}, g),
						"bn.bias":         tensor.FromFloat32("bn.bias", []int{tt.cout}, beta),
						"bn.running_mean": tensor.FromFloat32("bn.running_mean", []int{tt.cout}, mean),
						"bn.running_var":  tensor.FromFloat32("bn.running_var", []int{tt.cout}, vr),
					}}
					c := l.conv("c", "bn", tt.cin, tt.cout, tt.k, tt.stride)
					if err := l.checkUnused(); err != nil {
						t.Fatal(err)
					}
					hwc := make([]float32, len(x))
					for ch := range tt.cin {
						for i := range tt.h * tt.w {
							hwc[i*tt.cin+ch] = x[ch*tt.h*tt.w+i]
						}
					}
					out := make([]float32, oh*ow*tt.cout)
					// ReLU as in the ResNet (fused into the AVX-512 kernels).
					for i := range want {
						want[i] = math.Max(want[i], 0)
					}
					gh, gw := c.forward(threads, out, hwc, tt.h, tt.w, epilogue{bias: c.bias, act: actReLU})
					if gh != oh || gw != ow {
						t.Fatalf("output %d×%d, want %d×%d", gh, gw, oh, ow)
					}
					got := make([]float32, len(out))
					for o := range tt.cout {
						for i := range oh * ow {
							got[o*oh*ow+i] = out[i*tt.cout+o]
						}
					}
					if d := maxRelDiff(got, want); d > 1e-5 {
						t.Errorf("max relative difference %.3g", d)
					}
				})
			}
		}
	}
}

func TestAvgPool(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for _, tt := range []struct{ h, w, c, k int }{{4, 4, 3, 2}, {7, 5, 2, 2}, {9, 9, 1, 3}, {112, 112, 4, 2}} {
		x := randSlice(r, tt.h*tt.w*tt.c)
		oh, ow := tt.h/tt.k, tt.w/tt.k
		got := make([]float32, oh*ow*tt.c)
		avgPoolHWC(got, x, tt.h, tt.w, tt.c, tt.k)
		want := make([]float64, len(got))
		for oy := range oh {
			for ox := range ow {
				for ch := range tt.c {
					var s float64
					for dy := range tt.k {
						for dx := range tt.k {
							s += float64(x[((oy*tt.k+dy)*tt.w+ox*tt.k+dx)*tt.c+ch])
						}
					}
					want[(oy*ow+ox)*tt.c+ch] = s / float64(tt.k*tt.k)
				}
			}
		}
		if d := maxRelDiff(got, want); d > 1e-6 {
			t.Errorf("%v: max relative difference %.3g", tt, d)
		}
	}
}

func TestKernelSelection(t *testing.T) {
	t.Setenv("TINYCLIP_KERNEL", "generic")
	if k := defaultKernel(); k != genericKernel {
		t.Errorf("TINYCLIP_KERNEL=generic selected %s", k.name)
	}
	for _, k := range asmKernels() {
		t.Setenv("TINYCLIP_KERNEL", k.name)
		if got := defaultKernel(); got != k {
			t.Errorf("TINYCLIP_KERNEL=%s selected %s", k.name, got.name)
		}
	}
	t.Setenv("TINYCLIP_KERNEL", "")
	if ks := asmKernels(); len(ks) > 0 && defaultKernel() != ks[0] {
		t.Errorf("default kernel %s, want %s", defaultKernel().name, ks[0].name)
	}
}

// TestVectorOps checks dot, addTo and axpy (the AVX-512 routines where the
// CPU has them) against float64 sums, on lengths around the routines'
// unrolling (64, 16) and masked tails, at unaligned offsets.
func TestVectorOps(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 9))
	for _, n := range []int{0, 1, 5, 15, 16, 17, 31, 63, 64, 65, 100, 130, 1408} {
		for _, off := range []int{0, 3} {
			x := randSlice(r, n+off)[off:]
			y := randSlice(r, n+off)[off:]
			const a = -0.75
			var dotWant float64
			add := make([]float64, n)
			ax := make([]float64, n)
			for i := range n {
				dotWant += float64(x[i]) * float64(y[i])
				add[i] = float64(y[i]) + float64(x[i])
				ax[i] = float64(y[i]) + a*float64(x[i])
			}
			if d := math.Abs(float64(dot(x, y)) - dotWant); d > 1e-5*math.Max(1, math.Sqrt(float64(n))) {
				t.Errorf("n %d off %d: dot = %v, want %v", n, off, dot(x, y), dotWant)
			}
			got := append([]float32(nil), y...)
			addTo(got, x)
			if d := maxRelDiff(got, add); d > 1e-6 {
				t.Errorf("n %d off %d: addTo differs by %g", n, off, d)
			}
			// One more element after dst's end that axpy must leave alone.
			got = append(append([]float32(nil), y...), 42)
			axpy(got, a, x)
			if d := maxRelDiff(got[:n], ax); d > 1e-6 {
				t.Errorf("n %d off %d: axpy differs by %g", n, off, d)
			}
			if got[n] != 42 {
				t.Errorf("n %d off %d: axpy wrote past the end", n, off)
			}
		}
	}
}

// TestAttnPool checks the attention pool, which never forms the tokens'
// keys and values, against AttentionPool2d as the official code computes
// it (keys and values of every token, key bias included), in float64.
func TestAttnPool(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 8))
	const ch, heads, embed, grid = 96, 3, 40, 3
	d, tokens := ch/heads, grid*grid+1
	w := func(out, in int) []float32 {
		s := randSlice(r, out*in)
		for i := range s {
			s[i] /= float32(math.Sqrt(float64(in)))
		}
		return s
	}
	wq, wk, wv, wc := w(ch, ch), w(ch, ch), w(ch, ch), w(embed, ch)
	bq, bk, bv, bc := randSlice(r, ch), randSlice(r, ch), randSlice(r, ch), randSlice(r, embed)
	pos := randSlice(r, tokens*ch)
	for _, kern := range kernels() {
		for _, n := range []int{1, 3} {
			t.Run(fmt.Sprintf("%s/images=%d", kern.name, n), func(t *testing.T) {
				scale := 1 / math.Sqrt(float64(d))
				sq := make([]float32, len(wq))
				sbq := make([]float32, ch)
				for i := range wq {
					sq[i] = float32(float64(wq[i]) * scale)
				}
				for i := range bq {
					sbq[i] = float32(float64(bq[i]) * scale)
				}
				a := attnPool{ch: ch, heads: heads, headDim: d, tokens: tokens, pos: pos,
					q:  linear{w: packBT(kern, make([]float32, packedLen(kern, ch, ch)), sq, ch, ch, ch), bias: sbq},
					wk: wk, wv: wv, bv: bv,
					c: linear{w: packBT(kern, make([]float32, packedLen(kern, ch, embed)), wc, ch, embed, ch), bias: bc}}
				x := fmap{buf: &scratch{f: randSlice(r, n*(tokens-1)*ch)}, n: n, h: grid, w: grid, c: ch}
				got := make([]float32, n*embed)
				a.forward(2, x, got)

				want := make([]float64, n*embed)
				lin := func(wt, b []float32, v []float64, i int) float64 {
					s := float64(b[i])
					for j, x := range v {
						s += float64(wt[i*ch+j]) * x
					}
					return s
				}
				for i := range n {
					tok := make([][]float64, tokens)
					for j := range tokens {
						tok[j] = make([]float64, ch)
					}
					for p := range tokens - 1 {
						for e := range ch {
							v := float64(x.buf.f[(i*(tokens-1)+p)*ch+e])
							tok[p+1][e] = v
							tok[0][e] += v / float64(tokens-1)
						}
					}
					for j := range tokens {
						for e := range ch {
							tok[j][e] += float64(pos[j*ch+e])
						}
					}
					attn := make([]float64, ch)
					for h := range heads {
						sc := make([]float64, tokens)
						mx := math.Inf(-1)
						for j := range tokens {
							for e := h * d; e < (h+1)*d; e++ {
								sc[j] += lin(wq, bq, tok[0], e) * scale * lin(wk, bk, tok[j], e)
							}
							mx = math.Max(mx, sc[j])
						}
						var sum float64
						for j := range sc {
							sc[j] = math.Exp(sc[j] - mx)
							sum += sc[j]
						}
						for j := range tokens {
							for e := h * d; e < (h+1)*d; e++ {
								attn[e] += sc[j] / sum * lin(wv, bv, tok[j], e)
							}
						}
					}
					for e := range embed {
						s := float64(bc[e])
						for j := range ch {
							s += float64(wc[e*ch+j]) * attn[j]
						}
						want[i*embed+e] = s
					}
				}
				if diff := maxRelDiff(got, want); diff > 1e-5 {
					t.Errorf("pooled features differ from the reference by %.3g", diff)
				}
			})
		}
	}
}

// TestSGEMMSplitK checks that the parts of a product split in K
// (sgemmBlockK), summed, give the product, on every kernel.
func TestSGEMMSplitK(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	for _, kern := range kernels() {
		for _, sz := range []struct{ m, n, k int }{{1, 70, 100}, {9, 512, 256}, {13, 40, 33}} {
			m, n, k := sz.m, sz.n, sz.k
			a := randSlice(r, m*k)
			s := randSlice(r, n*k) // B = Sᵀ
			pb := packBT(kern, make([]float32, packedLen(kern, k, n)), s, k, n, k)
			want := gemmRef(m, n, k, a, k, s, 1, k)
			bias := randSlice(r, n)
			for i := range m {
				for j := range n {
					want[i*n+j] += float64(bias[j])
				}
			}
			panels, _ := panelsOf(kern, n)
			got := make([]float32, m*n)
			part := make([]float32, m*n)
			cuts := []int{0, k / 3, k / 3, k/2 + 1, k} // an empty part included
			for c := range len(cuts) - 1 {
				ep := epilogue{}
				if c == len(cuts)-2 {
					ep.bias = bias
				}
				for i := range part {
					part[i] = float32(math.NaN()) // every value of a part is written
				}
				sgemmBlockK(a, k, pb, part, n, 0, m, 0, panels, cuts[c], cuts[c+1], &ep)
				for i := range got {
					got[i] += part[i]
				}
			}
			if d := maxRelDiff(got, want); d > 1e-5 {
				t.Errorf("%s %dx%dx%d: parts sum differs from the product by %.3g", kern.name, m, n, k, d)
			}
		}
	}
}
