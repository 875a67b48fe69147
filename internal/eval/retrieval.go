package eval

import (
	"errors"
	"fmt"
	"math"
	"sort"
)

// RetrievalKs are the k of recall@k that open_clip reports.
var RetrievalKs = []int{1, 5, 10}

// RankStats summarises the rank of the correct item in one retrieval
// direction.
type RankStats struct {
	// Queries is the number of queries (images for image→text, captions for
	// text→image).
	Queries int `json:"queries"`
	// MeanRank is the mean 1-based rank of the correct item.
	MeanRank float64 `json:"mean_rank"`
	// MedianRank is floor(median of the 0-based ranks) + 1, as open_clip.
	MedianRank float64 `json:"median_rank"`
	// Recall maps k to the fraction of queries whose correct item is among
	// their k best.
	Recall map[int]float64 `json:"recall"`
}

// RetrievalResult holds both directions.
type RetrievalResult struct {
	ImageToText RankStats `json:"image_to_text"`
	TextToImage RankStats `json:"text_to_image"`
}

// Retrieval computes image–text retrieval metrics over image and text
// embeddings, where caption j belongs to image textImage[j]. Similarities are
// cosines (a logit scale does not change the order). Every image needs at
// least one caption.
//
// Ranks are positions in PyTorch's CPU argsort(descending=True) of each
// query's scores (so even exactly equal scores are ordered as in the
// reference runs; see ArgsortDesc). With one caption per image everything is
// open_clip's get_metrics: rank of the true item, mean rank + 1, floor(median)
// + 1, R@k = fraction of ranks below k. With several captions per image the
// recalls follow LAION's CLIP_benchmark (spec §8): an image query is a hit at
// k when any of its captions is among torch.topk's k best texts, a caption
// query when its image is among the k best images; an image's rank for the
// mean and median is the best rank of its captions.
func Retrieval(images, texts [][]float32, textImage []int, ks []int) (*RetrievalResult, error) {
	if len(images) == 0 || len(texts) == 0 {
		return nil, errors.New("eval: retrieval needs images and texts")
	}
	if len(textImage) != len(texts) {
		return nil, fmt.Errorf("eval: %d caption owners for %d captions", len(textImage), len(texts))
	}
	dim := len(images[0])
	for _, group := range [][][]float32{images, texts} {
		for _, e := range group {
			if len(e) != dim {
				return nil, fmt.Errorf("eval: embeddings of %d and %d values", len(e), dim)
			}
		}
	}
	captions := make([]int, len(images))
	for j, i := range textImage {
		if i < 0 || i >= len(images) {
			return nil, fmt.Errorf("eval: caption %d belongs to image %d of %d", j, i, len(images))
		}
		captions[i]++
	}
	single := true
	for i, c := range captions {
		if c == 0 {
			return nil, fmt.Errorf("eval: image %d has no caption", i)
		}
		single = single && c == 1
	}
	img := normalizedRows(images)
	txt := normalizedRows(texts)
	// sim[i][j] = cos(image i, text j)
	sim := make([][]float32, len(img))
	for i, a := range img {
		sim[i] = make([]float32, len(txt))
		for j, b := range txt {
			var s float32
			for d := range a {
				s += a[d] * b[d]
			}
			sim[i][j] = s
		}
	}
	i2t := make([]int, len(img))
	i2tHits := make([]map[int]bool, len(img))
	for i := range img {
		pos := positions(ArgsortDesc(sim[i]))
		best := math.MaxInt
		for j, owner := range textImage {
			if owner == i {
				best = min(best, pos[j])
			}
		}
		i2t[i] = best
		if !single {
			i2tHits[i] = map[int]bool{}
			for _, k := range ks {
				for _, j := range TopK(sim[i], k) {
					if textImage[j] == i {
						i2tHits[i][k] = true
						break
					}
				}
			}
		}
	}
	t2i := make([]int, len(txt))
	t2iHits := make([]map[int]bool, len(txt))
	col := make([]float32, len(img))
	for j, owner := range textImage {
		for i := range img {
			col[i] = sim[i][j]
		}
		t2i[j] = positions(ArgsortDesc(col))[owner]
		if !single {
			t2iHits[j] = map[int]bool{}
			for _, k := range ks {
				for _, i := range TopK(col, k) {
					if i == owner {
						t2iHits[j][k] = true
					}
				}
			}
		}
	}
	res := &RetrievalResult{ImageToText: rankStats(i2t, ks), TextToImage: rankStats(t2i, ks)}
	if !single {
		res.ImageToText.Recall = hitRates(i2tHits, ks)
		res.TextToImage.Recall = hitRates(t2iHits, ks)
	}
	return res, nil
}

// positions inverts an ordering: positions(order)[item] = its place.
func positions(order []int) []int {
	pos := make([]int, len(order))
	for p, i := range order {
		pos[i] = p
	}
	return pos
}

func hitRates(hits []map[int]bool, ks []int) map[int]float64 {
	out := map[int]float64{}
	for _, k := range ks {
		n := 0
		for _, h := range hits {
			if h[k] {
				n++
			}
		}
		out[k] = float64(n) / float64(len(hits))
	}
	return out
}

func normalizedRows(v [][]float32) [][]float32 {
	out := make([][]float32, len(v))
	for i, e := range v {
		n := float32(max(norm(e), 1e-12))
		out[i] = make([]float32, len(e))
		for d, x := range e {
			out[i][d] = x / n
		}
	}
	return out
}

// rankStats turns 0-based ranks into open_clip's numbers.
func rankStats(ranks []int, ks []int) RankStats {
	st := RankStats{Queries: len(ranks), Recall: map[int]float64{}}
	sorted := append([]int(nil), ranks...)
	sort.Ints(sorted)
	var sum float64
	for _, r := range ranks {
		sum += float64(r)
	}
	st.MeanRank = sum/float64(len(ranks)) + 1
	// np.median: the middle value, or the mean of the two middle values.
	n := len(sorted)
	med := float64(sorted[n/2])
	if n%2 == 0 {
		med = (float64(sorted[n/2-1]) + float64(sorted[n/2])) / 2
	}
	st.MedianRank = math.Floor(med) + 1
	for _, k := range ks {
		hits := 0
		for _, r := range ranks {
			if r < k {
				hits++
			}
		}
		st.Recall[k] = float64(hits) / float64(len(ranks))
	}
	return st
}
