// Package imageproc turns image files into the model input of TinyCLIP
// exactly as the official open_clip evaluation transform does with Pillow 9.4
// and torchvision 0.14: decoding to the image mode Pillow opens a file in,
// Pillow's fixed-point resampling in that mode, torchvision's centre crop,
// Pillow's conversion to RGB, then ToTensor and Normalize in float32.
//
// Decode reads PNG, JPEG, GIF (first frame), BMP and WebP. JPEG files are
// decoded with libjpeg's integer IDCT, fancy upsampling and colour tables and
// lossy WebP with libwebp's upsampler and YUV conversion, so that pixels
// match Pillow's. Image dimensions are read first and files above a pixel
// budget are refused before any pixel memory is allocated.
//
// Transform applies the eval transform to a decoded Image, Preprocess and
// PreprocessUint8 run the whole pipeline on file bytes, and RandomResizedCrop
// is the training-time crop. All functions are safe for concurrent use.
//
// Files Pillow reads but this package refuses, with ErrUnsupported:
// arithmetic-coded, lossless and hierarchical JPEG, animated WebP, BMP with
// run-length or 16-bit encodings; other formats (TIFF, ICO, …) give
// ErrUnknownFormat. Decode is stricter than Pillow with damaged files: a
// PNG whose IEND chunk, last checksum or zlib trailer is cut off, which
// Pillow still decodes, is an error (ErrCorrupt), as is any other truncated
// or invalid PNG, JPEG, BMP or WebP. A GIF only needs its first frame.
package imageproc

import (
	"errors"
	"fmt"
)

// Mode is a Pillow image mode: the channel layout of an Image.
type Mode string

// The modes Decode produces. Pix holds one byte per channel, interleaved,
// except for ModeI, whose values are in I.
const (
	ModeRGB  Mode = "RGB"  // red, green, blue
	ModeRGBA Mode = "RGBA" // red, green, blue, alpha (not premultiplied)
	ModeL    Mode = "L"    // 8-bit grey
	ModeLA   Mode = "LA"   // 8-bit grey and alpha (not premultiplied)
	ModeP    Mode = "P"    // 8-bit index into Palette
	Mode1    Mode = "1"    // bilevel, stored one byte per pixel as 0 or 255
	ModeI    Mode = "I"    // 32-bit signed grey (16-bit PNG), values in I
	ModeCMYK Mode = "CMYK" // cyan, magenta, yellow, black; 0 is no ink
)

// Channels returns the number of bytes per pixel in Pix for mode m, or 0 for
// ModeI and unknown modes.
func (m Mode) Channels() int {
	switch m {
	case ModeL, ModeP, Mode1:
		return 1
	case ModeLA:
		return 2
	case ModeRGB:
		return 3
	case ModeRGBA, ModeCMYK:
		return 4
	}
	return 0
}

// Image is a raster in a Pillow mode.
type Image struct {
	Mode          Mode
	Width, Height int
	// Pix holds the pixels row by row, Mode.Channels() bytes each, for every
	// mode but ModeI.
	Pix []uint8
	// I holds the pixels of a ModeI image, row by row.
	I []int32
	// Palette is the colour table of a ModeP image. An index without an
	// entry stands for the grey (i, i, i), as in Pillow.
	Palette [][3]uint8
}

// check reports an error when m's fields are inconsistent.
func (m *Image) check() error {
	if m == nil {
		return errors.New("imageproc: nil image")
	}
	if m.Width <= 0 || m.Height <= 0 {
		return fmt.Errorf("imageproc: invalid image size %dx%d", m.Width, m.Height)
	}
	n := int64(m.Width) * int64(m.Height)
	if m.Mode == ModeI {
		if int64(len(m.I)) != n {
			return fmt.Errorf("imageproc: mode I image %dx%d has %d values, want %d", m.Width, m.Height, len(m.I), n)
		}
		return nil
	}
	c := m.Mode.Channels()
	if c == 0 {
		return fmt.Errorf("imageproc: unsupported mode %q", m.Mode)
	}
	if int64(len(m.Pix)) != n*int64(c) {
		return fmt.Errorf("imageproc: mode %s image %dx%d has %d bytes, want %d", m.Mode, m.Width, m.Height, len(m.Pix), n*int64(c))
	}
	if m.Mode == ModeP && len(m.Palette) > 256 {
		return fmt.Errorf("imageproc: palette has %d entries, want at most 256", len(m.Palette))
	}
	return nil
}

// Errors callers can test for with errors.Is.
var (
	// ErrUnknownFormat reports data that no decoder recognises.
	ErrUnknownFormat = errors.New("imageproc: unknown image format")
	// ErrImageTooLarge reports an image with more pixels than the budget.
	ErrImageTooLarge = errors.New("imageproc: image too large")
	// ErrCorrupt reports a file in a known format that is truncated or
	// invalid.
	ErrCorrupt = errors.New("imageproc: corrupt or truncated image")
	// ErrUnsupported reports a valid file using a feature this package does
	// not decode (for example arithmetic-coded JPEG or animated WebP).
	ErrUnsupported = errors.New("imageproc: unsupported image feature")
)

// DefaultMaxPixels is Pillow's refusal limit for decompression bombs:
// 2 × Image.MAX_IMAGE_PIXELS = 178,956,970 pixels.
const DefaultMaxPixels int64 = 2 * 89478485

// Variant selects the order of the preprocessing steps.
type Variant int

const (
	// OpenCLIP is the official open_clip / TinyCLIP eval transform: resize
	// and centre crop in the decoded mode (crop offsets rounded half to
	// even), then convert to RGB.
	OpenCLIP Variant = iota
	// HF is Hugging Face's CLIPImageProcessor: convert to RGB first, then
	// resize, then centre crop with offsets rounded down.
	HF
)

// String returns the variant's name.
func (v Variant) String() string {
	switch v {
	case OpenCLIP:
		return "open_clip"
	case HF:
		return "hf"
	}
	return fmt.Sprintf("Variant(%d)", int(v))
}

// Options configures the transform.
type Options struct {
	// Size is the side of the square output (224 for every TinyCLIP model).
	Size int
	// Mean and Std are the per-channel normalisation constants.
	Mean, Std [3]float32
	// Variant selects open_clip's or Hugging Face's step order.
	Variant Variant
	// MaxPixels is the largest width×height Decode accepts; 0 or less means
	// DefaultMaxPixels.
	MaxPixels int64
}

// maxSize bounds Options.Size so that output buffers stay reasonable.
const maxSize = 8192

// CLIP's normalisation constants, rounded to float32 from the float64 values
// of open_clip (OPENAI_DATASET_MEAN, OPENAI_DATASET_STD).
var (
	clipMean = [3]float32{f32(0.48145466), f32(0.4578275), f32(0.40821073)}
	clipStd  = [3]float32{f32(0.26862954), f32(0.26130258), f32(0.27577711)}
)

// f32 rounds a float64 to float32 at run time, as NumPy and PyTorch do.
func f32(x float64) float32 { return float32(x) }

// DefaultOptions returns the options of the TinyCLIP eval transform: size
// 224, CLIP mean and std, the open_clip variant and Pillow's pixel budget.
func DefaultOptions() Options {
	return Options{Size: 224, Mean: clipMean, Std: clipStd, Variant: OpenCLIP, MaxPixels: DefaultMaxPixels}
}

func (o *Options) check() error {
	if o.Size <= 0 || o.Size > maxSize {
		return fmt.Errorf("imageproc: size %d out of range [1, %d]", o.Size, maxSize)
	}
	if o.Variant != OpenCLIP && o.Variant != HF {
		return fmt.Errorf("imageproc: unknown variant %d", int(o.Variant))
	}
	for c, s := range o.Std {
		if s == 0 {
			return fmt.Errorf("imageproc: std[%d] is zero", c)
		}
	}
	return nil
}

func (o *Options) maxPixels() int64 {
	if o.MaxPixels <= 0 {
		return DefaultMaxPixels
	}
	return o.MaxPixels
}
