package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinyclip-go/tinyclip/internal/fixtures"
	"github.com/tinyclip-go/tinyclip/internal/hub/hubtest"
)

// syncBuffer is a bytes.Buffer safe for a writer and readers at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var listenRe = regexp.MustCompile(`url[=":]+(http://127\.0\.0\.1:\d+)`)

// startServe runs "tinyclip serve ARGS --addr 127.0.0.1:0" in-process and
// returns its URL and a function that stops it (as SIGTERM does) and
// returns the exit status and the log.
func startServe(t *testing.T, args ...string) (string, func() (int, string)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, &env{strings.NewReader(""), io.Discard, &stderr}, append([]string{"serve", "--addr", "127.0.0.1:0"}, args...))
	}()
	deadline := time.After(60 * time.Second)
	for {
		if m := listenRe.FindStringSubmatch(stderr.String()); m != nil {
			stopped := false
			var code int
			stop := func() (int, string) {
				if !stopped {
					cancel()
					code, stopped = <-done, true
				}
				return code, stderr.String()
			}
			t.Cleanup(func() { stop() })
			return m[1], stop
		}
		select {
		case code := <-done:
			cancel()
			t.Fatalf("serve exited with %d: %s", code, stderr.String())
		case <-deadline:
			cancel()
			t.Fatalf("serve did not start: %s", stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func httpJSON(t *testing.T, method, url, key string, body any, out any) int {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, r)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %v in %q", method, url, err, raw)
		}
	}
	return resp.StatusCode
}

func TestServe(t *testing.T) {
	dir := fixtures.Path(t, "fixtures", "models")
	url, stop := startServe(t, "--model", filepath.Join(dir, "vit-p16"), "--api-key", "k3y", "--max-batch", "8", "--log-format", "json")
	if code := httpJSON(t, "GET", url+"/healthz", "", nil, nil); code != 200 {
		t.Errorf("healthz: %d", code)
	}
	var models struct{ Data []map[string]any }
	if code := httpJSON(t, "GET", url+"/v1/models", "k3y", nil, &models); code != 200 || len(models.Data) != 1 || models.Data[0]["id"] != "vit-p16" {
		t.Errorf("models: %d %v", code, models)
	}
	var emb struct {
		Data []struct{ Embedding []float64 }
	}
	if code := httpJSON(t, "POST", url+"/v1/embeddings", "k3y", map[string]any{"input": []string{"a dog", "a cat"}, "model": "vit-p16"}, &emb); code != 200 || len(emb.Data) != 2 || len(emb.Data[0].Embedding) != 16 {
		t.Errorf("embeddings: %d %+v", code, emb)
	}
	if code := httpJSON(t, "POST", url+"/v1/embeddings", "wrong", map[string]any{"input": "a"}, nil); code != 401 {
		t.Errorf("wrong key: %d", code)
	}
	png, _ := os.ReadFile(filepath.Join(dir, "inputs", "a_square.png"))
	var cls struct {
		Data []struct {
			Label string
			Probs []float64
		}
	}
	if code := httpJSON(t, "POST", url+"/v1/classify", "k3y", map[string]any{"image": base64.StdEncoding.EncodeToString(png),
		"labels": []string{"a photo of a cat", "a photo of a dog"}}, &cls); code != 200 || len(cls.Data) != 1 || len(cls.Data[0].Probs) != 2 {
		t.Errorf("classify: %d %+v", code, cls)
	}
	code, log := stop()
	if code != 0 {
		t.Errorf("exit %d: %s", code, log)
	}
	for _, want := range []string{`"msg":"listening"`, `"path":"/v1/classify","status":200`, `"status":401`, `"msg":"shutting down"`, `"msg":"stopped"`} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s:\n%s", want, log)
		}
	}
}

// TestServeDefaultModel serves the zoo default fetched from a fake hub.
func TestServeDefaultModel(t *testing.T) {
	repo, err := hubtest.LoadDir("wkcn/TinyCLIP-ViT-8M-16-Text-3M-YFCC15M", fixtures.Path(t, "fixtures", "models", "vit-p16", "hf"))
	if err != nil {
		t.Fatal(err)
	}
	srv := hubtest.New(repo)
	defer srv.Close()
	t.Setenv("HF_HOME", t.TempDir())
	t.Setenv("HF_HUB_CACHE", "")
	t.Setenv("HF_TOKEN", "")
	t.Setenv("HF_HUB_OFFLINE", "")
	t.Setenv("HF_ENDPOINT", srv.URL)
	t.Setenv("TINYCLIP_API_KEY", "")
	url, stop := startServe(t, "--batching=false")
	var models struct{ Data []map[string]any }
	if code := httpJSON(t, "GET", url+"/v1/models", "", nil, &models); code != 200 || models.Data[0]["id"] != "TinyCLIP-ViT-8M-16-Text-3M" {
		t.Errorf("models: %d %v", code, models)
	}
	if code := httpJSON(t, "POST", url+"/v1/embeddings", "", map[string]any{"input": "a", "model": "TinyCLIP-ViT-8M-16-Text-3M"}, nil); code != 200 {
		t.Errorf("embeddings: %d", code)
	}
	if code, log := stop(); code != 0 {
		t.Errorf("exit %d: %s", code, log)
	}
}

// TestServeSearch serves an index built by 'tinyclip index': the search
// endpoint and page are mounted, behind the API key where under /v1/.
func TestServeSearch(t *testing.T) {
	dir := fixtures.Path(t, "fixtures", "models")
	imgs := t.TempDir()
	for _, name := range []string{"a_square.png", "b_wide.png"} {
		b, err := os.ReadFile(filepath.Join(dir, "inputs", name))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(imgs, name), b, 0o644)
	}
	db := filepath.Join(t.TempDir(), "index.db")
	if _, stderr, code := runCLI(t, "", "index", imgs, "--db", db, "--model", filepath.Join(dir, "vit-p16")); code != 0 {
		t.Fatalf("index: exit %d: %s", code, stderr)
	}
	t.Setenv("TINYCLIP_API_KEY", "k") // the key from the environment
	url, stop := startServe(t, "--db", db)
	var res struct {
		Results []struct{ Path string }
	}
	if code := httpJSON(t, "POST", url+"/v1/search", "", map[string]any{"text": "a photo of a cat"}, nil); code != 401 {
		t.Errorf("search without the key: %d", code)
	}
	if code := httpJSON(t, "POST", url+"/v1/search", "k", map[string]any{"text": "a photo of a cat", "k": 5}, &res); code != 200 || len(res.Results) != 2 {
		t.Errorf("search: %d %+v", code, res)
	}
	resp, err := http.Get(url + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Type"), "text/html") || !bytes.Contains(page, []byte("<")) {
		t.Errorf("page: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if code, log := stop(); code != 0 {
		t.Errorf("exit %d: %s", code, log)
	}
}

func TestServeFlags(t *testing.T) {
	model := filepath.Join(fixtures.Path(t, "fixtures", "models"), "vit-p16")
	for _, args := range [][]string{
		{"serve", "--model", model, "--log-format", "xml"},
		{"serve", "--model", model, "--max-batch", "0"},
		{"serve", "--model", model, "--max-body", "lots"},
		{"serve", "--model", model, "--log-level", "loud"},
		{"serve", "--model", model, "extra"},
	} {
		if _, stderr, code := runCLI(t, "", args...); code != 2 {
			t.Errorf("%v: exit %d, %s", args, code, stderr)
		}
	}
	if _, stderr, code := runCLI(t, "", "serve", "--model", model, "--addr", "256.0.0.1:http"); code != 1 || !strings.Contains(stderr, "listen") {
		t.Errorf("bad address: exit %d, %s", code, stderr)
	}
	var b byteSize
	for in, want := range map[string]int64{"1048576": 1 << 20, "512KiB": 512 << 10, "32MiB": 32 << 20, "2GB": 2e9} {
		if err := b.Set(in); err != nil || int64(b) != want {
			t.Errorf("%q: %d, %v", in, b, err)
		}
	}
}
