package hub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Client downloads files from a Hugging Face hub into the cache. The zero
// Client is not usable; NewClient configures one from the environment, and
// its fields may be changed before first use. A Client is safe for
// concurrent use, and several processes may share a cache: downloads of the
// same file are serialised by file locks.
type Client struct {
	// Endpoint is the hub's address, e.g. "https://huggingface.co".
	Endpoint string
	// CacheDir is the hub cache directory.
	CacheDir string
	// ReleaseDir is where DownloadURL keeps files.
	ReleaseDir string
	// Token, when set, is sent as a bearer token to the hub (never to the
	// CDN a download is redirected to).
	Token string
	// Offline forbids network access: only cached files are returned.
	Offline bool
	// HTTP is the HTTP client; nil means one with a proxy from the
	// environment and response-header timeouts.
	HTTP *http.Client
	// Progress receives a progress bar per download when it is a terminal.
	Progress io.Writer
	// Logf, when set, receives notes such as falling back to the cache
	// when the hub cannot be reached.
	Logf func(format string, args ...any)
	// TrustCache skips hashing files already in the cache; their sizes
	// are still checked when the hub is asked. By default a cached blob is
	// hashed the first time a Client returns it (about 0.6 s per GB), and a
	// blob that does not match its name is fetched again.
	TrustCache bool
	// Retries is how often an interrupted transfer is resumed within one
	// call (default 5; negative: none).
	Retries int
	// RetryDelay is the pause before the first retry, doubled for each
	// further one (default 500 ms).
	RetryDelay time.Duration

	verified sync.Map // blob path → struct{}: hashed by this client
}

// NewClient returns a Client configured from the environment: Endpoint(),
// CacheDir(), ReleaseCacheDir(), Token() and Offline().
func NewClient() *Client {
	return &Client{
		Endpoint:   Endpoint(),
		CacheDir:   CacheDir(),
		ReleaseDir: ReleaseCacheDir(),
		Token:      Token(),
		Offline:    Offline(),
	}
}

const userAgent = "tinyclip-go; hf_hub-compatible"

var defaultHTTP = &http.Client{Transport: &http.Transport{
	Proxy:                 http.ProxyFromEnvironment,
	DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
	TLSHandshakeTimeout:   15 * time.Second,
	ResponseHeaderTimeout: 60 * time.Second,
	IdleConnTimeout:       90 * time.Second,
	MaxIdleConnsPerHost:   4,
	ForceAttemptHTTP2:     true,
}}

func (c *Client) http() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return defaultHTTP
}

func (c *Client) logf(format string, args ...any) {
	if c.Logf != nil {
		c.Logf(format, args...)
	}
}

func (c *Client) retries() int {
	if c.Retries == 0 {
		return 5
	}
	return max(c.Retries, 0)
}

func (c *Client) retryDelay() time.Duration {
	if c.RetryDelay <= 0 {
		return 500 * time.Millisecond
	}
	return c.RetryDelay
}

// HTTPError is a refusal from the hub or a download server.
type HTTPError struct {
	URL     string
	Status  int    // HTTP status code
	Code    string // the hub's X-Error-Code, e.g. "RepoNotFound", "EntryNotFound"
	Message string // the hub's X-Error-Message, if any
	Commit  string // X-Repo-Commit, when the hub sent one
}

func (e *HTTPError) Error() string {
	s := fmt.Sprintf("hub: %s: HTTP %d", e.URL, e.Status)
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	switch {
	case e.Code == "GatedRepo":
		s += " (a gated repository: accept its terms on the hub and set HF_TOKEN)"
	case e.Status == http.StatusUnauthorized || e.Code == "RepoNotFound":
		s += " (no such repository, or a private one: check the name, or set HF_TOKEN)"
	}
	return s
}

// Is makes errors.Is match ErrNotFound, ErrEntryNotFound and
// ErrUnauthorized.
func (e *HTTPError) Is(target error) bool {
	switch target {
	case ErrEntryNotFound:
		return e.isEntryNotFound()
	case ErrNotFound:
		return e.Status == http.StatusNotFound || e.Code == "RepoNotFound" || e.Code == "RevisionNotFound" || e.Code == "EntryNotFound"
	case ErrUnauthorized:
		return (e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden) && e.Code != "RepoNotFound"
	}
	return false
}

// isEntryNotFound: the hub says EntryNotFound; a 404 without an error code
// (a plain mirror) is taken to mean the same.
func (e *HTTPError) isEntryNotFound() bool {
	return e.Code == "EntryNotFound" || e.Status == http.StatusNotFound && e.Code == ""
}

func httpError(resp *http.Response) *HTTPError {
	return &HTTPError{
		URL:     redactURL(resp.Request.URL),
		Status:  resp.StatusCode,
		Code:    resp.Header.Get("X-Error-Code"),
		Message: resp.Header.Get("X-Error-Message"),
		Commit:  resp.Header.Get("X-Repo-Commit"),
	}
}

// redactURL drops the query (CDN URLs carry signatures).
func redactURL(u *url.URL) string {
	v := *u
	v.RawQuery = ""
	v.User = nil
	return v.String()
}

// Metadata is what the hub says about a file at a revision.
type Metadata struct {
	Commit   string // the commit the revision resolved to
	ETag     string // X-Linked-Etag (LFS: sha256) or ETag (git blob sha1), unquoted
	Size     int64  // X-Linked-Size or Content-Length; -1 if unknown
	Location string // where to GET the contents (a CDN URL for LFS files)
}

// fileURL is {endpoint}/{repo}/resolve/{revision}/{filename}, the revision
// escaped as one path segment.
func (c *Client) fileURL(repo, revision, filename string) string {
	segs := strings.Split(filename, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.TrimRight(c.Endpoint, "/") + "/" + repo + "/resolve/" + url.PathEscape(revision) + "/" + strings.Join(segs, "/")
}

// Metadata asks the hub (HEAD) for a file's commit, ETag, size and download
// location, following relative redirects (renamed repositories) but not the
// redirect of LFS files to their CDN, as huggingface_hub does.
func (c *Client) Metadata(ctx context.Context, repo, revision, filename string) (*Metadata, error) {
	if err := checkRepo(repo); err != nil {
		return nil, err
	}
	if err := checkRevision(revision); err != nil {
		return nil, err
	}
	if err := checkFilename(filename); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	hc := *c.http()
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	u := c.fileURL(repo, revision, filename)
	for hops := 0; ; hops++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodHead, u, nil)
		if err != nil {
			return nil, fmt.Errorf("hub: %w", err)
		}
		c.setHeaders(req, true)
		resp, err := hc.Do(req)
		if err != nil {
			return nil, fmt.Errorf("hub: %s: %w", filename, err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 300 && resp.StatusCode < 400 {
			loc := resp.Header.Get("Location")
			lu, err := url.Parse(loc)
			if loc == "" || err != nil {
				return nil, fmt.Errorf("hub: %s: redirect without a valid Location", redactURL(resp.Request.URL))
			}
			if lu.Host == "" && hops < 5 { // relative: a renamed repository; follow it
				u = resp.Request.URL.ResolveReference(lu).String()
				continue
			}
			m, err := metadataFrom(resp, filename)
			if err != nil {
				return nil, err
			}
			m.Location = resp.Request.URL.ResolveReference(lu).String()
			return m, nil
		}
		if resp.StatusCode != http.StatusOK {
			return nil, httpError(resp)
		}
		m, err := metadataFrom(resp, filename)
		if err != nil {
			return nil, err
		}
		m.Location = u
		return m, nil
	}
}

func metadataFrom(resp *http.Response, filename string) (*Metadata, error) {
	m := &Metadata{Commit: resp.Header.Get("X-Repo-Commit"), Size: -1}
	m.ETag = normalizeETag(resp.Header.Get("X-Linked-Etag"))
	if m.ETag == "" {
		m.ETag = normalizeETag(resp.Header.Get("ETag"))
	}
	size := resp.Header.Get("X-Linked-Size")
	if size == "" {
		size = resp.Header.Get("Content-Length")
	}
	if n, err := strconv.ParseInt(size, 10, 64); err == nil && n >= 0 {
		m.Size = n
	}
	where := redactURL(resp.Request.URL)
	if !IsCommit(m.Commit) {
		return nil, fmt.Errorf("hub: %s: no valid X-Repo-Commit header (%q): is HF_ENDPOINT a Hugging Face hub?", where, m.Commit)
	}
	if !etagRe.MatchString(m.ETag) {
		return nil, fmt.Errorf("hub: %s: no usable ETag for %s (%q)", where, filename, m.ETag)
	}
	return m, nil
}

// normalizeETag strips a weak marker and quotes.
func normalizeETag(s string) string {
	s = strings.TrimPrefix(strings.TrimSpace(s), "W/")
	return strings.Trim(s, `"`)
}

func (c *Client) setHeaders(req *http.Request, auth bool) {
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set("Accept-Encoding", "identity")
	if auth && c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
}

// Download returns the path of filename from repo at revision (a branch,
// tag or commit; "" means "main") in the cache's snapshot folder, fetching
// it first when needed, as huggingface_hub's hf_hub_download does: the file
// is stored once in blobs/ under its ETag and linked from
// snapshots/<commit>/, and refs/<revision> records the commit.
//
// Without network (Offline, or when the hub cannot be reached) the cached
// copy is returned, or an error wrapping ErrNotCached. A file the hub reports
// missing gives an error wrapping ErrEntryNotFound (and ErrNotFound), and the
// absence is remembered in .no_exist/ for offline use.
func (c *Client) Download(ctx context.Context, repo, revision, filename string) (string, error) {
	if revision == "" {
		revision = "main"
	}
	if err := checkRepo(repo); err != nil {
		return "", err
	}
	if err := checkRevision(revision); err != nil {
		return "", err
	}
	if err := checkFilename(filename); err != nil {
		return "", err
	}
	base := filepath.Join(c.CacheDir, RepoFolder(repo))
	// A commit never changes: a cached file needs no question to the hub.
	if IsCommit(revision) {
		p, err := c.cached(base, repo, revision, filename)
		switch {
		case err == nil || errors.Is(err, ErrEntryNotFound):
			return p, err
		case c.Offline || !errors.Is(err, ErrNotCached) && !errors.Is(err, ErrCorrupt):
			return "", err
		}
	}
	if c.Offline && !IsCommit(revision) {
		return c.cached(base, repo, revision, filename)
	}
	meta, err := c.Metadata(ctx, repo, revision, filename)
	if err != nil {
		var he *HTTPError
		switch {
		case errors.As(err, &he) && he.Status < 500 && he.Status != http.StatusTooManyRequests:
			if he.isEntryNotFound() && IsCommit(he.Commit) {
				c.rememberMissing(base, revision, he.Commit, filename)
			}
			return "", err
		case ctx.Err() != nil:
			return "", err
		}
		// The hub cannot be reached or fails (5xx, 429): use the cache, as
		// huggingface_hub does.
		p, cerr := c.cached(base, repo, revision, filename)
		if cerr == nil {
			c.logf("hub unreachable (%v); using the cached %s", err, p)
			return p, nil
		}
		return "", fmt.Errorf("%w (and %w)", err, cerr)
	}
	if revision != meta.Commit {
		if err := writeRef(base, revision, meta.Commit); err != nil {
			return "", err
		}
	}
	pointer := filepath.Join(base, "snapshots", meta.Commit, filepath.FromSlash(filename))
	blob := filepath.Join(base, "blobs", meta.ETag)
	// Fast path: the snapshot already holds the file.
	if ok, err := c.pointerValid(pointer, blob, meta); err != nil {
		return "", err
	} else if ok {
		return pointer, nil
	}
	unlock, err := lockFile(ctx, filepath.Join(c.CacheDir, ".locks", RepoFolder(repo), meta.ETag+".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if err := c.ensureBlob(ctx, blob, meta, filename); err != nil {
		return "", err
	}
	if err := linkPointer(blob, pointer); err != nil {
		return "", err
	}
	return pointer, nil
}

// cached resolves filename at revision from the cache alone.
func (c *Client) cached(base, repo, revision, filename string) (string, error) {
	commit, err := cachedCommit(base, revision)
	if err != nil {
		return "", fmt.Errorf("%w: %s@%s (looked in %s)", err, repo, revision, base)
	}
	pointer := filepath.Join(base, "snapshots", commit, filepath.FromSlash(filename))
	st, err := os.Stat(pointer)
	if err != nil {
		if _, err := os.Stat(filepath.Join(base, ".no_exist", commit, filepath.FromSlash(filename))); err == nil {
			return "", fmt.Errorf("%w: %s@%s has no %s (remembered in the cache)", ErrEntryNotFound, repo, revision, filename)
		}
		return "", fmt.Errorf("%w: %s@%s: %s", ErrNotCached, repo, revision, filename)
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("hub: %s is not a regular file", pointer)
	}
	// A symlink into blobs/ names the blob's checksum: check it once.
	if target, err := os.Readlink(pointer); err == nil && !c.TrustCache {
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(pointer), target)
		}
		if err := c.verifyOnce(target, filepath.Base(target), -1); err != nil {
			return "", fmt.Errorf("%w; fetch it again without HF_HUB_OFFLINE", err)
		}
	}
	return pointer, nil
}

// rememberMissing records that filename does not exist at commit.
func (c *Client) rememberMissing(base, revision, commit, filename string) {
	p := filepath.Join(base, ".no_exist", commit, filepath.FromSlash(filename))
	if os.MkdirAll(filepath.Dir(p), 0o755) == nil {
		if f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE, 0o644); err == nil {
			f.Close()
		}
	}
	if revision != commit {
		_ = writeRef(base, revision, commit)
	}
}

// pointerValid reports whether pointer exists with the expected contents. A
// pointer that is not a link to blob (a plain file, as some tools write it)
// is accepted when its contents check out.
func (c *Client) pointerValid(pointer, blob string, meta *Metadata) (bool, error) {
	st, err := os.Stat(pointer)
	if err != nil {
		return false, nil
	}
	if !st.Mode().IsRegular() || meta.Size >= 0 && st.Size() != meta.Size {
		return false, nil
	}
	if c.TrustCache {
		return true, nil
	}
	if err := c.verifyOnce(pointer, meta.ETag, meta.Size); err != nil {
		c.logf("%v; fetching it again", err)
		return false, nil
	}
	return true, nil
}

// ensureBlob makes blob hold the verified contents, downloading them when
// missing or corrupt. The caller holds the blob's lock.
func (c *Client) ensureBlob(ctx context.Context, blob string, meta *Metadata, filename string) error {
	if _, err := os.Stat(blob); err == nil {
		c.verified.Delete(blob) // another process may have replaced it: look again
		if err := c.verifyOnce(blob, meta.ETag, meta.Size); err == nil {
			return nil
		} else {
			c.logf("%v; fetching it again", err)
		}
		if err := os.Remove(blob); err != nil {
			return fmt.Errorf("hub: removing corrupt blob: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(blob), 0o755); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	tmp := blob + ".incomplete"
	auth := true
	if lu, err := url.Parse(meta.Location); err == nil {
		if eu, err := url.Parse(c.Endpoint); err == nil && lu.Host != eu.Host {
			auth = false // a signed CDN URL: the token stays with the hub
		}
	}
	for attempt := 0; ; attempt++ {
		if err := c.fetch(ctx, &transfer{url: meta.Location, auth: auth, tmp: tmp, size: meta.Size, name: filename}); err != nil {
			return err
		}
		err := verify(tmp, meta.ETag, meta.Size)
		if err == nil {
			break
		}
		os.Remove(tmp)
		if attempt > 0 {
			return fmt.Errorf("%w (downloaded twice)", err)
		}
		c.logf("%v; downloading again from the start", err)
	}
	if err := os.Rename(tmp, blob); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	c.verified.Store(blob, struct{}{})
	return nil
}

// verifyOnce verifies path against etag and size unless this client did so
// already.
func (c *Client) verifyOnce(path, etag string, size int64) error {
	if _, ok := c.verified.Load(path); ok {
		return nil
	}
	if err := verify(path, etag, size); err != nil {
		return err
	}
	c.verified.Store(path, struct{}{})
	return nil
}

// writeRef records that revision points at commit (atomically).
func writeRef(base, revision, commit string) error {
	ref := filepath.Join(base, "refs", filepath.FromSlash(revision))
	if b, err := os.ReadFile(ref); err == nil && strings.TrimSpace(string(b)) == commit {
		return nil
	}
	if err := writeFileAtomic(ref, []byte(commit)); err != nil {
		return fmt.Errorf("hub: writing %s: %w", ref, err)
	}
	return nil
}

// writeFileAtomic writes data to a temporary file next to path and renames
// it into place.
func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	cerr := f.Close()
	if werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Chmod(f.Name(), 0o644)
	}
	if werr == nil {
		werr = os.Rename(f.Name(), path)
	}
	if werr != nil {
		os.Remove(f.Name())
	}
	return werr
}

// linkPointer makes pointer a relative symlink to blob (replacing whatever
// is there), or a copy where the file system has no symlinks.
func linkPointer(blob, pointer string) error {
	dir := filepath.Dir(pointer)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	rel, err := filepath.Rel(dir, blob)
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	if cur, err := os.Readlink(pointer); err == nil && cur == rel {
		return nil
	}
	tmp := pointer + ".tmp-link"
	os.Remove(tmp)
	if err := os.Symlink(rel, tmp); err == nil {
		if err := os.Rename(tmp, pointer); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("hub: %w", err)
		}
		return nil
	}
	// No symlinks here: copy, as huggingface_hub does on such systems.
	data, err := os.ReadFile(blob)
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	if err := writeFileAtomic(pointer, data); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	return nil
}
