package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/tinyclip-go/tinyclip/internal/config"
	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

// Options configure Build.
type Options struct {
	// Threads is the number of goroutines one call may use; 0 means
	// GOMAXPROCS at the time of the call.
	Threads int
	// Precision selects the arithmetic of the weight products (default
	// FP32). BF16 needs AVX512-BF16; elsewhere the model runs in FP32
	// (Model.Precision reports which).
	Precision Precision

	kernel *microKernel // nil: the default kernel
}

// Model is a built TinyCLIP / CLIP model. It is immutable and safe for
// concurrent use.
type Model struct {
	arch       config.Arch
	threads    int
	logitScale float32
	precision  Precision
	kern       *microKernel
	vit        *vitTower
	resnet     *resnetTower
	text       *textTower
}

// Build checks tensors (open_clip names, any float dtype) against arch and
// builds the model. Every tensor the architecture needs must be present with
// its exact shape, and every tensor given must be used (BatchNorm
// num_batches_tracked counters excepted); errors name the tensor. The model
// keeps no reference to the tensors' data.
func Build(arch *config.Arch, tensors map[string]*tensor.Tensor, opts Options) (*Model, error) {
	if arch == nil {
		return nil, errors.New("engine: nil architecture")
	}
	a := cloneArch(arch)
	if err := checkArch(&a); err != nil {
		return nil, err
	}
	kern := opts.kernel
	if kern == nil {
		kern = defaultKernel()
	}
	if opts.Precision > BF16 {
		return nil, fmt.Errorf("engine: unknown precision %d", opts.Precision)
	}
	l := &loader{tensors: tensors, used: make(map[string]bool), kern: kern}
	m := &Model{arch: a, threads: opts.Threads, precision: FP32, kern: kern}
	if opts.Precision == BF16 && kern.bf16 != nil {
		l.bf16 = true
		m.precision = BF16
	}
	var err error
	switch a.Vision.Kind {
	case config.KindViT:
		m.vit, err = buildViT(l, &a.Vision)
	case config.KindResNet:
		m.resnet, err = buildResNet(l, &a.Vision)
	}
	if err != nil {
		return nil, err
	}
	if m.text, err = buildText(l, &a.Text); err != nil {
		return nil, err
	}
	m.logitScale = l.scalar("logit_scale")
	if err := l.checkUnused(); err != nil {
		return nil, err
	}
	return m, nil
}

// cloneArch deep-copies arch so that the model does not share its slices.
func cloneArch(arch *config.Arch) config.Arch {
	a := *arch
	a.Vision.Transformer.Blocks = slices.Clone(a.Vision.Transformer.Blocks)
	a.Text.Transformer.Blocks = slices.Clone(a.Text.Transformer.Blocks)
	return a
}

// checkArch rejects architectures the engine cannot run.
func checkArch(a *config.Arch) error {
	if a.EmbedDim <= 0 {
		return fmt.Errorf("engine: architecture: embed dim %d", a.EmbedDim)
	}
	if a.Vision.Embed != a.EmbedDim || a.Text.Embed != a.EmbedDim {
		return fmt.Errorf("engine: architecture: image embed %d and text embed %d, want embed dim %d",
			a.Vision.Embed, a.Text.Embed, a.EmbedDim)
	}
	v := &a.Vision
	if v.ImageSize <= 0 {
		return fmt.Errorf("engine: architecture: image size %d", v.ImageSize)
	}
	switch v.Kind {
	case config.KindViT:
		if v.PatchSize <= 0 || v.ImageSize%v.PatchSize != 0 {
			return fmt.Errorf("engine: architecture: image size %d is not a multiple of patch size %d", v.ImageSize, v.PatchSize)
		}
		if err := checkTransformer("vision", &v.Transformer); err != nil {
			return err
		}
	case config.KindResNet:
		if v.Width < 2 {
			return fmt.Errorf("engine: architecture: ResNet width %d", v.Width)
		}
		for i, n := range v.Layers {
			if n < 1 {
				return fmt.Errorf("engine: architecture: ResNet stage %d has %d blocks", i+1, n)
			}
		}
		if v.PoolHeads <= 0 || v.PoolHeadDim <= 0 || v.PoolHeads*v.PoolHeadDim != 32*v.Width {
			return fmt.Errorf("engine: architecture: attention pool %d heads of %d for %d channels",
				v.PoolHeads, v.PoolHeadDim, 32*v.Width)
		}
		if resnetGrid(v.ImageSize) < 1 {
			return fmt.Errorf("engine: architecture: image size %d too small for a ResNet", v.ImageSize)
		}
	default:
		return fmt.Errorf("engine: architecture: unknown vision kind %q", v.Kind)
	}
	t := &a.Text
	if t.ContextLength <= 0 || t.VocabSize <= 0 {
		return fmt.Errorf("engine: architecture: text context length %d, vocabulary %d", t.ContextLength, t.VocabSize)
	}
	return checkTransformer("text", &t.Transformer)
}

func checkTransformer(tower string, t *config.Transformer) error {
	if t.Width <= 0 {
		return fmt.Errorf("engine: architecture: %s width %d", tower, t.Width)
	}
	if _, err := activationOf(t.Act); err != nil {
		return fmt.Errorf("engine: architecture: %s: %w", tower, err)
	}
	for i, b := range t.Blocks {
		if b.Heads < 0 || b.MLP < 0 {
			return fmt.Errorf("engine: architecture: %s block %d: %d heads, MLP width %d", tower, i, b.Heads, b.MLP)
		}
		if b.Heads > 0 && t.HeadDim <= 0 {
			return fmt.Errorf("engine: architecture: %s head dim %d", tower, t.HeadDim)
		}
	}
	return nil
}

// buildTransformer loads the blocks under prefix+"transformer.resblocks.".
func buildTransformer(l *loader, prefix string, t *config.Transformer) transformer {
	act, _ := activationOf(t.Act)
	tr := transformer{kern: l.kern, bf16: l.bf16, width: t.Width, headDim: t.HeadDim, act: act, blocks: make([]block, len(t.Blocks))}
	w, d := t.Width, t.HeadDim
	for i, bc := range t.Blocks {
		p := fmt.Sprintf("%stransformer.resblocks.%d.", prefix, i)
		b := &tr.blocks[i]
		b.heads = bc.Heads
		if bc.Heads > 0 {
			a := bc.Heads * d
			b.ln1g = l.get(p+"ln_1.weight", w)
			b.ln1b = l.get(p+"ln_1.bias", w)
			wq := l.get(p+"attn.in_proj_weight", 3*a, w)
			bq := l.get(p+"attn.in_proj_bias", 3*a)
			if l.err == nil {
				s := attnScale(d)
				for i := range a * w {
					wq[i] *= s
				}
				for i := range a {
					bq[i] *= s
				}
				b.qkv = linear{w: l.packT(wq, 3*a, w), bias: bq}
			}
			b.out = l.linear(p+"attn.out_proj", w, a, 0, 0)
		}
		b.hasMLP = bc.HasMLP
		b.mlpWidth = bc.MLP
		if bc.HasMLP {
			b.ln2g = l.get(p+"ln_2.weight", w)
			b.ln2b = l.get(p+"ln_2.bias", w)
			b.fc = l.linear(p+"mlp.c_fc", bc.MLP, w, 0, 0)
			b.proj = l.linear(p+"mlp.c_proj", w, bc.MLP, 0, 0)
		} else if l.has(p+"ln_2.weight") || l.has(p+"ln_2.bias") {
			// A block without MLP may keep its (unused) ln_2.
			l.get(p+"ln_2.weight", w)
			l.get(p+"ln_2.bias", w)
		}
	}
	return tr
}

func (m *Model) threadCount() int { return resolveThreads(m.threads) }

// Precision returns the arithmetic the model runs with: the Precision of
// its Options, or FP32 where the CPU lacks what that precision needs.
func (m *Model) Precision() Precision { return m.precision }

// Kernel names the GEMM micro-kernel the model was built with ("avx512",
// "avx2" or "generic").
func (m *Model) Kernel() string { return m.kern.name }

// Arch returns the architecture the model was built with.
func (m *Model) Arch() config.Arch { return cloneArch(&m.arch) }

// EmbedDim returns the width of the image and text features.
func (m *Model) EmbedDim() int { return m.arch.EmbedDim }

// ImageSize returns the side of the square input images.
func (m *Model) ImageSize() int { return m.arch.Vision.ImageSize }

// LogitScale returns the stored logit_scale parameter (the logarithm of the
// temperature that multiplies cosine similarities).
func (m *Model) LogitScale() float32 { return m.logitScale }

// EncodeImages runs the image tower on n normalised images, pixels
// [n, 3, S, S] (S = ImageSize), and returns the raw image features [n, E]
// (the official encode_image, not normalised).
func (m *Model) EncodeImages(ctx context.Context, pixels []float32, n int) ([]float32, error) {
	s := m.arch.Vision.ImageSize
	if n < 0 {
		return nil, fmt.Errorf("engine: encode images: negative image count %d", n)
	}
	if len(pixels) != n*3*s*s {
		return nil, fmt.Errorf("engine: encode images: %d pixel values, want %d (%d images of 3×%d×%d)",
			len(pixels), n*3*s*s, n, s, s)
	}
	e := m.arch.EmbedDim
	out := make([]float32, n*e)
	img := 3 * s * s
	err := inGroups(m.threadCount(), n, func(threads, i0, i1 int) error {
		px, o := pixels[i0*img:i1*img], out[i0*e:i1*e]
		if m.vit != nil {
			return m.vit.encode(ctx, threads, px, i1-i0, o)
		}
		return m.resnet.encode(ctx, threads, px, i1-i0, o)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// batchGroups returns the number of groups a batch of n items is split
// into, each encoded on one thread. Whole items per thread need no
// synchronisation inside the towers and keep each core's caches to itself,
// so a batch is split when that balances: n a multiple of threads, or large
// enough that one item more or less does not matter. Otherwise the towers
// split each matrix product over the threads.
func batchGroups(threads, n int) int {
	if threads <= 1 || n < 2 {
		return 1
	}
	if n%threads == 0 || n >= 4*threads {
		return min(threads, n)
	}
	return 1
}

// inGroups runs encode on items [0, n) in batchGroups groups in parallel
// (one thread each), or as one group with all threads, and returns the
// first error.
func inGroups(threads, n int, encode func(threads, i0, i1 int) error) error {
	g := batchGroups(threads, n)
	if g == 1 {
		return encode(threads, 0, n)
	}
	errs := make([]error, g)
	parallelFor(g, g, func(j int) {
		errs[j] = encode(1, j*n/g, (j+1)*n/g)
	})
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// EncodeTexts runs the text tower on token sequences (SOT … EOT, with or
// without padding) and returns the raw text features [len(ids), E] (the
// official encode_text, not normalised). Each row is pooled at its first
// largest id (the first EOT), and only the tokens up to it are computed.
func (m *Model) EncodeTexts(ctx context.Context, ids [][]int) ([]float32, error) {
	for i, row := range ids { // errors name the row of the whole batch
		if _, err := m.text.pooledIndex(i, row); err != nil {
			return nil, err
		}
	}
	e := m.arch.EmbedDim
	out := make([]float32, len(ids)*e)
	err := inGroups(m.threadCount(), len(ids), func(threads, i0, i1 int) error {
		return m.text.encode(ctx, threads, ids[i0:i1], out[i0*e:i1*e])
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
