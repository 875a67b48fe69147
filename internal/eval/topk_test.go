package eval

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"testing"
)

func TestTopKByHand(t *testing.T) {
	nan := float32(math.NaN())
	for _, c := range []struct {
		scores []float32
		k      int
		want   []int
	}{
		{[]float32{0.1, 0.9, 0.5, 0.7}, 2, []int{1, 3}},
		{[]float32{0.1, 0.9, 0.5, 0.7}, 10, []int{1, 3, 2, 0}},
		{[]float32{-1, -2}, 1, []int{0}},
		{[]float32{2, nan, 1}, 2, []int{1, 0}}, // NaN ranks first, as in PyTorch
		{[]float32{1}, 0, nil},
		{nil, 5, nil},
		// PyTorch 1.13 on CPU: torch.tensor([1,1,1,.5,1,.7,1,1,1,1]).topk(5)
		// gives indices [8, 6, 7, 1, 9].
		{[]float32{1, 1, 1, 0.5, 1, 0.7, 1, 1, 1, 1}, 5, []int{8, 6, 7, 1, 9}},
	} {
		if got := TopK(c.scores, c.k); !slices.Equal(got, c.want) {
			t.Errorf("TopK(%v, %d) = %v, want %v", c.scores, c.k, got, c.want)
		}
	}
	// Without ties the result is the scores' order, whatever the path
	// (nth_element for short rows, partial_sort for long ones).
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{5, 17, 64, 320, 1000} {
		s := make([]float32, n)
		for i := range s {
			s[i] = float32(i)
		}
		rng.Shuffle(n, func(i, j int) { s[i], s[j] = s[j], s[i] })
		got := TopK(s, 5)
		for r, i := range got {
			if s[i] != float32(n-1-r) {
				t.Fatalf("n=%d: rank %d holds %v, want %v", n, r, s[i], n-1-r)
			}
		}
	}
}

// TestTopKMatchesPyTorch compares TopK and ArgsortDesc with torch.topk and
// torch.argsort(descending=True) on rows full of ties
// and NaNs, of lengths that take both of PyTorch's paths. It needs
// /usr/bin/python3 with torch; without it the test is skipped unless
// TINYCLIP_REQUIRE_REFCLIP is set (as in CI), which makes it fail.
func TestTopKMatchesPyTorch(t *testing.T) {
	const python = "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import torch").Run(); err != nil {
		if os.Getenv("TINYCLIP_REQUIRE_REFCLIP") != "" {
			t.Fatalf("TINYCLIP_REQUIRE_REFCLIP is set but %s cannot import torch: %v", python, err)
		}
		t.Skipf("%s cannot import torch: comparison with torch.topk skipped", python)
	}
	type row struct {
		Scores []float64 `json:"s"`
		K      int       `json:"k"`
	}
	rng := rand.New(rand.NewPCG(5, 6))
	var rows []row
	for _, n := range []int{1, 2, 3, 4, 5, 7, 10, 16, 17, 33, 64, 100, 319, 320, 640, 1000, 2000} {
		for range 12 {
			levels := 1 + rng.IntN(6) // few distinct values: many ties
			r := row{K: 1 + rng.IntN(min(n, 6)), Scores: make([]float64, n)}
			for i := range r.Scores {
				r.Scores[i] = float64(rng.IntN(levels))
				if rng.IntN(50) == 0 {
					r.Scores[i] = -1 // NaN, encoded for JSON
				}
			}
			rows = append(rows, r)
		}
	}
	in, _ := json.Marshal(rows)
	const script = `
import sys, json, torch
rows = json.load(sys.stdin)
out = []
for r in rows:
    s = torch.tensor([float('nan') if v < 0 else v for v in r["s"]], dtype=torch.float32)
    out.append([s.topk(r["k"], largest=True, sorted=True).indices.tolist(), torch.argsort(s, descending=True).tolist()])
print(json.dumps(out))
`
	cmd := exec.Command(python, "-c", script)
	cmd.Stdin = bytes.NewReader(in)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python: %v", err)
	}
	var want [][2][]int
	if err := json.Unmarshal(out, &want); err != nil {
		t.Fatal(err)
	}
	bad := 0
	for i, r := range rows {
		s := make([]float32, len(r.Scores))
		for j, v := range r.Scores {
			s[j] = float32(v)
			if v < 0 {
				s[j] = float32(math.NaN())
			}
		}
		if got := TopK(s, r.K); !slices.Equal(got, want[i][0]) {
			bad++
			if bad <= 5 {
				t.Errorf("row %d (n=%d, k=%d): TopK %v, torch.topk %v", i, len(s), r.K, got, want[i][0])
			}
		}
		if got := ArgsortDesc(s); !slices.Equal(got, want[i][1]) {
			bad++
			if bad <= 5 {
				t.Errorf("row %d (n=%d): ArgsortDesc %v, torch.argsort %v", i, len(s), got, want[i][1])
			}
		}
	}
	t.Logf("%d rows compared with torch.topk and torch.argsort, %d differ", len(rows), bad)
}
