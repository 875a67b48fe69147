// Package serve is the HTTP service of tinyclip: it embeds images and texts,
// classifies images against text labels and scores image–text similarity
// with one loaded model, merging concurrent requests into engine batches.
//
// Endpoints (JSON in and out; errors are 4xx/5xx with an OpenAI-shaped body
// {"error": {"message", "type", "code", "param"}}):
//
//	POST /v1/embeddings   texts and images → L2-normalised embeddings (OpenAI embeddings shape)
//	POST /v1/classify     images + labels [+ templates] → probabilities
//	POST /v1/similarity   images × texts → cosine similarities and logits
//	GET  /v1/models       the served model (OpenAI list shape)
//	GET  /healthz         liveness/readiness (503 while draining)
//	GET  /metrics         Prometheus metrics
//
// POST endpoints also take multipart/form-data with image files. With an API
// key, every /v1/ path requires "Authorization: Bearer KEY". The request
// formats are documented in docs/serving.md.
package serve

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tinyclip-go/tinyclip"
)

// Model is what a Server needs from a model; *tinyclip.Model implements it.
// Its methods must be safe for concurrent use.
type Model interface {
	EncodeTexts(ctx context.Context, texts []string, opts ...tinyclip.EncodeOption) ([][]float32, error)
	EncodePixels(ctx context.Context, pixels []float32, n int, opts ...tinyclip.EncodeOption) ([][]float32, error)
	Preprocess(data []byte) ([]float32, error)
	Tokenize(text string) ([]int, error)
	EmbedDim() int
	LogitScale() float32
}

// Options configures a Server. Zero fields take the documented defaults.
type Options struct {
	// ModelID names the model in responses and /v1/models (default
	// "tinyclip"). Requests may name it, one of Aliases, or no model.
	ModelID string
	Aliases []string
	// ModelInfo adds fields to the model's /v1/models entry.
	ModelInfo map[string]any

	// MaxBatch is the most items per engine call (default 32).
	MaxBatch int
	// MaxWait is how long a batch is held open for more items once the
	// engine is free (default 2 ms; negative: not at all).
	MaxWait time.Duration
	// NoBatching encodes every request on its own, concurrently.
	NoBatching bool
	// Workers is the number of engine calls per input kind run at once
	// when batching (default 2: one call runs while the next batch forms
	// and the previous results are sent; each call uses the model's
	// threads).
	Workers int
	// MaxQueue is the most items accepted and not yet encoded, per kind
	// (text, image); more are refused with 429 (default 4096).
	MaxQueue int

	// MaxBodyBytes limits request bodies (default 32 MiB).
	MaxBodyBytes int64
	// MaxImagePixels limits the width×height of an image, checked from its
	// header before decoding (default 40,000,000).
	MaxImagePixels int64
	// MaxItems limits the inputs of one request (texts plus images) and the
	// labels of a classification (default 256).
	MaxItems int
	// MaxTextChars limits the length of one text in characters (default
	// 2048; the model reads at most 77 tokens of it anyway).
	MaxTextChars int
	// MaxLabelTexts limits labels × templates of a classification (default
	// 4096).
	MaxLabelTexts int

	// APIKey, when set, is required as "Authorization: Bearer KEY" on
	// every /v1/ path.
	APIKey string
	// Logger receives one line per request and the server's notes (default
	// slog.Default()).
	Logger *slog.Logger
	// Registry is where the metrics are registered and what /metrics
	// serves (default: a new registry with the Go and process collectors).
	Registry *prometheus.Registry
}

func (o *Options) defaults() {
	if o.ModelID == "" {
		o.ModelID = "tinyclip"
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 32
	}
	if o.MaxWait == 0 {
		o.MaxWait = 2 * time.Millisecond
	}
	if o.Workers <= 0 {
		o.Workers = 2
	}
	if o.MaxQueue <= 0 {
		o.MaxQueue = 4096
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 32 << 20
	}
	if o.MaxImagePixels <= 0 {
		o.MaxImagePixels = 40_000_000
	}
	if o.MaxItems <= 0 {
		o.MaxItems = 256
	}
	if o.MaxTextChars <= 0 {
		o.MaxTextChars = 2048
	}
	if o.MaxLabelTexts <= 0 {
		o.MaxLabelTexts = 4096
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
		o.Registry.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	}
}

// Server serves one model over HTTP. Create it with New, serve Handler with
// an http.Server, and on shutdown call Drain, http.Server.Shutdown, then
// Close.
type Server struct {
	m       Model
	opts    Options
	log     *slog.Logger
	texts   *batcher[string, []float32]
	images  *batcher[[]float32, []float32]
	decode  chan struct{} // bounds concurrent image decoding
	mux     *http.ServeMux
	handler http.Handler
	metrics *metrics
	keyHash [32]byte

	fallbackMu sync.RWMutex
	fallback   http.Handler // serves "/" (404 unless Handle("/", h))
	draining   atomic.Bool
	created    int64
}

// New returns a Server for m. It starts the batching goroutines; Close
// stops them.
func New(m Model, opts Options) *Server {
	opts.defaults()
	s := &Server{m: m, opts: opts, log: opts.Logger, mux: http.NewServeMux(),
		decode: make(chan struct{}, runtime.GOMAXPROCS(0)), created: time.Now().Unix()}
	s.keyHash = sha256.Sum256([]byte(opts.APIKey))
	s.metrics = newMetrics(opts.Registry)
	maxBatch, maxWait := opts.MaxBatch, max(opts.MaxWait, 0)
	if opts.NoBatching {
		maxBatch = 0
	}
	s.texts = newBatcher("text", maxBatch, maxWait, opts.MaxQueue, opts.Workers, func(ctx context.Context, t []string) ([][]float32, error) {
		return m.EncodeTexts(ctx, t)
	}, s.metrics)
	s.images = newBatcher("image", maxBatch, maxWait, opts.MaxQueue, opts.Workers, func(ctx context.Context, px [][]float32) ([][]float32, error) {
		flat := px[0]
		if len(px) > 1 {
			flat = make([]float32, 0, len(px)*len(px[0]))
			for _, p := range px {
				flat = append(flat, p...)
			}
		}
		return m.EncodePixels(ctx, flat, len(px))
	}, s.metrics)
	s.metrics.queue(s.texts.depth, s.images.depth)

	s.fallback = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, errorf(http.StatusNotFound, "not_found", "", "no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	s.mux.Handle("/v1/embeddings", s.post(s.handleEmbeddings))
	s.mux.Handle("/v1/classify", s.post(s.handleClassify))
	s.mux.Handle("/v1/similarity", s.post(s.handleSimilarity))
	s.mux.Handle("/v1/models", s.get(s.handleModels))
	s.mux.Handle("/healthz", s.get(s.handleHealth))
	s.mux.Handle("/metrics", s.get(promhttp.HandlerFor(opts.Registry, promhttp.HandlerOpts{Registry: opts.Registry}).ServeHTTP))
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fallbackMu.RLock()
		h := s.fallback
		s.fallbackMu.RUnlock()
		h.ServeHTTP(w, r)
	})
	s.handler = s.middleware(s.mux)
	return s
}

// Handler returns the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// Handle adds a route, e.g. the search endpoint and its web page, behind
// the same logging, metrics and (for /v1/ paths) authentication. The
// pattern "/" replaces the JSON 404 answer for unknown paths.
func (s *Server) Handle(pattern string, h http.Handler) {
	if pattern == "/" {
		s.fallbackMu.Lock()
		s.fallback = h
		s.fallbackMu.Unlock()
		return
	}
	s.mux.Handle(pattern, h)
}

// Drain marks the server as shutting down: /healthz answers 503 so load
// balancers stop sending, while requests keep being served.
func (s *Server) Drain() { s.draining.Store(true) }

// Close stops the batchers. Requests still waiting fail with 503; call it
// after http.Server.Shutdown has let in-flight requests finish.
func (s *Server) Close() {
	s.Drain()
	s.texts.close()
	s.images.close()
}

func (s *Server) post(h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return s.method(http.MethodPost, h)
}

func (s *Server) get(h func(http.ResponseWriter, *http.Request)) http.Handler {
	return s.method(http.MethodGet, func(w http.ResponseWriter, r *http.Request) error { h(w, r); return nil })
}

func (s *Server) method(m string, h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != m && !(m == http.MethodGet && r.Method == http.MethodHead) {
			w.Header().Set("Allow", m)
			writeError(w, errorf(http.StatusMethodNotAllowed, "method_not_allowed", "", "%s %s: use %s", r.Method, r.URL.Path, m))
			return
		}
		if m == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes)
		}
		if err := h(w, r); err != nil {
			ae := toAPIError(err)
			if ae.status == 499 {
				return // the client is gone
			}
			if ae.status >= 500 {
				s.log.Error("request failed", "path", r.URL.Path, "err", err)
			}
			setLogError(r, ae)
			writeError(w, ae)
		}
	})
}

// authorized checks the bearer token in constant time.
func (s *Server) authorized(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	h := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return subtle.ConstantTimeCompare(h[:], s.keyHash[:]) == 1
}

// logInfo carries what a handler wants in the request's log line.
type logInfo struct {
	items int
	err   string
}

type logKey struct{}

func setLogError(r *http.Request, ae *apiError) {
	if li, ok := r.Context().Value(logKey{}).(*logInfo); ok {
		li.err = ae.code + ": " + ae.message
	}
}

func setLogItems(r *http.Request, n int) {
	if li, ok := r.Context().Value(logKey{}).(*logInfo); ok {
		li.items = n
	}
}

// statusWriter records the status and size of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// middleware adds panic recovery, authentication, metrics and logging.
func (s *Server) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		li := &logInfo{}
		r = r.WithContext(context.WithValue(r.Context(), logKey{}, li))
		s.metrics.inflight.Inc()
		defer func() {
			s.metrics.inflight.Dec()
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.Error("panic in handler", "path", r.URL.Path, "panic", p)
				if sw.status == 0 {
					writeError(sw, errorf(http.StatusInternalServerError, "internal_error", "", "internal error"))
				}
			}
			status := sw.status
			if status == 0 {
				status = 499 // the handler wrote nothing: the client went away
			}
			route := r.Pattern
			if route == "" || route == "/" {
				route = "other"
			}
			d := time.Since(start)
			s.metrics.observe(route, status, d)
			attrs := []any{"method", r.Method, "path", r.URL.Path, "status", status,
				"duration_ms", float64(d.Microseconds()) / 1000, "bytes_out", sw.bytes, "remote", r.RemoteAddr}
			if li.items > 0 {
				attrs = append(attrs, "items", li.items)
			}
			if li.err != "" {
				attrs = append(attrs, "error", li.err)
			}
			level := slog.LevelInfo
			if status >= 500 && status != 503 {
				level = slog.LevelError
			}
			s.log.Log(r.Context(), level, "request", attrs...)
		}()
		if s.opts.APIKey != "" && strings.HasPrefix(r.URL.Path, "/v1/") && !s.authorized(r) {
			ae := errorf(http.StatusUnauthorized, "invalid_api_key", "", "missing or wrong API key: send \"Authorization: Bearer KEY\"")
			li.err = ae.code
			writeError(sw, ae)
			return
		}
		next.ServeHTTP(sw, r)
	})
}
