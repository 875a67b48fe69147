package eval

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
)

// recipeVersion changes whenever the classifier recipe or the cache file
// layout changes, so that old entries are not reused.
const recipeVersion = "tinyclip zero-shot classifier v1"

// CacheKey returns the cache key of a classifier: the hex SHA-256 of the
// model's fingerprint (its weights hash, plus anything else that changes the
// text embeddings, such as the tokenizer), the class names and the templates,
// each length-prefixed so that no two different inputs share a key.
func CacheKey(model string, classes, templates []string) string {
	h := sha256.New()
	put := func(s string) {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		io.WriteString(h, s)
	}
	put(recipeVersion)
	put(model)
	put(fmt.Sprint(len(classes)))
	for _, c := range classes {
		put(c)
	}
	put(fmt.Sprint(len(templates)))
	for _, t := range templates {
		put(t)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Cache stores classifiers on disk, one file per key, in Dir. Files are
// written atomically (a temporary file renamed into place) and carry a
// checksum: a damaged or truncated file is reported by Load and replaced by
// the next Store. Different processes may share a Dir.
type Cache struct {
	Dir string
}

// DefaultCacheDir returns the per-user cache folder for classifiers:
// $XDG_CACHE_HOME/tinyclip/zeroshot (~/.cache/tinyclip/zeroshot on Linux).
func DefaultCacheDir() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("eval: cache folder: %w", err)
	}
	return filepath.Join(d, "tinyclip", "zeroshot"), nil
}

// ErrNotCached is returned by Load when there is no valid entry for a key.
var ErrNotCached = errors.New("eval: classifier not in the cache")

var cacheMagic = []byte("TCZSCLS1")

// maxCacheFile bounds the cache files read (1M classes × 4096 dims would be
// 16 GiB; real classifiers are a few MiB).
const maxCacheFile = 1 << 31

// Path returns the file holding the entry for key.
func (c Cache) Path(key string) string { return filepath.Join(c.Dir, key+".bin") }

// Load returns the classifier stored under key. It returns an error wrapping
// ErrNotCached when there is none, and when the file is damaged, truncated or
// holds another key (the error says which).
func (c Cache) Load(key string) ([][]float32, error) {
	path := c.Path(key)
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, ErrNotCached
		}
		return nil, fmt.Errorf("%w: %v", ErrNotCached, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCacheFile+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNotCached, path, err)
	}
	w, err := decodeCache(b, key)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNotCached, path, err)
	}
	return w, nil
}

// decodeCache parses a cache file: magic, key (64 hex bytes), rows and
// columns (uint32 LE), the float32 values (LE), SHA-256 of all of the above.
func decodeCache(b []byte, key string) ([][]float32, error) {
	const head = 8 + 64 + 8
	if len(b) < head+sha256.Size {
		return nil, errors.New("file too short")
	}
	body, sum := b[:len(b)-sha256.Size], b[len(b)-sha256.Size:]
	if got := sha256.Sum256(body); !bytes.Equal(got[:], sum) {
		return nil, errors.New("checksum mismatch (damaged file)")
	}
	if !bytes.Equal(body[:8], cacheMagic) {
		return nil, errors.New("not a classifier cache file")
	}
	if string(body[8:72]) != key {
		return nil, errors.New("holds another key")
	}
	rows := int(binary.LittleEndian.Uint32(body[72:]))
	cols := int(binary.LittleEndian.Uint32(body[76:]))
	if rows <= 0 || cols <= 0 || uint64(rows)*uint64(cols)*4 != uint64(len(body)-head) {
		return nil, fmt.Errorf("size %d×%d does not match the file length", rows, cols)
	}
	data := body[head:]
	w := make([][]float32, rows)
	for r := range w {
		w[r] = make([]float32, cols)
		for k := range w[r] {
			v := math.Float32frombits(binary.LittleEndian.Uint32(data[4*(r*cols+k):]))
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, errors.New("non-finite value")
			}
			w[r][k] = v
		}
	}
	return w, nil
}

// Store writes the classifier w under key, atomically.
func (c Cache) Store(key string, w [][]float32) error {
	if len(key) != 64 {
		return fmt.Errorf("eval: cache key %q is not a SHA-256 hex digest", key)
	}
	if len(w) == 0 || len(w[0]) == 0 {
		return errors.New("eval: empty classifier")
	}
	cols := len(w[0])
	var buf bytes.Buffer
	buf.Write(cacheMagic)
	buf.WriteString(key)
	binary.Write(&buf, binary.LittleEndian, [2]uint32{uint32(len(w)), uint32(cols)})
	for r, row := range w {
		if len(row) != cols {
			return fmt.Errorf("eval: classifier row %d has %d values, want %d", r, len(row), cols)
		}
		binary.Write(&buf, binary.LittleEndian, row)
	}
	sum := sha256.Sum256(buf.Bytes())
	buf.Write(sum[:])
	return writeAtomic(c.Path(key), buf.Bytes())
}

// writeAtomic writes data to path through a temporary file in the same
// folder, synced and renamed into place, so readers see the old file or the
// whole new one.
func writeAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("eval: cache: %w", err)
	}
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("eval: cache: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("eval: cache: %w", err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("eval: cache: %w", err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("eval: cache: %w", err)
	}
	if err = os.Chmod(f.Name(), 0o644); err != nil {
		return fmt.Errorf("eval: cache: %w", err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("eval: cache: %w", err)
	}
	return nil
}
