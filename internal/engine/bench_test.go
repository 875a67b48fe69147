package engine

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tinyclip-go/tinyclip/internal/config"
	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

// archShapes lists the open_clip tensor names and shapes of an architecture,
// written out independently of the loader (so that a naming mistake in
// either shows up as a Build error).
func archShapes(a *config.Arch) map[string][]int {
	s := map[string][]int{"logit_scale": {}}
	blocks := func(prefix string, t *config.Transformer) {
		w := t.Width
		for i, b := range t.Blocks {
			p := fmt.Sprintf("%stransformer.resblocks.%d.", prefix, i)
			if b.Heads > 0 {
				at := b.Heads * t.HeadDim
				s[p+"ln_1.weight"], s[p+"ln_1.bias"] = []int{w}, []int{w}
				s[p+"attn.in_proj_weight"], s[p+"attn.in_proj_bias"] = []int{3 * at, w}, []int{3 * at}
				s[p+"attn.out_proj.weight"], s[p+"attn.out_proj.bias"] = []int{w, at}, []int{w}
			}
			s[p+"ln_2.weight"], s[p+"ln_2.bias"] = []int{w}, []int{w}
			if b.HasMLP {
				s[p+"mlp.c_fc.weight"], s[p+"mlp.c_fc.bias"] = []int{b.MLP, w}, []int{b.MLP}
				s[p+"mlp.c_proj.weight"], s[p+"mlp.c_proj.bias"] = []int{w, b.MLP}, []int{w}
			}
		}
	}
	v := &a.Vision
	if v.Kind == config.KindViT {
		w, g := v.Transformer.Width, v.ImageSize/v.PatchSize
		s["visual.conv1.weight"] = []int{w, 3, v.PatchSize, v.PatchSize}
		s["visual.class_embedding"] = []int{w}
		s["visual.positional_embedding"] = []int{g*g + 1, w}
		for _, n := range []string{"ln_pre", "ln_post"} {
			s["visual."+n+".weight"], s["visual."+n+".bias"] = []int{w}, []int{w}
		}
		s["visual.proj"] = []int{w, v.Embed}
		blocks("visual.", &v.Transformer)
	} else {
		bn := func(p string, c int) {
			for _, n := range []string{"weight", "bias", "running_mean", "running_var"} {
				s[p+"."+n] = []int{c}
			}
			s[p+".num_batches_tracked"] = []int{}
		}
		w := v.Width
		s["visual.conv1.weight"] = []int{w / 2, 3, 3, 3}
		s["visual.conv2.weight"] = []int{w / 2, w / 2, 3, 3}
		s["visual.conv3.weight"] = []int{w, w / 2, 3, 3}
		bn("visual.bn1", w/2)
		bn("visual.bn2", w/2)
		bn("visual.bn3", w)
		in := w
		for st, n := range v.Layers {
			planes := w << st
			for i := range n {
				p := fmt.Sprintf("visual.layer%d.%d.", st+1, i)
				s[p+"conv1.weight"] = []int{planes, in, 1, 1}
				s[p+"conv2.weight"] = []int{planes, planes, 3, 3}
				s[p+"conv3.weight"] = []int{4 * planes, planes, 1, 1}
				bn(p+"bn1", planes)
				bn(p+"bn2", planes)
				bn(p+"bn3", 4*planes)
				if i == 0 && (st > 0 || in != 4*planes) {
					s[p+"downsample.0.weight"] = []int{4 * planes, in, 1, 1}
					bn(p+"downsample.1", 4*planes)
				}
				in = 4 * planes
			}
		}
		g := v.ImageSize / 32
		s["visual.attnpool.positional_embedding"] = []int{g*g + 1, in}
		for _, n := range []string{"q", "k", "v"} {
			s["visual.attnpool."+n+"_proj.weight"], s["visual.attnpool."+n+"_proj.bias"] = []int{in, in}, []int{in}
		}
		s["visual.attnpool.c_proj.weight"], s["visual.attnpool.c_proj.bias"] = []int{v.Embed, in}, []int{v.Embed}
	}
	t := &a.Text
	w := t.Transformer.Width
	s["token_embedding.weight"] = []int{t.VocabSize, w}
	s["positional_embedding"] = []int{t.ContextLength, w}
	s["ln_final.weight"], s["ln_final.bias"] = []int{w}, []int{w}
	s["text_projection"] = []int{w, t.Embed}
	blocks("", &t.Transformer)
	return s
}

// randomTensors returns random weights for an architecture: LayerNorm and
// BatchNorm scales near 1, variances positive, everything else small.
func randomTensors(a *config.Arch, seed uint64) map[string]*tensor.Tensor {
	r := rand.New(rand.NewPCG(seed, 1))
	out := map[string]*tensor.Tensor{}
	shapes := archShapes(a)
	for _, name := range slices.Sorted(maps.Keys(shapes)) { // the same weights every run
		shape := shapes[name]
		n := 1
		for _, d := range shape {
			n *= d
		}
		v := make([]float32, n)
		scale := float32(0.05)
		if len(shape) == 2 && !strings.Contains(name, "embedding") {
			scale = 1 / float32(shape[1]+1) // keep activations O(1)
		}
		for i := range v {
			v[i] = (r.Float32()*2 - 1) * scale
		}
		switch {
		case strings.HasSuffix(name, "running_var"), strings.HasSuffix(name, "ln_1.weight"),
			strings.HasSuffix(name, "ln_2.weight"), strings.Contains(name, "ln_") && strings.HasSuffix(name, ".weight"),
			strings.Contains(name, ".bn") && strings.HasSuffix(name, ".weight"),
			strings.HasSuffix(name, "downsample.1.weight"):
			for i := range v {
				v[i] += 1
			}
		case name == "logit_scale":
			v[0] = 4.6052
		}
		out[name] = tensor.FromFloat32(name, shape, v)
	}
	return out
}

// vit8M16 is TinyCLIP-ViT-8M-16-Text-3M.
var vit8M16 = config.Arch{
	EmbedDim: 512,
	Vision: config.VisionArch{Kind: config.KindViT, ImageSize: 224, Embed: 512, PatchSize: 16,
		Transformer: regular(256, 64, 10, 1024, config.GELU)},
	Text: text(512, regular(256, 64, 3, 1024, config.GELU)),
}

// vit40M32 is TinyCLIP-ViT-40M-32-Text-19M.
var vit40M32 = config.Arch{
	EmbedDim: 512,
	Vision: config.VisionArch{Kind: config.KindViT, ImageSize: 224, Embed: 512, PatchSize: 32,
		Transformer: regular(512, 64, 12, 2048, config.GELU)},
	Text: text(512, regular(512, 64, 6, 2048, config.GELU)),
}

// resnet19M is TinyCLIP-ResNet-19M-Text-19M.
var resnet19M = config.Arch{
	EmbedDim: 1024,
	Vision: config.VisionArch{Kind: config.KindResNet, ImageSize: 224, Embed: 1024,
		Layers: [4]int{3, 4, 6, 3}, Width: 44, PoolHeads: 22, PoolHeadDim: 64},
	Text: text(1024, regular(512, 64, 6, 2048, config.GELU)),
}

var (
	benchMu      sync.Mutex
	benchTensors = map[string]map[string]*tensor.Tensor{}
)

func benchModel(b testing.TB, name string, a *config.Arch, prec Precision) *Model {
	b.Helper()
	benchMu.Lock()
	ts, ok := benchTensors[name]
	if !ok {
		ts = randomTensors(a, 42)
		benchTensors[name] = ts
	}
	benchMu.Unlock()
	m, err := Build(a, ts, Options{Precision: prec})
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// precisions lists the precisions the tower benchmarks run (BF16 only
// where the CPU has it).
func precisions() []Precision {
	if defaultKernel().bf16 != nil {
		return []Precision{FP32, BF16}
	}
	return []Precision{FP32}
}

func randomPixels(n, size int) []float32 {
	r := rand.New(rand.NewPCG(7, 7))
	p := make([]float32, n*3*size*size)
	for i := range p {
		p[i] = r.Float32()*4 - 2
	}
	return p
}

// benchSpin is the tower benchmarks' SetSpinWait (go test -bench … -args
// -spin 50us).
var benchSpin = flag.Duration("spin", 0, "SetSpinWait for the tower benchmarks")

func benchImages(b *testing.B, name string, a *config.Arch) {
	defer SetSpinWait(SetSpinWait(*benchSpin))
	for _, prec := range precisions() {
		m := benchModel(b, name, a, prec)
		for _, n := range []int{1, 8} {
			b.Run(fmt.Sprintf("%s/batch=%d", prec, n), func(b *testing.B) {
				px := randomPixels(n, m.ImageSize())
				ctx := context.Background()
				b.ResetTimer()
				cpu0 := processCPU()
				for range b.N {
					if _, err := m.EncodeImages(ctx, px, n); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Microseconds())/1e3/float64(b.N*n), "ms/image")
				b.ReportMetric((processCPU()-cpu0).Seconds()*1e3/float64(b.N*n), "cpu-ms/image")
				b.ReportMetric(float64(resolveThreads(0)), "threads")
			})
		}
	}
}

func BenchmarkEncodeImageViT8M16(b *testing.B)   { benchImages(b, "vit8M16", &vit8M16) }
func BenchmarkEncodeImageResNet19M(b *testing.B) { benchImages(b, "resnet19M", &resnet19M) }
func BenchmarkEncodeImageViT40M32(b *testing.B)  { benchImages(b, "vit40M32", &vit40M32) }

func benchTexts(b *testing.B, name string, a *config.Arch) {
	defer SetSpinWait(SetSpinWait(*benchSpin))
	m := benchModel(b, name, a, FP32)
	for _, tokens := range []int{9, 77} {
		for _, n := range []int{1, 8} {
			b.Run(fmt.Sprintf("tokens=%d/batch=%d", tokens, n), func(b *testing.B) {
				ids := make([][]int, n)
				for i := range ids {
					row := make([]int, tokens)
					row[0] = 49406
					for j := 1; j < tokens-1; j++ {
						row[j] = 300 + 17*j + i
					}
					row[tokens-1] = 49407
					ids[i] = row
				}
				ctx := context.Background()
				b.ResetTimer()
				cpu0 := processCPU()
				for range b.N {
					if _, err := m.EncodeTexts(ctx, ids); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Microseconds())/1e3/float64(b.N*n), "ms/text")
				b.ReportMetric((processCPU()-cpu0).Seconds()*1e3/float64(b.N*n), "cpu-ms/text")
				b.ReportMetric(float64(resolveThreads(0)), "threads")
			})
		}
	}
}

func BenchmarkEncodeTextViT8M16(b *testing.B)   { benchTexts(b, "vit8M16", &vit8M16) }
func BenchmarkEncodeTextResNet19M(b *testing.B) { benchTexts(b, "resnet19M", &resnet19M) }

func BenchmarkSGEMM(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	for _, kern := range kernels() {
		for _, sz := range []struct{ m, n, k int }{
			{197, 768, 256}, {197, 1024, 256}, {197, 256, 1024}, {1576, 256, 1024}, {512, 512, 512},
		} {
			b.Run(fmt.Sprintf("%s/%dx%dx%d", kern.name, sz.m, sz.n, sz.k), func(b *testing.B) {
				a := randSlice(r, sz.m*sz.k)
				w := randSlice(r, sz.n*sz.k)
				pb := packBT(kern, make([]float32, packedLen(kern, sz.k, sz.n)), w, sz.k, sz.n, sz.k)
				c := make([]float32, sz.m*sz.n)
				threads := resolveThreads(0) // GOMAXPROCS, set by -cpu
				b.ResetTimer()
				for range b.N {
					sgemm(threads, sz.m, a, sz.k, pb, c, sz.n, epilogue{})
				}
				b.ReportMetric(2*float64(sz.m*sz.n*sz.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
			if kern.bf16 == nil {
				continue
			}
			b.Run(fmt.Sprintf("%s-bf16/%dx%dx%d", kern.name, sz.m, sz.n, sz.k), func(b *testing.B) {
				a := randSlice(r, sz.m*sz.k)
				w := randSlice(r, sz.n*sz.k)
				pb := packBT(kern, make([]float32, packedLen(kern, sz.k, sz.n)), w, sz.k, sz.n, sz.k)
				pb.toBF16Packed()
				c := make([]float32, sz.m*sz.n)
				threads := resolveThreads(0)
				b.ResetTimer()
				for range b.N {
					sgemm(threads, sz.m, a, sz.k, pb, c, sz.n, epilogue{})
				}
				b.ReportMetric(2*float64(sz.m*sz.n*sz.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

// TestRandomArchitectures builds zoo-shaped architectures (head dim 64, a
// ResNet with [3,4,6,3] stages, narrowed to keep the test fast) from random
// weights, which checks the loader's names and shapes against the
// independent list of archShapes, and checks batch against single results.
func TestRandomArchitectures(t *testing.T) {
	for _, tc := range []struct {
		name string
		arch config.Arch
	}{
		{"vit", config.Arch{EmbedDim: 32,
			Vision: config.VisionArch{Kind: config.KindViT, ImageSize: 64, Embed: 32, PatchSize: 16,
				Transformer: regular(128, 64, 2, 512, config.GELU)},
			Text: text(32, regular(64, 64, 2, 256, config.QuickGELU))}},
		{"resnet", config.Arch{EmbedDim: 32,
			Vision: config.VisionArch{Kind: config.KindResNet, ImageSize: 64, Embed: 32,
				Layers: [4]int{3, 4, 6, 3}, Width: 4, PoolHeads: 2, PoolHeadDim: 64},
			Text: text(32, regular(64, 64, 2, 256, config.GELU))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Build(&tc.arch, randomTensors(&tc.arch, 1), Options{})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			px := randomPixels(2, m.ImageSize())
			both, err := m.EncodeImages(ctx, px, 2)
			if err != nil {
				t.Fatal(err)
			}
			second, err := m.EncodeImages(ctx, px[len(px)/2:], 1)
			if err != nil {
				t.Fatal(err)
			}
			e := m.EmbedDim()
			if d := relErr(second, both[e:], e); d > 1e-6 {
				t.Errorf("image: single vs batch relative difference %.3g", d)
			}
			txt, err := m.EncodeTexts(ctx, [][]int{{49406, 320, 1125, 49407}})
			if err != nil || len(txt) != e {
				t.Fatalf("EncodeTexts: %d values, %v", len(txt), err)
			}
		})
	}
}

// BenchmarkAttendHead times one head of ViT-8M/16 attention (197 tokens,
// head width 64): the key/value packing, both products and the softmax.
func BenchmarkAttendHead(b *testing.B) {
	r := rand.New(rand.NewPCG(2, 2))
	const n, d, heads = 197, 64, 4
	a := heads * d
	qkv := randSlice(r, n*3*a)
	out := make([]float32, n*a)
	for _, kern := range kernels() {
		for _, bf := range []bool{false, true} {
			if bf && kern.bf16 == nil {
				continue
			}
			name := kern.name
			if bf {
				name += "-bf16"
			}
			b.Run(name, func(b *testing.B) {
				for range b.N {
					attendHead(kern, bf, qkv, 3*a, 0, n, a, 1, d, 0, n, false, out, a)
				}
				b.ReportMetric(2*2*float64(n*n*d)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

// BenchmarkConv3x3 times a 3×3 stride-1 convolution of ResNet-19M's first
// stage (56×56, 44 → 44 channels, BatchNorm folded, ReLU): implicit GEMM
// with the AVX-512 kernel, im2col with the others.
func BenchmarkConv3x3(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 3))
	const h, w, cin, cout = 56, 56, 44, 44
	x := randSlice(r, h*w*cin)
	y := make([]float32, h*w*cout)
	for _, kern := range kernels() {
		l := &loader{kern: kern, used: map[string]bool{}, tensors: map[string]*tensor.Tensor{
			"c.weight":        tensor.FromFloat32("c.weight", []int{cout, cin, 3, 3}, randSlice(r, cout*cin*9)),
			"bn.weight":       tensor.FromFloat32("bn.weight", []int{cout}, randSlice(r, cout)),
			"bn.bias":         tensor.FromFloat32("bn.bias", []int{cout}, randSlice(r, cout)),
			"bn.running_mean": tensor.FromFloat32("bn.running_mean", []int{cout}, randSlice(r, cout)),
			"bn.running_var":  tensor.FromFloat32("bn.running_var", []int{cout}, make([]float32, cout)),
		}}
		c := l.conv("c", "bn", cin, cout, 3, 1)
		b.Run(kern.name, func(b *testing.B) {
			threads := resolveThreads(0)
			for range b.N {
				c.forward(threads, y, x, h, w, epilogue{bias: c.bias, act: actReLU})
			}
			b.ReportMetric(2*float64(h*w*cout*cin*9)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkParallelFor times fork-joins of the worker pool as the towers
// use them: some serial work, then a loop of 8 tasks of about 10 µs each
// (at -cpu 2 ideally gap + 40 µs per op, at -cpu 1 gap + 80 µs). The gap
// between loops decides whether a helper has gone to sleep and must be
// woken; gap=1ms shows the cost of waking one that has.
func BenchmarkParallelFor(b *testing.B) {
	work := func(n int) float32 { // about n·3.4 ns on the Zen 4 of docs/performance.md
		x := float32(1)
		for i := range n {
			x = x*0.999 + float32(i&7)
		}
		return x
	}
	var sink [8]float32
	for _, gap := range []struct {
		name  string
		iters int
	}{{"5us", 1500}, {"50us", 15_000}, {"1ms", 300_000}} {
		b.Run("gap="+gap.name, func(b *testing.B) {
			threads := resolveThreads(0)
			for range b.N {
				sink[0] += work(gap.iters)
				parallelFor(threads, 8, func(i int) { sink[i] += work(3000) })
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "us/op")
		})
	}
}

// BenchmarkWake measures how long a sleeping helper takes to run after it
// is signalled, by the pool's wait words (waitWord/wakeWord: futexes on
// Linux) and by a channel (a parked goroutine, which the Go scheduler must
// hand to an idle thread). Each op lets the helper go to sleep for 200 µs
// of the caller's work, then wakes it while the caller keeps working, as a
// parallel loop does (100 µs more). Reported: the median and 90th
// percentile of the latency, in µs. Needs -cpu 2 or more and an otherwise
// idle machine.
func BenchmarkWake(b *testing.B) {
	busy := func(d time.Duration) {
		for t := time.Now(); time.Since(t) < d; {
		}
	}
	report := func(b *testing.B, lat []time.Duration) {
		slices.Sort(lat)
		if len(lat) == 0 {
			return
		}
		b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-us")
		b.ReportMetric(float64(lat[len(lat)*9/10].Nanoseconds())/1e3, "p90-us")
	}
	b.Run("waitword", func(b *testing.B) {
		var word uint32
		var sent atomic.Int64
		lat := make([]time.Duration, 0, b.N)
		done := make(chan struct{})
		got := make(chan time.Duration, 1)
		go func() {
			seen := uint32(0)
			for {
				for atomic.LoadUint32(&word) == seen {
					waitWord(&word, seen)
				}
				seen = atomic.LoadUint32(&word)
				if seen == ^uint32(0) {
					close(done)
					return
				}
				got <- time.Since(time.Unix(0, sent.Load()))
			}
		}()
		for range b.N {
			busy(200 * time.Microsecond)
			sent.Store(time.Now().UnixNano())
			atomic.AddUint32(&word, 1)
			wakeWord(&word, 1)
			busy(100 * time.Microsecond)
			lat = append(lat, <-got)
		}
		atomic.StoreUint32(&word, ^uint32(0))
		wakeWord(&word, 1)
		<-done
		report(b, lat)
	})
	b.Run("channel", func(b *testing.B) {
		ch := make(chan int64)
		got := make(chan time.Duration, 1)
		go func() {
			for t := range ch {
				got <- time.Since(time.Unix(0, t))
			}
		}()
		lat := make([]time.Duration, 0, b.N)
		for range b.N {
			busy(200 * time.Microsecond)
			ch <- time.Now().UnixNano()
			busy(100 * time.Microsecond)
			lat = append(lat, <-got)
		}
		close(ch)
		report(b, lat)
	})
}
