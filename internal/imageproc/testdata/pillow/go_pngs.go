//go:build ignore

// go_pngs writes the go_* PNG inputs of this folder with Go's image/png
// encoder: 16-bit grey, 16-bit RGB and RGBA, and a palette image whose
// indices go beyond its 4-entry PLTE. Run: go run go_pngs.go
package main

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"log"
	"os"
)

func main() {
	const w, h = 29, 19
	g16 := image.NewGray16(image.Rect(0, 0, w, h))
	n64 := image.NewNRGBA64(image.Rect(0, 0, w, h))
	r64 := image.NewRGBA64(image.Rect(0, 0, w, h))
	pal := image.NewPaletted(image.Rect(0, 0, w, h), color.Palette{
		color.NRGBA{255, 0, 0, 255}, color.NRGBA{0, 255, 0, 128}, color.NRGBA{0, 0, 255, 0}, color.NRGBA{10, 20, 30, 255}})
	seed := uint32(7)
	rnd := func() uint16 { seed = seed*1664525 + 1013904223; return uint16(seed >> 16) }
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			v := uint16(x*1000 + y*37)
			g16.SetGray16(x, y, color.Gray16{Y: (v + rnd()%300) % 2000})
			n64.SetNRGBA64(x, y, color.NRGBA64{R: rnd(), G: v, B: uint16(y * 3000), A: uint16(x * 2000)})
			r64.SetRGBA64(x, y, color.RGBA64{R: rnd(), G: v, B: uint16(y * 3000), A: 0xffff})
			pal.Pix[y*pal.Stride+x] = uint8((x/3 + y/2) % 12)
		}
	}
	for name, m := range map[string]image.Image{"go_gray16.png": g16, "go_nrgba64.png": n64, "go_rgb16.png": r64, "go_palette_short.png": pal} {
		var b bytes.Buffer
		if err := png.Encode(&b, m); err != nil {
			log.Fatal(err)
		}
		if err := os.WriteFile("in/"+name, b.Bytes(), 0o644); err != nil {
			log.Fatal(err)
		}
	}
}
