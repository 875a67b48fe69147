package engine

import (
	"context"
	"fmt"

	"github.com/tinyclip-go/tinyclip/internal/config"
)

// vitBatch is the number of images run through the ViT together: enough
// rows (4×197 or 4×50) for efficient products, few enough that a block's
// activations stay in the caches (measured: 4 beats 8 by 3–6 % on
// ViT-8M/16 and ViT-40M/32 in BF16, ties in FP32).
const vitBatch = 4

// vitTower is the VisualTransformer image tower (spec §1.1.2).
type vitTower struct {
	size, patch, grid, width, embed int
	conv                            *packedB // patch embedding: 3·P² → width
	cls, pos                        []float32
	lnPreG, lnPreB                  []float32
	lnPostG, lnPostB                []float32
	tf                              transformer
	proj                            *packedB // width → embed
}

func buildViT(l *loader, v *config.VisionArch) (*vitTower, error) {
	w, p := v.Transformer.Width, v.PatchSize
	g := v.ImageSize / p
	t := &vitTower{size: v.ImageSize, patch: p, grid: g, width: w, embed: v.Embed}
	conv := l.get("visual.conv1.weight", w, 3, p, p)
	if l.err == nil {
		t.conv = l.packT(conv, w, 3*p*p)
	}
	t.cls = l.get("visual.class_embedding", w)
	t.pos = l.get("visual.positional_embedding", g*g+1, w)
	t.lnPreG = l.get("visual.ln_pre.weight", w)
	t.lnPreB = l.get("visual.ln_pre.bias", w)
	t.tf = buildTransformer(l, "visual.", &v.Transformer)
	t.lnPostG = l.get("visual.ln_post.weight", w)
	t.lnPostB = l.get("visual.ln_post.bias", w)
	proj := l.get("visual.proj", w, v.Embed)
	if l.err != nil {
		return nil, l.err
	}
	t.proj = l.packN(proj, w, v.Embed)
	return t, nil
}

// encode writes the features of n images (NCHW pixels) to out [n×embed].
func (t *vitTower) encode(ctx context.Context, threads int, pixels []float32, n int, out []float32) error {
	img := 3 * t.size * t.size
	for i0 := 0; i0 < n; i0 += vitBatch {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("engine: encode images: %w", err)
		}
		nb := min(vitBatch, n-i0)
		if err := t.encodeBatch(ctx, threads, pixels[i0*img:(i0+nb)*img], nb, out[i0*t.embed:]); err != nil {
			return err
		}
	}
	return nil
}

func (t *vitTower) encodeBatch(ctx context.Context, threads int, pixels []float32, nb int, out []float32) error {
	g, p, w := t.grid, t.patch, t.width
	np := g * g
	tokens := np + 1
	kp := 3 * p * p

	// Patch embedding as a GEMM over the patches (flattened in channel,
	// row, column order, as conv1's weight).
	ldp := padStride(kp)
	patches := getScratch(nb * np * ldp)
	for b := range nb {
		t.im2col(patches.f[b*np*ldp:(b+1)*np*ldp], ldp, pixels[b*3*t.size*t.size:])
	}
	emb := getScratch(nb * np * w)
	sgemm(threads, nb*np, patches.f, ldp, t.conv, emb.f, w, epilogue{})
	putScratch(patches)

	x := getScratch(nb * tokens * w)
	seqs := make([]seq, nb)
	for b := range nb {
		rows := x.f[b*tokens*w : (b+1)*tokens*w]
		for j := range w {
			rows[j] = t.cls[j] + t.pos[j]
		}
		e := emb.f[b*np*w : (b+1)*np*w]
		for i, v := range e {
			rows[w+i] = v + t.pos[w+i]
		}
		seqs[b] = seq{off: b * tokens, n: tokens}
	}
	putScratch(emb)
	layerNorm(x.f, x.f, nb*tokens, w, t.lnPreG, t.lnPreB)

	xp := getScratch(nb * w)
	err := t.tf.forward(ctx, threads, x.f, seqs, false, xp.f)
	putScratch(x)
	if err == nil {
		layerNorm(xp.f, xp.f, nb, w, t.lnPostG, t.lnPostB)
		sgemm(threads, nb, xp.f, w, t.proj, out, t.embed, epilogue{})
	}
	putScratch(xp)
	if err != nil {
		return fmt.Errorf("engine: encode images: %w", err)
	}
	return nil
}

// im2col writes the patches of one CHW image as rows of 3·P² values (row
// stride ld).
func (t *vitTower) im2col(dst []float32, ld int, img []float32) {
	g, p, s := t.grid, t.patch, t.size
	kp := 3 * p * p
	for gy := range g {
		for gx := range g {
			row := dst[(gy*g+gx)*ld : (gy*g+gx)*ld+kp]
			for c := range 3 {
				for py := range p {
					src := img[c*s*s+(gy*p+py)*s+gx*p:]
					copy(row[(c*p+py)*p:(c*p+py+1)*p], src[:p])
				}
			}
		}
	}
}
