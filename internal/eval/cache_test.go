package eval

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestCacheKey(t *testing.T) {
	base := CacheKey("model-a", []string{"cat", "dog"}, []string{"a {}"})
	if len(base) != 64 {
		t.Fatalf("key %q is not a SHA-256 hex digest", base)
	}
	if CacheKey("model-a", []string{"cat", "dog"}, []string{"a {}"}) != base {
		t.Error("the key is not deterministic")
	}
	for name, k := range map[string]string{
		"weights":         CacheKey("model-b", []string{"cat", "dog"}, []string{"a {}"}),
		"class order":     CacheKey("model-a", []string{"dog", "cat"}, []string{"a {}"}),
		"class name":      CacheKey("model-a", []string{"cat", "dogs"}, []string{"a {}"}),
		"templates":       CacheKey("model-a", []string{"cat", "dog"}, []string{"a {}."}),
		"extra template":  CacheKey("model-a", []string{"cat", "dog"}, []string{"a {}", "a {}"}),
		"boundary":        CacheKey("model-a", []string{"cat", "dog", "a {}"}, nil),
		"joined strings":  CacheKey("model-a", []string{"catdog"}, []string{"a {}"}),
		"class->template": CacheKey("model-a", []string{"cat"}, []string{"dog", "a {}"}),
	} {
		if k == base {
			t.Errorf("changing the %s keeps the key", name)
		}
	}
}

func TestCacheRoundTrip(t *testing.T) {
	c := Cache{Dir: filepath.Join(t.TempDir(), "nested", "cache")}
	key := CacheKey("m", []string{"a", "b"}, nil)
	if _, err := c.Load(key); !errors.Is(err, ErrNotCached) {
		t.Fatalf("empty cache: %v", err)
	}
	w := [][]float32{{0.6, 0.8, 0}, {0, -1, 1e-30}}
	if err := c.Store(key, w); err != nil {
		t.Fatal(err)
	}
	got, err := c.Load(key)
	if err != nil {
		t.Fatal(err)
	}
	for i := range w {
		if !slices.Equal(got[i], w[i]) {
			t.Errorf("row %d = %v, want %v", i, got[i], w[i])
		}
	}
	// Nothing but the entry is left in the folder (the temporary file was
	// renamed).
	ents, _ := os.ReadDir(c.Dir)
	if len(ents) != 1 || ents[0].Name() != key+".bin" {
		t.Errorf("cache folder holds %v", ents)
	}
	// Another key is a miss, even if a file is copied under its name.
	other := CacheKey("m2", []string{"a", "b"}, nil)
	b, _ := os.ReadFile(c.Path(key))
	os.WriteFile(c.Path(other), b, 0o644)
	if _, err := c.Load(other); !errors.Is(err, ErrNotCached) || !strings.Contains(err.Error(), "another key") {
		t.Errorf("renamed entry: %v", err)
	}
	// Overwriting replaces the entry.
	w[0][0] = 0.5
	if err := c.Store(key, w); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Load(key); got[0][0] != 0.5 {
		t.Error("Store did not replace the entry")
	}
	if err := c.Store(key, [][]float32{{1, 2}, {3}}); err == nil {
		t.Error("ragged classifier stored")
	}
	if err := c.Store("short", w); err == nil {
		t.Error("non-digest key accepted")
	}
}

// TestCacheCorrupt checks that every damaged form of a cache file is
// reported as not cached (so the caller rebuilds and overwrites it).
func TestCacheCorrupt(t *testing.T) {
	c := Cache{Dir: t.TempDir()}
	key := CacheKey("m", []string{"a"}, nil)
	if err := c.Store(key, [][]float32{{1, 2, 3, 4}}); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(c.Path(key))
	if err != nil {
		t.Fatal(err)
	}
	damage := map[string][]byte{
		"empty":       {},
		"truncated":   good[:len(good)-7],
		"flipped bit": slices.Concat(good[:90], []byte{good[90] ^ 1}, good[91:]),
		"appended":    append(slices.Clone(good), 0),
		"text":        []byte("hello"),
	}
	for name, b := range damage {
		if err := os.WriteFile(c.Path(key), b, 0o644); err != nil {
			t.Fatal(err)
		}
		if w, err := c.Load(key); !errors.Is(err, ErrNotCached) || w != nil {
			t.Errorf("%s: Load = %v, %v; want ErrNotCached", name, w, err)
		}
	}
	if err := c.Store(key, [][]float32{{1, 2, 3, 4}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Load(key); err != nil {
		t.Errorf("after rebuilding: %v", err)
	}
}

func FuzzDecodeCache(f *testing.F) {
	key := CacheKey("m", []string{"a"}, nil)
	c := Cache{Dir: f.TempDir()}
	c.Store(key, [][]float32{{1, 2}, {3, 4}})
	good, _ := os.ReadFile(c.Path(key))
	f.Add(good)
	f.Add([]byte("TCZSCLS1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		w, err := decodeCache(b, key)
		if err == nil && (len(w) == 0 || len(w[0]) == 0) {
			t.Fatal("empty classifier decoded")
		}
	})
}
