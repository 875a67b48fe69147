package hub

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-99/100", "bytes 100-199/*", "bytes -5/10", "bytes 1-2", "items 0-1/2", "bytes 9223372036854775807-1/1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		start, total, ok := parseContentRange(s)
		if !ok {
			return
		}
		if start < 0 || total < -1 || total >= 0 && start >= total {
			t.Fatalf("%q: start %d total %d", s, start, total)
		}
		if !strings.HasPrefix(s, "bytes "+strconv.FormatInt(start, 10)+"-") && !strings.HasPrefix(s, "bytes 0") {
			t.Fatalf("%q: start %d not from the header", s, start)
		}
	})
}

// FuzzCachePaths checks that no accepted repository, revision, file name
// or URL leads outside the cache.
func FuzzCachePaths(f *testing.F) {
	for _, s := range []string{"org/name", "main", "refs/pr/1", "config.json", "sub/dir/file.bin", "../x", "a/../../b", "/etc/passwd", `a\..\b`, "https://github.com/a/b/c.pt", "http://h:1/../../x.pt", "https://x/%2e%2e/y.pt"} {
		f.Add(s, s, s)
	}
	base := filepath.FromSlash("/cache/hub")
	f.Fuzz(func(t *testing.T, repo, rev, file string) {
		inside := func(p, root string) bool {
			rel, err := filepath.Rel(root, p)
			return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
		}
		if checkRepo(repo) == nil {
			if d := filepath.Join(base, RepoFolder(repo)); !inside(d, base) || filepath.Dir(d) != base {
				t.Fatalf("repo %q escapes: %s", repo, d)
			}
		}
		repoDir := filepath.Join(base, "models--x--y")
		if checkRevision(rev) == nil {
			if d := filepath.Join(repoDir, "refs", filepath.FromSlash(rev)); !inside(d, filepath.Join(repoDir, "refs")) {
				t.Fatalf("revision %q escapes: %s", rev, d)
			}
		}
		if checkFilename(file) == nil {
			snap := filepath.Join(repoDir, "snapshots", "c")
			if d := filepath.Join(snap, filepath.FromSlash(file)); !inside(d, snap) || d == snap {
				t.Fatalf("file %q escapes: %s", file, d)
			}
		}
		c := &Client{ReleaseDir: base}
		if p, err := c.ReleasePath(file); err == nil && (!inside(p, base) || p == base) {
			t.Fatalf("URL %q escapes: %s", file, p)
		}
	})
}
