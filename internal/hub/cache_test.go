package hub

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestCachedSnapshot(t *testing.T) {
	dir := t.TempDir()
	commit := "0123456789abcdef0123456789abcdef01234567"
	base := filepath.Join(dir, "models--wkcn--TinyCLIP-ViT-8M-16-Text-3M-YFCC15M")
	snap := filepath.Join(base, "snapshots", commit)
	if err := os.MkdirAll(snap, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(base, "refs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(base, "refs", "main"), []byte(commit), 0o644); err != nil {
		t.Fatal(err)
	}
	repo := "wkcn/TinyCLIP-ViT-8M-16-Text-3M-YFCC15M"
	for _, rev := range []string{"", "main", commit} {
		got, err := CachedSnapshot(dir, repo, rev)
		if err != nil || got != snap {
			t.Errorf("rev %q: got %q, %v; want %q", rev, got, err, snap)
		}
	}
	if _, err := CachedSnapshot(dir, repo, "v2"); !errors.Is(err, ErrNotCached) {
		t.Errorf("missing ref: got %v, want ErrNotCached", err)
	}
	if _, err := CachedSnapshot(dir, "wkcn/other", ""); !errors.Is(err, ErrNotCached) {
		t.Errorf("missing repo: got %v, want ErrNotCached", err)
	}
	for _, bad := range []string{"noslash", "../x/y", "a/b/c"} {
		if _, err := CachedSnapshot(dir, bad, ""); err == nil || errors.Is(err, ErrNotCached) {
			t.Errorf("repo %q: got %v, want a bad-id error", bad, err)
		}
	}
	if _, err := CachedSnapshot(dir, repo, "../../etc"); err == nil || errors.Is(err, ErrNotCached) {
		t.Errorf("bad revision: got %v", err)
	}
}

func TestCacheDirEnv(t *testing.T) {
	t.Setenv("HF_HUB_CACHE", "")
	t.Setenv("HF_HOME", "/x/hf")
	if got := CacheDir(); got != "/x/hf/hub" {
		t.Errorf("HF_HOME: got %q", got)
	}
	t.Setenv("HF_HUB_CACHE", "/y")
	if got := CacheDir(); got != "/y" {
		t.Errorf("HF_HUB_CACHE: got %q", got)
	}
}

func TestSplitRevision(t *testing.T) {
	for _, c := range []struct{ in, repo, rev string }{
		{"a/b", "a/b", "main"},
		{"a/b@v1", "a/b", "v1"},
	} {
		r, v := SplitRevision(c.in)
		if r != c.repo || v != c.rev {
			t.Errorf("%q: got %q %q", c.in, r, v)
		}
	}
}
