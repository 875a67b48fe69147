package search

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/tinyclip-go/tinyclip"
	"github.com/tinyclip-go/tinyclip/internal/npy"
)

// randomFlat returns n random unit vectors of width dim; with dup > 0 every
// dup-th row repeats the row before it, so that scores tie.
func randomFlat(n, dim, dup int, seed uint64) *flat {
	rng := rand.New(rand.NewPCG(seed, 1))
	f := &flat{dim: dim, vecs: make([]float32, n*dim), paths: make([]string, n), index: map[string]int{}}
	for i := 0; i < n; i++ {
		row := f.vecs[i*dim : (i+1)*dim]
		if dup > 0 && i > 0 && i%dup == 0 {
			copy(row, f.vecs[(i-1)*dim:i*dim])
		} else {
			for j := range row {
				row[j] = float32(rng.NormFloat64())
			}
			tinyclip.Normalize(row)
		}
		f.paths[i] = fmt.Sprintf("/img/%08d.jpg", i)
		f.index[f.paths[i]] = i
	}
	return f
}

// bruteTopK scores every row in float64 and sorts: an independent reference
// for topK (ties broken by row).
func bruteTopK(f *flat, q []float32, k int) []int {
	n := len(f.paths)
	score := make([]float64, n)
	for i := 0; i < n; i++ {
		var s float64
		for j := 0; j < f.dim; j++ {
			s += float64(f.vecs[i*f.dim+j]) * float64(q[j])
		}
		score[i] = s
	}
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return score[idx[a]] > score[idx[b]] })
	return idx[:min(k, n)]
}

func TestTopKMatchesBruteForce(t *testing.T) {
	for _, c := range []struct {
		n, dim, k, dup int
	}{
		{1, 4, 1, 0},
		{5, 3, 10, 0}, // k > n
		{1000, 16, 7, 0},
		{3000, 33, 50, 3}, // odd width, ties
		{parallelRows + 777, 64, 25, 0},
		{2*parallelRows + 5, 96, 100, 5},
	} {
		t.Run(fmt.Sprintf("n%d_d%d_k%d", c.n, c.dim, c.k), func(t *testing.T) {
			f := randomFlat(c.n, c.dim, c.dup, uint64(c.n))
			rng := rand.New(rand.NewPCG(9, 9))
			for trial := 0; trial < 3; trial++ {
				q := make([]float32, c.dim)
				if trial == 2 {
					copy(q, f.vecs[(c.n/2)*c.dim:]) // an exact row: score 1 at the top
				} else {
					for j := range q {
						q[j] = float32(rng.NormFloat64())
					}
					tinyclip.Normalize(q)
				}
				got, err := f.topK(context.Background(), q, c.k)
				if err != nil {
					t.Fatal(err)
				}
				want := bruteTopK(f, q, c.k)
				if len(got) != len(want) {
					t.Fatalf("%d results, want %d", len(got), len(want))
				}
				for i := range got {
					w := want[i]
					if got[i].Path != f.paths[w] {
						// Allowed only where float32 and float64 scores are
						// too close to order.
						var ws float64
						for j := 0; j < c.dim; j++ {
							ws += float64(f.vecs[w*c.dim+j]) * float64(q[j])
						}
						if d := float64(got[i].Score) - ws; d > 1e-5 || d < -1e-5 {
							t.Fatalf("rank %d: %s (%.7f), want %s (%.7f)", i, got[i].Path, got[i].Score, f.paths[w], ws)
						}
					}
					if i > 0 && got[i].Score > got[i-1].Score {
						t.Fatalf("results out of order at %d", i)
					}
				}
				if trial == 2 && got[0].Score < 0.9999 {
					t.Errorf("exact row scored %v", got[0].Score)
				}
			}
		})
	}
}

func TestTopKTiesAndErrors(t *testing.T) {
	f := randomFlat(10, 4, 0, 1)
	for i := 1; i < 10; i++ {
		copy(f.vecs[i*4:(i+1)*4], f.vecs[:4])
	}
	got, err := f.topK(context.Background(), f.vecs[:4], 4)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range got {
		if r.Path != f.paths[i] {
			t.Errorf("tie %d: %s, want %s (ties go to the earlier row)", i, r.Path, f.paths[i])
		}
	}
	if _, err := f.topK(context.Background(), make([]float32, 5), 3); err == nil || !strings.Contains(err.Error(), "5 dimensions") {
		t.Errorf("wrong query width: %v", err)
	}
	if res, err := f.topK(context.Background(), f.vecs[:4], 0); err != nil || len(res) != 0 {
		t.Errorf("k=0: %v %v", res, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	big := randomFlat(parallelRows, 8, 0, 2)
	if _, err := big.topK(ctx, big.vecs[:8], 3); err == nil {
		t.Error("cancelled query succeeded")
	}
}

func TestExport(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for i := 0; i < 4; i++ {
		writeFile(t, filepath.Join(dir, fmt.Sprintf("p%d.png", i)), testPNG(t, uint64(i), 8, 8))
	}
	enc := &fakeEncoder{dim: 6}
	db, err := OpenOrCreate(filepath.Join(t.TempDir(), "i.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Index(ctx, enc, dir, IndexOptions{}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "export", "nested")
	n, err := db.Export(ctx, out)
	if err != nil || n != 4 {
		t.Fatalf("Export: %d, %v", n, err)
	}
	arr, err := npy.ReadFile(filepath.Join(out, "embeddings.npy"))
	if err != nil {
		t.Fatal(err)
	}
	if arr.Descr != "<f4" || len(arr.Shape) != 2 || arr.Shape[0] != 4 || arr.Shape[1] != 6 {
		t.Fatalf("embeddings.npy: %s %v", arr.Descr, arr.Shape)
	}
	txt, err := os.ReadFile(filepath.Join(out, "paths.txt"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(txt), "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("paths.txt: %q", txt)
	}
	for i, p := range lines {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("paths.txt line %d: %v", i+1, err)
		}
		if d := maxAbsDiff(arr.F32[i*6:(i+1)*6], enc.vec(b)); d > 1e-7 {
			t.Errorf("row %d (%s) differs from the file's embedding by %g", i, p, d)
		}
	}
	// No temporary files are left behind.
	ents, _ := os.ReadDir(out)
	if len(ents) != 2 {
		t.Errorf("export folder holds %d entries, want 2", len(ents))
	}
}
