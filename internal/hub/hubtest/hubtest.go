// Package hubtest runs a fake Hugging Face hub for tests. It speaks the
// protocol huggingface_hub and package hub use:
//
//   - HEAD/GET {URL}/{org}/{name}/resolve/{revision}/{file}: regular files
//     answer 200 with ETag (the git blob sha1) and X-Repo-Commit; LFS files
//     (weights) answer 302 to a second server, the CDN, with X-Linked-Etag
//     (the sha256), X-Linked-Size and an ETag of the LFS pointer file;
//   - the CDN serves GET with Range requests and refuses requests that carry
//     an Authorization header's token it was not meant to see (it records
//     them; see Requests);
//   - errors carry X-Error-Code: RepoNotFound, RevisionNotFound,
//     EntryNotFound (with X-Repo-Commit), and 401 for private repositories
//     without the token;
//   - a renamed repository answers with a relative 307 redirect;
//   - plain files (release assets) are served at any path, through a 302 to
//     the CDN as GitHub release downloads are.
//
// Faults can be injected: a transfer cut after some bytes (CutNext).
package hubtest

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Repo is a model repository served by the fake hub.
type Repo struct {
	ID string // "org/name"
	// Commit is the commit hash every revision of Refs resolves to; derived
	// from the files when empty.
	Commit string
	// Refs are the branch and tag names that resolve to Commit; "main"
	// when empty.
	Refs  []string
	Files map[string][]byte
	// Private repositories answer 401 without the server's token.
	Private bool
	// RenamedFrom lists former ids that redirect to ID.
	RenamedFrom []string
}

// Request is one request the fake hub or its CDN received.
type Request struct {
	Server string // "hub" or "cdn"
	Method string
	Path   string
	Range  string // the Range header
	Auth   string // the Authorization header
	Status int
}

// Server is a running fake hub.
type Server struct {
	// URL is the hub endpoint (set HF_ENDPOINT or Client.Endpoint to it).
	URL string
	// CDNURL is the address LFS files and release assets redirect to.
	CDNURL string
	// Token, when set, is the bearer token private repositories require.
	Token string

	hub, cdn *httptest.Server

	mu       sync.Mutex
	repos    map[string]*Repo
	renamed  map[string]string
	blobs    map[string][]byte // sha256 → content (LFS files and release assets)
	releases map[string]string // path → sha256
	cuts     map[string]int    // sha256 or path → cut the next transfer after n bytes
	log      []Request
	delay    time.Duration
	outage   int // when set, the hub answers every request with this status
}

// New starts a fake hub serving repos. Close it when done.
func New(repos ...Repo) *Server {
	s := &Server{
		repos:    map[string]*Repo{},
		renamed:  map[string]string{},
		blobs:    map[string][]byte{},
		releases: map[string]string{},
		cuts:     map[string]int{},
	}
	s.cdn = httptest.NewServer(http.HandlerFunc(s.serveCDN))
	s.hub = httptest.NewServer(http.HandlerFunc(s.serveHub))
	s.URL, s.CDNURL = s.hub.URL, s.cdn.URL
	for _, r := range repos {
		s.AddRepo(r)
	}
	return s
}

// Close stops both servers.
func (s *Server) Close() {
	s.hub.Close()
	s.cdn.Close()
}

// IsLFS reports whether the fake hub stores name with Git LFS, as the
// .gitattributes of hub repositories do for weight files.
func IsLFS(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".npy", ".npz", ".gz", ".zip":
		return true
	}
	return false
}

// AddRepo adds or replaces a repository.
func (s *Server) AddRepo(r Repo) {
	r.Files = cloneFiles(r.Files)
	if r.Commit == "" {
		r.Commit = CommitOf(r.Files)
	}
	if len(r.Refs) == 0 {
		r.Refs = []string{"main"}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repos[r.ID] = &r
	for _, old := range r.RenamedFrom {
		s.renamed[old] = r.ID
	}
	for name, b := range r.Files {
		if IsLFS(name) {
			s.blobs[SHA256(b)] = b
		}
	}
}

// AddRelease serves data at path (e.g. "/org/repo/releases/download/tag/file.pt")
// on the hub server, through a 302 to the CDN.
func (s *Server) AddRelease(path string, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := SHA256(data)
	s.blobs[h] = bytes.Clone(data)
	s.releases[path] = h
}

// CutNext makes the next transfer of file (a repository file name, or a
// release path) stop after n bytes of its body, with the connection closed.
func (s *Server) CutNext(file string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cuts[file] = n
}

// SetOutage makes the hub answer every request with status (e.g. 503); 0
// ends the outage.
func (s *Server) SetOutage(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outage = status
}

// SetDelay makes the CDN pause this long before each response body (to
// widen races in tests).
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// Requests returns the requests received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.log...)
}

// ResetRequests forgets the recorded requests.
func (s *Server) ResetRequests() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = nil
}

// LoadDir reads the regular files of dir (not recursively) into a Repo.
func LoadDir(id, dir string) (Repo, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return Repo{}, err
	}
	r := Repo{ID: id, Files: map[string][]byte{}}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return Repo{}, err
		}
		r.Files[e.Name()] = b
	}
	return r, nil
}

// SHA256 returns the hex sha256 of b (the ETag of an LFS file).
func SHA256(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// GitBlobSHA1 returns git's object id of b (the ETag of a regular file).
func GitBlobSHA1(b []byte) string {
	h := sha1.New()
	fmt.Fprintf(h, "blob %d\x00", len(b))
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

// CommitOf returns a commit hash derived from the files.
func CommitOf(files map[string][]byte) string {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha1.New()
	for _, n := range names {
		fmt.Fprintf(h, "%s\x00%s\n", n, GitBlobSHA1(files[n]))
	}
	return hex.EncodeToString(h.Sum(nil))
}

func lfsPointer(b []byte) []byte {
	return fmt.Appendf(nil, "version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n", SHA256(b), len(b))
}

func cloneFiles(m map[string][]byte) map[string][]byte {
	out := make(map[string][]byte, len(m))
	for k, v := range m {
		out[k] = bytes.Clone(v)
	}
	return out
}

// statusRecorder keeps the status for the request log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

func (w *statusRecorder) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *Server) record(server string, r *http.Request, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = append(s.log, Request{Server: server, Method: r.Method, Path: r.URL.Path,
		Range: r.Header.Get("Range"), Auth: r.Header.Get("Authorization"), Status: status})
}

func hubError(w http.ResponseWriter, status int, code, msg, commit string) {
	if code != "" {
		w.Header().Set("X-Error-Code", code)
	}
	w.Header().Set("X-Error-Message", msg)
	if commit != "" {
		w.Header().Set("X-Repo-Commit", commit)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, "{%q:%q}\n", "error", msg)
}

func (s *Server) serveHub(w http.ResponseWriter, r *http.Request) {
	rec := &statusRecorder{ResponseWriter: w}
	defer func() { s.record("hub", r, rec.status) }()
	s.serveHub1(rec, r)
}

func (s *Server) serveHub1(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hubError(w, http.StatusMethodNotAllowed, "", "method not allowed", "")
		return
	}
	s.mu.Lock()
	rel, isRelease := s.releases[r.URL.Path]
	outage := s.outage
	s.mu.Unlock()
	if outage != 0 {
		hubError(w, outage, "", "service unavailable", "")
		return
	}
	if isRelease {
		http.Redirect(w, r, s.CDNURL+"/release-assets/"+rel+"?sig=fake&path="+url.QueryEscape(r.URL.Path), http.StatusFound)
		return
	}
	// /{org}/{name}/resolve/{revision}/{file...}, the revision escaped as
	// one segment.
	segs := strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), "/"), "/")
	if len(segs) < 5 || segs[2] != "resolve" {
		hubError(w, http.StatusNotFound, "", "not found", "")
		return
	}
	for i, sg := range segs {
		u, err := url.PathUnescape(sg)
		if err != nil {
			hubError(w, http.StatusBadRequest, "", "bad path", "")
			return
		}
		segs[i] = u
	}
	id, rev, file := segs[0]+"/"+segs[1], segs[3], strings.Join(segs[4:], "/")
	authOK := s.Token == "" || r.Header.Get("Authorization") == "Bearer "+s.Token

	s.mu.Lock()
	repo := s.repos[id]
	newID, renamed := s.renamed[id]
	s.mu.Unlock()
	if repo == nil && renamed {
		// A relative redirect, as the hub answers for renamed repositories.
		w.Header().Set("Location", "/"+newID+"/resolve/"+url.PathEscape(rev)+"/"+file)
		w.WriteHeader(http.StatusTemporaryRedirect)
		return
	}
	if repo == nil || repo.Private && !authOK {
		// The hub does not tell missing from private repositories.
		status := http.StatusNotFound
		if r.Header.Get("Authorization") == "" || !authOK {
			status = http.StatusUnauthorized
		}
		hubError(w, status, "RepoNotFound", "Repository not found", "")
		return
	}
	if rev != repo.Commit && !contains(repo.Refs, rev) {
		hubError(w, http.StatusNotFound, "RevisionNotFound", "Invalid rev id: "+rev, "")
		return
	}
	data, ok := repo.Files[file]
	if !ok {
		hubError(w, http.StatusNotFound, "EntryNotFound", file+" does not exist on \""+rev+"\"", repo.Commit)
		return
	}
	w.Header().Set("X-Repo-Commit", repo.Commit)
	if IsLFS(file) {
		ptr := lfsPointer(data)
		sum := SHA256(data)
		w.Header().Set("ETag", `"`+GitBlobSHA1(ptr)+`"`)
		w.Header().Set("X-Linked-Etag", `"`+sum+`"`)
		w.Header().Set("X-Linked-Size", strconv.Itoa(len(data)))
		w.Header().Set("Location", s.CDNURL+"/repos/"+sum+"?X-Amz-Signature=fake&file="+url.QueryEscape(file))
		w.WriteHeader(http.StatusFound)
		return
	}
	w.Header().Set("ETag", `"`+GitBlobSHA1(data)+`"`)
	s.serveContent(w, r, file, data)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (s *Server) serveCDN(w http.ResponseWriter, r *http.Request) {
	rec := &statusRecorder{ResponseWriter: w}
	defer func() { s.record("cdn", r, rec.status) }()
	if r.Header.Get("Authorization") != "" {
		// Signed URLs need no token; a client that sends one leaks it.
		hubError(rec, http.StatusBadRequest, "", "unexpected Authorization header at the CDN", "")
		return
	}
	var sum, key string
	switch {
	case strings.HasPrefix(r.URL.Path, "/repos/"):
		sum, key = strings.TrimPrefix(r.URL.Path, "/repos/"), r.URL.Query().Get("file")
	case strings.HasPrefix(r.URL.Path, "/release-assets/"):
		sum, key = strings.TrimPrefix(r.URL.Path, "/release-assets/"), r.URL.Query().Get("path")
	}
	s.mu.Lock()
	data, ok := s.blobs[sum]
	delay := s.delay
	s.mu.Unlock()
	if !ok {
		hubError(rec, http.StatusNotFound, "", "no such object", "")
		return
	}
	if delay > 0 {
		time.Sleep(delay)
	}
	rec.Header().Set("ETag", `"`+sum[:32]+`"`)
	s.serveContent(rec, r, key, data)
}

// serveContent serves data with Range support, cutting the body when a cut
// is pending for key.
func (s *Server) serveContent(w http.ResponseWriter, r *http.Request, key string, data []byte) {
	s.mu.Lock()
	cut, ok := s.cuts[key]
	if ok && r.Method == http.MethodGet {
		delete(s.cuts, key)
	}
	s.mu.Unlock()
	if ok && r.Method == http.MethodGet {
		w = &cutWriter{ResponseWriter: w, left: cut}
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
}

// cutWriter lets n body bytes through, then aborts the connection.
type cutWriter struct {
	http.ResponseWriter
	left int
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if len(p) <= c.left {
		c.left -= len(p)
		return c.ResponseWriter.Write(p)
	}
	c.ResponseWriter.Write(p[:c.left])
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
	panic(http.ErrAbortHandler) // close the connection mid-body
}
