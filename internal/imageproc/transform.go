package imageproc

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// resizedSize is torchvision's output size for Resize(size) with an int:
// the shorter side becomes size, the longer int(size·long/short) computed in
// float64 as Python does.
func resizedSize(w, h, size int) (int, int) {
	short, long := w, h
	if h < w {
		short, long = h, w
	}
	nl := int(float64(size*long) / float64(short))
	if w <= h {
		return size, nl
	}
	return nl, size
}

// halfRoundEven is Python's round(n / 2): halves round to even.
func halfRoundEven(n int) int {
	return int(math.RoundToEven(float64(n) / 2))
}

// Transform applies the eval transform of opts.Variant to m and returns the
// opts.Size × opts.Size RGB image that ToTensor normalises.
//
// OpenCLIP (open_clip's image_transform(size, is_train=False)): resize the
// shorter side to Size with Pillow's bicubic filter in m's own mode (which
// means nearest neighbour for P and 1, premultiplied alpha for RGBA and LA;
// nothing happens when the size is already right), centre crop with offsets
// round((W−Size)/2) rounded half to even, then convert to RGB.
//
// HF (CLIPImageProcessor): convert to RGB first, then resize bicubically and
// centre crop with offsets (W−Size)/2 rounded down.
func Transform(m *Image, opts Options) (*Image, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	if err := m.check(); err != nil {
		return nil, err
	}
	size := opts.Size
	if opts.Variant == HF {
		rgb, err := ConvertRGB(m)
		if err != nil {
			return nil, err
		}
		w, h := resizedSize(rgb.Width, rgb.Height, size)
		left, top := (w-size)/2, (h-size)/2
		return resize(rgb, w, h, rect{left, top, left + size, top + size}), nil
	}
	w, h := resizedSize(m.Width, m.Height, size)
	left, top := halfRoundEven(w-size), halfRoundEven(h-size)
	return ConvertRGB(resize(m, w, h, rect{left, top, left + size, top + size}))
}

// ToTensor writes rgb (an RGB image opts.Size pixels square) into dst as a
// [3, Size, Size] float32 tensor, channel-major: torchvision's ToTensor
// (v/255) followed by Normalize ((x − Mean[c]) / Std[c]), each step rounded
// to float32 as PyTorch computes it. dst must hold 3·Size·Size values.
func ToTensor(rgb *Image, opts Options, dst []float32) error {
	if err := opts.check(); err != nil {
		return err
	}
	if err := rgb.check(); err != nil {
		return err
	}
	s := opts.Size
	if rgb.Mode != ModeRGB || rgb.Width != s || rgb.Height != s {
		return fmt.Errorf("imageproc: ToTensor needs an RGB image of %dx%d, got %s %dx%d", s, s, rgb.Mode, rgb.Width, rgb.Height)
	}
	if len(dst) < 3*s*s {
		return fmt.Errorf("imageproc: ToTensor destination holds %d values, want %d", len(dst), 3*s*s)
	}
	var lut [3][256]float32
	for c := range lut {
		for v := range lut[c] {
			x := float32(v) / 255
			lut[c][v] = (x - opts.Mean[c]) / opts.Std[c]
		}
	}
	plane := s * s
	for i := 0; i < plane; i++ {
		p := rgb.Pix[3*i : 3*i+3 : 3*i+3]
		dst[i] = lut[0][p[0]]
		dst[plane+i] = lut[1][p[1]]
		dst[2*plane+i] = lut[2][p[2]]
	}
	return nil
}

// Preprocess decodes an image file and returns the model input: a [3, S, S]
// float32 tensor (S = opts.Size), channel-major, normalised.
func Preprocess(data []byte, opts Options) ([]float32, error) {
	rgb, err := preprocess(data, opts)
	if err != nil {
		return nil, err
	}
	dst := make([]float32, 3*opts.Size*opts.Size)
	if err := ToTensor(rgb, opts, dst); err != nil {
		return nil, err
	}
	return dst, nil
}

// PreprocessUint8 decodes an image file and returns the transformed image
// before ToTensor: [S, S, 3] bytes, row-major, R, G, B.
func PreprocessUint8(data []byte, opts Options) ([]uint8, error) {
	rgb, err := preprocess(data, opts)
	if err != nil {
		return nil, err
	}
	return rgb.Pix, nil
}

func preprocess(data []byte, opts Options) (*Image, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	m, err := Decode(data, opts.maxPixels())
	if err != nil {
		return nil, err
	}
	return Transform(m, opts)
}

// RandomResizedCrop is the training transform's crop (torchvision 0.14
// RandomResizedCrop(Size, scale=(0.9, 1.0), ratio=(3/4, 4/3), BICUBIC))
// followed by the conversion to RGB. Up to ten times it draws an area
// fraction uniformly in [0.9, 1], a log-uniform aspect ratio in [3/4, 4/3]
// and, for a crop that fits, its top-left corner uniformly; otherwise it
// takes a centred crop with the aspect ratio clamped into [3/4, 4/3]. The
// crop is resized to Size×Size in m's mode (Pillow's resize rules, as in
// Transform) and converted to RGB.
//
// The official training loader converts images to RGB before this step;
// call ConvertRGB first to reproduce it. rng replaces PyTorch's generator, so
// the crops follow the same distribution but not the same sequence.
func RandomResizedCrop(m *Image, rng *rand.Rand, opts Options) (*Image, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	if err := m.check(); err != nil {
		return nil, err
	}
	if rng == nil {
		return nil, fmt.Errorf("imageproc: RandomResizedCrop needs a random source")
	}
	top, left, ch, cw := cropParams(m.Width, m.Height, rng)
	crop := resize(m, m.Width, m.Height, rect{left, top, left + cw, top + ch})
	return ConvertRGB(resize(crop, opts.Size, opts.Size, rect{0, 0, opts.Size, opts.Size}))
}

// cropParams is torchvision's RandomResizedCrop.get_params with scale
// (0.9, 1.0) and ratio (3/4, 4/3): the crop's top, left, height and width.
func cropParams(w, h int, rng *rand.Rand) (top, left, ch, cw int) {
	const scaleLo, scaleHi = 0.9, 1.0
	ratioLo, ratioHi := 3.0/4.0, 4.0/3.0
	area := float64(w) * float64(h)
	logLo, logHi := math.Log(ratioLo), math.Log(ratioHi)
	for range 10 {
		target := area * (scaleLo + (scaleHi-scaleLo)*rng.Float64())
		ratio := math.Exp(logLo + (logHi-logLo)*rng.Float64())
		cw = int(math.RoundToEven(math.Sqrt(target * ratio)))
		ch = int(math.RoundToEven(math.Sqrt(target / ratio)))
		if 0 < cw && cw <= w && 0 < ch && ch <= h {
			top = rng.IntN(h - ch + 1)
			left = rng.IntN(w - cw + 1)
			return top, left, ch, cw
		}
	}
	// Fallback to a central crop.
	in := float64(w) / float64(h)
	switch {
	case in < ratioLo:
		cw = w
		ch = int(math.RoundToEven(float64(cw) / ratioLo))
	case in > ratioHi:
		ch = h
		cw = int(math.RoundToEven(float64(ch) * ratioHi))
	default:
		cw, ch = w, h
	}
	return (h - ch) / 2, (w - cw) / 2, ch, cw
}
