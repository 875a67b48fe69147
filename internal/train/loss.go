package train

import (
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // GoMLX graph-building style
)

// lossTerms are the scalar nodes of one loss evaluation. Terms that are not
// computed are nil.
type lossTerms struct {
	total *Node
	// softI2T and softT2I are the unweighted soft cross-entropies (means
	// over rows) of the affinity-mimicking loss.
	softI2T, softT2I *Node
	// hard is the symmetric CLIP loss ½(CE_i2t + CE_t2i), unweighted.
	hard *Node
}

// affinityLoss is TinyCLIP's distillation loss (spec §5) for one device:
// si, st [B, Ds] are the student's image and text features and ti, tt
// [B, Dt] the teacher's (used as given: the loss does not normalise), s and
// t the student's and teacher's scales (multipliers, not logarithms). The
// soft term α·w·(½CE_i2t + ½CE_t2i) compares each row's student softmax
// with the teacher's row softmax; the hard CLIP term (1−α)·w·CLIP is added
// when α < 1.
func affinityLoss(si, st, ti, tt, s, t *Node, alpha, weight float64) lossTerms {
	var lt lossTerms
	if alpha > 0 && weight > 0 {
		sImg := Mul(s, si)
		sTxt := Mul(s, st)
		tImg := Mul(t, ti)
		tTxt := Mul(t, tt)
		lt.softI2T = softCrossEntropy(rowDots(sImg, st), Softmax(rowDots(tImg, tt), -1))
		lt.softT2I = softCrossEntropy(rowDots(sTxt, si), Softmax(rowDots(tTxt, ti), -1))
		c := 0.5 * alpha * weight
		lt.total = Add(MulScalar(lt.softI2T, c), MulScalar(lt.softT2I, c))
	}
	if alpha < 1 && weight > 0 {
		lt.hard = clipLoss(si, st, s)
		h := MulScalar(lt.hard, (1-alpha)*weight)
		if lt.total == nil {
			lt.total = h
		} else {
			lt.total = Add(lt.total, h)
		}
	}
	if lt.total == nil {
		lt.total = ScalarZero(si.Graph(), si.DType())
	}
	return lt
}

// clipLoss is the symmetric CLIP contrastive loss with labels 0…B−1:
// ½[CE(s·I·Tᵀ, y) + CE(s·T·Iᵀ, y)].
func clipLoss(img, txt, s *Node) *Node {
	li := rowDots(Mul(s, img), txt)
	lt := rowDots(Mul(s, txt), img)
	return MulScalar(Add(labelCrossEntropy(li), labelCrossEntropy(lt)), 0.5)
}

// rowDots returns a·bᵀ for a [B, D] and b [N, D].
func rowDots(a, b *Node) *Node {
	return DotGeneral(a, []int{1}, nil, b, []int{1}, nil)
}

// softCrossEntropy is −mean_rows Σ_cols p·log_softmax(logits), PyTorch's
// cross_entropy with probability targets.
func softCrossEntropy(logits, p *Node) *Node {
	return Neg(ReduceAllMean(ReduceSum(Mul(p, LogSoftmax(logits, -1)), 1)))
}

// labelCrossEntropy is the cross-entropy of square logits [B, B] against
// the labels 0…B−1 (the diagonal), mean over rows.
func labelCrossEntropy(logits *Node) *Node {
	g := logits.Graph()
	ls := LogSoftmax(logits, -1)
	eye := Equal(Iota(g, logits.Shape(), 0), Iota(g, logits.Shape(), 1))
	picked := ReduceSum(Where(eye, ls, ZerosLike(ls)), 1)
	return Neg(ReduceAllMean(picked))
}
