package mmap

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMap(t *testing.T) {
	dir := t.TempDir()
	want := bytes.Repeat([]byte("tinyclip"), 1000)
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, want, 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		want []byte
		err  string
	}{
		{p, want, ""},
		{empty, []byte{}, ""},
		{dir, nil, "is a directory"},
		{filepath.Join(dir, "missing"), nil, "no such file"},
	} {
		got, release, err := Map(tc.path)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err = %v, want %q", tc.path, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, tc.want) || got == nil {
			t.Errorf("%s: got %d bytes, want %d", tc.path, len(got), len(tc.want))
		}
		if err := release(); err != nil {
			t.Errorf("%s: release: %v", tc.path, err)
		}
	}
}
