package imageproc

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkTransform measures the eval transform of a 4000×3000 photo-sized
// image in the modes that take different resampling paths.
func BenchmarkTransform(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, mode := range []Mode{ModeRGB, ModeRGBA, ModeL, ModeI} {
		m := randomImage(rng, mode, 4000, 3000)
		b.Run(string(mode), func(b *testing.B) {
			opts := DefaultOptions()
			for b.Loop() {
				if _, err := Transform(m, opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecodeJPEG measures decoding a 640×480 4:2:0 JPEG to RGB.
func BenchmarkDecodeJPEG(b *testing.B) {
	data := readInput(b, "jpeg_420_640x480.jpg")
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Decode(data, 0); err != nil {
			b.Fatal(err)
		}
	}
}
