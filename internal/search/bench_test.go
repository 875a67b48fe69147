package search

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"

	"github.com/tinyclip-go/tinyclip"
)

// syntheticFlat returns n random unit vectors of width dim (generated, not
// read from disk), using every core.
func syntheticFlat(n, dim int) *flat {
	f := &flat{dim: dim, vecs: make([]float32, n*dim), paths: make([]string, n)}
	workers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		lo, hi := n*w/workers, n*(w+1)/workers
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			for i := lo; i < hi; i++ {
				row := f.vecs[i*dim : (i+1)*dim]
				for j := range row {
					row[j] = rng.Float32() - 0.5
				}
				tinyclip.Normalize(row)
				f.paths[i] = fmt.Sprintf("/photos/%09d.jpg", i)
			}
		}()
	}
	wg.Wait()
	return f
}

// BenchmarkSearch measures one exact top-k query over n synthetic 512-d
// vectors held in memory (the cost of a /v1/search or 'tinyclip search'
// after the index is loaded, without encoding the query). The reported
// MB/s is the rate at which the vectors are scanned.
//
//	go test -run '^$' -bench BenchmarkSearch -benchtime 20x -cpu 1,2 ./internal/search/
func BenchmarkSearch(b *testing.B) {
	const dim = 512
	for _, n := range []int{100_000, 1_000_000} {
		var f *flat
		for _, k := range []int{10, 100} {
			b.Run(fmt.Sprintf("n=%d/k=%d", n, k), func(b *testing.B) {
				if f == nil {
					f = syntheticFlat(n, dim)
				}
				rng := rand.New(rand.NewPCG(1, 2))
				q := make([]float32, dim)
				for j := range q {
					q[j] = rng.Float32() - 0.5
				}
				tinyclip.Normalize(q)
				b.SetBytes(int64(n) * dim * 4)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					res, err := f.topK(context.Background(), q, k)
					if err != nil || len(res) != k {
						b.Fatal(err)
					}
				}
			})
		}
		f = nil
		runtime.GC()
	}
}

// BenchmarkLoad measures reading n stored 512-d vectors from the index file
// into memory: what 'tinyclip search' pays once per run and a server once
// per change of the file. The file is written first (2 KiB per vector).
//
//	go test -run '^$' -bench BenchmarkLoad -benchtime 3x ./internal/search/
func BenchmarkLoad(b *testing.B) {
	const dim = 512
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			db := syntheticDB(b, n, dim)
			defer db.Close()
			b.SetBytes(int64(n) * dim * 4)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				g, err := db.load(context.Background(), dim)
				if err != nil || len(g.paths) != n {
					b.Fatal(err)
				}
			}
		})
		runtime.GC()
	}
}

// syntheticDB writes an index file of n random vectors.
func syntheticDB(b *testing.B, n, dim int) *DB {
	f := syntheticFlat(n, dim)
	db, err := OpenOrCreate(b.TempDir() + "/bench.db")
	if err != nil {
		b.Fatal(err)
	}
	probe := make([]float32, 2*dim)
	probe[0], probe[dim] = 1, 1
	ctx := context.Background()
	err = db.tx(ctx, func(tx *sql.Tx) error {
		if err := db.setModel(ctx, tx, "synthetic", probe); err != nil {
			return err
		}
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO images(path, size, mtime, hash, embedding) VALUES(?, 0, 0, ?, ?)`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for i := 0; i < n; i++ {
			h := sha256.Sum256([]byte(f.paths[i]))
			if _, err := stmt.ExecContext(ctx, f.paths[i], h[:], encodeVec(f.vecs[i*dim:(i+1)*dim])); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := db.reloadModelLocked(ctx); err != nil {
		b.Fatal(err)
	}
	return db
}
