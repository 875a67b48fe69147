// Package hub fetches models from the Hugging Face hub into the cache
// layout huggingface_hub uses, and finds them there, so that files fetched
// by Python are reused and the other way round. It also fetches plain
// release files (the TinyCLIP zoo's official .pt checkpoints) by URL.
//
// The hub cache is $HF_HUB_CACHE, else $HF_HOME/hub, else
// $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub. A
// repository org/name lives in models--org--name with
//
//	blobs/<etag>                 file contents, named by their ETag (the
//	                             sha256 of LFS files, the git blob sha1 of others)
//	snapshots/<commit>/<file>    relative symlinks into blobs (or plain files)
//	refs/<revision>              the commit a branch or tag pointed at
//	.no_exist/<commit>/<file>    files known to be absent at a commit
//
// and downloads are serialised by locks in .locks/models--org--name/<etag>.lock,
// as huggingface_hub does. Release files are cached under
// $HF_HOME/tinyclip/releases/<host>/<path of the URL> (see ReleaseCacheDir).
//
// The environment variables of huggingface_hub are honoured: HF_HOME,
// HF_HUB_CACHE, HF_ENDPOINT, HF_TOKEN (else the token file $HF_TOKEN_PATH or
// $HF_HOME/token) and HF_HUB_OFFLINE.
package hub

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// DefaultEndpoint is the hub's address when HF_ENDPOINT is not set.
const DefaultEndpoint = "https://huggingface.co"

// Errors callers can test for with errors.Is.
var (
	// ErrNotCached is returned when a file or repository revision is not in
	// the cache and may not be fetched (offline mode, or the hub is
	// unreachable).
	ErrNotCached = errors.New("hub: not in the Hugging Face cache")
	// ErrNotFound is returned when the hub has no such repository, revision
	// or file (private and gated repositories also answer this way without a
	// valid token).
	ErrNotFound = errors.New("hub: not found")
	// ErrEntryNotFound is returned when a repository exists but has no such
	// file; errors.Is(err, ErrNotFound) also holds for it.
	ErrEntryNotFound = errors.New("hub: no such file in the repository")
	// ErrUnauthorized is returned when the hub refuses access (HTTP 401 or
	// 403): a missing or invalid token (set HF_TOKEN), or a gated
	// repository whose terms were not accepted.
	ErrUnauthorized = errors.New("hub: access refused")
	// ErrCorrupt is returned when downloaded or cached contents do not match
	// their size or checksum.
	ErrCorrupt = errors.New("hub: contents do not match the checksum")
)

// HFHome returns the Hugging Face home directory: $HF_HOME, else
// $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface.
func HFHome() string {
	if d := os.Getenv("HF_HOME"); d != "" {
		return expandHome(d)
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(expandHome(d), "huggingface")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(".cache", "huggingface")
	}
	return filepath.Join(home, ".cache", "huggingface")
}

// CacheDir returns the hub cache directory: $HF_HUB_CACHE, else
// $HF_HOME/hub (see HFHome).
func CacheDir() string {
	if d := os.Getenv("HF_HUB_CACHE"); d != "" {
		return expandHome(d)
	}
	if d := os.Getenv("HUGGINGFACE_HUB_CACHE"); d != "" { // legacy name
		return expandHome(d)
	}
	return filepath.Join(HFHome(), "hub")
}

// ReleaseCacheDir returns where files fetched by URL (the zoo's release
// checkpoints) are kept: $HF_HOME/tinyclip/releases. It is outside the hub
// cache because huggingface_hub's cache scanner reports unknown folders
// there as corrupted.
func ReleaseCacheDir() string { return filepath.Join(HFHome(), "tinyclip", "releases") }

// Endpoint returns the hub's address: $HF_ENDPOINT, else DefaultEndpoint.
func Endpoint() string {
	if e := os.Getenv("HF_ENDPOINT"); e != "" {
		return strings.TrimRight(e, "/")
	}
	return DefaultEndpoint
}

// Offline reports whether HF_HUB_OFFLINE (or the legacy
// TRANSFORMERS_OFFLINE) is set to 1, ON, YES or TRUE.
func Offline() bool {
	return isTrue(os.Getenv("HF_HUB_OFFLINE")) || isTrue(os.Getenv("TRANSFORMERS_OFFLINE"))
}

func isTrue(v string) bool {
	switch strings.ToUpper(strings.TrimSpace(v)) {
	case "1", "ON", "YES", "TRUE":
		return true
	}
	return false
}

// Token returns the hub token: $HF_TOKEN, else the first line of the token
// file ($HF_TOKEN_PATH, else $HF_HOME/token) that huggingface-cli login
// writes, else "".
func Token() string {
	if t := strings.TrimSpace(os.Getenv("HF_TOKEN")); t != "" {
		return t
	}
	if t := strings.TrimSpace(os.Getenv("HUGGING_FACE_HUB_TOKEN")); t != "" { // legacy name
		return t
	}
	p := os.Getenv("HF_TOKEN_PATH")
	if p == "" {
		p = filepath.Join(HFHome(), "token")
	}
	b, err := os.ReadFile(expandHome(p))
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(line)
}

func expandHome(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, p[1:])
		}
	}
	return p
}

var (
	repoRe   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$`)
	commitRe = regexp.MustCompile(`^[0-9a-f]{40}$`)
	etagRe   = regexp.MustCompile(`^[0-9A-Za-z_-][0-9A-Za-z._-]{0,127}$`)
)

// IsRepoID reports whether s looks like a hub repository id "org/name".
func IsRepoID(s string) bool { return repoRe.MatchString(s) && !strings.Contains(s, "..") }

// IsCommit reports whether s is a full commit hash (40 lower-case hex digits).
func IsCommit(s string) bool { return commitRe.MatchString(s) }

// SplitRevision splits "org/name@rev" into the repository id and revision
// ("main" when absent).
func SplitRevision(s string) (repo, rev string) {
	if i := strings.LastIndexByte(s, '@'); i > 0 && i < len(s)-1 {
		return s[:i], s[i+1:]
	}
	return strings.TrimSuffix(s, "@"), "main"
}

// RepoFolder returns the cache folder name of a model repository:
// "models--org--name".
func RepoFolder(repo string) string { return "models--" + strings.ReplaceAll(repo, "/", "--") }

// checkRevision accepts branch and tag names (which may contain slashes, as
// in refs/pr/1) and commit hashes; they become paths under refs/.
func checkRevision(rev string) error {
	if rev == "" || len(rev) > 256 || strings.ContainsAny(rev, "\\\x00\r\n") || strings.HasPrefix(rev, "/") {
		return fmt.Errorf("hub: bad revision %q", rev)
	}
	for _, seg := range strings.Split(rev, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("hub: bad revision %q", rev)
		}
	}
	return nil
}

// checkFilename accepts relative paths inside a repository.
func checkFilename(name string) error {
	if name == "" || len(name) > 1024 || strings.ContainsAny(name, "\\\x00\r\n") || strings.HasPrefix(name, "/") {
		return fmt.Errorf("hub: bad file name %q", name)
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("hub: bad file name %q", name)
		}
	}
	return nil
}

func checkRepo(repo string) error {
	if !IsRepoID(repo) {
		return fmt.Errorf("hub: %q is not a repository id (org/name)", repo)
	}
	return nil
}

// CachedSnapshot returns the snapshot directory of repo at revision (a
// branch or tag name resolved through refs/, or a commit hash) in the cache
// directory dir (CacheDir() when empty). It does not check which files the
// snapshot holds.
func CachedSnapshot(dir, repo, revision string) (string, error) {
	if err := checkRepo(repo); err != nil {
		return "", err
	}
	if dir == "" {
		dir = CacheDir()
	}
	if revision == "" {
		revision = "main"
	}
	if err := checkRevision(revision); err != nil {
		return "", err
	}
	base := filepath.Join(dir, RepoFolder(repo))
	commit, err := cachedCommit(base, revision)
	if err != nil {
		return "", fmt.Errorf("%w: %s@%s (looked in %s)", err, repo, revision, base)
	}
	snap := filepath.Join(base, "snapshots", commit)
	if st, err := os.Stat(snap); err != nil || !st.IsDir() {
		return "", fmt.Errorf("%w: %s@%s (no %s)", ErrNotCached, repo, revision, snap)
	}
	return snap, nil
}

// cachedCommit resolves revision to a commit hash through base/refs.
func cachedCommit(base, revision string) (string, error) {
	if IsCommit(revision) {
		return revision, nil
	}
	ref := filepath.Join(base, "refs", filepath.FromSlash(revision))
	b, err := os.ReadFile(ref)
	if err != nil {
		return "", ErrNotCached
	}
	commit := strings.TrimSpace(string(b))
	if !IsCommit(commit) {
		return "", fmt.Errorf("hub: %s: bad commit hash %q", ref, commit)
	}
	return commit, nil
}
