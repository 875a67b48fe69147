package serve

import (
	"context"

	"github.com/tinyclip-go/tinyclip"
)

// Encoder embeds texts and encoded images through a Server's batchers, so
// that handlers mounted with Handle (image search) share its engine
// batches and queue limits. It has the methods of *tinyclip.Model that
// such handlers use. Calls with EncodeOptions (Raw) bypass the batchers.
type Encoder struct{ s *Server }

// Encoder returns the server's batching encoder.
func (s *Server) Encoder() *Encoder { return &Encoder{s} }

// EncodeTexts returns one L2-normalised embedding per text.
func (e *Encoder) EncodeTexts(ctx context.Context, texts []string, opts ...tinyclip.EncodeOption) ([][]float32, error) {
	if len(opts) > 0 {
		return e.s.m.EncodeTexts(ctx, texts, opts...)
	}
	return e.s.texts.do(ctx, texts)
}

// EncodeImageBytes decodes images (within the server's pixel limit) and
// returns one L2-normalised embedding per image.
func (e *Encoder) EncodeImageBytes(ctx context.Context, data [][]byte, opts ...tinyclip.EncodeOption) ([][]float32, error) {
	pixels, err := e.s.preprocess(ctx, data, "image")
	if err != nil || len(pixels) == 0 {
		return nil, err
	}
	if len(opts) > 0 {
		flat := make([]float32, 0, len(pixels)*len(pixels[0]))
		for _, p := range pixels {
			flat = append(flat, p...)
		}
		return e.s.m.EncodePixels(ctx, flat, len(pixels), opts...)
	}
	return e.s.images.do(ctx, pixels)
}
