package search

import (
	"bytes"
	"context"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tinyclip-go/tinyclip/internal/imageproc"
)

//go:embed web
var webFiles embed.FS

// HandlerOptions configures NewHandler; zero fields take the defaults.
type HandlerOptions struct {
	// MaxBodyBytes bounds a search request's body (default 32 MiB).
	MaxBodyBytes int64
	// DefaultK is the number of results when a request gives none
	// (default 20); MaxK the most a request may ask for (default 500).
	DefaultK, MaxK int
	// MaxTextLength bounds the query text, in characters (default 1000;
	// the model reads at most 77 tokens of it anyway).
	MaxTextLength int
	// ThumbnailSize is the longer side of thumbnails, in pixels (default 256).
	ThumbnailSize int
	// MaxPixels bounds the images decoded for thumbnails (default 100
	// million pixels; several may be decoded at once, one per core).
	MaxPixels int64
}

func (o *HandlerOptions) defaults() {
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 32 << 20
	}
	if o.DefaultK <= 0 {
		o.DefaultK = 20
	}
	if o.MaxK <= 0 {
		o.MaxK = 500
	}
	if o.DefaultK > o.MaxK {
		o.DefaultK = o.MaxK
	}
	if o.MaxTextLength <= 0 {
		o.MaxTextLength = 1000
	}
	if o.ThumbnailSize <= 0 {
		o.ThumbnailSize = 256
	}
	if o.MaxPixels <= 0 {
		o.MaxPixels = 100_000_000
	}
}

// handler serves the search API and page.
type handler struct {
	db     *DB
	enc    Encoder
	opts   HandlerOptions
	mux    *http.ServeMux
	thumbs *thumbCache
}

// NewHandler returns the HTTP handler of image search over db, embedding
// queries with enc, after checking that enc is the model db was built with
// (an error wrapping ErrModelMismatch or ErrNoModel otherwise). It serves:
//
//	GET  /                    the search page (HTML/JS/CSS, no external resources)
//	POST /v1/search           {"text": "...", "image": "<base64>", "k": 20} → ranked results
//	GET  /v1/index            {"model": ..., "dim": ..., "images": N}
//	GET  /v1/thumbnail?path=P a JPEG thumbnail of the indexed image P
//	GET  /v1/image?path=P     the indexed image file P itself
//
// /v1/search also takes multipart/form-data with the fields text, k and
// image (a file). Only paths stored in the index are ever read from disk.
// Errors are JSON, shaped like the OpenAI API's: {"error": {"message",
// "type", "code", "param"}}. Mount it at "/" of a server; it answers 404
// for other paths. It is safe for concurrent use.
func NewHandler(ctx context.Context, db *DB, enc Encoder, opts HandlerOptions) (http.Handler, error) {
	if db == nil || enc == nil {
		return nil, errors.New("search: NewHandler needs an index and an encoder")
	}
	if err := db.CheckModel(ctx, enc); err != nil {
		return nil, err
	}
	opts.defaults()
	h := &handler{db: db, enc: enc, opts: opts, mux: http.NewServeMux(), thumbs: newThumbCache(64 << 20)}
	h.mux.HandleFunc("/{$}", h.page("index.html"))
	h.mux.HandleFunc("/search.js", h.page("search.js"))
	h.mux.HandleFunc("/search.css", h.page("search.css"))
	h.mux.HandleFunc("/v1/search", h.search)
	h.mux.HandleFunc("/v1/index", h.info)
	h.mux.HandleFunc("/v1/thumbnail", h.thumbnail)
	h.mux.HandleFunc("/v1/image", h.image)
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "", "no such endpoint: "+r.URL.Path)
	})
	return h, nil
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mux.ServeHTTP(w, r)
}

// apiError is the JSON error body, shaped like the OpenAI API's (and
// internal/serve's): {"error": {"message", "type", "code", "param"}}.
type apiError struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Code    string  `json:"code"`
		Param   *string `json:"param"`
	} `json:"error"`
}

// requestError is a failed request: the status, a machine-readable code,
// the request field at fault (if any) and the message.
type requestError struct {
	status      int
	code, param string
	msg         string
}

func (e *requestError) Error() string { return e.msg }

func badRequest(code, param, format string, a ...any) *requestError {
	return &requestError{http.StatusBadRequest, code, param, fmt.Sprintf(format, a...)}
}

// errorType is the OpenAI error type of a status.
func errorType(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return "authentication_error"
	case status == http.StatusNotFound:
		return "not_found_error"
	case status >= 500:
		return "server_error"
	}
	return "invalid_request_error"
}

func writeError(w http.ResponseWriter, status int, code, param, msg string) {
	var e apiError
	e.Error.Message, e.Error.Type, e.Error.Code = msg, errorType(status), code
	if param != "" {
		e.Error.Param = &param
	}
	writeJSON(w, status, e)
}

func writeRequestError(w http.ResponseWriter, e *requestError) {
	writeError(w, e.status, e.code, e.param, e.msg)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// allow answers 405 unless r uses one of the methods.
func allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m || (m == http.MethodGet && r.Method == http.MethodHead) {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "", r.Method+" not allowed on "+r.URL.Path+"; use "+strings.Join(methods, " or "))
	return false
}

var pageTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
}

// page serves one embedded file of the web page.
func (h *handler) page(name string) http.HandlerFunc {
	data, err := fs.ReadFile(webFiles, "web/"+name)
	if err != nil {
		panic("search: embedded page file missing: " + name) // a build defect, not input
	}
	typ := pageTypes[filepath.Ext(name)]
	start := time.Now()
	return func(w http.ResponseWriter, r *http.Request) {
		if !allow(w, r, http.MethodGet) {
			return
		}
		w.Header().Set("Content-Type", typ)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Content-Security-Policy",
			"default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; connect-src 'self'; frame-ancestors 'none'")
		http.ServeContent(w, r, name, start, bytes.NewReader(data))
	}
}

// searchRequest is the body of POST /v1/search.
type searchRequest struct {
	Text  string `json:"text"`
	Image string `json:"image"` // base64, optionally as a data: URL
	K     *int   `json:"k"`
}

// SearchResponse is the body of a successful POST /v1/search.
type SearchResponse struct {
	Model   string      `json:"model"`
	Results []HitResult `json:"results"`
	TookMS  float64     `json:"took_ms"`
}

// HitResult is one result of POST /v1/search, with the URLs of its
// thumbnail and image.
type HitResult struct {
	Result
	Thumbnail string `json:"thumbnail"`
	Image     string `json:"image"`
}

func (h *handler) search(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodPost) {
		return
	}
	start := time.Now()
	r.Body = http.MaxBytesReader(w, r.Body, h.opts.MaxBodyBytes)
	q, k, rerr := h.parseSearch(r)
	if rerr != nil {
		writeRequestError(w, rerr)
		return
	}
	if err := h.db.CheckModel(r.Context(), h.enc); err != nil { // cached after NewHandler's check
		writeError(w, http.StatusInternalServerError, "model_mismatch", "", err.Error())
		return
	}
	v, err := embedQuery(r.Context(), h.enc, q)
	var res []Result
	if err == nil {
		res, err = h.db.Search(r.Context(), v, k)
	}
	if err != nil {
		switch {
		case errors.Is(err, imageproc.ErrImageTooLarge):
			writeError(w, http.StatusBadRequest, "image_too_large", "image", err.Error())
		case errors.Is(err, imageproc.ErrUnknownFormat), errors.Is(err, imageproc.ErrCorrupt), errors.Is(err, imageproc.ErrUnsupported):
			writeError(w, http.StatusBadRequest, "invalid_image", "image", err.Error())
		case r.Context().Err() != nil:
			writeError(w, 499, "cancelled", "", "request cancelled") // nobody reads it
		default:
			writeError(w, http.StatusInternalServerError, "internal_error", "", err.Error())
		}
		return
	}
	model, _ := h.db.Model()
	out := SearchResponse{Model: model.Name, Results: make([]HitResult, len(res))}
	for i, x := range res {
		esc := url.QueryEscape(x.Path)
		out.Results[i] = HitResult{Result: x, Thumbnail: "/v1/thumbnail?path=" + esc, Image: "/v1/image?path=" + esc}
	}
	out.TookMS = float64(time.Since(start).Microseconds()) / 1000
	writeJSON(w, http.StatusOK, out)
}

// parseSearch reads a JSON or multipart search request.
func (h *handler) parseSearch(r *http.Request) (Query, int, *requestError) {
	var q Query
	k := h.opts.DefaultK
	tooLarge := func(err error) *requestError {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &requestError{http.StatusRequestEntityTooLarge, "body_too_large", "",
				fmt.Sprintf("request body exceeds the limit of %d bytes", mbe.Limit)}
		}
		return nil
	}
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		ct = ""
	}
	switch ct {
	case "application/json":
		var req searchRequest
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			if e := tooLarge(err); e != nil {
				return q, 0, e
			}
			return q, 0, badRequest("invalid_json", "", "invalid JSON body: %v", err)
		}
		if dec.More() {
			return q, 0, badRequest("invalid_json", "", "invalid JSON body: data after the object")
		}
		q.Text = req.Text
		if req.Image != "" {
			b, err := decodeBase64Image(req.Image)
			if err != nil {
				return q, 0, badRequest("invalid_base64", "image", "%v", err)
			}
			q.Image = b
		}
		if req.K != nil {
			k = *req.K
		}
	case "multipart/form-data":
		if err := r.ParseMultipartForm(8 << 20); err != nil {
			if e := tooLarge(err); e != nil {
				return q, 0, e
			}
			return q, 0, badRequest("invalid_multipart", "", "invalid multipart body: %v", err)
		}
		defer r.MultipartForm.RemoveAll()
		q.Text = r.FormValue("text")
		if s := r.FormValue("k"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil {
				return q, 0, badRequest("invalid_k", "k", "k: %q is not an integer", s)
			}
			k = n
		}
		if f, _, err := r.FormFile("image"); err == nil {
			b, err := io.ReadAll(f)
			f.Close()
			if err != nil {
				return q, 0, badRequest("invalid_multipart", "image", "image: %v", err)
			}
			q.Image = b
		} else if !errors.Is(err, http.ErrMissingFile) {
			return q, 0, badRequest("invalid_multipart", "image", "image: %v", err)
		}
	default:
		return q, 0, &requestError{http.StatusUnsupportedMediaType, "unsupported_content_type", "",
			fmt.Sprintf("Content-Type %q not supported: send application/json or multipart/form-data", r.Header.Get("Content-Type"))}
	}
	if !utf8.ValidString(q.Text) {
		return q, 0, badRequest("invalid_text", "text", "text is not valid UTF-8")
	}
	if n := utf8.RuneCountInString(q.Text); n > h.opts.MaxTextLength {
		return q, 0, badRequest("text_too_long", "text", "text of %d characters is longer than the limit of %d", n, h.opts.MaxTextLength)
	}
	if q.Text == "" && len(q.Image) == 0 {
		return q, 0, badRequest("empty_query", "", "empty query: give text, an image, or both")
	}
	if k < 1 || k > h.opts.MaxK {
		return q, 0, badRequest("invalid_k", "k", "k = %d: want 1 to %d", k, h.opts.MaxK)
	}
	return q, k, nil
}

// decodeBase64Image decodes standard or URL-safe base64, padded or not,
// optionally as a data: URL.
func decodeBase64Image(s string) ([]byte, error) {
	if strings.HasPrefix(s, "data:") {
		i := strings.Index(s, ",")
		if i < 0 || !strings.HasSuffix(s[:i], ";base64") {
			return nil, errors.New("image: a data: URL must be base64-encoded")
		}
		s = s[i+1:]
	}
	s = strings.TrimRight(s, "=")
	for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("image: not valid base64")
}

// indexInfo is the body of GET /v1/index.
type indexInfo struct {
	Model  string `json:"model"`
	Dim    int    `json:"dim"`
	Images int    `json:"images"`
}

func (h *handler) info(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodGet) {
		return
	}
	f, err := h.db.vectors(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal_error", "", err.Error())
		return
	}
	m, _ := h.db.Model()
	writeJSON(w, http.StatusOK, indexInfo{Model: m.Name, Dim: m.Dim, Images: len(f.paths)})
}

// indexedPath returns the path parameter if it names an indexed image, and
// answers 400/404 otherwise. The path is only ever compared with the
// index's entries, never joined to anything.
func (h *handler) indexedPath(w http.ResponseWriter, r *http.Request) (string, bool) {
	if !allow(w, r, http.MethodGet) {
		return "", false
	}
	p := r.URL.Query().Get("path")
	if p == "" {
		writeError(w, http.StatusBadRequest, "missing_path", "path", "missing path parameter")
		return "", false
	}
	ok, err := h.db.Contains(r.Context(), p)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal_error", "", err.Error())
		return "", false
	}
	if !ok {
		writeError(w, http.StatusNotFound, "not_indexed", "path", "not an indexed image: "+p)
		return "", false
	}
	return p, true
}

func (h *handler) image(w http.ResponseWriter, r *http.Request) {
	p, ok := h.indexedPath(w, r)
	if !ok {
		return
	}
	f, err := os.Open(p)
	if err != nil {
		writeError(w, http.StatusNotFound, "file_unreadable", "path", "indexed image no longer readable: "+err.Error())
		return
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil || !info.Mode().IsRegular() {
		writeError(w, http.StatusNotFound, "file_unreadable", "path", "indexed image no longer readable")
		return
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Security-Policy", "default-src 'none'")
	http.ServeContent(w, r, filepath.Base(p), info.ModTime(), f)
}

func (h *handler) thumbnail(w http.ResponseWriter, r *http.Request) {
	p, ok := h.indexedPath(w, r)
	if !ok {
		return
	}
	info, err := os.Stat(p)
	if err != nil || !info.Mode().IsRegular() {
		writeError(w, http.StatusNotFound, "file_unreadable", "path", "indexed image no longer readable")
		return
	}
	if info.Size() > MaxFileBytes {
		writeError(w, http.StatusNotFound, "file_unreadable", "path", "indexed image too large to thumbnail")
		return
	}
	key := fmt.Sprintf("%s\x00%d\x00%d", p, info.Size(), info.ModTime().UnixNano())
	thumb, err := h.thumbs.get(r.Context(), key, func() ([]byte, error) {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		return makeThumbnail(data, h.opts.ThumbnailSize, h.opts.MaxPixels)
	})
	if err != nil {
		if r.Context().Err() != nil {
			return
		}
		writeError(w, http.StatusUnprocessableEntity, "invalid_image", "path", "cannot make a thumbnail: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "image/jpeg")
	w.Header().Set("Cache-Control", "private, max-age=300")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, "", info.ModTime(), bytes.NewReader(thumb))
}
