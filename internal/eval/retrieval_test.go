package eval

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func checkStats(t *testing.T, dir string, got RankStats, queries int, mean, median float64, recall map[int]float64) {
	t.Helper()
	if got.Queries != queries || !near(got.MeanRank, mean) || !near(got.MedianRank, median) {
		t.Errorf("%s: queries %d mean %v median %v; want %d, %v, %v", dir, got.Queries, got.MeanRank, got.MedianRank, queries, mean, median)
	}
	for k, r := range recall {
		if !near(got.Recall[k], r) {
			t.Errorf("%s: R@%d = %v, want %v", dir, k, got.Recall[k], r)
		}
	}
}

// TestRetrievalByHand works through small cases whose cosines are easy to
// rank by hand (see the comments for the similarity matrices).
func TestRetrievalByHand(t *testing.T) {
	images := [][]float32{{1, 0}, {0, 1}, {0.6, 0.8}}
	texts := [][]float32{{0.8, 0.6}, {0, 5}, {2, 0}} // norms do not matter
	// cos[image][text]:
	//   I0: 0.8  0    1
	//   I1: 0.6  1    0
	//   I2: 0.96 0.8  0.6
	// image→text ranks of the true caption (diagonal): 1, 0, 2
	// text→image ranks of the true image (diagonal, per column): 1, 0, 1
	r, err := Retrieval(images, texts, []int{0, 1, 2}, []int{1, 2, 10})
	if err != nil {
		t.Fatal(err)
	}
	checkStats(t, "i→t", r.ImageToText, 3, 2, 2, map[int]float64{1: 1.0 / 3, 2: 2.0 / 3, 10: 1})
	checkStats(t, "t→i", r.TextToImage, 3, 2.0/3+1, 2, map[int]float64{1: 1.0 / 3, 2: 1, 10: 1})

	// A second caption of I2 equal to it: I2's best caption is now at rank
	// 0; the new caption ranks its image first among (0.6, 0.8, 1.0).
	texts = append(texts, []float32{0.6, 0.8})
	r, err = Retrieval(images, texts, []int{0, 1, 2, 2}, RetrievalKs)
	if err != nil {
		t.Fatal(err)
	}
	// i→t ranks 1, 0, 0; t→i ranks 1, 0, 1, 0 (median of 0,0,1,1 = 0.5 → 1).
	checkStats(t, "i→t, 2 captions", r.ImageToText, 3, 1.0/3+1, 1, map[int]float64{1: 2.0 / 3, 5: 1, 10: 1})
	checkStats(t, "t→i, 2 captions", r.TextToImage, 4, 1.5, 1, map[int]float64{1: 0.5, 5: 1, 10: 1})

	// Exact ties are ordered as torch.argsort orders them (for two items,
	// the earlier one first).
	same := [][]float32{{1, 0}, {1, 0}}
	r, err = Retrieval(same, same, []int{0, 1}, []int{1})
	if err != nil {
		t.Fatal(err)
	}
	checkStats(t, "ties i→t", r.ImageToText, 2, 1.5, 1, map[int]float64{1: 0.5})
	checkStats(t, "ties t→i", r.TextToImage, 2, 1.5, 1, map[int]float64{1: 0.5})

	for name, c := range map[string]struct {
		images, texts [][]float32
		owner         []int
	}{
		"no texts":        {images, nil, nil},
		"owner count":     {images, texts, []int{0, 1}},
		"owner range":     {images, texts[:3], []int{0, 1, 3}},
		"image uncovered": {images, texts[:2], []int{0, 1}},
		"widths":          {images, [][]float32{{1, 0, 0}, {1, 0}, {1, 0}}, []int{0, 1, 2}},
	} {
		if _, err := Retrieval(c.images, c.texts, c.owner, RetrievalKs); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestRetrievalMatchesOpenCLIP compares Retrieval on random embeddings
// (no ties) with literal transcriptions of the reference code: open_clip's
// get_metrics (argsort of each row, position of the ground truth) for one
// caption per image, and CLIP_benchmark's recall_at_k (top-k indices, any
// positive pair among them) for several captions per image. Tied scores are
// covered by TestTopKMatchesPyTorch and by the CLI's comparison with
// refclip.py.
func TestRetrievalMatchesOpenCLIP(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	randn := func(n, d int) [][]float32 {
		out := make([][]float32, n)
		for i := range out {
			out[i] = make([]float32, d)
			for k := range out[i] {
				out[i][k] = float32(rng.NormFloat64())
			}
		}
		return out
	}
	cos := func(a, b [][]float32) [][]float64 {
		a, b = normalizedRows(a), normalizedRows(b)
		out := make([][]float64, len(a))
		for i := range a {
			out[i] = make([]float64, len(b))
			for j := range b {
				var s float32
				for d := range a[i] {
					s += a[i][d] * b[j][d]
				}
				out[i][j] = float64(s)
			}
		}
		return out
	}
	argsortDesc := func(row []float64) []int {
		idx := make([]int, len(row))
		for i := range idx {
			idx[i] = i
		}
		sort.SliceStable(idx, func(a, b int) bool { return row[idx[a]] > row[idx[b]] })
		return idx
	}

	// One caption per image: get_metrics.
	const n = 40
	images, texts := randn(n, 8), randn(n, 8)
	owner := make([]int, n)
	for i := range owner {
		owner[i] = i
	}
	got, err := Retrieval(images, texts, owner, RetrievalKs)
	if err != nil {
		t.Fatal(err)
	}
	logits := cos(images, texts)
	for _, dir := range []string{"image_to_text", "text_to_image"} {
		l := logits
		st := got.ImageToText
		if dir == "text_to_image" {
			l = make([][]float64, n)
			for j := range l {
				l[j] = make([]float64, n)
				for i := range l[j] {
					l[j][i] = logits[i][j]
				}
			}
			st = got.TextToImage
		}
		var preds []float64
		for i, row := range l {
			for pos, j := range argsortDesc(row) {
				if j == i {
					preds = append(preds, float64(pos))
				}
			}
		}
		var mean float64
		for _, p := range preds {
			mean += p
		}
		mean = mean/float64(len(preds)) + 1
		sorted := append([]float64(nil), preds...)
		sort.Float64s(sorted)
		median := math.Floor((sorted[n/2-1]+sorted[n/2])/2) + 1
		want := map[int]float64{}
		for _, k := range RetrievalKs {
			hits := 0
			for _, p := range preds {
				if p < float64(k) {
					hits++
				}
			}
			want[k] = float64(hits) / float64(n)
		}
		checkStats(t, dir, st, n, mean, median, want)
	}

	// Several captions per image: recall_at_k of CLIP_benchmark.
	const m = 30
	images = randn(m, 6)
	var texts2 [][]float32
	var owner2 []int
	for i := range m {
		for range 1 + rng.IntN(3) {
			texts2 = append(texts2, images[i]) // a noisy copy of its image
			noisy := texts2[len(texts2)-1]
			texts2[len(texts2)-1] = make([]float32, len(noisy))
			for d := range noisy {
				texts2[len(texts2)-1][d] = noisy[d] + 1.5*float32(rng.NormFloat64())
			}
			owner2 = append(owner2, i)
		}
	}
	got, err = Retrieval(images, texts2, owner2, RetrievalKs)
	if err != nil {
		t.Fatal(err)
	}
	scores := cos(texts2, images) // [texts, images], as CLIP_benchmark
	for _, k := range RetrievalKs {
		// image_retrieval_recall@k: per text, is its image in the top k?
		hits := 0
		for j, row := range scores {
			for _, i := range argsortDesc(row)[:k] {
				if i == owner2[j] {
					hits++
				}
			}
		}
		if want := float64(hits) / float64(len(texts2)); !near(got.TextToImage.Recall[k], want) {
			t.Errorf("t→i R@%d = %v, CLIP_benchmark %v", k, got.TextToImage.Recall[k], want)
		}
		// text_retrieval_recall@k: per image, any of its captions in the top k.
		hits = 0
		for i := range m {
			col := make([]float64, len(texts2))
			for j := range col {
				col[j] = scores[j][i]
			}
			for _, j := range argsortDesc(col)[:k] {
				if owner2[j] == i {
					hits++
					break
				}
			}
		}
		if want := float64(hits) / float64(m); !near(got.ImageToText.Recall[k], want) {
			t.Errorf("i→t R@%d = %v, CLIP_benchmark %v", k, got.ImageToText.Recall[k], want)
		}
	}
	t.Logf("random multi-caption case: %d images, %d captions, i→t %v, t→i %v", m, len(texts2), got.ImageToText.Recall, got.TextToImage.Recall)
}
