package serve

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/tinyclip-go/tinyclip/internal/imageproc"
)

// input is one text or image of a request.
type input struct {
	isImage bool
	text    string
	image   []byte // the encoded image file
}

// bodyKind returns "json" or "multipart" from the Content-Type, or a 415.
func bodyKind(r *http.Request) (string, error) {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	switch {
	case err == nil && mt == "application/json":
		return "json", nil
	case err == nil && mt == "multipart/form-data":
		return "multipart", nil
	}
	return "", errorf(http.StatusUnsupportedMediaType, "unsupported_media_type", "",
		"Content-Type %q: send application/json or multipart/form-data", ct)
}

// decodeJSON decodes the body into v; unknown fields are ignored.
func decodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return badRequest("invalid_json", te.Field, "field %q: %s where %s was expected", te.Field, te.Value, te.Type)
		}
		return badRequest("invalid_json", "", "request body is not valid JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return badRequest("invalid_json", "", "request body has data after the JSON value")
	}
	return nil
}

// formPart is one part of a multipart body.
type formPart struct {
	name   string
	value  []byte
	isFile bool
}

// readMultipart reads every part of a multipart body, in order; only the
// names in allowed are accepted.
func readMultipart(r *http.Request, allowed ...string) ([]formPart, error) {
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, badRequest("invalid_multipart", "", "multipart body: %v", err)
	}
	var parts []formPart
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return parts, nil
		}
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return nil, err
			}
			return nil, badRequest("invalid_multipart", "", "multipart body: %v", err)
		}
		name := p.FormName()
		ok := false
		for _, a := range allowed {
			ok = ok || name == a
		}
		if !ok {
			return nil, badRequest("unknown_field", name, "unknown form field %q (accepted: %s)", name, strings.Join(allowed, ", "))
		}
		b, err := io.ReadAll(p)
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return nil, err
			}
			return nil, badRequest("invalid_multipart", name, "multipart field %q: %v", name, err)
		}
		parts = append(parts, formPart{name: name, value: b, isFile: p.FileName() != ""})
	}
}

// decodeBase64 decodes an image given as base64 (standard or URL alphabet,
// padded or not, whitespace ignored) or as a data: URL.
func decodeBase64(s, param string) ([]byte, error) {
	if rest, ok := strings.CutPrefix(s, "data:"); ok {
		_, data, found := strings.Cut(rest, ",")
		if !found || !strings.Contains(rest[:len(rest)-len(data)], ";base64") {
			return nil, badRequest("invalid_base64", param, "%s: data URLs must be base64 (data:image/png;base64,...)", param)
		}
		s = data
	}
	s = strings.Map(func(r rune) rune {
		if r == ' ' || r == '\n' || r == '\r' || r == '\t' {
			return -1
		}
		return r
	}, s)
	s = strings.TrimRight(s, "=")
	enc := base64.RawStdEncoding
	if strings.ContainsAny(s, "-_") {
		enc = base64.RawURLEncoding
	}
	b, err := enc.DecodeString(s)
	if err != nil {
		return nil, badRequest("invalid_base64", param, "%s is not valid base64: %v", param, err)
	}
	if len(b) == 0 {
		return nil, badRequest("invalid_image", param, "%s is empty", param)
	}
	return b, nil
}

// checkText enforces the text limits.
func (s *Server) checkText(t, param string) error {
	if !utf8.ValidString(t) {
		return badRequest("invalid_text", param, "%s is not valid UTF-8", param)
	}
	if n := utf8.RuneCountInString(t); n > s.opts.MaxTextChars {
		return badRequest("text_too_long", param, "%s has %d characters; the limit is %d (the model reads at most 77 tokens)", param, n, s.opts.MaxTextChars)
	}
	return nil
}

// checkModel accepts an empty model name, the served id or an alias.
func (s *Server) checkModel(name string) error {
	if name == "" || name == s.opts.ModelID {
		return nil
	}
	for _, a := range s.opts.Aliases {
		if name == a {
			return nil
		}
	}
	return errorf(http.StatusNotFound, "model_not_found", "model", "model %q is not served here (this server serves %q)", name, s.opts.ModelID)
}

// preprocess decodes and transforms images in parallel (bounded by the
// decode semaphore), refusing images above the pixel limit from their
// headers.
func (s *Server) preprocess(ctx context.Context, images [][]byte, param string) ([][]float32, error) {
	names := make([]string, len(images))
	for i, data := range images {
		names[i] = param
		if len(images) > 1 {
			names[i] = fmt.Sprintf("%s[%d]", param, i)
		}
		cfg, err := imageproc.DecodeConfig(data)
		if err != nil {
			return nil, badRequest("invalid_image", names[i], "%s: %v", names[i], err)
		}
		if px := int64(cfg.Width) * int64(cfg.Height); px > s.opts.MaxImagePixels {
			return nil, badRequest("image_too_large", names[i], "%s: %s image of %d×%d = %d pixels exceeds the limit of %d pixels",
				names[i], cfg.Format, cfg.Width, cfg.Height, px, s.opts.MaxImagePixels)
		}
	}
	out := make([][]float32, len(images))
	errs := make([]error, len(images))
	var wg sync.WaitGroup
	for i, data := range images {
		select {
		case s.decode <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return nil, ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-s.decode }()
			p, err := s.m.Preprocess(data)
			if err != nil {
				ae := toAPIError(err)
				ae.message, ae.param = names[i]+": "+ae.message, names[i]
				err = ae
			}
			out[i], errs[i] = p, err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// encode embeds texts and preprocessed images through the batchers, both
// kinds at once.
func (s *Server) encode(ctx context.Context, texts []string, pixels [][]float32) (textEmb, imageEmb [][]float32, err error) {
	var wg sync.WaitGroup
	var terr error
	if len(texts) > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			textEmb, terr = s.texts.do(ctx, texts)
		}()
	}
	if len(pixels) > 0 {
		imageEmb, err = s.images.do(ctx, pixels)
	}
	wg.Wait()
	if err == nil {
		err = terr
	}
	return textEmb, imageEmb, err
}
