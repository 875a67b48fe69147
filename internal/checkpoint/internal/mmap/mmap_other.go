//go:build !unix

package mmap

import (
	"fmt"
	"io"
	"os"
)

func mapFile(f *os.File, path string, size int) ([]byte, func() error, error) {
	data := make([]byte, size)
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", path, err)
	}
	return data, func() error { return nil }, nil
}
