package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tinyclip-go/tinyclip"
	"github.com/tinyclip-go/tinyclip/internal/search"
	"github.com/tinyclip-go/tinyclip/internal/serve"
)

func init() {
	register(command{"serve", "serve embeddings, classification and similarity over HTTP", runServe, 70})
}

// byteSize is a flag holding a size in bytes: 1048576, 512KiB, 32MiB, 1GB.
type byteSize int64

func (b *byteSize) String() string { return strconv.FormatInt(int64(*b), 10) }

func (b *byteSize) Set(s string) error {
	units := []struct {
		suffix string
		mul    int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	mul := int64(1)
	for _, u := range units {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mul = strings.TrimSpace(rest), u.mul
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mul {
		return fmt.Errorf("want a positive size such as 33554432, 512KiB or 32MiB")
	}
	*b = byteSize(n * mul)
	return nil
}

func runServe(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "serve", "[--model M] [--addr 127.0.0.1:8080] [--api-key KEY] [--db FILE] [flags]")
	mf := addModelFlags(fs)
	addr := fs.String("addr", "127.0.0.1:8080", "address to listen on (host:port; port 0 picks a free one)")
	modelID := fs.String("model-id", "", "model name in responses and /v1/models (default: the --model value, or its base name for a path)")
	apiKey := fs.String("api-key", "", "require \"Authorization: Bearer KEY\" on /v1/ endpoints (default: $TINYCLIP_API_KEY)")
	dbPath := fs.String("db", "", "image index written by 'tinyclip index': adds POST /v1/search and the search page at /")
	batching := fs.Bool("batching", true, "merge concurrent requests into engine batches")
	maxBatch := fs.Int("max-batch", 32, "most texts or images per engine call")
	maxWait := fs.Duration("max-wait", 2*time.Millisecond, "how long a batch smaller than the previous one waits for more requests")
	workers := fs.Int("workers", 2, "engine calls per input kind run at once when batching")
	maxQueue := fs.Int("max-queue", 4096, "most texts (and most images) waiting; more are answered 429")
	maxBody := byteSize(32 << 20)
	fs.Var(&maxBody, "max-body", "largest request body (e.g. 32MiB)")
	maxPixels := fs.Int64("max-pixels", 40_000_000, "largest image, in pixels (width×height), checked before decoding")
	maxItems := fs.Int("max-items", 256, "most inputs (texts + images) per request, and labels per classification")
	maxText := fs.Int("max-text-chars", 2048, "longest text, in characters")
	shutdown := fs.Duration("shutdown-timeout", 30*time.Second, "on SIGINT/SIGTERM, how long in-flight requests may take to finish")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected arguments %q", pos)
	}
	if *apiKey == "" {
		*apiKey = os.Getenv("TINYCLIP_API_KEY") // not a flag default: -h would print it
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return usagef("--log-level %q: want debug, info, warn or error", *logLevel)
	}
	var lh slog.Handler
	switch *logFormat {
	case "text":
		lh = slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level})
	case "json":
		lh = slog.NewJSONHandler(e.stderr, &slog.HandlerOptions{Level: level})
	default:
		return usagef("--log-format %q: want text or json", *logFormat)
	}
	for _, c := range []struct {
		name string
		v    int64
	}{{"--max-batch", int64(*maxBatch)}, {"--workers", int64(*workers)}, {"--max-queue", int64(*maxQueue)}, {"--max-pixels", *maxPixels}, {"--max-items", int64(*maxItems)}, {"--max-text-chars", int64(*maxText)}} {
		if c.v < 1 {
			return usagef("%s must be at least 1", c.name)
		}
	}
	if *maxWait < 0 || *shutdown < 0 {
		return usagef("--max-wait and --shutdown-timeout must not be negative")
	}
	log := slog.New(lh)

	var db *search.DB
	if *dbPath != "" {
		if db, err = search.Open(*dbPath); err != nil {
			return err
		}
		defer db.Close()
		if info, ok := db.Model(); ok && *mf.model == "" {
			*mf.model = info.Name // the model that built the index
		}
	}
	ref := *mf.model
	if ref == "" {
		ref = defaultModel
	}
	start := time.Now()
	m, err := mf.load(ctx, e, defaultModel, tinyclip.WithMaxPixels(*maxPixels))
	if err != nil {
		return err
	}
	id := *modelID
	if id == "" {
		id = ref
		if _, err := os.Stat(ref); err == nil {
			id = filepath.Base(filepath.Clean(ref))
		}
	}
	cfg := m.Config()
	opts := serve.Options{
		ModelID: id, Aliases: []string{ref},
		ModelInfo: map[string]any{"format": m.Format(), "image_size": cfg.VisionCfg.ImageSize,
			"context_length": cfg.TextCfg.ContextLength},
		MaxBatch: *maxBatch, MaxWait: *maxWait, Workers: *workers, NoBatching: !*batching, MaxQueue: *maxQueue,
		MaxBodyBytes: int64(maxBody), MaxImagePixels: *maxPixels, MaxItems: *maxItems, MaxTextChars: *maxText,
		APIKey: *apiKey, Logger: log,
	}
	if *maxWait == 0 {
		opts.MaxWait = -1 // no extra wait (Options treats 0 as the default)
	}
	s := serve.New(m, opts)
	defer s.Close()
	if db != nil {
		h, err := search.NewHandler(ctx, db, s.Encoder(), search.HandlerOptions{MaxBodyBytes: int64(maxBody), MaxPixels: *maxPixels})
		if err != nil {
			return fmt.Errorf("%s: %w", *dbPath, err)
		}
		s.Handle("/", h)
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(lh, slog.LevelWarn),
	}
	log.Info("listening", "addr", ln.Addr().String(), "url", "http://"+ln.Addr().String(), "model", id,
		"format", m.Format(), "embed_dim", m.EmbedDim(), "batching", *batching, "max_batch", *maxBatch,
		"auth", *apiKey != "", "search", db != nil, "load_ms", time.Since(start).Milliseconds())
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	// Graceful shutdown: fail health checks, stop accepting, let in-flight
	// requests finish, then stop the batchers.
	log.Info("shutting down", "timeout", shutdown.String())
	s.Drain()
	sctx, cancel := context.WithTimeout(context.Background(), *shutdown)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		hs.Close()
		log.Warn("in-flight requests cut at the shutdown timeout", "err", err)
	}
	s.Close()
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("stopped")
	return nil
}

var _ flag.Value = (*byteSize)(nil)
