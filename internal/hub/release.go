package hub

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// ReleasePath returns where DownloadURL keeps the file at rawURL:
// ReleaseDir/<host>/<path of the URL> (the query is ignored; a ':' in the
// host becomes '_').
func (c *Client) ReleasePath(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("hub: %w", err)
	}
	if u.Scheme != "https" && u.Scheme != "http" || u.Host == "" {
		return "", fmt.Errorf("hub: %q is not an http(s) URL", rawURL)
	}
	p := strings.TrimPrefix(u.Path, "/")
	if err := checkFilename(p); err != nil || strings.HasSuffix(p, "/") {
		return "", fmt.Errorf("hub: URL %q does not name a file", redactURL(u))
	}
	host := strings.NewReplacer(":", "_", "/", "_", "\\", "_").Replace(strings.ToLower(u.Host))
	if host == "." || host == ".." {
		return "", fmt.Errorf("hub: bad host in %q", redactURL(u))
	}
	return filepath.Join(c.ReleaseDir, host, filepath.FromSlash(p)), nil
}

// DownloadURL returns the local path of the file at rawURL (http or https),
// such as a TinyCLIP zoo release checkpoint, fetching it into the release
// cache (ReleasePath) when it is not there yet. Release files are taken to be
// immutable: a cached file is returned without asking the server. Transfers
// resume with HTTP Range requests from a .incomplete file, guarded by If-Range
// with the server's ETag so that a file changed on the server restarts from
// zero; the file is renamed into place when complete. Release servers
// publish no checksum, so only the length is checked. The hub token is never
// sent.
func (c *Client) DownloadURL(ctx context.Context, rawURL string) (string, error) {
	dst, err := c.ReleasePath(rawURL)
	if err != nil {
		return "", err
	}
	if st, err := os.Stat(dst); err == nil && st.Mode().IsRegular() {
		return dst, nil
	}
	if c.Offline {
		return "", fmt.Errorf("%w: %s (offline; looked for %s)", ErrNotCached, rawURL, dst)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", fmt.Errorf("hub: %w", err)
	}
	unlock, err := lockFile(ctx, dst+".lock")
	if err != nil {
		return "", err
	}
	defer unlock()
	if st, err := os.Stat(dst); err == nil && st.Mode().IsRegular() {
		return dst, nil // another downloader finished meanwhile
	}
	tmp := dst + ".incomplete"
	validatorFile := tmp + ".etag"
	validator := ""
	if b, err := os.ReadFile(validatorFile); err == nil {
		validator = strings.TrimSpace(string(b))
	}
	t := &transfer{url: rawURL, tmp: tmp, size: -1, ifRange: validator, name: filepath.Base(dst),
		onFull: func(t *transfer, resp *http.Response) {
			// A full response starts a new file: remember its validator.
			v := resp.Header.Get("ETag")
			if v == "" || strings.HasPrefix(v, "W/") {
				v = resp.Header.Get("Last-Modified")
			}
			t.ifRange = v
			if v != "" {
				_ = writeFileAtomic(validatorFile, []byte(v))
			} else {
				os.Remove(validatorFile)
			}
		}}
	err = c.fetch(ctx, t)
	if err != nil {
		var he *HTTPError
		if errors.As(err, &he) && he.Status == http.StatusNotFound {
			return "", fmt.Errorf("%w: %s: %w", ErrNotFound, rawURL, err)
		}
		return "", err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return "", fmt.Errorf("hub: %w", err)
	}
	os.Remove(validatorFile)
	return dst, nil
}
