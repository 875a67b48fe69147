package engine

import (
	"context"
	"fmt"

	"github.com/tinyclip-go/tinyclip/internal/config"
)

// textBatchTokens bounds the number of token rows run through the text tower
// together.
const textBatchTokens = 2048

// serialMACs is the work (multiply-accumulates of the blocks' products)
// below which a batch of texts runs on one thread: under about a
// millisecond at one thread, the wake-ups of a parallel loop per product
// cost more than the second thread saves (measured with
// BenchmarkEncodeTextViT8M16, one 9-token Text-3M text, 21 M MACs: 0.54 ms
// on one thread, 0.61 ms split over two). A 9-token Text-19M text (170 M)
// is still split: 5.2 → 3.5–3.8 ms (go test -bench; docs/performance.md,
// session 4).
const serialMACs = 48 << 20

// textTower is the causal text tower (spec §1.1.3).
type textTower struct {
	ctxLen, vocab, width, embed int
	tok, pos                    []float32 // vocab×width, ctxLen×width
	tf                          transformer
	lnG, lnB                    []float32
	proj                        *packedB // width → embed
}

func buildText(l *loader, t *config.TextArch) (*textTower, error) {
	w := t.Transformer.Width
	tt := &textTower{ctxLen: t.ContextLength, vocab: t.VocabSize, width: w, embed: t.Embed}
	tt.tok = l.get("token_embedding.weight", t.VocabSize, w)
	tt.pos = l.get("positional_embedding", t.ContextLength, w)
	tt.tf = buildTransformer(l, "", &t.Transformer)
	tt.lnG = l.get("ln_final.weight", w)
	tt.lnB = l.get("ln_final.bias", w)
	proj := l.get("text_projection", w, t.Embed)
	if l.err != nil {
		return nil, l.err
	}
	tt.proj = l.packN(proj, w, t.Embed)
	return tt, nil
}

// pooledIndex validates one token row and returns the position of its first
// largest id.
func (t *textTower) pooledIndex(i int, row []int) (int, error) {
	if len(row) == 0 {
		return 0, fmt.Errorf("engine: encode texts: row %d is empty", i)
	}
	if len(row) > t.ctxLen {
		return 0, fmt.Errorf("engine: encode texts: row %d has %d tokens, more than the context length %d", i, len(row), t.ctxLen)
	}
	p := 0
	for j, id := range row {
		if id < 0 || id >= t.vocab {
			return 0, fmt.Errorf("engine: encode texts: row %d, position %d: token id %d outside the vocabulary [0, %d)", i, j, id, t.vocab)
		}
		if id > row[p] {
			p = j
		}
	}
	return p, nil
}

// encode writes the features of the token rows to out [len(ids)×embed].
func (t *textTower) encode(ctx context.Context, threads int, ids [][]int, out []float32) error {
	pool := make([]int, len(ids))
	for i, row := range ids {
		p, err := t.pooledIndex(i, row)
		if err != nil {
			return err
		}
		pool[i] = p
	}
	for i0 := 0; i0 < len(ids); {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("engine: encode texts: %w", err)
		}
		i1, rows := i0, 0
		for i1 < len(ids) && (i1 == i0 || rows+pool[i1]+1 <= textBatchTokens) {
			rows += pool[i1] + 1
			i1++
		}
		th := threads
		if rows*t.tf.macsPerRow() < serialMACs {
			th = 1
		}
		if err := t.encodeBatch(ctx, th, ids[i0:i1], pool[i0:i1], rows, out[i0*t.embed:]); err != nil {
			return err
		}
		i0 = i1
	}
	return nil
}

func (t *textTower) encodeBatch(ctx context.Context, threads int, ids [][]int, pool []int, rows int, out []float32) error {
	w := t.width
	x := getScratch(rows * w)
	seqs := make([]seq, len(ids))
	off := 0
	for i, row := range ids {
		n := pool[i] + 1
		for j, id := range row[:n] {
			dst := x.f[(off+j)*w : (off+j+1)*w]
			e := t.tok[id*w : (id+1)*w]
			p := t.pos[j*w : (j+1)*w]
			for k := range dst {
				dst[k] = e[k] + p[k]
			}
		}
		seqs[i] = seq{off: off, n: n, pool: n - 1}
		off += n
	}
	xp := getScratch(len(ids) * w)
	err := t.tf.forward(ctx, threads, x.f, seqs, true, xp.f)
	putScratch(x)
	if err == nil {
		layerNorm(xp.f, xp.f, len(ids), w, t.lnG, t.lnB)
		sgemm(threads, len(ids), xp.f, w, t.proj, out, t.embed, epilogue{})
	}
	putScratch(xp)
	if err != nil {
		return fmt.Errorf("engine: encode texts: %w", err)
	}
	return nil
}
