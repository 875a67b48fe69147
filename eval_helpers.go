package tinyclip

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/tinyclip-go/tinyclip/internal/checkpoint"
	"github.com/tinyclip-go/tinyclip/internal/imageproc"
)

// WeightsHash returns a hex SHA-256 that identifies what the model computes
// from the files it was loaded from: the contents of its weight files, of
// the tokenizer file of its directory, and its resolved architecture (so a
// WithConfig override counts). A vocabulary given with WithVocab is not
// included; callers that cache results per model should add it themselves.
// It reads every weight file once, which takes about a second per GB.
func (m *Model) WeightsHash() (string, error) {
	ck, err := checkpoint.Open(m.path)
	if err != nil {
		return "", err
	}
	files, tok := ck.Files, ck.TokenizerPath
	ck.Close()
	h := sha256.New()
	put := func(label string, r io.Reader) error {
		fmt.Fprintf(h, "%s\x00", label)
		_, err := io.Copy(h, r)
		return err
	}
	for _, f := range append(files, tok) {
		if f == "" {
			continue
		}
		fh, err := os.Open(f)
		if err != nil {
			return "", fmt.Errorf("tinyclip: weights hash: %w", err)
		}
		err = put("file", fh)
		fh.Close()
		if err != nil {
			return "", fmt.Errorf("tinyclip: weights hash: %s: %w", f, err)
		}
	}
	cfg, err := json.Marshal(m.Config())
	if err != nil {
		return "", fmt.Errorf("tinyclip: weights hash: %w", err)
	}
	fmt.Fprintf(h, "config\x00%s", cfg)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// PreprocessRGB is Preprocess with the image converted to RGB right after
// decoding, before the resize and crop, as torchvision's ImageFolder loader
// does (Image.open(f).convert("RGB")) in the official zero-shot evaluation.
// The result differs from Preprocess only for non-RGB files (palette, alpha,
// greyscale, 16-bit).
func (m *Model) PreprocessRGB(data []byte) ([]float32, error) {
	img, err := imageproc.Decode(data, m.pre.MaxPixels)
	if err != nil {
		return nil, err
	}
	rgb, err := imageproc.ConvertRGB(img)
	if err != nil {
		return nil, err
	}
	out, err := imageproc.Transform(rgb, m.pre)
	if err != nil {
		return nil, err
	}
	dst := make([]float32, 3*m.pre.Size*m.pre.Size)
	if err := imageproc.ToTensor(out, m.pre, dst); err != nil {
		return nil, err
	}
	return dst, nil
}
