package hub_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinyclip-go/tinyclip/internal/fixtures"
	"github.com/tinyclip-go/tinyclip/internal/hub"
	"github.com/tinyclip-go/tinyclip/internal/hub/hubtest"
)

const repoID = "wkcn/TinyCLIP-ViT-8M-16-Text-3M-YFCC15M"

// fixtureRepo is the vit-p16 fixture model in the Hugging Face layout, plus
// a tokenizer-less README, served as the zoo's ViT-8M/16 repository.
func fixtureRepo(t *testing.T) hubtest.Repo {
	t.Helper()
	r, err := hubtest.LoadDir(repoID, fixtures.Path(t, "fixtures", "models", "vit-p16", "hf"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Files["model.safetensors"] == nil || r.Files["config.json"] == nil {
		t.Fatalf("fixture repo lacks files: %v", len(r.Files))
	}
	r.Files["README.md"] = []byte("# test model\n")
	r.Refs = []string{"main", "v1.0", "refs/pr/1"}
	r.Commit = hubtest.CommitOf(r.Files)
	return r
}

func newClient(t *testing.T, srv *hubtest.Server) *hub.Client {
	t.Helper()
	dir := t.TempDir()
	return &hub.Client{
		Endpoint:   srv.URL,
		CacheDir:   filepath.Join(dir, "hub"),
		ReleaseDir: filepath.Join(dir, "releases"),
		RetryDelay: time.Millisecond,
	}
}

// countReq counts requests of server ("hub"/"cdn") and method whose path
// contains sub.
func countReq(reqs []hubtest.Request, server, method, sub string) int {
	n := 0
	for _, r := range reqs {
		if r.Server == server && r.Method == method && strings.Contains(r.Path, sub) {
			n++
		}
	}
	return n
}

func TestFirstDownload(t *testing.T) {
	repo := fixtureRepo(t)
	srv := hubtest.New(repo)
	defer srv.Close()
	c := newClient(t, srv)
	ctx := context.Background()

	snap, err := c.DownloadModel(ctx, repoID, "")
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(c.CacheDir, "models--wkcn--TinyCLIP-ViT-8M-16-Text-3M-YFCC15M")
	if want := filepath.Join(base, "snapshots", repo.Commit); snap != want {
		t.Fatalf("snapshot %s, want %s", snap, want)
	}
	ref, err := os.ReadFile(filepath.Join(base, "refs", "main"))
	if err != nil || string(ref) != repo.Commit {
		t.Errorf("refs/main = %q, %v; want %s", ref, err, repo.Commit)
	}
	// Snapshot entries are relative symlinks to blobs named by their ETag:
	// the git blob sha1 of a regular file, the sha256 of an LFS file.
	for name, etag := range map[string]string{
		"config.json":       hubtest.GitBlobSHA1(repo.Files["config.json"]),
		"model.safetensors": hubtest.SHA256(repo.Files["model.safetensors"]),
	} {
		p := filepath.Join(snap, name)
		target, err := os.Readlink(p)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if want := filepath.Join("..", "..", "blobs", etag); target != want {
			t.Errorf("%s -> %s, want %s", name, target, want)
		}
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, repo.Files[name]) {
			t.Errorf("%s: contents differ from the served file (%v)", name, err)
		}
	}
	// Absent optional files are remembered, as huggingface_hub does.
	for _, name := range []string{"tokenizer.json", "vocab.json", "preprocessor_config.json"} {
		if _, err := os.Stat(filepath.Join(base, ".no_exist", repo.Commit, name)); err != nil {
			t.Errorf(".no_exist/%s: %v", name, err)
		}
	}
	// README.md is not needed to load a model.
	if _, err := os.Lstat(filepath.Join(snap, "README.md")); err == nil {
		t.Error("README.md was downloaded")
	}
	reqs := srv.Requests()
	if n := countReq(reqs, "cdn", "GET", "/repos/"); n != 1 {
		t.Errorf("%d CDN downloads, want 1", n)
	}
	if n := countReq(reqs, "hub", "GET", "model.safetensors"); n != 0 {
		t.Errorf("the LFS file was fetched from the hub (%d), not from the CDN", n)
	}
	for _, e := range []string{".incomplete"} {
		m, _ := filepath.Glob(filepath.Join(base, "blobs", "*"+e))
		if len(m) != 0 {
			t.Errorf("left over: %v", m)
		}
	}

	// A second call only asks for metadata.
	srv.ResetRequests()
	snap2, err := c.DownloadModel(ctx, repoID, "main")
	if err != nil || snap2 != snap {
		t.Fatalf("second call: %s, %v", snap2, err)
	}
	for _, r := range srv.Requests() {
		if r.Method != http.MethodHead {
			t.Errorf("second call made %s %s", r.Method, r.Path)
		}
	}
	// At a commit, a cached file needs no request at all.
	srv.ResetRequests()
	p, err := c.Download(ctx, repoID, repo.Commit, "config.json")
	if err != nil || p != filepath.Join(snap, "config.json") {
		t.Fatalf("by commit: %s, %v", p, err)
	}
	if n := len(srv.Requests()); n != 0 {
		t.Errorf("%d requests for a cached file at a commit", n)
	}
}

func TestRevisions(t *testing.T) {
	repo := fixtureRepo(t)
	srv := hubtest.New(repo)
	defer srv.Close()
	c := newClient(t, srv)
	ctx := context.Background()
	for _, rev := range []string{"v1.0", "refs/pr/1"} {
		p, err := c.Download(ctx, repoID, rev, "config.json")
		if err != nil {
			t.Fatalf("%s: %v", rev, err)
		}
		if !strings.Contains(p, repo.Commit) {
			t.Errorf("%s: %s not in the commit's snapshot", rev, p)
		}
		ref, err := os.ReadFile(filepath.Join(c.CacheDir, hub.RepoFolder(repoID), "refs", filepath.FromSlash(rev)))
		if err != nil || string(ref) != repo.Commit {
			t.Errorf("refs/%s = %q, %v", rev, ref, err)
		}
	}
	if _, err := c.Download(ctx, repoID, "nope", "config.json"); !errors.Is(err, hub.ErrNotFound) || errors.Is(err, hub.ErrEntryNotFound) {
		t.Errorf("unknown revision: %v", err)
	}
}

func TestResumeAfterCut(t *testing.T) {
	repo := fixtureRepo(t)
	size := len(repo.Files["model.safetensors"])
	srv := hubtest.New(repo)
	defer srv.Close()
	ctx := context.Background()

	// Without retries the call fails and leaves the partial file.
	c := newClient(t, srv)
	c.Retries = -1
	srv.CutNext("model.safetensors", size/3)
	if _, err := c.DownloadModel(ctx, repoID, ""); err == nil {
		t.Fatal("cut transfer reported success")
	}
	blob := filepath.Join(c.CacheDir, hub.RepoFolder(repoID), "blobs", hubtest.SHA256(repo.Files["model.safetensors"]))
	st, err := os.Stat(blob + ".incomplete")
	if err != nil {
		t.Fatal(err)
	}
	have := st.Size()
	if have <= 0 || have >= int64(size) {
		t.Fatalf("partial file has %d of %d bytes", have, size)
	}
	if _, err := os.Stat(blob); err == nil {
		t.Fatal("a cut transfer was renamed into place")
	}
	// The next call resumes where the transfer stopped.
	srv.ResetRequests()
	snap, err := c.DownloadModel(ctx, repoID, "")
	if err != nil {
		t.Fatal(err)
	}
	assertRange(t, srv.Requests(), have)
	got, _ := os.ReadFile(filepath.Join(snap, "model.safetensors"))
	if !bytes.Equal(got, repo.Files["model.safetensors"]) {
		t.Error("resumed file differs")
	}

	// With retries one call recovers by itself, resuming too.
	c2 := newClient(t, srv)
	srv.CutNext("model.safetensors", size/2)
	srv.ResetRequests()
	snap, err = c2.DownloadModel(ctx, repoID, "")
	if err != nil {
		t.Fatal(err)
	}
	reqs := srv.Requests()
	if n := countReq(reqs, "cdn", "GET", "/repos/"); n != 2 {
		t.Errorf("%d CDN requests, want 2 (cut, resumed)", n)
	}
	assertRange(t, reqs, int64(size/2))
	got, _ = os.ReadFile(filepath.Join(snap, "model.safetensors"))
	if !bytes.Equal(got, repo.Files["model.safetensors"]) {
		t.Error("retried file differs")
	}
}

// assertRange checks that a CDN request asked for the bytes from off on and
// got 206.
func assertRange(t *testing.T, reqs []hubtest.Request, off int64) {
	t.Helper()
	want := "bytes=" + strconv.FormatInt(off, 10) + "-"
	for _, r := range reqs {
		if r.Server == "cdn" && r.Range == want {
			if r.Status != http.StatusPartialContent {
				t.Errorf("range request answered %d", r.Status)
			}
			return
		}
	}
	t.Errorf("no CDN request with Range %q in %+v", want, reqs)
}

// writeHFCache lays out repo in dir as huggingface_hub does (blobs named by
// ETag, relative symlinks from the snapshot, refs/main), or with plain
// files in the snapshot when links is false (caches copied without
// symlinks, or written on systems without them).
func writeHFCache(t *testing.T, dir string, repo hubtest.Repo, names []string, links bool) string {
	t.Helper()
	base := filepath.Join(dir, hub.RepoFolder(repo.ID))
	snap := filepath.Join(base, "snapshots", repo.Commit)
	for _, d := range []string{filepath.Join(base, "blobs"), filepath.Join(base, "refs"), snap} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(base, "refs", "main"), []byte(repo.Commit), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		data := repo.Files[name]
		if !links {
			if err := os.WriteFile(filepath.Join(snap, name), data, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		etag := hubtest.GitBlobSHA1(data)
		if hubtest.IsLFS(name) {
			etag = hubtest.SHA256(data)
		}
		if err := os.WriteFile(filepath.Join(base, "blobs", etag), data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("../../blobs/"+etag, filepath.Join(snap, name)); err != nil {
			t.Fatal(err)
		}
	}
	return snap
}

func TestOfflineReuse(t *testing.T) {
	repo := fixtureRepo(t)
	repo.Commit = "0123456789abcdef0123456789abcdef01234567"
	srv := hubtest.New(repo)
	defer srv.Close()
	ctx := context.Background()
	for _, links := range []bool{true, false} {
		c := newClient(t, srv)
		c.Offline = true
		snap := writeHFCache(t, c.CacheDir, repo, []string{"config.json", "model.safetensors"}, links)
		for _, rev := range []string{"", "main", repo.Commit} {
			got, err := c.DownloadModel(ctx, repoID, rev)
			if err != nil || got != snap {
				t.Errorf("links=%v rev %q: %s, %v; want %s", links, rev, got, err, snap)
			}
		}
		// Zoo names resolve to the same snapshot.
		if got, err := c.Resolve(ctx, "TinyCLIP-ViT-8M-16-Text-3M"); err != nil || got != snap {
			t.Errorf("links=%v Resolve: %s, %v", links, got, err)
		}
		if _, err := c.DownloadModel(ctx, "wkcn/other", ""); !errors.Is(err, hub.ErrNotCached) {
			t.Errorf("uncached repo offline: %v", err)
		}
		if _, err := c.DownloadModel(ctx, repoID, "v2"); !errors.Is(err, hub.ErrNotCached) {
			t.Errorf("uncached revision offline: %v", err)
		}
	}
	if n := len(srv.Requests()); n != 0 {
		t.Errorf("offline client made %d requests", n)
	}

	// The environment switches a client offline.
	home := t.TempDir()
	t.Setenv("HF_HOME", home)
	t.Setenv("HF_HUB_CACHE", "")
	t.Setenv("HF_ENDPOINT", srv.URL)
	for _, v := range []string{"1", "true", "YES", "on"} {
		t.Setenv("HF_HUB_OFFLINE", v)
		if c := hub.NewClient(); !c.Offline || c.CacheDir != filepath.Join(home, "hub") || c.Endpoint != srv.URL {
			t.Errorf("HF_HUB_OFFLINE=%s: %+v", v, c)
		}
	}
	t.Setenv("HF_HUB_OFFLINE", "0")
	if hub.NewClient().Offline {
		t.Error("HF_HUB_OFFLINE=0 is offline")
	}
	// The hub unreachable: the cache is used, as huggingface_hub does.
	c := newClient(t, srv)
	snap := writeHFCache(t, c.CacheDir, repo, []string{"config.json", "model.safetensors"}, true)
	c.Endpoint = "http://127.0.0.1:1" // nothing listens there
	var notes []string
	c.Logf = func(f string, a ...any) { notes = append(notes, f) }
	if got, err := c.DownloadModel(ctx, repoID, ""); err != nil || got != snap {
		t.Errorf("unreachable hub: %s, %v", got, err)
	}
	if len(notes) == 0 {
		t.Error("falling back to the cache was not noted")
	}
	// A failing hub (5xx) also falls back to the cache; without a cache
	// the error names the status.
	c.Endpoint = srv.URL
	srv.SetOutage(http.StatusServiceUnavailable)
	defer srv.SetOutage(0)
	if got, err := c.DownloadModel(ctx, repoID, ""); err != nil || got != snap {
		t.Errorf("hub answering 503: %s, %v", got, err)
	}
	if _, err := c.DownloadModel(ctx, "wkcn/other", ""); err == nil || !strings.Contains(err.Error(), "503") || !errors.Is(err, hub.ErrNotCached) {
		t.Errorf("hub answering 503, nothing cached: %v", err)
	}
}

func TestCorruptBlobRefetched(t *testing.T) {
	repo := fixtureRepo(t)
	srv := hubtest.New(repo)
	defer srv.Close()
	ctx := context.Background()
	c := newClient(t, srv)
	snap, err := c.DownloadModel(ctx, repoID, "")
	if err != nil {
		t.Fatal(err)
	}
	blobs := filepath.Join(c.CacheDir, hub.RepoFolder(repoID), "blobs")
	want := repo.Files["model.safetensors"]
	for _, damage := range []struct {
		name string
		f    func([]byte) []byte
	}{
		{"bit flip", func(b []byte) []byte { b = bytes.Clone(b); b[len(b)/2] ^= 1; return b }},
		{"truncated", func(b []byte) []byte { return b[:len(b)-10] }},
	} {
		t.Run(damage.name, func(t *testing.T) {
			blob := filepath.Join(blobs, hubtest.SHA256(want))
			if err := os.WriteFile(blob, damage.f(want), 0o644); err != nil {
				t.Fatal(err)
			}
			// Offline, the damage is reported.
			off := hub.Client{Endpoint: c.Endpoint, CacheDir: c.CacheDir, Offline: true}
			if _, err := off.DownloadModel(ctx, repoID, ""); !errors.Is(err, hub.ErrCorrupt) {
				t.Errorf("offline: %v, want ErrCorrupt", err)
			}
			// Online, a fresh client notices and fetches the blob again.
			c2 := hub.Client{Endpoint: c.Endpoint, CacheDir: c.CacheDir, RetryDelay: time.Millisecond}
			srv.ResetRequests()
			got, err := c2.DownloadModel(ctx, repoID, "")
			if err != nil || got != snap {
				t.Fatalf("%s, %v", got, err)
			}
			if n := countReq(srv.Requests(), "cdn", "GET", "/repos/"); n != 1 {
				t.Errorf("%d CDN downloads, want 1", n)
			}
			b, _ := os.ReadFile(filepath.Join(snap, "model.safetensors"))
			if !bytes.Equal(b, want) {
				t.Error("blob not repaired")
			}
		})
	}
	// A corrupt regular (non-LFS) file is caught by its git blob sha1.
	cfg := filepath.Join(blobs, hubtest.GitBlobSHA1(repo.Files["config.json"]))
	os.WriteFile(cfg, bytes.ToUpper(repo.Files["config.json"]), 0o644)
	c3 := hub.Client{Endpoint: c.Endpoint, CacheDir: c.CacheDir}
	if _, err := c3.DownloadModel(ctx, repoID, ""); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(cfg); !bytes.Equal(b, repo.Files["config.json"]) {
		t.Error("config.json blob not repaired")
	}
}

func TestConcurrentDownloaders(t *testing.T) {
	repo := fixtureRepo(t)
	srv := hubtest.New(repo)
	defer srv.Close()
	srv.SetDelay(50 * time.Millisecond)
	cache := t.TempDir()
	const n = 4
	var wg sync.WaitGroup
	paths := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Separate clients, as separate processes would be.
			c := &hub.Client{Endpoint: srv.URL, CacheDir: cache}
			paths[i], errs[i] = c.DownloadModel(context.Background(), repoID, "")
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || paths[i] != paths[0] {
			t.Fatalf("downloader %d: %s, %v", i, paths[i], errs[i])
		}
	}
	if k := countReq(srv.Requests(), "cdn", "GET", "/repos/"); k != 1 {
		t.Errorf("%d downloads of the weights, want 1 (the others wait on the lock)", k)
	}
	blobs, _ := os.ReadDir(filepath.Join(cache, hub.RepoFolder(repoID), "blobs"))
	if len(blobs) != 2 {
		var names []string
		for _, b := range blobs {
			names = append(names, b.Name())
		}
		t.Errorf("blobs: %v, want config.json's and the weights'", names)
	}
	b, _ := os.ReadFile(filepath.Join(paths[0], "model.safetensors"))
	if !bytes.Equal(b, repo.Files["model.safetensors"]) {
		t.Error("weights differ")
	}
}

func TestHubErrors(t *testing.T) {
	repo := fixtureRepo(t)
	private := fixtureRepo(t)
	private.ID = "acme/private-clip"
	private.Private = true
	moved := fixtureRepo(t)
	moved.ID = "acme/new-name"
	moved.RenamedFrom = []string{"acme/old-name"}
	srv := hubtest.New(repo, private, moved)
	defer srv.Close()
	srv.Token = "hf_secret"
	ctx := context.Background()
	c := newClient(t, srv)

	if _, err := c.DownloadModel(ctx, "acme/missing", ""); !errors.Is(err, hub.ErrNotFound) || !strings.Contains(err.Error(), "HF_TOKEN") {
		t.Errorf("missing repo: %v", err)
	}
	if _, err := c.DownloadModel(ctx, "acme/private-clip", ""); !errors.Is(err, hub.ErrNotFound) || !strings.Contains(err.Error(), "401") {
		t.Errorf("private repo without token: %v", err)
	}
	// With the token: the hub sees it, the CDN does not (it would refuse).
	c.Token = "hf_secret"
	srv.ResetRequests()
	if _, err := c.DownloadModel(ctx, "acme/private-clip", ""); err != nil {
		t.Fatalf("private repo with token: %v", err)
	}
	for _, r := range srv.Requests() {
		if r.Server == "hub" && r.Auth != "Bearer hf_secret" || r.Server == "cdn" && r.Auth != "" {
			t.Errorf("%s %s %s: Authorization %q", r.Server, r.Method, r.Path, r.Auth)
		}
	}
	// A missing file is ErrEntryNotFound, remembered for offline use.
	_, err := c.Download(ctx, repoID, "", "nope.txt")
	if !errors.Is(err, hub.ErrEntryNotFound) || !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("missing file: %v", err)
	}
	off := hub.Client{CacheDir: c.CacheDir, Offline: true}
	if _, err := off.Download(ctx, repoID, "", "nope.txt"); !errors.Is(err, hub.ErrEntryNotFound) {
		t.Errorf("missing file offline: %v", err)
	}
	// A renamed repository redirects (relative Location).
	if p, err := c.Download(ctx, "acme/old-name", "", "config.json"); err != nil || !strings.Contains(p, "models--acme--old-name") {
		t.Errorf("renamed repo: %s, %v", p, err)
	}
	// Bad names never reach the network.
	srv.ResetRequests()
	for _, bad := range []struct{ repo, rev, file string }{
		{"../x", "main", "config.json"},
		{repoID, "../../etc", "config.json"},
		{repoID, "main", "../../../etc/passwd"},
		{repoID, "main", "/abs"},
		{repoID, "main", "a//b"},
	} {
		if _, err := c.Download(ctx, bad.repo, bad.rev, bad.file); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
	if n := len(srv.Requests()); n != 0 {
		t.Errorf("bad names made %d requests", n)
	}
	// A server that is not a hub (no X-Repo-Commit) is named as such.
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hello")) }))
	defer plain.Close()
	np := newClient(t, srv)
	np.Endpoint = plain.URL
	if _, err := np.Download(ctx, repoID, "", "config.json"); err == nil || !strings.Contains(err.Error(), "X-Repo-Commit") {
		t.Errorf("not a hub: %v", err)
	}
}

// rewrite sends requests for github.com to the fake hub.
type rewrite struct{ to *url.URL }

func (rw rewrite) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host == "github.com" {
		r = r.Clone(r.Context())
		r.URL.Scheme, r.URL.Host = rw.to.Scheme, rw.to.Host
		r.Host = rw.to.Host
	}
	return http.DefaultTransport.RoundTrip(r)
}

func TestReleaseDownloads(t *testing.T) {
	data, err := os.ReadFile(fixtures.Path(t, "fixtures", "models", "resnet", "tinyclip_fp32_legacy.pt"))
	if err != nil {
		t.Fatal(err)
	}
	const zoo = "/wkcn/TinyCLIP-model-zoo/releases/download/checkpoints/"
	srv := hubtest.New(fixtureRepo(t))
	defer srv.Close()
	srv.AddRelease(zoo+"TinyCLIP-ResNet-30M-Text-29M-LAION400M.pt", data)
	srv.AddRelease(zoo+"TinyCLIP-ViT-8M-16-Text-3M-YFCC15M.pt", data)
	ctx := context.Background()
	c := newClient(t, srv)
	u, _ := url.Parse(srv.URL)
	c.HTTP = &http.Client{Transport: rewrite{u}}
	c.Token = "hf_secret" // must not be sent to release servers
	c.Retries = -1

	// A zoo model without a Hugging Face repository comes from its release
	// URL; the first transfer is cut, the second resumes.
	srv.CutNext(zoo+"TinyCLIP-ResNet-30M-Text-29M-LAION400M.pt", len(data)/2)
	if _, err := c.Resolve(ctx, "TinyCLIP-ResNet-30M-Text-29M"); err == nil {
		t.Fatal("cut transfer reported success")
	}
	srv.ResetRequests()
	p, err := c.Resolve(ctx, "TinyCLIP-ResNet-30M-Text-29M")
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(c.ReleaseDir, "github.com", filepath.FromSlash(zoo[1:]), "TinyCLIP-ResNet-30M-Text-29M-LAION400M.pt")
	if p != want {
		t.Errorf("path %s, want %s", p, want)
	}
	if b, _ := os.ReadFile(p); !bytes.Equal(b, data) {
		t.Error("release file differs")
	}
	assertRange(t, srv.Requests(), int64(len(data)/2))
	for _, r := range srv.Requests() {
		if r.Auth != "" {
			t.Errorf("token sent to %s", r.Path)
		}
	}
	if m, _ := filepath.Glob(filepath.Join(filepath.Dir(p), "*.incomplete*")); len(m) != 0 {
		t.Errorf("left over: %v", m)
	}
	// Cached: no request.
	srv.ResetRequests()
	if p2, err := c.Resolve(ctx, "https://github.com"+zoo+"TinyCLIP-ResNet-30M-Text-29M-LAION400M.pt"); err != nil || p2 != p {
		t.Errorf("by URL: %s, %v", p2, err)
	}
	if n := len(srv.Requests()); n != 0 {
		t.Errorf("%d requests for a cached release", n)
	}
	// A release file name means the release file, even where a Hugging
	// Face repository exists.
	if p, err := c.Resolve(ctx, "TinyCLIP-ViT-8M-16-Text-3M-YFCC15M.pt"); err != nil || filepath.Base(p) != "TinyCLIP-ViT-8M-16-Text-3M-YFCC15M.pt" {
		t.Errorf("release file name: %s, %v", p, err)
	}
	// Offline and not cached; missing on the server.
	off := hub.Client{ReleaseDir: c.ReleaseDir, Offline: true}
	if _, err := off.DownloadURL(ctx, srv.URL+"/x/y.pt"); !errors.Is(err, hub.ErrNotCached) {
		t.Errorf("offline: %v", err)
	}
	if _, err := c.DownloadURL(ctx, srv.URL+"/x/y.pt"); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("missing release: %v", err)
	}
	for _, bad := range []string{"ftp://x/y.pt", "https:///y.pt", "https://x/", "https://x/a/../../b.pt"} {
		if _, err := c.DownloadURL(ctx, bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestResolve(t *testing.T) {
	repo := fixtureRepo(t)
	srv := hubtest.New(repo)
	defer srv.Close()
	ctx := context.Background()
	c := newClient(t, srv)
	local := fixtures.Path(t, "fixtures", "models", "vit-p16")
	for _, c2 := range []struct{ ref, want string }{
		{local, local},
		{"TinyCLIP-ViT-8M-16-Text-3M", repo.Commit},
		{"TinyCLIP-ViT-8M-16-Text-3M-YFCC15M", repo.Commit},
		{repoID, repo.Commit},
		{repoID + "@v1.0", repo.Commit},
		{"tinyclip-vit-8m-16-text-3m@" + repo.Commit, repo.Commit},
	} {
		got, err := c.Resolve(ctx, c2.ref)
		if err != nil || !strings.HasSuffix(got, c2.want) {
			t.Errorf("%q: %s, %v; want …%s", c2.ref, got, err, c2.want)
		}
	}
	for _, bad := range []string{"", "no-such-model", "ViT-B-16", repoID + "@", "a/b/c"} {
		if _, err := c.Resolve(ctx, bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestTokenFromEnv(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HF_HOME", home)
	t.Setenv("HF_TOKEN", "")
	t.Setenv("HUGGING_FACE_HUB_TOKEN", "")
	t.Setenv("HF_TOKEN_PATH", "")
	if tok := hub.Token(); tok != "" {
		t.Errorf("no token: %q", tok)
	}
	os.WriteFile(filepath.Join(home, "token"), []byte("hf_file\n"), 0o600)
	if tok := hub.Token(); tok != "hf_file" {
		t.Errorf("token file: %q", tok)
	}
	t.Setenv("HF_TOKEN", "hf_env")
	if tok := hub.Token(); tok != "hf_env" {
		t.Errorf("HF_TOKEN: %q", tok)
	}
	t.Setenv("HF_ENDPOINT", "https://mirror.example/")
	if e := hub.Endpoint(); e != "https://mirror.example" {
		t.Errorf("endpoint %q", e)
	}
	t.Setenv("HF_ENDPOINT", "")
	if e := hub.Endpoint(); e != hub.DefaultEndpoint {
		t.Errorf("default endpoint %q", e)
	}
	if d := hub.ReleaseCacheDir(); d != filepath.Join(home, "tinyclip", "releases") {
		t.Errorf("release dir %q", d)
	}
}

// TestRepoLayouts: the files DownloadModel picks for open_clip repositories,
// pytorch_model.bin-only repositories and sharded checkpoints, and the
// tokenizer and preprocessor files when present.
func TestRepoLayouts(t *testing.T) {
	oc, err := hubtest.LoadDir("acme/open-clip", fixtures.Path(t, "fixtures", "models", "vit-p16", "open_clip"))
	if err != nil {
		t.Fatal(err)
	}
	oc.Files["open_clip_pytorch_model.bin"] = []byte("not wanted: the safetensors file comes first")
	oc.Files["tokenizer.json"] = []byte(`{"model": {}}`)
	oc.Files["vocab.json"] = []byte(`{}`) // not wanted: tokenizer.json comes first
	bin := hubtest.Repo{ID: "acme/bin-only", Files: map[string][]byte{
		"config.json": []byte(`{"architectures": ["CLIPModel"]}`), "pytorch_model.bin": []byte("weights"),
		"vocab.json": []byte(`{}`), "merges.txt": []byte("#version: 0.2\n"), "preprocessor_config.json": []byte(`{}`)}}
	sharded := hubtest.Repo{ID: "acme/sharded", Files: map[string][]byte{
		"config.json":                      []byte(`{"architectures": ["CLIPModel"]}`),
		"model.safetensors.index.json":     []byte(`{"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors", "c": "model-00001-of-00002.safetensors"}}`),
		"model-00001-of-00002.safetensors": []byte("shard 1"), "model-00002-of-00002.safetensors": []byte("shard 2"),
		"model-00003-of-00003.safetensors": []byte("not in the index")}}
	bad := hubtest.Repo{ID: "acme/bad-index", Files: map[string][]byte{
		"config.json":                  []byte(`{}`),
		"model.safetensors.index.json": []byte(`{"weight_map": {"a": "../../escape.safetensors"}}`)}}
	none := hubtest.Repo{ID: "acme/no-weights", Files: map[string][]byte{"config.json": []byte(`{}`)}}
	srv := hubtest.New(oc, bin, sharded, bad, none)
	defer srv.Close()
	c := newClient(t, srv)
	ctx := context.Background()
	for _, tc := range []struct {
		repo        string
		want, wantN []string
	}{
		{"acme/open-clip", []string{"open_clip_config.json", "open_clip_model.safetensors", "tokenizer.json"}, []string{"open_clip_pytorch_model.bin", "vocab.json"}},
		{"acme/bin-only", []string{"config.json", "pytorch_model.bin", "vocab.json", "merges.txt", "preprocessor_config.json"}, nil},
		{"acme/sharded", []string{"config.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}, []string{"model-00003-of-00003.safetensors"}},
	} {
		snap, err := c.DownloadModel(ctx, tc.repo, "")
		if err != nil {
			t.Fatalf("%s: %v", tc.repo, err)
		}
		for _, f := range tc.want {
			if _, err := os.Stat(filepath.Join(snap, f)); err != nil {
				t.Errorf("%s: %s missing", tc.repo, f)
			}
		}
		for _, f := range tc.wantN {
			if _, err := os.Lstat(filepath.Join(snap, f)); err == nil {
				t.Errorf("%s: %s fetched", tc.repo, f)
			}
		}
	}
	if _, err := c.DownloadModel(ctx, "acme/bad-index", ""); err == nil || !strings.Contains(err.Error(), "shard") {
		t.Errorf("escaping shard name: %v", err)
	}
	if _, err := c.DownloadModel(ctx, "acme/no-weights", ""); !errors.Is(err, hub.ErrNotFound) || !strings.Contains(err.Error(), "weight files") {
		t.Errorf("no weights: %v", err)
	}
}
