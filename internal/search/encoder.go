package search

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"reflect"

	"github.com/tinyclip-go/tinyclip"
)

// Encoder embeds texts and encoded image files into a shared space,
// returning L2-normalised vectors. *tinyclip.Model satisfies it, as does a
// service's batching wrapper around one.
type Encoder interface {
	EncodeTexts(ctx context.Context, texts []string, opts ...tinyclip.EncodeOption) ([][]float32, error)
	EncodeImageBytes(ctx context.Context, data [][]byte, opts ...tinyclip.EncodeOption) ([][]float32, error)
}

// pixelEncoder is the optional fast path for indexing: decoding and
// preprocessing one file at a time in parallel goroutines, then encoding
// whole batches of pixels. *tinyclip.Model satisfies it.
type pixelEncoder interface {
	Preprocess(data []byte) ([]float32, error)
	EncodePixels(ctx context.Context, pixels []float32, n int, opts ...tinyclip.EncodeOption) ([][]float32, error)
}

// fingerprintMinCosine is how close a model's embeddings of the reference
// text and image must be to the recorded ones for it to count as the same
// model. Kernel and precision differences (float16 vs float32 files of the
// same weights) stay above 0.999; unrelated models give cosines near 0.
const fingerprintMinCosine = 0.99

// probeText is embedded to fingerprint a model. Its tokens are among those
// that the random-weight test models know.
const probeText = "a photo of a cat"

// probeImage returns a fixed 224×224 RGB PNG, the image embedded to
// fingerprint a model.
func probeImage() []byte {
	const s = 224
	img := image.NewRGBA(image.Rect(0, 0, s, s))
	for y := 0; y < s; y++ {
		for x := 0; x < s; x++ {
			c := color.RGBA{uint8(x * 255 / (s - 1)), uint8(y * 255 / (s - 1)), 0, 255}
			if (x/28+y/28)%2 == 0 {
				c.B = 200
			}
			if dx, dy := x-150, y-80; dx*dx+dy*dy < 40*40 {
				c = color.RGBA{240, 240, 40, 255}
			}
			img.Set(x, y, c)
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		panic(err) // encoding an in-memory RGBA image cannot fail
	}
	return buf.Bytes()
}

// fingerprint returns the model's embeddings of probeText and probeImage,
// one after the other.
func fingerprint(ctx context.Context, enc Encoder) ([]float32, error) {
	t, err := enc.EncodeTexts(ctx, []string{probeText})
	if err != nil {
		return nil, fmt.Errorf("search: fingerprinting the model: %w", err)
	}
	im, err := enc.EncodeImageBytes(ctx, [][]byte{probeImage()})
	if err != nil {
		return nil, fmt.Errorf("search: fingerprinting the model: %w", err)
	}
	if len(t) != 1 || len(im) != 1 || len(t[0]) == 0 || len(t[0]) != len(im[0]) {
		return nil, fmt.Errorf("search: fingerprinting the model: encoder returned %d text and %d image embeddings of different or zero widths", len(t), len(im))
	}
	return append(append([]float32(nil), t[0]...), im[0]...), nil
}

// comparableEncoder reports whether enc can be a map key.
func comparableEncoder(enc Encoder) bool {
	return enc != nil && reflect.TypeOf(enc).Comparable()
}
