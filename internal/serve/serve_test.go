package serve

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinyclip-go/tinyclip"
	"github.com/tinyclip-go/tinyclip/internal/fixtures"
	"github.com/tinyclip-go/tinyclip/internal/npy"
)

var (
	modelOnce sync.Once
	testModel *tinyclip.Model
	modelErr  error
)

// fixtureModel loads the vit-p16 fixture model once.
func fixtureModel(t testing.TB) *tinyclip.Model {
	t.Helper()
	dir := fixtures.Path(t, "fixtures", "models", "vit-p16")
	modelOnce.Do(func() { testModel, modelErr = tinyclip.Load(context.Background(), dir) })
	if modelErr != nil {
		t.Fatal(modelErr)
	}
	return testModel
}

func readInput(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtures.Path(t, "fixtures", "models", "inputs"), name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newTestServer(t *testing.T, m Model, opts Options) (*Server, *httptest.Server) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	s := New(m, opts)
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		ts.Close()
		s.Close()
	})
	return s, ts
}

// post sends body as JSON (a string or []byte is sent as is) and decodes
// the answer into out; it returns the status and the raw body.
func post(t *testing.T, url, path string, body any, out any, header ...string) (int, []byte) {
	t.Helper()
	var b []byte
	switch v := body.(type) {
	case string:
		b = []byte(v)
	case []byte:
		b = v
	default:
		var err error
		if b, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, url+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return do(t, req, out)
}

func do(t *testing.T, req *http.Request, out any) (int, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s: %v in %s", req.URL.Path, err, raw)
		}
	}
	return resp.StatusCode, raw
}

func multipartBody(t *testing.T, fields [][3]string) (string, []byte) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, f := range fields { // name, value, file name ("" for a plain field)
		var w io.Writer
		var err error
		if f[2] != "" {
			w, err = mw.CreateFormFile(f[0], f[2])
		} else {
			w, err = mw.CreateFormField(f[0])
		}
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(f[1]))
	}
	mw.Close()
	return mw.FormDataContentType(), buf.Bytes()
}

// maxRel is the largest |a-b| over the norm of b.
func maxRel(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	var mx, n float64
	for i := range b {
		mx = math.Max(mx, math.Abs(float64(a[i]-b[i])))
		n += float64(b[i]) * float64(b[i])
	}
	return mx / math.Max(math.Sqrt(n), 1e-30)
}

func TestEmbeddings(t *testing.T) {
	m := fixtureModel(t)
	_, ts := newTestServer(t, m, Options{ModelID: "vit-p16", Aliases: []string{"tiny"}})
	png := readInput(t, "a_square.png")
	b64 := base64.StdEncoding.EncodeToString(png)
	ctx := context.Background()
	wantTexts, err := m.EncodeTexts(ctx, []string{"a photo of a cat", "", "a dog"})
	if err != nil {
		t.Fatal(err)
	}
	wantImg, err := m.EncodeImageBytes(ctx, [][]byte{png})
	if err != nil {
		t.Fatal(err)
	}
	// The fixture's official image features, normalised: an independent
	// reference for the image path through the service.
	feats, err := npy.ReadFile(filepath.Join(fixtures.Path(t, "fixtures", "models", "vit-p16", "expected"), "image_features.npy"))
	if err != nil {
		t.Fatal(err)
	}
	official := tinyclip.Normalize(append([]float32(nil), feats.F32[:m.EmbedDim()]...))

	var r EmbeddingsResponse
	// A single string, OpenAI style.
	if code, raw := post(t, ts.URL, "/v1/embeddings", map[string]any{"input": "a photo of a cat", "model": "vit-p16"}, &r); code != 200 {
		t.Fatalf("%d %s", code, raw)
	}
	if r.Object != "list" || r.Model != "vit-p16" || len(r.Data) != 1 || r.Data[0].Object != "embedding" {
		t.Fatalf("response %+v", r)
	}
	ids, _ := m.Tokenize("a photo of a cat")
	if r.Usage.PromptTokens != len(ids) || r.Usage.TotalTokens != len(ids) {
		t.Errorf("usage %+v, want %d tokens", r.Usage, len(ids))
	}
	if d := maxRel(toF32(t, r.Data[0].Embedding), wantTexts[0]); d > 1e-6 {
		t.Errorf("text embedding differs by %.2e", d)
	}
	// Mixed texts and images (plain base64 and a data URL), in order.
	req := map[string]any{"model": "tiny", "input": []any{
		"a photo of a cat",
		map[string]any{"type": "image", "image": b64},
		map[string]any{"type": "text", "text": ""},
		map[string]any{"type": "image", "image": "data:image/png;base64," + b64},
		"a dog",
	}}
	if code, raw := post(t, ts.URL, "/v1/embeddings", req, &r); code != 200 {
		t.Fatalf("%d %s", code, raw)
	}
	want := [][]float32{wantTexts[0], wantImg[0], wantTexts[1], wantImg[0], wantTexts[2]}
	if len(r.Data) != len(want) || r.Usage.Images != 2 {
		t.Fatalf("%d results, usage %+v", len(r.Data), r.Usage)
	}
	for i, w := range want {
		got := toF32(t, r.Data[i].Embedding)
		if r.Data[i].Index != i || maxRel(got, w) > 1e-6 {
			t.Errorf("item %d: index %d, differs by %.2e", i, r.Data[i].Index, maxRel(got, w))
		}
	}
	if d := maxRel(toF32(t, r.Data[1].Embedding), official); d > 1e-4 {
		t.Errorf("image embedding differs from the official features by %.2e", d)
	}
	// encoding_format base64: little-endian float32.
	req["encoding_format"] = "base64"
	if code, raw := post(t, ts.URL, "/v1/embeddings", req, &r); code != 200 {
		t.Fatalf("%d %s", code, raw)
	}
	for i, w := range want {
		s, ok := r.Data[i].Embedding.(string)
		if !ok {
			t.Fatalf("item %d: %T, want a base64 string", i, r.Data[i].Embedding)
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(b) != 4*len(w) {
			t.Fatalf("item %d: %v, %d bytes", i, err, len(b))
		}
		for k := range w {
			if got := math.Float32frombits(binary.LittleEndian.Uint32(b[4*k:])); math.Abs(float64(got-w[k])) > 1e-6 {
				t.Fatalf("item %d[%d] = %v, want %v", i, k, got, w[k])
			}
		}
	}
	// Multipart: fields in form order.
	ct, body := multipartBody(t, [][3]string{{"text", "a dog", ""}, {"image", string(png), "a.png"}, {"model", "vit-p16", ""}})
	hreq, _ := http.NewRequest(http.MethodPost, ts.URL+"/v1/embeddings", bytes.NewReader(body))
	hreq.Header.Set("Content-Type", ct)
	if code, raw := do(t, hreq, &r); code != 200 {
		t.Fatalf("multipart: %d %s", code, raw)
	}
	if len(r.Data) != 2 || maxRel(toF32(t, r.Data[0].Embedding), wantTexts[2]) > 1e-6 || maxRel(toF32(t, r.Data[1].Embedding), wantImg[0]) > 1e-6 {
		t.Errorf("multipart results differ")
	}
}

// toF32 converts a decoded JSON embedding.
func toF32(t *testing.T, v any) []float32 {
	t.Helper()
	list, ok := v.([]any)
	if !ok {
		t.Fatalf("embedding is %T", v)
	}
	out := make([]float32, len(list))
	for i, x := range list {
		out[i] = float32(x.(float64))
	}
	return out
}

func TestClassify(t *testing.T) {
	m := fixtureModel(t)
	_, ts := newTestServer(t, m, Options{})
	ctx := context.Background()
	imgs := [][]byte{readInput(t, "a_square.png"), readInput(t, "b_wide.png")}
	labels := []string{"a photo of a cat", "a dog", "a diagram"}
	emb, err := m.EncodeImageBytes(ctx, imgs)
	if err != nil {
		t.Fatal(err)
	}
	want, err := m.Classify(ctx, emb, labels)
	if err != nil {
		t.Fatal(err)
	}
	var r ClassifyResponse
	req := map[string]any{"image": base64.StdEncoding.EncodeToString(imgs[0]),
		"images": []string{base64.StdEncoding.EncodeToString(imgs[1])}, "labels": labels}
	if code, raw := post(t, ts.URL, "/v1/classify", req, &r); code != 200 {
		t.Fatalf("%d %s", code, raw)
	}
	check := func(name string, r ClassifyResponse, want [][]float32) {
		t.Helper()
		if len(r.Data) != len(want) || len(r.Labels) != len(labels) {
			t.Fatalf("%s: %+v", name, r)
		}
		for i, d := range r.Data {
			best := 0
			for j := range want[i] {
				if math.Abs(float64(d.Probs[j]-want[i][j])) > 1e-5 {
					t.Errorf("%s: image %d label %d: %v, want %v", name, i, j, d.Probs[j], want[i][j])
				}
				if want[i][j] > want[i][best] {
					best = j
				}
			}
			if d.Label != labels[best] || d.Score != d.Probs[best] || d.Index != i {
				t.Errorf("%s: image %d: best %q (%v), want %q", name, i, d.Label, d.Score, labels[best])
			}
		}
	}
	check("json", r, want)
	// The two-label probability against the fixture's official logits
	// (columns 0 and 5 of logits_per_image are "a photo of a cat" and "a dog").
	logits, err := npy.ReadFile(filepath.Join(fixtures.Path(t, "fixtures", "models", "vit-p16", "expected"), "logits_per_image.npy"))
	if err != nil {
		t.Fatal(err)
	}
	req["labels"] = []string{"a photo of a cat", "a dog"}
	if code, raw := post(t, ts.URL, "/v1/classify", req, &r); code != 200 {
		t.Fatalf("%d %s", code, raw)
	}
	for i := range 2 {
		l0, l1 := float64(logits.F32[i*8]), float64(logits.F32[i*8+5])
		if p0 := 1 / (1 + math.Exp(l1-l0)); math.Abs(float64(r.Data[i].Probs[0])-p0) > 2e-3 {
			t.Errorf("image %d: p(cat) = %v, official %v", i, r.Data[i].Probs[0], p0)
		}
	}
	// Multipart, labels comma-separated and repeated.
	ct, body := multipartBody(t, [][3]string{{"image", string(imgs[0]), "a.png"}, {"image", string(imgs[1]), "b.png"},
		{"labels", "a photo of a cat, a dog", ""}, {"label", "a diagram", ""}})
	hreq, _ := http.NewRequest(http.MethodPost, ts.URL+"/v1/classify", bytes.NewReader(body))
	hreq.Header.Set("Content-Type", ct)
	r = ClassifyResponse{}
	if code, raw := do(t, hreq, &r); code != 200 {
		t.Fatalf("multipart: %d %s", code, raw)
	}
	check("multipart", r, want)

	// Templates: the official zero-shot classifier (ZeroShot's weights)
	// scored with exp(logit_scale).
	templates := []string{"a photo of {}.", "a drawing of {}."}
	zs, err := m.ZeroShot(ctx, labels, templates)
	if err != nil {
		t.Fatal(err)
	}
	scale := math.Exp(float64(m.LogitScale()))
	wantT := make([][]float32, len(emb))
	for i, e := range emb {
		l := make([]float64, len(labels))
		for j, w := range zs.Weights() {
			l[j] = scale * float64(tinyclip.Cosine(e, w))
		}
		wantT[i] = softmax(l)
	}
	req["labels"], req["templates"] = labels, templates
	if code, raw := post(t, ts.URL, "/v1/classify", req, &r); code != 200 {
		t.Fatalf("%d %s", code, raw)
	}
	check("templates", r, wantT)
}

func TestSimilarity(t *testing.T) {
	m := fixtureModel(t)
	_, ts := newTestServer(t, m, Options{})
	var texts []string
	if err := json.Unmarshal(readInput(t, "texts.json"), &texts); err != nil {
		t.Fatal(err)
	}
	// The PNG inputs (images 0 and 1 of the fixture) preprocess exactly.
	req := map[string]any{"images": []string{
		base64.StdEncoding.EncodeToString(readInput(t, "a_square.png")),
		base64.StdEncoding.EncodeToString(readInput(t, "b_wide.png"))}, "texts": texts}
	var r SimilarityResponse
	if code, raw := post(t, ts.URL, "/v1/similarity", req, &r); code != 200 {
		t.Fatalf("%d %s", code, raw)
	}
	logits, err := npy.ReadFile(filepath.Join(fixtures.Path(t, "fixtures", "models", "vit-p16", "expected"), "logits_per_image.npy"))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.LogitsPerImage) != 2 || len(r.LogitsPerImage[0]) != len(texts) {
		t.Fatalf("shape %dx?", len(r.LogitsPerImage))
	}
	for i := range 2 {
		for j := range texts {
			want := logits.F32[i*len(texts)+j]
			if d := math.Abs(float64(r.LogitsPerImage[i][j] - want)); d > 1e-3 {
				t.Errorf("logits[%d][%d] = %v, official %v", i, j, r.LogitsPerImage[i][j], want)
			}
			if d := math.Abs(float64(r.Similarity[i][j]*r.LogitScale - r.LogitsPerImage[i][j])); d > 1e-4 {
				t.Errorf("similarity[%d][%d] inconsistent with the logits", i, j)
			}
		}
	}
}

func TestModelsHealthMetrics(t *testing.T) {
	m := fixtureModel(t)
	s, ts := newTestServer(t, m, Options{ModelID: "vit-p16", ModelInfo: map[string]any{"format": m.Format()}})
	var models struct {
		Object string
		Data   []map[string]any
	}
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/v1/models", nil)
	if code, raw := do(t, req, &models); code != 200 || models.Object != "list" || len(models.Data) != 1 {
		t.Fatalf("%d %s", code, raw)
	}
	if d := models.Data[0]; d["id"] != "vit-p16" || d["object"] != "model" || d["embed_dim"] != float64(m.EmbedDim()) || d["format"] != m.Format() {
		t.Errorf("model entry %v", d)
	}
	req, _ = http.NewRequest(http.MethodGet, ts.URL+"/healthz", nil)
	if code, raw := do(t, req, nil); code != 200 || !strings.Contains(string(raw), `"ok"`) {
		t.Errorf("healthz: %d %s", code, raw)
	}
	post(t, ts.URL, "/v1/embeddings", map[string]any{"input": []string{"a", "b"}}, nil)
	post(t, ts.URL, "/v1/embeddings", "{", nil)
	req, _ = http.NewRequest(http.MethodGet, ts.URL+"/metrics", nil)
	code, raw := do(t, req, nil)
	if code != 200 {
		t.Fatalf("metrics: %d", code)
	}
	for _, want := range []string{
		`tinyclip_http_requests_total{code="200",handler="/v1/embeddings"} 1`,
		`tinyclip_http_requests_total{code="400",handler="/v1/embeddings"} 1`,
		`tinyclip_http_request_duration_seconds_bucket{handler="/v1/embeddings"`,
		`tinyclip_batch_size_count{kind="text"} 1`,
		`tinyclip_encoded_items_total{kind="text"} 2`,
		`tinyclip_queue_depth{kind="image"} 0`,
		`tinyclip_http_requests_in_flight 1`,
		"go_goroutines",
	} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	s.Drain()
	req, _ = http.NewRequest(http.MethodGet, ts.URL+"/healthz", nil)
	if code, _ := do(t, req, nil); code != http.StatusServiceUnavailable {
		t.Errorf("healthz while draining: %d", code)
	}
}

func TestBadInputs(t *testing.T) {
	m := fixtureModel(t)
	_, ts := newTestServer(t, m, Options{MaxBodyBytes: 1 << 20, MaxItems: 8, MaxLabelTexts: 20})
	_, authed := newTestServer(t, m, Options{APIKey: "s3cret"})
	pre := fixtures.Path(t, "fixtures", "preprocess", "malformed")
	file := func(name string) string {
		b, err := os.ReadFile(filepath.Join(pre, name))
		if err != nil {
			t.Fatal(err)
		}
		return base64.StdEncoding.EncodeToString(b)
	}
	png := base64.StdEncoding.EncodeToString(readInput(t, "a_square.png"))
	img := func(b64 string) map[string]any {
		return map[string]any{"input": []any{map[string]any{"type": "image", "image": b64}}}
	}
	long := strings.Repeat("a", 10000)
	ctMultipart, bodyUnknown := multipartBody(t, [][3]string{{"foo", "bar", ""}})
	for _, c := range []struct {
		name, url, path, method, ctype string
		body                           any
		header                         []string
		status                         int
		code                           string
	}{
		{"not an image", ts.URL, "/v1/embeddings", "POST", "", img(base64.StdEncoding.EncodeToString([]byte("hello, not an image"))), nil, 400, "invalid_image"},
		{"garbage jpeg", ts.URL, "/v1/embeddings", "POST", "", img(file("garbage.jpg")), nil, 400, "invalid_image"},
		{"truncated png", ts.URL, "/v1/classify", "POST", "", map[string]any{"image": file("truncated.png"), "labels": []string{"a"}}, nil, 400, "invalid_image"},
		{"decompression bomb", ts.URL, "/v1/embeddings", "POST", "", img(file("bomb_100000x100000.png")), nil, 400, "image_too_large"},
		{"bomb jpeg", ts.URL, "/v1/classify", "POST", "", map[string]any{"image": file("bomb_65000x65000.jpg"), "labels": []string{"a"}}, nil, 400, "image_too_large"},
		{"bad base64", ts.URL, "/v1/embeddings", "POST", "", img("!!!not base64!!!"), nil, 400, "invalid_base64"},
		{"empty label list", ts.URL, "/v1/classify", "POST", "", map[string]any{"image": png, "labels": []string{}}, nil, 400, "no_labels"},
		{"no labels", ts.URL, "/v1/classify", "POST", "", map[string]any{"image": png}, nil, 400, "no_labels"},
		{"blank label", ts.URL, "/v1/classify", "POST", "", map[string]any{"image": png, "labels": []string{"a", " "}}, nil, 400, "empty_label"},
		{"no image", ts.URL, "/v1/classify", "POST", "", map[string]any{"labels": []string{"a"}}, nil, 400, "missing_image"},
		{"template without {}", ts.URL, "/v1/classify", "POST", "", map[string]any{"image": png, "labels": []string{"a"}, "templates": []string{"a photo"}}, nil, 400, "invalid_template"},
		{"labels x templates", ts.URL, "/v1/classify", "POST", "", map[string]any{"image": png, "labels": []string{"a", "b", "c"}, "templates": strings.Split(strings.Repeat("{} ,", 7)+"{}", ",")}, nil, 400, "too_many_items"},
		{"10000-character text", ts.URL, "/v1/embeddings", "POST", "", map[string]any{"input": long}, nil, 400, "text_too_long"},
		{"10000-character label", ts.URL, "/v1/classify", "POST", "", map[string]any{"image": png, "labels": []string{long}}, nil, 400, "text_too_long"},
		{"wrong content type", ts.URL, "/v1/embeddings", "POST", "text/plain", `{"input":"a"}`, nil, 415, "unsupported_media_type"},
		{"no content type", ts.URL, "/v1/classify", "POST", "-", `{"input":"a"}`, nil, 415, "unsupported_media_type"},
		{"oversized body", ts.URL, "/v1/embeddings", "POST", "", map[string]any{"input": strings.Repeat("x", 2<<20)}, nil, 413, "body_too_large"},
		{"oversized multipart", ts.URL, "/v1/embeddings", "POST", "", nil, nil, 413, "body_too_large"},
		{"invalid json", ts.URL, "/v1/embeddings", "POST", "", `{"input": [`, nil, 400, "invalid_json"},
		{"trailing data", ts.URL, "/v1/embeddings", "POST", "", `{"input": "a"} {}`, nil, 400, "invalid_json"},
		{"wrong type", ts.URL, "/v1/classify", "POST", "", `{"image": "x", "labels": "a,b"}`, nil, 400, "invalid_json"},
		{"missing input", ts.URL, "/v1/embeddings", "POST", "", map[string]any{"model": "x"}, nil, 400, "missing_input"},
		{"empty input", ts.URL, "/v1/embeddings", "POST", "", map[string]any{"input": []string{}}, nil, 400, "missing_input"},
		{"token arrays", ts.URL, "/v1/embeddings", "POST", "", `{"input": [[49406, 320, 49407]]}`, nil, 400, "unsupported_input"},
		{"bad input object", ts.URL, "/v1/embeddings", "POST", "", `{"input": [{"type": "video"}]}`, nil, 400, "invalid_input"},
		{"too many items", ts.URL, "/v1/embeddings", "POST", "", map[string]any{"input": strings.Split("a,b,c,d,e,f,g,h,i", ",")}, nil, 400, "too_many_items"},
		{"unknown model", ts.URL, "/v1/embeddings", "POST", "", map[string]any{"input": "a", "model": "gpt-4"}, nil, 404, "model_not_found"},
		{"dimensions", ts.URL, "/v1/embeddings", "POST", "", map[string]any{"input": "a", "dimensions": 3}, nil, 400, "invalid_dimensions"},
		{"encoding format", ts.URL, "/v1/embeddings", "POST", "", map[string]any{"input": "a", "encoding_format": "int8"}, nil, 400, "invalid_encoding_format"},
		{"similarity without texts", ts.URL, "/v1/similarity", "POST", "", map[string]any{"images": []string{png}}, nil, 400, "missing_input"},
		{"multipart unknown field", ts.URL, "/v1/embeddings", "POST", ctMultipart, bodyUnknown, nil, 400, "unknown_field"},
		{"multipart without boundary", ts.URL, "/v1/embeddings", "POST", "multipart/form-data", "x", nil, 400, "invalid_multipart"},
		{"GET on a POST endpoint", ts.URL, "/v1/classify", "GET", "", nil, nil, 405, "method_not_allowed"},
		{"unknown path", ts.URL, "/v1/nope", "POST", "", "{}", nil, 404, "not_found"},
		{"no API key", authed.URL, "/v1/embeddings", "POST", "", map[string]any{"input": "a"}, nil, 401, "invalid_api_key"},
		{"wrong API key", authed.URL, "/v1/embeddings", "POST", "", map[string]any{"input": "a"}, []string{"Authorization", "Bearer s3cre"}, 401, "invalid_api_key"},
		{"wrong auth scheme", authed.URL, "/v1/models", "GET", "", nil, []string{"Authorization", "Basic czNjcmV0"}, 401, "invalid_api_key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var body []byte
			switch v := c.body.(type) {
			case nil:
				if c.name == "oversized multipart" {
					var ct string
					ct, body = multipartBody(t, [][3]string{{"image", strings.Repeat("\x89PNG", 1<<19), "big.png"}})
					c.ctype = ct
				}
			case string:
				body = []byte(v)
			case []byte:
				body = v
			default:
				body, _ = json.Marshal(v)
			}
			req, _ := http.NewRequest(c.method, c.url+c.path, bytes.NewReader(body))
			switch c.ctype {
			case "":
				req.Header.Set("Content-Type", "application/json")
			case "-":
			default:
				req.Header.Set("Content-Type", c.ctype)
			}
			for i := 0; i+1 < len(c.header); i += 2 {
				req.Header.Set(c.header[i], c.header[i+1])
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var e struct {
				Error struct {
					Message, Type, Code string
				}
			}
			if resp.StatusCode != c.status {
				t.Errorf("status %d, want %d: %s", resp.StatusCode, c.status, raw)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if err := json.Unmarshal(raw, &e); err != nil || e.Error.Code != c.code || e.Error.Message == "" || e.Error.Type == "" {
				t.Errorf("error body %s (%v), want code %q", raw, err, c.code)
			}
			if c.status == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if c.status == 405 && resp.Header.Get("Allow") != "POST" {
				t.Errorf("405 with Allow %q", resp.Header.Get("Allow"))
			}
		})
	}
	// The servers keep serving.
	var r EmbeddingsResponse
	if code, raw := post(t, ts.URL, "/v1/embeddings", map[string]any{"input": "still here"}, &r); code != 200 || len(r.Data) != 1 {
		t.Errorf("after bad inputs: %d %s", code, raw)
	}
	if code, raw := post(t, authed.URL, "/v1/embeddings", map[string]any{"input": "a"}, &r, "Authorization", "Bearer s3cret"); code != 200 {
		t.Errorf("right API key: %d %s", code, raw)
	}
	for _, path := range []string{"/healthz", "/metrics"} { // open without a key
		req, _ := http.NewRequest(http.MethodGet, authed.URL+path, nil)
		if code, _ := do(t, req, nil); code != 200 {
			t.Errorf("%s without a key: %d", path, code)
		}
	}
}

func TestHandleMount(t *testing.T) {
	m := fixtureModel(t)
	s, ts := newTestServer(t, m, Options{APIKey: "k"})
	s.Handle("/v1/search", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("search")) }))
	s.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("page")) }))
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/v1/search", nil)
	if code, _ := do(t, req, nil); code != 401 {
		t.Errorf("mounted /v1/ route without a key: %d", code)
	}
	req.Header.Set("Authorization", "Bearer k")
	if code, raw := do(t, req, nil); code != 200 || string(raw) != "search" {
		t.Errorf("mounted route: %d %s", code, raw)
	}
	req, _ = http.NewRequest(http.MethodGet, ts.URL+"/", nil)
	if code, raw := do(t, req, nil); code != 200 || string(raw) != "page" {
		t.Errorf("page: %d %s", code, raw)
	}
}

func TestGracefulShutdown(t *testing.T) {
	fm := newFakeModel(4)
	fm.block = make(chan struct{})
	s := New(fm, Options{Logger: quietLogger()})
	srv := httptest.NewUnstartedServer(s.Handler())
	srv.Start()
	url := srv.URL
	done := make(chan int, 1)
	go func() {
		code, _ := post(t, url, "/v1/embeddings", map[string]any{"input": "in flight"}, nil)
		done <- code
	}()
	fm.waitCalls(t, 1)
	s.Drain()
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- srv.Config.Shutdown(ctx)
	}()
	time.Sleep(50 * time.Millisecond)
	select {
	case <-shut:
		t.Fatal("shutdown returned with a request in flight")
	default:
	}
	close(fm.block) // let the engine finish
	if code := <-done; code != 200 {
		t.Errorf("in-flight request: %d, want 200", code)
	}
	if err := <-shut; err != nil {
		t.Errorf("shutdown: %v", err)
	}
	s.Close()
}

// TestBatchedEqualsUnbatched sends concurrent mixed requests to a batching
// server and checks every result against the model encoding each input on
// its own.
func TestBatchedEqualsUnbatched(t *testing.T) {
	m := fixtureModel(t)
	ctx := context.Background()
	s, ts := newTestServer(t, m, Options{MaxBatch: 8, MaxWait: 20 * time.Millisecond})
	pngs := [][]byte{readInput(t, "a_square.png"), readInput(t, "b_wide.png")}
	texts := []string{"a photo of a cat", "", "a dog", "A DIAGRAM of the TinyCLIP model", "東京タワー 🐱", "x"}
	alone := map[string][]float32{}
	for _, tx := range texts {
		e, err := m.EncodeTexts(ctx, []string{tx})
		if err != nil {
			t.Fatal(err)
		}
		alone["t:"+tx] = e[0]
	}
	for i, p := range pngs {
		e, err := m.EncodeImageBytes(ctx, [][]byte{p})
		if err != nil {
			t.Fatal(err)
		}
		alone[fmt.Sprint("i:", i)] = e[0]
	}
	const clients = 12
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range 3 {
				var input []any
				var keys []string
				for k := range 1 + (c+r)%3 {
					if (c+k+r)%2 == 0 {
						i := (c + k) % len(pngs)
						input = append(input, map[string]any{"type": "image", "image": base64.StdEncoding.EncodeToString(pngs[i])})
						keys = append(keys, fmt.Sprint("i:", i))
					} else {
						tx := texts[(c*3+k+r)%len(texts)]
						input = append(input, tx)
						keys = append(keys, "t:"+tx)
					}
				}
				var resp EmbeddingsResponse
				if code, raw := post(t, ts.URL, "/v1/embeddings", map[string]any{"input": input}, &resp); code != 200 {
					t.Errorf("client %d: %d %s", c, code, raw)
					return
				}
				for k, key := range keys {
					if d := maxRel(toF32(t, resp.Data[k].Embedding), alone[key]); d > 1e-6 {
						t.Errorf("client %d item %d (%s): batched result differs from unbatched by %.2e", c, k, key, d)
					}
				}
			}
		}()
	}
	wg.Wait()
	// Batching happened: some engine calls had several items.
	mfs, err := s.opts.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	merged := false
	for _, mf := range mfs {
		if mf.GetName() != "tinyclip_batch_size" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			h := mt.GetHistogram()
			if h.GetSampleSum() > float64(h.GetSampleCount()) {
				merged = true
			}
		}
	}
	if !merged {
		t.Error("no engine call merged several requests")
	}
}
