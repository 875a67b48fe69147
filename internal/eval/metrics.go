package eval

import "fmt"

// Accuracy accumulates the zero-shot metrics of the official evaluation:
// top-1 and top-k accuracy (a sample is correct at k when its label is among
// its k best classes), per-class top-1 accuracy and the confusion matrix of
// top-1 predictions. The zero value is not usable; call NewAccuracy.
type Accuracy struct {
	k         int
	n         int
	top1      int
	topk      int
	confusion [][]int // [label][prediction]
}

// NewAccuracy returns an empty Accuracy for classes classes, counting top-k
// with k capped at classes (the official evaluation uses k = 5).
func NewAccuracy(classes, k int) *Accuracy {
	a := &Accuracy{k: max(1, min(k, classes)), confusion: make([][]int, classes)}
	for i := range a.confusion {
		a.confusion[i] = make([]int, classes)
	}
	return a
}

// K returns the k of the top-k accuracy.
func (a *Accuracy) K() int { return a.k }

// Add counts one sample: its label and its classes ranked best first (at
// least K of them, as TopK returns).
func (a *Accuracy) Add(label int, ranked []int) error {
	c := len(a.confusion)
	if label < 0 || label >= c {
		return fmt.Errorf("eval: label %d out of range [0, %d)", label, c)
	}
	if len(ranked) < a.k {
		return fmt.Errorf("eval: %d ranked classes, want at least %d", len(ranked), a.k)
	}
	for _, r := range ranked[:a.k] {
		if r < 0 || r >= c {
			return fmt.Errorf("eval: predicted class %d out of range [0, %d)", r, c)
		}
	}
	a.n++
	if ranked[0] == label {
		a.top1++
	}
	for _, r := range ranked[:a.k] {
		if r == label {
			a.topk++
			break
		}
	}
	a.confusion[label][ranked[0]]++
	return nil
}

// N returns the number of samples counted.
func (a *Accuracy) N() int { return a.n }

// Top1 returns the top-1 accuracy (0 before any sample).
func (a *Accuracy) Top1() float64 { return ratio(a.top1, a.n) }

// TopK returns the top-K accuracy.
func (a *Accuracy) TopK() float64 { return ratio(a.topk, a.n) }

// ClassCount is the top-1 result of one class.
type ClassCount struct {
	Correct, Total int
}

// Accuracy returns Correct/Total (0 for a class without samples).
func (c ClassCount) Accuracy() float64 { return ratio(c.Correct, c.Total) }

// PerClass returns the top-1 counts of every class, by label.
func (a *Accuracy) PerClass() []ClassCount {
	out := make([]ClassCount, len(a.confusion))
	for l, row := range a.confusion {
		out[l].Correct = row[l]
		for _, v := range row {
			out[l].Total += v
		}
	}
	return out
}

// MeanPerClass returns the mean of the per-class top-1 accuracies over the
// classes that have samples (balanced accuracy).
func (a *Accuracy) MeanPerClass() float64 {
	var s float64
	n := 0
	for _, c := range a.PerClass() {
		if c.Total > 0 {
			s += c.Accuracy()
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return s / float64(n)
}

// Confusion returns a copy of the confusion matrix: element [l][p] counts the
// samples of label l predicted as p (top-1).
func (a *Accuracy) Confusion() [][]int {
	out := make([][]int, len(a.confusion))
	for i, r := range a.confusion {
		out[i] = append([]int(nil), r...)
	}
	return out
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}
