package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/tinyclip-go/tinyclip"
	"github.com/tinyclip-go/tinyclip/internal/search"
)

func init() {
	register(command{"index", "index a folder of images for search (SQLite file); export for FAISS/pgvector", runIndex, 60})
}

func runIndex(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "index", "DIR --db FILE [--model M] [--export DIR]\n       tinyclip index --db FILE --export DIR")
	mf := addModelFlags(fs)
	dbPath := fs.String("db", "", "index file (SQLite), created if missing")
	export := fs.String("export", "", "after indexing, write embeddings.npy and paths.txt into this folder")
	batch := fs.Int("batch", 16, "images per model call")
	workers := fs.Int("workers", 0, "goroutines reading and decoding files (default GOMAXPROCS)")
	quiet := fs.Bool("quiet", false, "do not list the files that cannot be read")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *dbPath == "" {
		return usagef("--db FILE is required")
	}
	if len(pos) > 1 {
		return usagef("one folder at a time (got %d); run index once per folder with the same --db", len(pos))
	}
	if len(pos) == 0 && *export == "" {
		return usagef("give the folder to index, and/or --export DIR")
	}
	if *batch < 1 {
		return usagef("--batch must be at least 1")
	}

	var db *search.DB
	if len(pos) == 0 {
		db, err = search.Open(*dbPath) // export only: the index must exist
	} else {
		db, err = search.OpenOrCreate(*dbPath)
	}
	if err != nil {
		return err
	}
	defer db.Close()

	if len(pos) == 1 {
		dir := pos[0]
		if info, err := os.Stat(dir); err != nil {
			return err
		} else if !info.IsDir() {
			return usagef("%s is not a folder", dir)
		}
		model, name, err := loadIndexModel(ctx, e, mf, db)
		if err != nil {
			return err
		}
		start := time.Now()
		opts := search.IndexOptions{Model: name, Batch: *batch, Workers: *workers, Progress: e.stderr}
		if !*quiet {
			opts.OnSkip = func(path string, err error) { fmt.Fprintf(e.stderr, "tinyclip index: skipping %s: %v\n", path, err) }
		}
		st, err := db.Index(ctx, model, dir, opts)
		if err != nil {
			if errors.Is(err, context.Canceled) {
				return fmt.Errorf("interrupted; the images embedded so far are saved, run the same command again to continue: %w", err)
			}
			return err
		}
		n, err := db.Len(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%s: %d images in the index; this run: %d found, %d added, %d updated, %d reused, %d unchanged, %d removed, %d skipped (%.1fs)\n",
			*dbPath, n, st.Files, st.Added, st.Updated, st.Reused, st.Unchanged+st.Touched, st.Removed, st.Skipped, time.Since(start).Seconds())
	}

	if *export != "" {
		n, err := db.Export(ctx, *export)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "exported %d embeddings to %s and %s\n", n,
			filepath.Join(*export, "embeddings.npy"), filepath.Join(*export, "paths.txt"))
	}
	return nil
}

// loadIndexModel loads the model for an index: --model if given, else the
// one the index was built with, else the default zoo model. It returns the
// name to record (local paths made absolute).
func loadIndexModel(ctx context.Context, e *env, mf modelFlags, db *search.DB) (*tinyclip.Model, string, error) {
	name := *mf.model
	if name == "" {
		if info, ok := db.Model(); ok {
			name = info.Name
		} else {
			name = defaultModel
		}
	}
	if _, err := os.Stat(name); err == nil {
		if abs, err := filepath.Abs(name); err == nil {
			name = abs
		}
	}
	*mf.model = name
	m, err := mf.load(ctx, e, "")
	if err != nil {
		return nil, "", err
	}
	return m, name, nil
}
