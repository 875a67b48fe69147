// Package tinyclip runs TinyCLIP and CLIP models in pure Go: it loads a
// checkpoint in any of the official formats (TinyCLIP .pt files, open_clip
// safetensors, Hugging Face directories), encodes images and texts into the
// shared embedding space, and classifies images zero-shot against text labels.
//
// The results equal the official PyTorch implementation's within float32
// rounding: the tokenizer, the image preprocessing (Pillow's bicubic resize,
// torchvision's crop) and every tower are reproduced exactly.
//
// A loaded Model is immutable and safe for concurrent use.
package tinyclip

import (
	"context"
	"errors"
	"fmt"
	"image"
	"math"
	"os"
	"time"

	"github.com/tinyclip-go/tinyclip/internal/checkpoint"
	"github.com/tinyclip-go/tinyclip/internal/config"
	"github.com/tinyclip-go/tinyclip/internal/engine"
	"github.com/tinyclip-go/tinyclip/internal/imageproc"
	"github.com/tinyclip-go/tinyclip/internal/tokenizer"
)

// Errors callers can test for with errors.Is.
var (
	// ErrEmptyText is returned where a non-empty text is required (a
	// classification label, for instance). Encoding an empty string is
	// allowed: it embeds as the official tokenizer's [SOT, EOT].
	ErrEmptyText = errors.New("tinyclip: empty text")
	// ErrNoLabels is returned by Classify without labels.
	ErrNoLabels = errors.New("tinyclip: no labels")
	// ErrImageTooLarge is returned for images above the pixel budget; it is
	// detected from the header, before the image is decoded.
	ErrImageTooLarge = imageproc.ErrImageTooLarge
	// ErrUnsupportedFormat is returned for files that are not a known
	// checkpoint format.
	ErrUnsupportedFormat = checkpoint.ErrUnsupportedFormat
	// ErrForbiddenGlobal is returned for pickles that reference anything but
	// the tensor-rebuilding globals of a state dict.
	ErrForbiddenGlobal = checkpoint.ErrForbiddenGlobal
)

// Model is a loaded CLIP model with its tokenizer and image preprocessing.
type Model struct {
	path   string
	format string
	arch   *config.Arch
	eng    *engine.Model
	tok    *tokenizer.Tokenizer
	pre    imageproc.Options
}

type options struct {
	threads    int
	configPath string
	vocabPath  string
	maxPixels  int64
	hfCrop     bool
	precision  Precision
}

// Option configures Load.
type Option func(*options)

// WithThreads sets the number of goroutines the engine uses per call
// (default GOMAXPROCS).
func WithThreads(n int) Option { return func(o *options) { o.threads = n } }

// SetSpinWait sets how long the engine's idle threads poll for work before
// they sleep, for every model of the process, and returns the previous
// setting. The default, 0, sleeps at once: idle threads use no CPU, but a
// call split over several threads (a single image or text with WithThreads
// above 1) wakes a sleeping thread for each of its parallel steps, which
// costs tens of microseconds on virtual machines. A wait of about 50µs
// trades some CPU after each call for that latency (measured on a 2-vCPU
// VM: one TinyCLIP-ViT-40M/32 image at two threads 23–26 → 22 ms, a
// Text-19M prompt 3.9–4.6 → 3.3 ms; docs/performance.md). ONNX Runtime
// polls by default in the same way.
func SetSpinWait(d time.Duration) time.Duration { return engine.SetSpinWait(d) }

// WithConfig takes the architecture from a config.json (official TinyCLIP
// form, open_clip_config.json, or a Hugging Face CLIPConfig) instead of the
// checkpoint's own. Tensor shapes still win; a disagreement is an error.
// Needed for checkpoints whose head width is not 64 and that carry no config.
func WithConfig(path string) Option { return func(o *options) { o.configPath = path } }

// WithVocab loads the tokenizer vocabulary from a file (tokenizer.json,
// vocab.json + merges.txt, or bpe_simple_vocab_16e6.txt.gz) instead of the
// built-in CLIP vocabulary.
func WithVocab(path string) Option { return func(o *options) { o.vocabPath = path } }

// WithMaxPixels sets the largest image, in pixels, that is decoded (default:
// Pillow's limit of 178,956,970). Larger images fail with ErrImageTooLarge.
func WithMaxPixels(n int64) Option { return func(o *options) { o.maxPixels = n } }

// WithHFPreprocessing selects Hugging Face CLIPImageProcessor preprocessing
// (convert to RGB first, floor centre crop) instead of open_clip's.
func WithHFPreprocessing() Option { return func(o *options) { o.hfCrop = true } }

// Load reads the checkpoint at path — a TinyCLIP/open_clip .pt file, a
// safetensors file, or a directory (official config.json + weights, an
// open_clip directory, or a Hugging Face CLIPModel directory) — and builds the
// model.
func Load(ctx context.Context, path string, opts ...Option) (*Model, error) {
	var o options
	for _, f := range opts {
		f(&o)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ck, err := checkpoint.Open(path)
	if err != nil {
		return nil, err
	}
	defer ck.Close()

	cfg := ck.Config
	if o.configPath != "" {
		cfg, err = loadConfig(o.configPath)
		if err != nil {
			return nil, err
		}
	}
	shapes := make(map[string][]int, len(ck.Tensors))
	for name, t := range ck.Tensors {
		shapes[name] = t.Shape
	}
	arch, err := config.Resolve(cfg, shapes)
	if err != nil {
		return nil, fmt.Errorf("tinyclip: %s: %w", path, err)
	}
	if err := config.Check(arch, shapes); err != nil {
		return nil, fmt.Errorf("tinyclip: %s: %w", path, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	prec, err := enginePrecision(o.precision)
	if err != nil {
		return nil, err
	}
	eng, err := engine.Build(arch, ck.Tensors, engine.Options{Threads: o.threads, Precision: prec})
	if err != nil {
		return nil, fmt.Errorf("tinyclip: %s: %w", path, err)
	}

	var tok *tokenizer.Tokenizer
	switch {
	case o.vocabPath != "":
		tok, err = tokenizer.Load(o.vocabPath)
	case ck.TokenizerPath != "":
		tok, err = tokenizer.Load(ck.TokenizerPath)
	default:
		tok, err = tokenizer.Default()
	}
	if err != nil {
		return nil, err
	}

	pre := imageproc.DefaultOptions()
	pre.Size = arch.Vision.ImageSize
	if p := ck.Preprocess; p != nil {
		pre.Mean, pre.Std = p.Mean, p.Std
	}
	if o.maxPixels > 0 {
		pre.MaxPixels = o.maxPixels
	}
	if o.hfCrop {
		pre.Variant = imageproc.HF
	}
	return &Model{path: path, format: ck.Format, arch: arch, eng: eng, tok: tok, pre: pre}, nil
}

func loadConfig(path string) (*config.Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tinyclip: config: %w", err)
	}
	cfg, err := checkpoint.ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("tinyclip: config %s: %w", path, err)
	}
	return cfg, nil
}

// EmbedDim returns the width of the embeddings.
func (m *Model) EmbedDim() int { return m.arch.EmbedDim }

// LogitScale returns the model's stored logit scale s; similarities are
// multiplied by exp(s) before the softmax in Classify.
func (m *Model) LogitScale() float32 { return m.eng.LogitScale() }

// Format names the checkpoint format the model was loaded from.
func (m *Model) Format() string { return m.format }

// Config returns the model's architecture in the official config.json form
// (with per-layer lists for irregular, auto-pruned towers).
func (m *Model) Config() *config.Config { return m.arch.Config() }

// EncodeOption modifies an Encode call.
type EncodeOption func(*encodeOptions)

type encodeOptions struct{ raw bool }

// Raw returns the towers' raw outputs (the official encode_image /
// encode_text) instead of L2-normalised embeddings.
func Raw() EncodeOption { return func(o *encodeOptions) { o.raw = true } }

func applyEncode(opts []EncodeOption) encodeOptions {
	var o encodeOptions
	for _, f := range opts {
		f(&o)
	}
	return o
}

// Tokenize returns the token ids of text as the model's text tower sees them:
// SOT, the BPE ids, EOT, truncated to the context length with EOT last.
func (m *Model) Tokenize(text string) ([]int, error) {
	return m.tok.TokenizeN(text, m.arch.Text.ContextLength)
}

// EncodeTexts returns one embedding per text, L2-normalised unless Raw is
// given. An empty string is valid text.
func (m *Model) EncodeTexts(ctx context.Context, texts []string, opts ...EncodeOption) ([][]float32, error) {
	if len(texts) == 0 {
		return nil, nil
	}
	ids := make([][]int, len(texts))
	for i, t := range texts {
		var err error
		if ids[i], err = m.Tokenize(t); err != nil {
			return nil, fmt.Errorf("tinyclip: text %d: %w", i, err)
		}
	}
	flat, err := m.eng.EncodeTexts(ctx, ids)
	if err != nil {
		return nil, err
	}
	return m.split(flat, len(texts), applyEncode(opts)), nil
}

// EncodeImages returns one embedding per image, L2-normalised unless Raw is
// given. Go images are mapped onto the closest Pillow mode before the
// open_clip transform; for results identical to the official pipeline pass
// the encoded file to EncodeImageBytes.
func (m *Model) EncodeImages(ctx context.Context, images []image.Image, opts ...EncodeOption) ([][]float32, error) {
	if len(images) == 0 {
		return nil, nil
	}
	s := m.pre.Size
	pixels := make([]float32, len(images)*3*s*s)
	for i, img := range images {
		if img == nil {
			return nil, fmt.Errorf("tinyclip: image %d is nil", i)
		}
		rgb, err := imageproc.Transform(imageproc.FromImage(img), m.pre)
		if err != nil {
			return nil, fmt.Errorf("tinyclip: image %d: %w", i, err)
		}
		if err := imageproc.ToTensor(rgb, m.pre, pixels[i*3*s*s:(i+1)*3*s*s]); err != nil {
			return nil, fmt.Errorf("tinyclip: image %d: %w", i, err)
		}
	}
	return m.encodePixels(ctx, pixels, len(images), opts)
}

// EncodeImageBytes decodes and encodes images given as encoded files (PNG,
// JPEG, GIF, WebP, BMP), exactly as the official pipeline.
func (m *Model) EncodeImageBytes(ctx context.Context, data [][]byte, opts ...EncodeOption) ([][]float32, error) {
	if len(data) == 0 {
		return nil, nil
	}
	s := m.pre.Size
	pixels := make([]float32, len(data)*3*s*s)
	for i, d := range data {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p, err := imageproc.Preprocess(d, m.pre)
		if err != nil {
			return nil, fmt.Errorf("tinyclip: image %d: %w", i, err)
		}
		copy(pixels[i*3*s*s:], p)
	}
	return m.encodePixels(ctx, pixels, len(data), opts)
}

// Preprocess decodes an encoded image file and returns the model input
// tensor [3,S,S] (CHW, normalised) of the open_clip eval transform.
func (m *Model) Preprocess(data []byte) ([]float32, error) {
	return imageproc.Preprocess(data, m.pre)
}

// EncodePixels encodes preprocessed images: n tensors [3,S,S] (CHW,
// normalised) laid out one after another.
func (m *Model) EncodePixels(ctx context.Context, pixels []float32, n int, opts ...EncodeOption) ([][]float32, error) {
	return m.encodePixels(ctx, pixels, n, opts)
}

func (m *Model) encodePixels(ctx context.Context, pixels []float32, n int, opts []EncodeOption) ([][]float32, error) {
	flat, err := m.eng.EncodeImages(ctx, pixels, n)
	if err != nil {
		return nil, err
	}
	return m.split(flat, n, applyEncode(opts)), nil
}

func (m *Model) split(flat []float32, n int, o encodeOptions) [][]float32 {
	e := len(flat) / n
	out := make([][]float32, n)
	for i := range out {
		out[i] = flat[i*e : (i+1)*e : (i+1)*e]
		if !o.raw {
			Normalize(out[i])
		}
	}
	return out
}

// Normalize scales v to unit L2 norm in place, as PyTorch's F.normalize
// (the norm is clamped below at 1e-12), and returns it.
func Normalize(v []float32) []float32 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	n := math.Max(math.Sqrt(s), 1e-12)
	for i := range v {
		v[i] = float32(float64(v[i]) / n)
	}
	return v
}

// Cosine returns the cosine similarity of a and b (0 when either is zero or
// their lengths differ).
func Cosine(a, b []float32) float32 {
	if len(a) != len(b) {
		return 0
	}
	var ab, aa, bb float64
	for i := range a {
		ab += float64(a[i]) * float64(b[i])
		aa += float64(a[i]) * float64(a[i])
		bb += float64(b[i]) * float64(b[i])
	}
	if aa == 0 || bb == 0 {
		return 0
	}
	return float32(ab / math.Sqrt(aa*bb))
}
