package search

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tinyclip-go/tinyclip/internal/npy"
)

// Export writes the index to the folder dir (created if needed) for other
// vector engines: embeddings.npy, a float32 [N, D] array of the
// L2-normalised embeddings, and paths.txt, the N image paths one per line in
// the same order (the order the files entered the index). Each file is written to a temporary name and
// renamed into place. It returns N.
func (db *DB) Export(ctx context.Context, dir string) (int, error) {
	f, err := db.vectors(ctx)
	if err != nil {
		return 0, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, fmt.Errorf("search: export: %w", err)
	}
	n := len(f.paths)
	err = writeAtomic(filepath.Join(dir, "embeddings.npy"), func(w *bufio.Writer) error {
		return npy.WriteFloat32(w, []int{n, f.dim}, f.vecs)
	})
	if err != nil {
		return 0, err
	}
	err = writeAtomic(filepath.Join(dir, "paths.txt"), func(w *bufio.Writer) error {
		for _, p := range f.paths {
			if _, err := w.WriteString(p + "\n"); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// writeAtomic writes a file through a temporary file in the same folder,
// synced and renamed over path.
func writeAtomic(path string, write func(*bufio.Writer) error) (err error) {
	dir, base := filepath.Split(path)
	tmp, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return fmt.Errorf("search: export: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	w := bufio.NewWriterSize(tmp, 1<<20)
	if err := write(w); err != nil {
		return fmt.Errorf("search: export: %s: %w", path, err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("search: export: %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("search: export: %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("search: export: %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("search: export: %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("search: export: %w", err)
	}
	return nil
}
