// Package hub finds models in the Hugging Face hub cache
// ($HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub), laid
// out as huggingface_hub writes it:
// models--ORG--NAME/{blobs,refs/REVISION,snapshots/COMMIT/...}.
//
// Only reading the cache is implemented; downloading is not (yet).
package hub

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// ErrNotCached is returned when a repository revision is not in the cache.
var ErrNotCached = errors.New("hub: not in the Hugging Face cache")

// CacheDir returns the hub cache directory from the environment.
func CacheDir() string {
	if d := os.Getenv("HF_HUB_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("HF_HOME"); d != "" {
		return filepath.Join(d, "hub")
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "huggingface", "hub")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(".cache", "huggingface", "hub")
	}
	return filepath.Join(home, ".cache", "huggingface", "hub")
}

var (
	repoRe   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$`)
	commitRe = regexp.MustCompile(`^[0-9a-f]{40}$`)
)

// IsRepoID reports whether s looks like a hub repository id "org/name".
func IsRepoID(s string) bool { return repoRe.MatchString(s) && !strings.Contains(s, "..") }

// SplitRevision splits "org/name@rev" into the repository id and revision
// ("main" when absent).
func SplitRevision(s string) (repo, rev string) {
	if i := strings.LastIndexByte(s, '@'); i > 0 {
		return s[:i], s[i+1:]
	}
	return s, "main"
}

// CachedSnapshot returns the snapshot directory of repo at revision (a
// branch or tag name resolved through refs/, or a commit hash) in the cache
// directory dir (CacheDir() when empty).
func CachedSnapshot(dir, repo, revision string) (string, error) {
	if !IsRepoID(repo) {
		return "", fmt.Errorf("hub: %q is not a repository id (org/name)", repo)
	}
	if dir == "" {
		dir = CacheDir()
	}
	if revision == "" {
		revision = "main"
	}
	base := filepath.Join(dir, "models--"+strings.ReplaceAll(repo, "/", "--"))
	commit := revision
	if !commitRe.MatchString(revision) {
		if strings.ContainsAny(revision, `/\`) || strings.Contains(revision, "..") {
			return "", fmt.Errorf("hub: bad revision %q", revision)
		}
		b, err := os.ReadFile(filepath.Join(base, "refs", revision))
		if err != nil {
			return "", fmt.Errorf("%w: %s@%s (looked in %s)", ErrNotCached, repo, revision, base)
		}
		commit = strings.TrimSpace(string(b))
		if !commitRe.MatchString(commit) {
			return "", fmt.Errorf("hub: %s: bad commit hash %q", filepath.Join(base, "refs", revision), commit)
		}
	}
	snap := filepath.Join(base, "snapshots", commit)
	if st, err := os.Stat(snap); err != nil || !st.IsDir() {
		return "", fmt.Errorf("%w: %s@%s (no %s)", ErrNotCached, repo, revision, snap)
	}
	return snap, nil
}
