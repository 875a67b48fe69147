package search

import (
	"container/heap"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"sync"

	"github.com/tinyclip-go/tinyclip"
	"github.com/tinyclip-go/tinyclip/internal/engine"
)

// Result is one search hit.
type Result struct {
	// Path is the image file's absolute path.
	Path string `json:"path"`
	// Score is the cosine similarity between the query and the image.
	Score float32 `json:"score"`
}

// Query is a search request: a text, an encoded image file, or both. With
// both, the query vector is the normalised sum of the two normalised
// embeddings, so that images matching both rank first.
type Query struct {
	Text  string
	Image []byte
}

// ErrEmptyQuery is returned for a query with neither text nor image.
var ErrEmptyQuery = errors.New("search: empty query: give a text, an image or both")

// flat holds every indexed vector in one row-major matrix.
type flat struct {
	dim   int
	vecs  []float32 // len(paths) rows of dim
	paths []string  // in index (row id) order
	index map[string]int
}

// blockRows is how many scores are computed per engine.MatVec call: the
// scores of a block stay in L1 while they are pushed into the heap.
const blockRows = 1024

// parallelRows is the collection size from which a query is split over
// goroutines.
const parallelRows = 32 * 1024

// topK returns the k rows with the highest dot product with q, best first;
// ties go to the lower row (the file indexed first).
func (f *flat) topK(ctx context.Context, q []float32, k int) ([]Result, error) {
	n := len(f.paths)
	if len(q) != f.dim {
		return nil, fmt.Errorf("search: query has %d dimensions, the index %d", len(q), f.dim)
	}
	if k <= 0 || n == 0 {
		return []Result{}, nil
	}
	if k > n {
		k = n
	}
	workers := 1
	if n >= parallelRows {
		workers = runtime.GOMAXPROCS(0)
	}
	parts := make([]hitHeap, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		lo, hi := n*w/workers, n*(w+1)/workers
		wg.Add(1)
		go func() {
			defer wg.Done()
			parts[w], errs[w] = f.scan(ctx, q, k, lo, hi)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var all []hit
	for _, p := range parts {
		all = append(all, p...)
	}
	sort.Slice(all, func(i, j int) bool { return better(all[i], all[j]) })
	if len(all) > k {
		all = all[:k]
	}
	out := make([]Result, len(all))
	for i, h := range all {
		out[i] = Result{Path: f.paths[h.row], Score: h.score}
	}
	return out, nil
}

// scan keeps the k best rows of [lo, hi).
func (f *flat) scan(ctx context.Context, q []float32, k, lo, hi int) (hitHeap, error) {
	h := make(hitHeap, 0, k)
	var scores [blockRows]float32
	d := f.dim
	for b := lo; b < hi; b += blockRows {
		if (b-lo)%(64*blockRows) == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		e := min(b+blockRows, hi)
		s := scores[:e-b]
		engine.MatVec(s, f.vecs[b*d:e*d], q)
		for i, sc := range s {
			x := hit{row: b + i, score: sc}
			if len(h) < k {
				heap.Push(&h, x)
			} else if better(x, h[0]) {
				h[0] = x
				heap.Fix(&h, 0)
			}
		}
	}
	return h, nil
}

type hit struct {
	row   int
	score float32
}

// better orders hits by score, then by row.
func better(a, b hit) bool {
	if a.score != b.score {
		return a.score > b.score
	}
	return a.row < b.row
}

// hitHeap is a min-heap: the worst kept hit on top.
type hitHeap []hit

func (h hitHeap) Len() int           { return len(h) }
func (h hitHeap) Less(i, j int) bool { return better(h[j], h[i]) }
func (h hitHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *hitHeap) Push(x any)        { *h = append(*h, x.(hit)) }
func (h *hitHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// vectors returns the loaded vectors, reading them from the file when they
// were never loaded or the file changed since (through this DB or another
// process).
func (db *DB) vectors(ctx context.Context) (*flat, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	var ver int64
	if err := db.sql.QueryRowContext(ctx, `PRAGMA data_version`).Scan(&ver); err != nil {
		return nil, fmt.Errorf("search: %s: %w", db.path, err)
	}
	if db.cache != nil && ver == db.dataVer && db.ownGen == db.cacheGn {
		return db.cache, nil
	}
	if ver != db.dataVer && db.cache != nil {
		// Another process may have created the index's model meanwhile.
		if err := db.reloadModelLocked(ctx); err != nil {
			return nil, err
		}
	}
	if db.model == nil {
		if err := db.reloadModelLocked(ctx); err != nil {
			return nil, err
		}
		if db.model == nil {
			db.cache, db.dataVer, db.cacheGn = &flat{index: map[string]int{}}, ver, db.ownGen
			return db.cache, nil
		}
	}
	f, err := db.load(ctx, db.model.Dim)
	if err != nil {
		return nil, err
	}
	db.cache, db.dataVer, db.cacheGn = f, ver, db.ownGen
	return f, nil
}

// reloadModelLocked rereads the model from the meta table.
func (db *DB) reloadModelLocked(ctx context.Context) error {
	meta, err := db.readMeta(ctx)
	if err != nil {
		return err
	}
	if _, ok := meta["model"]; !ok {
		return nil
	}
	info, probe, err := parseModelMeta(db.path, meta)
	if err != nil {
		return err
	}
	db.model, db.probe = info, probe
	return nil
}

// load reads every vector into one matrix, in row id order (the table's
// storage order, so the scan is sequential).
func (db *DB) load(ctx context.Context, dim int) (*flat, error) {
	var n int
	if err := db.sql.QueryRowContext(ctx, `SELECT count(*) FROM images`).Scan(&n); err != nil {
		return nil, fmt.Errorf("search: %s: %w", db.path, err)
	}
	f := &flat{dim: dim, vecs: make([]float32, 0, n*dim), paths: make([]string, 0, n), index: make(map[string]int, n)}
	rows, err := db.sql.QueryContext(ctx, `SELECT path, embedding FROM images ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("search: %s: reading vectors: %w", db.path, err)
	}
	defer rows.Close()
	var blob sql.RawBytes // valid until the next call of Next: decoded at once
	for rows.Next() {
		var p string
		if err := rows.Scan(&p, &blob); err != nil {
			return nil, fmt.Errorf("search: %s: reading vectors: %w", db.path, err)
		}
		if len(blob) != 4*dim {
			return nil, fmt.Errorf("search: %s: %s: stored embedding of %d bytes, want %d", db.path, p, len(blob), 4*dim)
		}
		off := len(f.vecs)
		f.vecs = append(f.vecs, make([]float32, dim)...)
		decodeVecInto(f.vecs[off:], blob)
		f.index[p] = len(f.paths)
		f.paths = append(f.paths, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("search: %s: reading vectors: %w", db.path, err)
	}
	return f, nil
}

// Search returns the k indexed images nearest to the query vector v (an
// L2-normalised embedding of the index's model), best first.
func (db *DB) Search(ctx context.Context, v []float32, k int) ([]Result, error) {
	f, err := db.vectors(ctx)
	if err != nil {
		return nil, err
	}
	if f.dim == 0 {
		return []Result{}, nil
	}
	return f.topK(ctx, v, k)
}

// Embed returns the query vector of q under enc, after checking that enc is
// the index's model.
func (db *DB) Embed(ctx context.Context, enc Encoder, q Query) ([]float32, error) {
	if q.Text == "" && len(q.Image) == 0 {
		return nil, ErrEmptyQuery
	}
	if err := db.CheckModel(ctx, enc); err != nil {
		return nil, err
	}
	return embedQuery(ctx, enc, q)
}

// embedQuery embeds q without checking the model.
func embedQuery(ctx context.Context, enc Encoder, q Query) ([]float32, error) {
	if q.Text == "" && len(q.Image) == 0 {
		return nil, ErrEmptyQuery
	}
	var vecs [][]float32
	if q.Text != "" {
		t, err := enc.EncodeTexts(ctx, []string{q.Text})
		if err != nil {
			return nil, fmt.Errorf("search: query text: %w", err)
		}
		vecs = append(vecs, t[0])
	}
	if len(q.Image) > 0 {
		im, err := enc.EncodeImageBytes(ctx, [][]byte{q.Image})
		if err != nil {
			return nil, fmt.Errorf("search: query image: %w", err)
		}
		vecs = append(vecs, im[0])
	}
	v := append([]float32(nil), vecs[0]...)
	for _, w := range vecs[1:] {
		if len(w) != len(v) {
			return nil, fmt.Errorf("search: text and image embeddings differ in width (%d, %d)", len(v), len(w))
		}
		for i := range v {
			v[i] += w[i]
		}
	}
	return tinyclip.Normalize(v), nil
}

// Find embeds q with enc and returns the k nearest indexed images.
func (db *DB) Find(ctx context.Context, enc Encoder, q Query, k int) ([]Result, error) {
	v, err := db.Embed(ctx, enc, q)
	if err != nil {
		return nil, err
	}
	return db.Search(ctx, v, k)
}

// Contains reports whether path is an indexed image (as stored: absolute,
// cleaned).
func (db *DB) Contains(ctx context.Context, path string) (bool, error) {
	f, err := db.vectors(ctx)
	if err != nil {
		return false, err
	}
	_, ok := f.index[path]
	return ok, nil
}
