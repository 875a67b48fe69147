package search

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"image/jpeg"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testServer indexes a few generated images with the fake encoder and serves
// them on 127.0.0.1.
func testServer(t *testing.T, opts HandlerOptions) (*httptest.Server, *fakeEncoder, string) {
	t.Helper()
	dir := t.TempDir()
	for i, name := range []string{"a.png", "b.png", "c.png", "sub/wide.png"} {
		writeFile(t, filepath.Join(dir, filepath.FromSlash(name)), testPNG(t, uint64(i), 40+20*i, 30))
	}
	enc := &fakeEncoder{dim: 8}
	db, err := OpenOrCreate(filepath.Join(t.TempDir(), "i.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Index(context.Background(), enc, dir, IndexOptions{Model: "fake-model"}); err != nil {
		t.Fatal(err)
	}
	h, err := NewHandler(context.Background(), db, enc, opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h) // listens on 127.0.0.1
	t.Cleanup(srv.Close)
	root, _ := filepath.EvalSymlinks(dir)
	return srv, enc, root
}

func postJSON(t *testing.T, url string, body string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func TestHandlerSearch(t *testing.T) {
	srv, enc, root := testServer(t, HandlerOptions{})
	data, _ := os.ReadFile(filepath.Join(root, "b.png"))
	b64 := base64.StdEncoding.EncodeToString(data)

	// An image query finds the same image first, with score 1.
	for name, body := range map[string]string{
		"base64":      `{"image": "` + b64 + `", "k": 2}`,
		"data URL":    `{"image": "data:image/png;base64,` + b64 + `", "k": 2}`,
		"unpadded":    `{"image": "` + strings.TrimRight(base64.URLEncoding.EncodeToString(data), "=") + `", "k": 2}`,
		"with a text": `{"image": "` + b64 + `", "text": "", "k": 2}`,
	} {
		t.Run(name, func(t *testing.T) {
			resp, b := postJSON(t, srv.URL+"/v1/search", body)
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("%d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
			}
			var out SearchResponse
			if err := json.Unmarshal(b, &out); err != nil {
				t.Fatal(err)
			}
			if out.Model != "fake-model" || len(out.Results) != 2 || out.Results[0].Path != filepath.Join(root, "b.png") || out.Results[0].Score < 0.99999 {
				t.Fatalf("response %+v", out)
			}
			if want := "/v1/thumbnail?path=" + url.QueryEscape(out.Results[0].Path); out.Results[0].Thumbnail != want {
				t.Errorf("thumbnail URL %q, want %q", out.Results[0].Thumbnail, want)
			}
		})
	}

	// A text query ranks by cosine with the text's embedding.
	resp, b := postJSON(t, srv.URL+"/v1/search", `{"text": "a dog on a beach"}`)
	if resp.StatusCode != 200 {
		t.Fatalf("%d: %s", resp.StatusCode, b)
	}
	var out SearchResponse
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	q := enc.vec([]byte("text:a dog on a beach"))
	if len(out.Results) != 4 {
		t.Fatalf("%d results, want all 4 (default k is 20)", len(out.Results))
	}
	for i, r := range out.Results {
		img, err := os.ReadFile(r.Path)
		if err != nil {
			t.Fatal(err)
		}
		want := cosine(q, enc.vec(img))
		if d := float64(r.Score) - want; d > 1e-6 || d < -1e-6 {
			t.Errorf("result %d: score %v, want %v", i, r.Score, want)
		}
		if i > 0 && r.Score > out.Results[i-1].Score {
			t.Errorf("results out of order")
		}
	}

	// Text and image together: the normalised sum of both embeddings.
	resp, b = postJSON(t, srv.URL+"/v1/search", `{"text": "a dog on a beach", "image": "`+b64+`", "k": 1}`)
	if resp.StatusCode != 200 {
		t.Fatalf("%d: %s", resp.StatusCode, b)
	}
	var both SearchResponse
	json.Unmarshal(b, &both)
	v := enc.vec(data)
	sum := make([]float32, len(q))
	for i := range sum {
		sum[i] = q[i] + v[i]
	}
	if want := cosine(sum, v); len(both.Results) != 1 || both.Results[0].Path != filepath.Join(root, "b.png") ||
		float64(both.Results[0].Score)-want > 1e-6 || want-float64(both.Results[0].Score) > 1e-6 {
		t.Errorf("text+image query: %+v, want b.png at %v", both.Results, want)
	}

	// Multipart, as curl -F sends it.
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	mw.WriteField("k", "3")
	fw, _ := mw.CreateFormFile("image", "b.png")
	fw.Write(data)
	mw.Close()
	mresp, err := http.Post(srv.URL+"/v1/search", mw.FormDataContentType(), &mp)
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	var mout SearchResponse
	json.Unmarshal(mb, &mout)
	if mresp.StatusCode != 200 || len(mout.Results) != 3 || mout.Results[0].Path != filepath.Join(root, "b.png") {
		t.Errorf("multipart: %d %s", mresp.StatusCode, mb)
	}
}

func TestHandlerBadRequests(t *testing.T) {
	srv, _, root := testServer(t, HandlerOptions{MaxBodyBytes: 1 << 20, MaxK: 50, MaxTextLength: 100})
	notImage := base64.StdEncoding.EncodeToString([]byte("these bytes are not an image"))
	bomb := base64.StdEncoding.EncodeToString(bombPNG(t))
	huge := `{"text": "x", "image": "` + strings.Repeat("A", 2<<20) + `"}`
	for _, c := range []struct {
		name, ctype, body string
		status            int
		msg, code         string
	}{
		{"wrong content type", "text/plain", `{"text": "a dog"}`, 415, "Content-Type", "unsupported_content_type"},
		{"no content type", "", `{"text": "a dog"}`, 415, "Content-Type", "unsupported_content_type"},
		{"broken JSON", "application/json", `{"text": `, 400, "invalid JSON", "invalid_json"},
		{"unknown field", "application/json", `{"query": "a dog"}`, 400, "unknown field", "invalid_json"},
		{"two objects", "application/json", `{"text": "a"} {"text": "b"}`, 400, "after the object", "invalid_json"},
		{"wrong type", "application/json", `{"text": 5}`, 400, "invalid JSON", "invalid_json"},
		{"empty query", "application/json", `{"k": 3}`, 400, "empty query", "empty_query"},
		{"k zero", "application/json", `{"text": "a", "k": 0}`, 400, "k = 0", "invalid_k"},
		{"k too large", "application/json", `{"text": "a", "k": 51}`, 400, "k = 51", "invalid_k"},
		{"text too long", "application/json", `{"text": "` + strings.Repeat("é", 101) + `"}`, 400, "101 characters", "text_too_long"},
		{"10000-character text", "application/json", `{"text": "` + strings.Repeat("a", 10000) + `"}`, 400, "longer than the limit", "text_too_long"},
		{"bad base64", "application/json", `{"image": "@@@@"}`, 400, "base64", "invalid_base64"},
		{"data URL not base64", "application/json", `{"image": "data:image/png,abc"}`, 400, "base64", "invalid_base64"},
		{"not an image", "application/json", `{"image": "` + notImage + `"}`, 400, "unknown image format", "invalid_image"},
		{"decompression bomb", "application/json", `{"image": "` + bomb + `"}`, 400, "exceeds the limit", "image_too_large"},
		{"oversized body", "application/json", huge, 413, "exceeds", "body_too_large"},
		{"bad multipart", "multipart/form-data; boundary=xyz", "garbage", 400, "multipart", "invalid_multipart"},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", srv.URL+"/v1/search", strings.NewReader(c.body))
			if c.ctype != "" {
				req.Header.Set("Content-Type", c.ctype)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			checkJSONError(t, resp, b, c.status, c.msg, c.code)
		})
	}
	for _, c := range []struct {
		name, method, path string
		status             int
		msg, code          string
	}{
		{"GET search", "GET", "/v1/search", 405, "not allowed", "method_not_allowed"},
		{"POST page", "POST", "/", 405, "not allowed", "method_not_allowed"},
		{"unknown path", "GET", "/v1/nothing", 404, "no such endpoint", "not_found"},
		{"thumbnail without path", "GET", "/v1/thumbnail", 400, "missing path", "missing_path"},
		{"thumbnail of a file not indexed", "GET", "/v1/thumbnail?path=" + url.QueryEscape("/etc/passwd"), 404, "not an indexed image", "not_indexed"},
		{"traversal", "GET", "/v1/thumbnail?path=" + url.QueryEscape(root+"/sub/../a.png"), 404, "not an indexed image", "not_indexed"},
		{"relative traversal", "GET", "/v1/image?path=" + url.QueryEscape("../../../../etc/passwd"), 404, "not an indexed image", "not_indexed"},
		{"image not indexed", "GET", "/v1/image?path=" + url.QueryEscape(filepath.Join(root, "nothere.png")), 404, "not an indexed image", "not_indexed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(c.method, srv.URL+c.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			checkJSONError(t, resp, b, c.status, c.msg, c.code)
		})
	}
	// Still serving after all that.
	resp, b := postJSON(t, srv.URL+"/v1/search", `{"text": "still there?", "k": 1}`)
	if resp.StatusCode != 200 {
		t.Errorf("after bad requests: %d %s", resp.StatusCode, b)
	}
}

func checkJSONError(t *testing.T, resp *http.Response, body []byte, status int, msg, code string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Errorf("status %d, want %d: %s", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var e apiError
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Message == "" || e.Error.Type == "" || e.Error.Code == "" {
		t.Errorf("not a JSON error: %s (%v)", body, err)
	}
	if code != "" && e.Error.Code != code {
		t.Errorf("code %q, want %q", e.Error.Code, code)
	}
	if !strings.Contains(e.Error.Message, msg) {
		t.Errorf("message %q lacks %q", e.Error.Message, msg)
	}
}

func TestHandlerFilesAndPage(t *testing.T) {
	srv, _, root := testServer(t, HandlerOptions{ThumbnailSize: 32})
	get := func(path string) (*http.Response, []byte) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	wide := filepath.Join(root, "sub", "wide.png") // 100×30
	resp, b := get("/v1/thumbnail?path=" + url.QueryEscape(wide))
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/jpeg" {
		t.Fatalf("thumbnail: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	cfg, err := jpeg.DecodeConfig(bytes.NewReader(b))
	if err != nil || cfg.Width != 32 || cfg.Height != 9 {
		t.Errorf("thumbnail %dx%d (%v), want 32x9", cfg.Width, cfg.Height, err)
	}
	// Cached: the same bytes again.
	if _, b2 := get("/v1/thumbnail?path=" + url.QueryEscape(wide)); !bytes.Equal(b, b2) {
		t.Error("second thumbnail differs")
	}
	resp, b = get("/v1/image?path=" + url.QueryEscape(wide))
	orig, _ := os.ReadFile(wide)
	if resp.StatusCode != 200 || !bytes.Equal(b, orig) || resp.Header.Get("Content-Type") != "image/png" {
		t.Errorf("image: %d %s, %d bytes", resp.StatusCode, resp.Header.Get("Content-Type"), len(b))
	}
	// An indexed file that is gone since answers 404.
	os.Remove(filepath.Join(root, "a.png"))
	resp, b = get("/v1/thumbnail?path=" + url.QueryEscape(filepath.Join(root, "a.png")))
	checkJSONError(t, resp, b, 404, "no longer readable", "file_unreadable")

	resp, b = get("/")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !bytes.Contains(b, []byte(`<script src="search.js"`)) {
		t.Errorf("page: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, p := range []string{"/search.js", "/search.css"} {
		if resp, _ := get(p); resp.StatusCode != 200 {
			t.Errorf("%s: %d", p, resp.StatusCode)
		}
	}
	resp, b = get("/v1/index")
	var info indexInfo
	if err := json.Unmarshal(b, &info); err != nil || resp.StatusCode != 200 || info != (indexInfo{Model: "fake-model", Dim: 8, Images: 4}) {
		t.Errorf("index info: %d %s", resp.StatusCode, b)
	}
}

func TestDecodeBase64Image(t *testing.T) {
	raw := []byte{0xfb, 0xff, 0x01, 0x02, 0x03}
	for _, s := range []string{
		base64.StdEncoding.EncodeToString(raw),
		base64.RawStdEncoding.EncodeToString(raw),
		base64.URLEncoding.EncodeToString(raw),
		base64.RawURLEncoding.EncodeToString(raw),
		"data:image/jpeg;base64," + base64.StdEncoding.EncodeToString(raw),
	} {
		got, err := decodeBase64Image(s)
		if err != nil || !bytes.Equal(got, raw) {
			t.Errorf("%q: %v %v", s, got, err)
		}
	}
	for _, s := range []string{"!!", "data:image/png,plain", "data:;base64"} {
		if _, err := decodeBase64Image(s); err == nil {
			t.Errorf("%q decoded", s)
		}
	}
}

// FuzzSearchRequest feeds arbitrary bodies to /v1/search: the handler must
// answer 200 or a 4xx JSON error, never panic or fail with 5xx.
func FuzzSearchRequest(f *testing.F) {
	dir := f.TempDir()
	for i := 0; i < 3; i++ {
		writeFile(f, filepath.Join(dir, string(rune('a'+i))+".png"), testPNG(f, uint64(i), 8, 8))
	}
	enc := &fakeEncoder{dim: 4}
	db, err := OpenOrCreate(filepath.Join(f.TempDir(), "i.db"))
	if err != nil {
		f.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Index(context.Background(), enc, dir, IndexOptions{}); err != nil {
		f.Fatal(err)
	}
	h, err := NewHandler(context.Background(), db, enc, HandlerOptions{MaxBodyBytes: 1 << 16})
	if err != nil {
		f.Fatal(err)
	}
	png := base64.StdEncoding.EncodeToString(testPNG(f, 1, 4, 4))
	for _, s := range []struct{ ctype, body string }{
		{"application/json", `{"text": "a dog", "k": 3}`},
		{"application/json", `{"image": "` + png + `"}`},
		{"application/json", `{"image": "data:image/png;base64,` + png + `", "text": "x"}`},
		{"application/json", `{"k": -1}`},
		{"application/json", `[1, 2]`},
		{"multipart/form-data; boundary=b", "--b\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\ncat\r\n--b--\r\n"},
		{"text/plain", "hello"},
	} {
		f.Add(s.ctype, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, ctype string, body []byte) {
		req := httptest.NewRequest("POST", "/v1/search", bytes.NewReader(body))
		req.Header.Set("Content-Type", ctype)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 && (rec.Code < 400 || rec.Code > 499) {
			t.Fatalf("status %d for %q %q: %s", rec.Code, ctype, body, rec.Body.Bytes())
		}
		if rec.Code != 200 {
			var e apiError
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Message == "" {
				t.Fatalf("status %d without a JSON error: %s", rec.Code, rec.Body.Bytes())
			}
		}
	})
}
