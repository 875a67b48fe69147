package hub

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/tinyclip-go/tinyclip/internal/progress"
)

// idleTimeout aborts a transfer that delivers no bytes for this long.
const idleTimeout = 60 * time.Second

// transfer describes one download.
type transfer struct {
	url  string
	auth bool   // send the hub token
	tmp  string // the partial file, resumed from its current size
	size int64  // expected total, -1 if unknown
	// ifRange, when set, is sent as If-Range with a resumed request, so
	// that a file changed on the server comes back whole (200).
	ifRange string
	name    string // shown on the progress bar and in errors
	// onFull, when set, is called when a response starts the file from
	// byte 0 (it may update ifRange).
	onFull func(*transfer, *http.Response)
}

// fetch downloads t.url into t.tmp, resuming from the partial file's size
// with an HTTP Range request, and retrying interrupted transfers.
func (c *Client) fetch(ctx context.Context, t *transfer) error {
	name := t.name
	delay := c.retryDelay()
	for attempt := 0; ; attempt++ {
		err := c.fetchOnce(ctx, t)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !retryable(err) || attempt >= c.retries() {
			return err
		}
		c.logf("%s: %v; resuming in %v", name, err, delay)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay *= 2
	}
}

// transientError marks failures worth a retry (cut connections, 5xx).
type transientError struct{ err error }

func (e transientError) Error() string { return e.err.Error() }
func (e transientError) Unwrap() error { return e.err }

func retryable(err error) bool {
	var t transientError
	return errors.As(err, &t)
}

func (c *Client) fetchOnce(ctx context.Context, t *transfer) error {
	size, name := t.size, t.name
	f, err := os.OpenFile(t.tmp, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	off := st.Size()
	if size >= 0 && off > size {
		off = 0 // longer than the file: not a prefix of it
	}
	if size >= 0 && off == size {
		return f.Truncate(size) // complete already (an earlier run was cut before the rename)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.url, nil)
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	c.setHeaders(req, t.auth)
	if off > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", off))
		if t.ifRange != "" {
			req.Header.Set("If-Range", t.ifRange)
		}
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return transientError{fmt.Errorf("hub: %s: %w", name, err)}
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusPartialContent:
		start, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != off || size >= 0 && total >= 0 && total != size {
			return fmt.Errorf("hub: %s: unexpected Content-Range %q for a request from byte %d", name, resp.Header.Get("Content-Range"), off)
		}
	case http.StatusOK:
		off = 0 // the server sends everything
	case http.StatusRequestedRangeNotSatisfiable:
		if err := f.Truncate(0); err != nil {
			return fmt.Errorf("hub: %w", err)
		}
		return transientError{fmt.Errorf("hub: %s: range from byte %d refused; restarting", name, off)}
	default:
		he := httpError(resp)
		if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
			return transientError{he}
		}
		return he
	}
	if err := f.Truncate(off); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	if off == 0 && t.onFull != nil {
		t.onFull(t, resp)
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	total := size
	if total < 0 && resp.ContentLength >= 0 {
		total = off + resp.ContentLength
	}
	bar := progress.New(c.Progress, total, name, progress.Options{Bytes: true})
	defer bar.Finish()
	bar.Add(off)

	// Abort when no byte arrives for idleTimeout.
	watchdog := time.AfterFunc(idleTimeout, cancel)
	defer watchdog.Stop()
	body := &idleReader{r: resp.Body, t: watchdog}
	n, err := io.Copy(io.MultiWriter(f, bar), body)
	if err != nil {
		if !watchdog.Stop() {
			err = fmt.Errorf("no data for %v: %w", idleTimeout, err)
		}
		return transientError{fmt.Errorf("hub: %s: transfer cut after %d bytes: %w", name, off+n, err)}
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength || size >= 0 && off+n != size {
		return transientError{fmt.Errorf("hub: %s: transfer ended after %d of %d bytes: %w", name, off+n, size, io.ErrUnexpectedEOF)}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	return f.Close()
}

// idleReader resets a watchdog timer on every read.
type idleReader struct {
	r io.Reader
	t *time.Timer
}

func (r *idleReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.t.Reset(idleTimeout)
	}
	return n, err
}

// parseContentRange parses "bytes START-END/TOTAL" (TOTAL may be "*");
// total is -1 when unknown.
func parseContentRange(s string) (start, total int64, ok bool) {
	s, found := strings.CutPrefix(s, "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, tot, found := strings.Cut(s, "/")
	if !found {
		return 0, 0, false
	}
	a, b, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, ok1 := parseDigits(a)
	end, ok2 := parseDigits(b)
	if !ok1 || !ok2 || end < start {
		return 0, 0, false
	}
	total = -1
	if tot != "*" {
		var ok3 bool
		if total, ok3 = parseDigits(tot); !ok3 || end >= total {
			return 0, 0, false
		}
	}
	return start, total, true
}

// parseDigits parses a non-empty decimal number without sign.
func parseDigits(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int64(s[i]-'0')
	}
	return n, true
}

// verify checks path against its expected size (-1: unknown) and ETag: a
// 64-digit hex ETag is the sha256 of an LFS file, a 40-digit one the git
// blob sha1 of a regular file (a plain sha1 is accepted too); other ETags
// are not checksums and only the size is checked.
func verify(path, etag string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	if size >= 0 && st.Size() != size {
		return fmt.Errorf("%w: %s has %d bytes, want %d", ErrCorrupt, path, st.Size(), size)
	}
	var h, plain hash.Hash
	switch {
	case isHex(etag, 64):
		h = sha256.New()
	case isHex(etag, 40):
		h = sha1.New()
		fmt.Fprintf(h, "blob %d\x00", st.Size())
		plain = sha1.New() // accepted too, in case a server names files by it
	default:
		return nil
	}
	w := io.Writer(h)
	if plain != nil {
		w = io.MultiWriter(h, plain)
	}
	if _, err := io.Copy(w, f); err != nil {
		return fmt.Errorf("hub: reading %s: %w", path, err)
	}
	want := strings.ToLower(etag)
	got := hex.EncodeToString(h.Sum(nil))
	if got == want || plain != nil && hex.EncodeToString(plain.Sum(nil)) == want {
		return nil
	}
	kind := "sha256"
	if plain != nil {
		kind = "git blob sha1"
	}
	return fmt.Errorf("%w: %s has %s %s, want %s", ErrCorrupt, path, kind, got, etag)
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}
