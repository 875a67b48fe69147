package eval

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
)

// table is a fake text encoder returning fixed vectors.
type table map[string][]float32

func (tb table) encode(calls *[]int) TextEncoder {
	return func(ctx context.Context, texts []string) ([][]float32, error) {
		if calls != nil {
			*calls = append(*calls, len(texts))
		}
		out := make([][]float32, len(texts))
		for i, t := range texts {
			v, ok := tb[t]
			if !ok {
				return nil, errors.New("unexpected text " + t)
			}
			out[i] = slices.Clone(v)
		}
		return out, nil
	}
}

func TestBuildClassifierByHand(t *testing.T) {
	tb := table{
		// cat: (3,4)/5 = (0.6,0.8) and (0,2)/2 = (0,1); mean (0.3,0.9);
		// normalised (1,3)/√10.
		"a cat": {3, 4}, "cat!": {0, 2},
		// dog: (−1,0) and (−5,0): mean (−1,0).
		"a dog": {-1, 0}, "dog!": {-5, 0},
	}
	var calls []int
	w, err := BuildClassifier(context.Background(), tb.encode(&calls), []string{"cat", "dog"}, []string{"a {}", "{}!"},
		BuildOptions{BatchSize: 3})
	if err != nil {
		t.Fatal(err)
	}
	want := [][]float64{{1 / math.Sqrt(10), 3 / math.Sqrt(10)}, {-1, 0}}
	for c := range want {
		for d := range want[c] {
			if math.Abs(float64(w[c][d])-want[c][d]) > 1e-7 {
				t.Errorf("w[%d][%d] = %v, want %v", c, d, w[c][d], want[c][d])
			}
		}
	}
	if !slices.Equal(calls, []int{3, 1}) {
		t.Errorf("encoder calls of %v prompts, want [3 1] (batches across class boundaries)", calls)
	}

	// Logits: 100 · cos, whatever the image norm.
	l, err := Logits(nil, w, []float32{0, 7})
	if err != nil || math.Abs(float64(l[0])-100*3/math.Sqrt(10)) > 1e-4 || math.Abs(float64(l[1])) > 1e-6 {
		t.Errorf("logits %v, %v", l, err)
	}
	if _, err := Logits(nil, w, []float32{1, 2, 3}); err == nil {
		t.Error("wrong image width accepted")
	}
}

func TestBuildClassifierErrors(t *testing.T) {
	ctx := context.Background()
	tb := table{"a": {1, 0}, "b": {1}}
	if _, err := BuildClassifier(ctx, tb.encode(nil), nil, nil, BuildOptions{}); !errors.Is(err, ErrNoClasses) {
		t.Errorf("no classes: %v", err)
	}
	if _, err := BuildClassifier(ctx, tb.encode(nil), []string{"a", " "}, nil, BuildOptions{}); err == nil || !strings.Contains(err.Error(), "class 1 is blank") {
		t.Errorf("blank class: %v", err)
	}
	if _, err := BuildClassifier(ctx, tb.encode(nil), []string{"a", "b"}, nil, BuildOptions{}); err == nil {
		t.Error("embeddings of different widths accepted")
	}
	if _, err := BuildClassifier(ctx, tb.encode(nil), []string{"a", "zzz"}, nil, BuildOptions{}); err == nil || !strings.Contains(err.Error(), `"a"`) {
		t.Errorf("encoder error: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := BuildClassifier(cctx, tb.encode(nil), []string{"a"}, nil, BuildOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	// The progress callback sees every batch.
	var seen []int
	tb2 := table{"x": {1}, "y": {2}, "z": {3}}
	_, err := BuildClassifier(ctx, tb2.encode(nil), []string{"x", "y", "z"}, nil,
		BuildOptions{BatchSize: 2, Progress: func(done, total int) { seen = append(seen, done, total) }})
	if err != nil || !slices.Equal(seen, []int{2, 3, 3, 3}) {
		t.Errorf("progress %v, %v", seen, err)
	}
}

func TestAccuracy(t *testing.T) {
	a := NewAccuracy(3, 5)
	if a.K() != 3 {
		t.Errorf("k = %d, want 3 (capped at the class count)", a.K())
	}
	// label, ranking
	for _, s := range []struct {
		label  int
		ranked []int
	}{
		{0, []int{0, 1, 2}}, // top-1 hit
		{0, []int{2, 0, 1}}, // top-2
		{1, []int{2, 0, 1}}, // top-3
		{2, []int{2, 1, 0}}, // top-1 hit
	} {
		if err := a.Add(s.label, s.ranked); err != nil {
			t.Fatal(err)
		}
	}
	if a.N() != 4 || a.Top1() != 0.5 || a.TopK() != 1 {
		t.Errorf("n %d top1 %v top3 %v", a.N(), a.Top1(), a.TopK())
	}
	pc := a.PerClass()
	if pc[0] != (ClassCount{1, 2}) || pc[1] != (ClassCount{0, 1}) || pc[2] != (ClassCount{1, 1}) {
		t.Errorf("per class %v", pc)
	}
	if got := a.MeanPerClass(); math.Abs(got-0.5) > 1e-12 {
		t.Errorf("mean per class %v, want (0.5+0+1)/3", got)
	}
	want := [][]int{{1, 0, 1}, {0, 0, 1}, {0, 0, 1}}
	for l := range want {
		if !slices.Equal(a.Confusion()[l], want[l]) {
			t.Errorf("confusion row %d = %v, want %v", l, a.Confusion()[l], want[l])
		}
	}
	top2 := NewAccuracy(10, 2)
	top2.Add(3, []int{1, 2, 3})
	if top2.TopK() != 0 {
		t.Error("label at rank 3 counted in top-2")
	}
	for _, bad := range []struct {
		label  int
		ranked []int
	}{{3, []int{0, 1, 2}}, {-1, []int{0, 1, 2}}, {0, []int{0, 1}}, {0, []int{0, 1, 7}}} {
		if err := a.Add(bad.label, bad.ranked); err == nil {
			t.Errorf("Add(%d, %v) accepted", bad.label, bad.ranked)
		}
	}
}
