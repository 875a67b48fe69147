package imageproc

import (
	"bytes"
	"errors"
	"fmt"
	"image/png"

	"golang.org/x/image/bmp"

	"github.com/tinyclip-go/tinyclip/internal/imageproc/jpeg"
)

// Config is what an image file's header says: its format, the mode Pillow
// opens it in and its size.
type Config struct {
	Format        string // "PNG", "JPEG", "GIF", "BMP" or "WEBP" (Pillow's names)
	Mode          Mode
	Width, Height int
}

// format is one supported file format.
type format struct {
	name   string
	config func(data []byte) (Config, error)
	decode func(data []byte, cfg Config) (*Image, error)
}

var formats = []format{
	{"PNG", pngConfig, decodePNG},
	{"JPEG", jpegConfig, decodeJPEG},
	{"GIF", gifConfig, decodeGIF},
	{"BMP", bmpConfig, decodeBMP},
	{"WEBP", webpConfig, decodeWebP},
}

// sniff returns the format of data from its signature, as Pillow's plugins
// recognise them, or nil.
func sniff(data []byte) *format {
	var name string
	switch {
	case bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")):
		name = "PNG"
	case bytes.HasPrefix(data, []byte("\xff\xd8\xff")):
		name = "JPEG"
	case bytes.HasPrefix(data, []byte("GIF87a")), bytes.HasPrefix(data, []byte("GIF89a")):
		name = "GIF"
	case bytes.HasPrefix(data, []byte("BM")):
		name = "BMP"
	case len(data) >= 12 && string(data[:4]) == "RIFF" && string(data[8:12]) == "WEBP":
		name = "WEBP"
	default:
		return nil
	}
	for i := range formats {
		if formats[i].name == name {
			return &formats[i]
		}
	}
	return nil
}

// DecodeConfig reads the format, Pillow mode and size of an image from its
// header without decoding the pixels.
func DecodeConfig(data []byte) (Config, error) {
	f := sniff(data)
	if f == nil {
		return Config{}, unknownFormat(data)
	}
	cfg, err := f.config(data)
	if err != nil {
		return Config{}, wrapDecodeError(f.name, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return Config{}, fmt.Errorf("%w: %s: empty image (%dx%d)", ErrCorrupt, f.name, cfg.Width, cfg.Height)
	}
	cfg.Format = f.name
	return cfg, nil
}

// Decode decodes an image file into the mode Pillow 9.4's Image.open gives
// it (see Mode). Images with more than maxPixels pixels (DefaultMaxPixels
// when maxPixels is 0 or less) are refused with an error wrapping
// ErrImageTooLarge before their pixels are decoded. Data in no supported
// format gives an error wrapping ErrUnknownFormat; truncated or invalid files
// give ErrCorrupt, valid files using unsupported features ErrUnsupported.
//
// As Pillow does, Decode ignores EXIF orientation, ICC profiles, PNG gamma
// and every GIF frame after the first.
func Decode(data []byte, maxPixels int64) (*Image, error) {
	if maxPixels <= 0 {
		maxPixels = DefaultMaxPixels
	}
	cfg, err := DecodeConfig(data)
	if err != nil {
		return nil, err
	}
	if px := int64(cfg.Width) * int64(cfg.Height); px > maxPixels {
		return nil, fmt.Errorf("%w: %s image of %dx%d = %d pixels exceeds the limit of %d pixels",
			ErrImageTooLarge, cfg.Format, cfg.Width, cfg.Height, px, maxPixels)
	}
	f := sniff(data)
	m, err := f.decode(data, cfg)
	if err != nil {
		return nil, wrapDecodeError(f.name, err)
	}
	if m.Width != cfg.Width || m.Height != cfg.Height {
		return nil, fmt.Errorf("%w: %s: decoded size %dx%d differs from the header's %dx%d",
			ErrCorrupt, f.name, m.Width, m.Height, cfg.Width, cfg.Height)
	}
	return m, nil
}

func unknownFormat(data []byte) error {
	if len(data) == 0 {
		return fmt.Errorf("%w: empty data", ErrUnknownFormat)
	}
	n := min(len(data), 8)
	return fmt.Errorf("%w: data starts with % x", ErrUnknownFormat, data[:n])
}

// wrapDecodeError classifies a decoder's error as ErrUnsupported or
// ErrCorrupt and names the format.
func wrapDecodeError(name string, err error) error {
	if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrUnsupported) || errors.Is(err, ErrImageTooLarge) {
		return err
	}
	kind := ErrCorrupt
	var pu png.UnsupportedError
	var ju jpeg.UnsupportedError
	if errors.As(err, &pu) || errors.As(err, &ju) || errors.Is(err, bmp.ErrUnsupported) {
		kind = ErrUnsupported
	}
	return fmt.Errorf("%w: %s: %w", kind, name, err)
}

// corruptf returns an error wrapping ErrCorrupt.
func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
}

// unsupportedf returns an error wrapping ErrUnsupported.
func unsupportedf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrUnsupported}, args...)...)
}
