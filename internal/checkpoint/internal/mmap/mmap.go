// Package mmap maps whole files read-only into memory for the checkpoint
// readers, falling back to reading the file where mapping is unavailable.
package mmap

import (
	"fmt"
	"os"
)

// Map returns the contents of path and a function that releases them. The
// bytes must not be modified nor used after release. An empty file gives an
// empty slice.
func Map(path string) ([]byte, func() error, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if st.IsDir() {
		return nil, nil, fmt.Errorf("%s: is a directory", path)
	}
	if !st.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("%s: not a regular file", path)
	}
	size := st.Size()
	if size == 0 {
		return []byte{}, func() error { return nil }, nil
	}
	if size != int64(int(size)) || size < 0 {
		return nil, nil, fmt.Errorf("%s: file too large to map (%d bytes)", path, size)
	}
	return mapFile(f, path, int(size))
}
