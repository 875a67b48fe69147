package imageproc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/png"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/tinyclip-go/tinyclip/internal/fixtures"
)

func readInput(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(fixtures.Path(t, "fixtures", "preprocess", "inputs", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pngHeaderOnly returns a PNG signature and an IHDR chunk claiming w×h.
func pngHeaderOnly(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 17)
	copy(ihdr, "IHDR")
	binary.BigEndian.PutUint32(ihdr[4:], w)
	binary.BigEndian.PutUint32(ihdr[8:], h)
	ihdr[12], ihdr[13] = 8, 2 // 8-bit RGB
	binary.Write(&b, binary.BigEndian, uint32(13))
	b.Write(ihdr)
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(ihdr))
	return b.Bytes()
}

// bombs are headers claiming huge images, one per format.
func bombs() map[string][]byte {
	jpg := []byte{0xff, 0xd8, 0xff, 0xe0, 0, 16, 'J', 'F', 'I', 'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0,
		0xff, 0xc0, 0, 17, 8, 0xfd, 0xe8, 0xfd, 0xe8, 3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1}
	gifb := append([]byte("GIF89a\xff\xff\xff\xff\x00\x00\x00"), ',', 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 8, 0)
	bmpb := make([]byte, 54)
	copy(bmpb, "BM")
	binary.LittleEndian.PutUint32(bmpb[10:], 54)
	binary.LittleEndian.PutUint32(bmpb[14:], 40)
	binary.LittleEndian.PutUint32(bmpb[18:], 20000)
	binary.LittleEndian.PutUint32(bmpb[22:], 20000)
	binary.LittleEndian.PutUint16(bmpb[26:], 1)
	binary.LittleEndian.PutUint16(bmpb[28:], 24)
	webpb := []byte("RIFF\x00\x00\x00\x00WEBPVP8X\x0a\x00\x00\x00\x00\x00\x00\x00\xff\x3f\x00\xff\x3f\x00VP8L\x05\x00\x00\x00\x2f\xff\xff\xff\x0f\x00")
	binary.LittleEndian.PutUint32(webpb[4:], uint32(len(webpb)-8))
	return map[string][]byte{
		"PNG":  pngHeaderOnly(100000, 100000),
		"JPEG": jpg,
		"GIF":  gifb,
		"BMP":  bmpb,
		"WEBP": webpb,
	}
}

// TestDecodeRefusesBombs checks that images above the pixel budget are
// refused from their headers, allocating next to nothing.
func TestDecodeRefusesBombs(t *testing.T) {
	for format, data := range bombs() {
		t.Run(format, func(t *testing.T) {
			cfg, err := DecodeConfig(data)
			if err != nil {
				t.Fatalf("DecodeConfig: %v", err)
			}
			if cfg.Format != format || int64(cfg.Width)*int64(cfg.Height) <= DefaultMaxPixels {
				t.Fatalf("DecodeConfig = %+v", cfg)
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err = Decode(data, 0)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ErrImageTooLarge) {
				t.Fatalf("error %v, want ErrImageTooLarge", err)
			}
			if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
				t.Errorf("refusing the image allocated %d bytes", n)
			}
		})
	}
}

// TestDecodePixelBudget checks a custom budget on a real file: the limit is
// inclusive, like Pillow's.
func TestDecodePixelBudget(t *testing.T) {
	data := readInput(t, "bmp_250x180.bmp")
	if _, err := Decode(data, 250*180); err != nil {
		t.Errorf("budget equal to the size: %v", err)
	}
	_, err := Decode(data, 250*180-1)
	if !errors.Is(err, ErrImageTooLarge) {
		t.Errorf("budget one below the size: error %v, want ErrImageTooLarge", err)
	}
	opts := DefaultOptions()
	opts.MaxPixels = 1000
	if _, err := Preprocess(data, opts); !errors.Is(err, ErrImageTooLarge) {
		t.Errorf("Preprocess with MaxPixels 1000: error %v, want ErrImageTooLarge", err)
	}
}

func TestDecodeUnknownFormat(t *testing.T) {
	for _, data := range [][]byte{nil, {}, []byte("hello, world"), []byte("RIFF\x10\x00\x00\x00WAVEfmt "), {0xff, 0xd8}, []byte("GIF90a")} {
		if _, err := Decode(data, 0); !errors.Is(err, ErrUnknownFormat) {
			t.Errorf("%q: error %v, want ErrUnknownFormat", data, err)
		}
		if _, err := DecodeConfig(data); !errors.Is(err, ErrUnknownFormat) {
			t.Errorf("%q: DecodeConfig error %v, want ErrUnknownFormat", data, err)
		}
	}
}

// TestDecodeTruncated checks that prefixes of valid files are errors that
// wrap ErrCorrupt, never images. For a GIF only the first frame counts
// (Pillow reads no further), and it may lose the terminator of its last
// data block and the byte holding the end code.
func TestDecodeTruncated(t *testing.T) {
	files := []string{
		"png_rgb_interlaced_161x121.png",
		"png_p_trns_200x256.png",
		"jpeg_422_250x190.jpg",
		"bmp_250x180.bmp",
		"webp_lossy_200x150.webp",
		"webp_lossless_200x150.webp",
		"gif_240x200.gif",
	}
	for _, name := range files {
		data := readInput(t, name)
		end := len(data)
		if filepath.Ext(name) == ".gif" {
			f, err := parseGIF(data)
			if err != nil {
				t.Fatal(err)
			}
			p := f.data
			for len(p) > 0 && p[0] != 0 {
				p = p[1+int(p[0]):]
			}
			end = len(data) - len(p) - 1
			if end < len(data)/3 {
				t.Fatalf("%s: first frame ends at %d of %d bytes", name, end, len(data))
			}
		}
		step := max(1, end/61)
		cuts := []int{1, 2, 7, 12, 30, end - 1}
		for n := 3; n < end; n += step {
			cuts = append(cuts, n)
		}
		for _, n := range cuts {
			if n >= end || n < 0 {
				continue
			}
			m, err := Decode(data[:n], 0)
			if err == nil {
				t.Errorf("%s: prefix of %d of %d bytes decoded as %s %dx%d", name, n, len(data), m.Mode, m.Width, m.Height)
			} else if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnknownFormat) {
				t.Errorf("%s: prefix of %d bytes: error %v, want ErrCorrupt", name, n, err)
			}
		}
	}
}

func encodePNG(t *testing.T, m image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, m); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestGoEncodedImages decodes images written by Go's encoders, of odd and
// degenerate sizes, and checks the mode, the samples and the transform
// against the reference model.
func TestGoEncodedImages(t *testing.T) {
	sizes := [][2]int{{1, 1}, {1, 53}, {53, 1}, {37, 29}, {300, 7}}
	for _, sz := range sizes {
		w, h := sz[0], sz[1]
		r := image.Rect(0, 0, w, h)
		g16 := image.NewGray16(r)
		gray := image.NewGray(r)
		nrgba := image.NewNRGBA(r)
		pal := image.NewPaletted(r, color.Palette{
			color.NRGBA{200, 10, 10, 255}, color.NRGBA{10, 200, 10, 255}, color.NRGBA{30, 40, 250, 128}, color.NRGBA{90, 90, 90, 0}, color.NRGBA{255, 255, 0, 255}})
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				g16.SetGray16(x, y, color.Gray16{Y: uint16(x*4099 + y*113)})
				gray.SetGray(x, y, color.Gray{Y: uint8(x*17 + y*3)})
				nrgba.SetNRGBA(x, y, color.NRGBA{uint8(x * 9), uint8(y * 5), uint8(x ^ y), uint8(x * y)})
				pal.SetColorIndex(x, y, uint8((x+2*y)%5))
			}
		}
		palRGB := make([][3]uint8, len(pal.Palette))
		for i, c := range pal.Palette {
			n := c.(color.NRGBA)
			palRGB[i] = [3]uint8{n.R, n.G, n.B}
		}
		var gifBuf bytes.Buffer
		opaque := *pal
		opaque.Palette = slices.Clone(pal.Palette)
		opaque.Palette[2], opaque.Palette[3] = color.NRGBA{30, 40, 250, 255}, color.NRGBA{90, 90, 90, 255}
		opaquePal := slices.Clone(palRGB)
		if err := gif.Encode(&gifBuf, &opaque, nil); err != nil {
			t.Fatal(err)
		}
		i32 := make([]int32, w*h)
		for i := range i32 {
			i32[i] = int32(g16.Pix[2*i])<<8 | int32(g16.Pix[2*i+1])
		}
		tests := []struct {
			name string
			data []byte
			want *Image
		}{
			{"gray16.png", encodePNG(t, g16), &Image{Mode: ModeI, Width: w, Height: h, I: i32}},
			{"gray.png", encodePNG(t, gray), &Image{Mode: ModeL, Width: w, Height: h, Pix: gray.Pix}},
			{"nrgba.png", encodePNG(t, nrgba), &Image{Mode: ModeRGBA, Width: w, Height: h, Pix: nrgba.Pix}},
			{"paletted.png", encodePNG(t, pal), &Image{Mode: ModeP, Width: w, Height: h, Pix: pal.Pix, Palette: palRGB}},
			{"paletted.gif", gifBuf.Bytes(), &Image{Mode: ModeP, Width: w, Height: h, Pix: pal.Pix, Palette: opaquePal}},
		}
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/%dx%d", tt.name, w, h), func(t *testing.T) {
				m, err := Decode(tt.data, 0)
				if err != nil {
					t.Fatalf("%dx%d: %v", w, h, err)
				}
				if m.Mode != tt.want.Mode || m.Width != w || m.Height != h {
					t.Fatalf("%dx%d: decoded %s %dx%d, want %s", w, h, m.Mode, m.Width, m.Height, tt.want.Mode)
				}
				if !slices.Equal(m.Pix, tt.want.Pix) || !slices.Equal(m.I, tt.want.I) {
					t.Errorf("%dx%d: samples differ", w, h)
				}
				if m.Mode == ModeP && !slices.Equal(m.Palette[:len(tt.want.Palette)], tt.want.Palette) {
					t.Errorf("%dx%d: palette %v, want %v", w, h, m.Palette, tt.want.Palette)
				}
				for _, v := range []Variant{OpenCLIP, HF} {
					opts := DefaultOptions()
					opts.Variant = v
					opts.Size = 40
					got, err := PreprocessUint8(tt.data, opts)
					if err != nil {
						t.Fatal(err)
					}
					if !slices.Equal(got, refTransform(tt.want, opts.Size, v == HF)) {
						t.Errorf("%dx%d %v: transform differs from the reference", w, h, v)
					}
				}
			})
		}
	}
}

// TestDecodeConfigMatchesDecode checks that the header's mode and size
// are those of the decoded image for every fixture and corpus file.
func TestDecodeConfigMatchesDecode(t *testing.T) {
	var files []string
	in, _ := filepath.Glob(fixtures.Path(t, "fixtures", "preprocess", "inputs", "*"))
	corpus, _ := filepath.Glob(filepath.Join("testdata", "pillow", "in", "*"))
	files = append(in, corpus...)
	if len(files) < 100 {
		t.Fatalf("only %d files", len(files))
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m, err := Decode(data, 0)
		if err != nil {
			continue // covered by the fixture and corpus tests
		}
		cfg, err := DecodeConfig(data)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if cfg.Mode != m.Mode || cfg.Width != m.Width || cfg.Height != m.Height {
			t.Errorf("%s: DecodeConfig %+v, Decode %s %dx%d", filepath.Base(f), cfg, m.Mode, m.Width, m.Height)
		}
	}
}
