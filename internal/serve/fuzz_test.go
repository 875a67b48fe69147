package serve

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// FuzzRequests posts arbitrary bodies to the POST endpoints: every answer
// is a 200 or a 4xx with a JSON error, never a 5xx or a panic.
func FuzzRequests(f *testing.F) {
	png := []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde\x00\x00\x00\x0cIDATx\x9cc\xf8\xcf\xc0\x00\x00\x03\x01\x01\x00\xc9\xfe\x92\xef\x00\x00\x00\x00IEND\xaeB`\x82")
	b64 := "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
	for _, seed := range []string{
		`{"input": "a photo of a cat"}`,
		`{"input": ["a", "b"], "model": "tinyclip", "encoding_format": "base64"}`,
		`{"input": [{"type": "image", "image": "` + b64 + `"}, {"type": "text", "text": "x"}]}`,
		`{"input": [[1, 2, 3]]}`,
		`{"image": "` + b64 + `", "labels": ["a", "b"], "templates": ["a {}"]}`,
		`{"images": ["data:image/png;base64,` + b64 + `"], "texts": ["a"]}`,
		`{"input": null}`, `[]`, `"x"`, `{"input": {"type": "image"}}`,
	} {
		for _, path := range []uint8{0, 1, 2} {
			f.Add(path, []byte(seed))
		}
	}
	f.Add(uint8(0), png)
	fm := newFakeModel(4)
	fm.quiet = true
	s := New(fm, Options{Logger: quietLogger(), MaxItems: 16, MaxBodyBytes: 1 << 16})
	defer s.Close()
	paths := []string{"/v1/embeddings", "/v1/classify", "/v1/similarity"}
	f.Fuzz(func(t *testing.T, path uint8, body []byte) {
		p := paths[int(path)%len(paths)]
		req := httptest.NewRequest(http.MethodPost, p, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %q: %d %s", p, body, rec.Code, rec.Body.Bytes())
		}
		if rec.Code != 200 {
			var e struct{ Error struct{ Code string } }
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Code == "" {
				t.Fatalf("%s %q: %d with body %s", p, body, rec.Code, rec.Body.Bytes())
			}
		}
	})
}

func FuzzDecodeBase64(f *testing.F) {
	for _, s := range []string{"aGVsbG8=", "aGVsbG8", "aGV sbG8=\n", "data:image/png;base64,aGVsbG8=", "data:text/plain,hello", "-_-_", "", "===="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := decodeBase64(s, "x")
		if err == nil && len(b) == 0 {
			t.Fatalf("%q: empty result without an error", s)
		}
		if err != nil {
			if _, ok := err.(*apiError); !ok {
				t.Fatalf("%q: %T", s, err)
			}
		}
	})
}
