package serve

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
)

// embeddingsRequest is the body of POST /v1/embeddings: OpenAI's shape, with
// images as an extra input type.
type embeddingsRequest struct {
	// Input is a string, or an array whose elements are strings,
	// {"type": "text", "text": "..."} or {"type": "image", "image":
	// "<base64 or data URL>"}.
	Input          json.RawMessage `json:"input"`
	Model          string          `json:"model"`
	EncodingFormat string          `json:"encoding_format"` // "float" (default) or "base64"
	Dimensions     *int            `json:"dimensions"`
}

type inputObject struct {
	Type  string  `json:"type"`
	Text  *string `json:"text"`
	Image *string `json:"image"`
}

// Embedding is one element of an embeddings response.
type Embedding struct {
	Object    string `json:"object"` // "embedding"
	Index     int    `json:"index"`
	Embedding any    `json:"embedding"` // []float32, or a base64 string of little-endian float32
}

// EmbeddingsResponse is the body answered by POST /v1/embeddings.
type EmbeddingsResponse struct {
	Object string      `json:"object"` // "list"
	Data   []Embedding `json:"data"`
	Model  string      `json:"model"`
	Usage  Usage       `json:"usage"`
}

// Usage counts the tokens of the texts (SOT and EOT included, at most 77
// each) and the images of a request.
type Usage struct {
	PromptTokens int `json:"prompt_tokens"`
	TotalTokens  int `json:"total_tokens"`
	Images       int `json:"images,omitempty"`
}

// parseInputs reads the inputs of an embeddings request.
func (s *Server) parseInputs(raw json.RawMessage) ([]input, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, badRequest("missing_input", "input", "input is required: a string, or an array of strings and {\"type\": \"image\", \"image\": \"<base64>\"} objects")
	}
	var elems []json.RawMessage
	switch raw[0] {
	case '"':
		elems = []json.RawMessage{raw}
	case '[':
		if err := json.Unmarshal(raw, &elems); err != nil {
			return nil, badRequest("invalid_input", "input", "input: %v", err)
		}
	default:
		return nil, badRequest("invalid_input", "input", "input must be a string or an array")
	}
	if len(elems) == 0 {
		return nil, badRequest("missing_input", "input", "input is an empty array")
	}
	if len(elems) > s.opts.MaxItems {
		return nil, badRequest("too_many_items", "input", "input has %d items; the limit is %d", len(elems), s.opts.MaxItems)
	}
	ins := make([]input, len(elems))
	for i, e := range elems {
		param := fmt.Sprintf("input[%d]", i)
		e = bytes.TrimSpace(e)
		switch {
		case len(e) > 0 && e[0] == '"':
			if err := json.Unmarshal(e, &ins[i].text); err != nil {
				return nil, badRequest("invalid_input", param, "%s: %v", param, err)
			}
		case len(e) > 0 && e[0] == '{':
			var o inputObject
			if err := json.Unmarshal(e, &o); err != nil {
				return nil, badRequest("invalid_input", param, "%s: %v", param, err)
			}
			switch {
			case o.Type == "text" && o.Text != nil:
				ins[i].text = *o.Text
			case o.Type == "image" && o.Image != nil:
				b, err := decodeBase64(*o.Image, param+".image")
				if err != nil {
					return nil, err
				}
				ins[i] = input{isImage: true, image: b}
			default:
				return nil, badRequest("invalid_input", param, `%s: want {"type": "text", "text": "..."} or {"type": "image", "image": "<base64>"}`, param)
			}
		case len(e) > 0 && (e[0] == '[' || e[0] == '-' || e[0] >= '0' && e[0] <= '9'):
			return nil, badRequest("unsupported_input", param, "%s: token arrays are not supported; send the text", param)
		default:
			return nil, badRequest("invalid_input", param, "%s: want a string or an input object", param)
		}
		if !ins[i].isImage {
			if err := s.checkText(ins[i].text, param); err != nil {
				return nil, err
			}
		}
	}
	return ins, nil
}

// multipartInputs reads texts ("text" or "input" fields) and images
// ("image" fields) in form order.
func (s *Server) multipartInputs(parts []formPart) ([]input, error) {
	var ins []input
	for i, p := range parts {
		param := fmt.Sprintf("%s (part %d)", p.name, i)
		switch p.name {
		case "text", "input":
			t := string(p.value)
			if err := s.checkText(t, param); err != nil {
				return nil, err
			}
			ins = append(ins, input{text: t})
		case "image":
			if len(p.value) == 0 {
				return nil, badRequest("invalid_image", param, "%s is empty", param)
			}
			ins = append(ins, input{isImage: true, image: p.value})
		}
	}
	if len(ins) == 0 {
		return nil, badRequest("missing_input", "input", "no inputs: send \"text\" fields and/or \"image\" files")
	}
	if len(ins) > s.opts.MaxItems {
		return nil, badRequest("too_many_items", "input", "%d inputs; the limit is %d", len(ins), s.opts.MaxItems)
	}
	return ins, nil
}

func formValue(parts []formPart, name string) string {
	for _, p := range parts {
		if p.name == name {
			return string(p.value)
		}
	}
	return ""
}

func (s *Server) handleEmbeddings(w http.ResponseWriter, r *http.Request) error {
	kind, err := bodyKind(r)
	if err != nil {
		return err
	}
	var req embeddingsRequest
	var ins []input
	if kind == "json" {
		if err := decodeJSON(r, &req); err != nil {
			return err
		}
		if ins, err = s.parseInputs(req.Input); err != nil {
			return err
		}
	} else {
		parts, err := readMultipart(r, "text", "input", "image", "model", "encoding_format")
		if err != nil {
			return err
		}
		req.Model, req.EncodingFormat = formValue(parts, "model"), formValue(parts, "encoding_format")
		if ins, err = s.multipartInputs(parts); err != nil {
			return err
		}
	}
	if err := s.checkModel(req.Model); err != nil {
		return err
	}
	if req.EncodingFormat != "" && req.EncodingFormat != "float" && req.EncodingFormat != "base64" {
		return badRequest("invalid_encoding_format", "encoding_format", "encoding_format %q: want \"float\" or \"base64\"", req.EncodingFormat)
	}
	if req.Dimensions != nil && *req.Dimensions != s.m.EmbedDim() {
		return badRequest("invalid_dimensions", "dimensions", "dimensions %d: this model's embeddings have %d", *req.Dimensions, s.m.EmbedDim())
	}
	setLogItems(r, len(ins))

	var texts []string
	var images [][]byte
	usage := Usage{}
	for _, in := range ins {
		if in.isImage {
			images = append(images, in.image)
			continue
		}
		texts = append(texts, in.text)
		ids, err := s.m.Tokenize(in.text)
		if err != nil {
			return badRequest("invalid_text", "input", "%v", err)
		}
		usage.PromptTokens += len(ids)
	}
	usage.TotalTokens, usage.Images = usage.PromptTokens, len(images)
	pixels, err := s.preprocess(r.Context(), images, "image")
	if err != nil {
		return err
	}
	textEmb, imageEmb, err := s.encode(r.Context(), texts, pixels)
	if err != nil {
		return err
	}
	resp := EmbeddingsResponse{Object: "list", Model: s.opts.ModelID, Usage: usage, Data: make([]Embedding, len(ins))}
	for i, in := range ins {
		var e []float32
		if in.isImage {
			e, imageEmb = imageEmb[0], imageEmb[1:]
		} else {
			e, textEmb = textEmb[0], textEmb[1:]
		}
		resp.Data[i] = Embedding{Object: "embedding", Index: i, Embedding: e}
		if req.EncodingFormat == "base64" {
			resp.Data[i].Embedding = float32Base64(e)
		}
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// float32Base64 encodes v as little-endian float32 in base64, as the
// OpenAI API does for encoding_format "base64".
func float32Base64(v []float32) string {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return base64.StdEncoding.EncodeToString(b)
}

// classifyRequest is the body of POST /v1/classify.
type classifyRequest struct {
	Model     string   `json:"model"`
	Image     *string  `json:"image"`     // one image (base64 or data URL)
	Images    []string `json:"images"`    // or several
	Labels    []string `json:"labels"`    // the candidate labels
	Templates []string `json:"templates"` // optional prompt templates with "{}" for the label
}

// Classification is the result for one image.
type Classification struct {
	Index int       `json:"index"`
	Label string    `json:"label"` // the most probable label
	Score float32   `json:"score"` // its probability
	Probs []float32 `json:"probs"` // one probability per label, in request order
}

// ClassifyResponse is the body answered by POST /v1/classify.
type ClassifyResponse struct {
	Object string           `json:"object"` // "classification"
	Model  string           `json:"model"`
	Labels []string         `json:"labels"`
	Data   []Classification `json:"data"`
}

func (s *Server) handleClassify(w http.ResponseWriter, r *http.Request) error {
	kind, err := bodyKind(r)
	if err != nil {
		return err
	}
	var req classifyRequest
	var images [][]byte
	if kind == "json" {
		if err := decodeJSON(r, &req); err != nil {
			return err
		}
		enc := req.Images
		if req.Image != nil {
			enc = append([]string{*req.Image}, enc...)
		}
		if len(enc) > s.opts.MaxItems {
			return badRequest("too_many_items", "images", "%d images; the limit is %d", len(enc), s.opts.MaxItems)
		}
		for i, e := range enc {
			b, err := decodeBase64(e, fmt.Sprintf("images[%d]", i))
			if err != nil {
				return err
			}
			images = append(images, b)
		}
	} else {
		parts, err := readMultipart(r, "image", "label", "labels", "template", "model")
		if err != nil {
			return err
		}
		for _, p := range parts {
			switch p.name {
			case "image":
				images = append(images, p.value)
			case "label":
				req.Labels = append(req.Labels, string(p.value))
			case "labels": // comma-separated, as the CLI's --labels
				for _, l := range strings.Split(string(p.value), ",") {
					req.Labels = append(req.Labels, strings.TrimSpace(l))
				}
			case "template":
				req.Templates = append(req.Templates, string(p.value))
			case "model":
				req.Model = string(p.value)
			}
		}
		if len(images) > s.opts.MaxItems {
			return badRequest("too_many_items", "image", "%d images; the limit is %d", len(images), s.opts.MaxItems)
		}
	}
	if err := s.checkModel(req.Model); err != nil {
		return err
	}
	if len(images) == 0 {
		return badRequest("missing_image", "image", "no image: send \"image\" (base64) or \"images\"")
	}
	if len(req.Labels) == 0 {
		return badRequest("no_labels", "labels", "labels is empty: give at least one label")
	}
	if len(req.Labels) > s.opts.MaxItems {
		return badRequest("too_many_items", "labels", "%d labels; the limit is %d", len(req.Labels), s.opts.MaxItems)
	}
	for i, l := range req.Labels {
		param := fmt.Sprintf("labels[%d]", i)
		if strings.TrimSpace(l) == "" {
			return badRequest("empty_label", param, "%s is empty", param)
		}
		if err := s.checkText(l, param); err != nil {
			return err
		}
	}
	for i, t := range req.Templates {
		param := fmt.Sprintf("templates[%d]", i)
		if !strings.Contains(t, "{}") {
			return badRequest("invalid_template", param, "%s %q has no \"{}\" for the label", param, t)
		}
		if err := s.checkText(t, param); err != nil {
			return err
		}
	}
	per := max(len(req.Templates), 1)
	if n := len(req.Labels) * per; n > s.opts.MaxLabelTexts {
		return badRequest("too_many_items", "templates", "labels × templates = %d texts; the limit is %d", n, s.opts.MaxLabelTexts)
	}
	setLogItems(r, len(images)+len(req.Labels)*per)

	texts := req.Labels
	if len(req.Templates) > 0 {
		texts = make([]string, 0, len(req.Labels)*per)
		for _, l := range req.Labels {
			for _, t := range req.Templates {
				texts = append(texts, strings.ReplaceAll(t, "{}", l))
			}
		}
	}
	pixels, err := s.preprocess(r.Context(), images, "image")
	if err != nil {
		return err
	}
	textEmb, imageEmb, err := s.encode(r.Context(), texts, pixels)
	if err != nil {
		return err
	}
	// One unit vector per label: the mean of its template embeddings,
	// normalised again (the official zero-shot classifier).
	classes := make([][]float32, len(req.Labels))
	for i := range classes {
		classes[i] = meanUnit(textEmb[i*per : (i+1)*per])
	}
	scale := math.Exp(float64(s.m.LogitScale()))
	resp := ClassifyResponse{Object: "classification", Model: s.opts.ModelID, Labels: req.Labels, Data: make([]Classification, len(imageEmb))}
	for i, img := range imageEmb {
		logits := make([]float64, len(classes))
		for j, c := range classes {
			logits[j] = scale * dot(img, c)
		}
		probs := softmax(logits)
		best := 0
		for j := range probs {
			if probs[j] > probs[best] {
				best = j
			}
		}
		resp.Data[i] = Classification{Index: i, Label: req.Labels[best], Score: probs[best], Probs: probs}
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// similarityRequest is the body of POST /v1/similarity.
type similarityRequest struct {
	Model  string   `json:"model"`
	Images []string `json:"images"` // base64 or data URLs
	Texts  []string `json:"texts"`
}

// SimilarityResponse is the body answered by POST /v1/similarity: one row
// per image, one column per text.
type SimilarityResponse struct {
	Object         string      `json:"object"` // "similarity"
	Model          string      `json:"model"`
	Similarity     [][]float32 `json:"similarity"`       // cosine similarities
	LogitsPerImage [][]float32 `json:"logits_per_image"` // exp(logit_scale) · cosine, as CLIP's forward
	LogitScale     float32     `json:"logit_scale"`      // exp(logit_scale)
}

func (s *Server) handleSimilarity(w http.ResponseWriter, r *http.Request) error {
	kind, err := bodyKind(r)
	if err != nil {
		return err
	}
	var req similarityRequest
	var images [][]byte
	if kind == "json" {
		if err := decodeJSON(r, &req); err != nil {
			return err
		}
		if len(req.Images) > s.opts.MaxItems {
			return badRequest("too_many_items", "images", "%d images; the limit is %d", len(req.Images), s.opts.MaxItems)
		}
		for i, e := range req.Images {
			b, err := decodeBase64(e, fmt.Sprintf("images[%d]", i))
			if err != nil {
				return err
			}
			images = append(images, b)
		}
	} else {
		parts, err := readMultipart(r, "image", "text", "model")
		if err != nil {
			return err
		}
		for _, p := range parts {
			switch p.name {
			case "image":
				images = append(images, p.value)
			case "text":
				req.Texts = append(req.Texts, string(p.value))
			case "model":
				req.Model = string(p.value)
			}
		}
	}
	if err := s.checkModel(req.Model); err != nil {
		return err
	}
	if len(images) == 0 || len(req.Texts) == 0 {
		return badRequest("missing_input", "", "send at least one image (\"images\") and one text (\"texts\")")
	}
	if n := len(images) + len(req.Texts); n > s.opts.MaxItems {
		return badRequest("too_many_items", "", "%d inputs; the limit is %d", n, s.opts.MaxItems)
	}
	for i, t := range req.Texts {
		if err := s.checkText(t, fmt.Sprintf("texts[%d]", i)); err != nil {
			return err
		}
	}
	setLogItems(r, len(images)+len(req.Texts))
	pixels, err := s.preprocess(r.Context(), images, "images")
	if err != nil {
		return err
	}
	textEmb, imageEmb, err := s.encode(r.Context(), req.Texts, pixels)
	if err != nil {
		return err
	}
	scale := float32(math.Exp(float64(s.m.LogitScale())))
	resp := SimilarityResponse{Object: "similarity", Model: s.opts.ModelID, LogitScale: scale,
		Similarity: make([][]float32, len(imageEmb)), LogitsPerImage: make([][]float32, len(imageEmb))}
	for i, img := range imageEmb {
		resp.Similarity[i] = make([]float32, len(textEmb))
		resp.LogitsPerImage[i] = make([]float32, len(textEmb))
		for j, t := range textEmb {
			c := float32(dot(img, t))
			resp.Similarity[i][j] = c
			resp.LogitsPerImage[i][j] = scale * c
		}
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func (s *Server) handleModels(w http.ResponseWriter, r *http.Request) {
	m := map[string]any{}
	for k, v := range s.opts.ModelInfo {
		m[k] = v
	}
	m["id"], m["object"], m["created"], m["owned_by"] = s.opts.ModelID, "model", s.created, "tinyclip"
	m["embed_dim"] = s.m.EmbedDim()
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": []any{m}})
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "draining"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "model": s.opts.ModelID})
}

// dot is the inner product in float64 (the cosine of unit vectors).
func dot(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}

// meanUnit returns the normalised mean of unit vectors.
func meanUnit(vs [][]float32) []float32 {
	if len(vs) == 1 {
		return vs[0]
	}
	mean := make([]float32, len(vs[0]))
	for _, v := range vs {
		for k, x := range v {
			mean[k] += x
		}
	}
	var n float64
	for k := range mean {
		mean[k] /= float32(len(vs))
		n += float64(mean[k]) * float64(mean[k])
	}
	n = math.Max(math.Sqrt(n), 1e-12)
	for k := range mean {
		mean[k] = float32(float64(mean[k]) / n)
	}
	return mean
}

// softmax in float64, returned as float32.
func softmax(x []float64) []float32 {
	mx := math.Inf(-1)
	for _, v := range x {
		mx = math.Max(mx, v)
	}
	var sum float64
	e := make([]float64, len(x))
	for i, v := range x {
		e[i] = math.Exp(v - mx)
		sum += e[i]
	}
	out := make([]float32, len(x))
	for i := range e {
		out[i] = float32(e[i] / sum)
	}
	return out
}
