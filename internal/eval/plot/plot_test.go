package plot

import (
	"bytes"
	"image"
	"image/png"
	"testing"
)

func decodePNG(t *testing.T, b []byte) image.Image {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	return img
}

// darkness is 0 for white and grows with the colour's depth.
func darkness(img image.Image, x, y int) int {
	r, g, b, _ := img.At(x, y).RGBA()
	return 3*0xffff - int(r+g+b)
}

func TestConfusion(t *testing.T) {
	classes := []string{"cat", "dog", "owl"}
	m := [][]int{{9, 1, 0}, {0, 0, 0}, {2, 3, 5}}
	var buf bytes.Buffer
	if err := Confusion(&buf, m, classes, "test"); err != nil {
		t.Fatal(err)
	}
	img := decodePNG(t, buf.Bytes())
	if b := img.Bounds(); b.Dx() != 840 || b.Dy() != 840 {
		t.Errorf("size %v, want 7 in × 120 dpi", b.Size())
	}
	// Large matrices drop the names and still render.
	n := 120
	big := make([][]int, n)
	names := make([]string, n)
	for i := range big {
		big[i] = make([]int, n)
		big[i][i] = 3
		big[i][(i+1)%n] = 1
		names[i] = "c"
	}
	buf.Reset()
	if err := Confusion(&buf, big, names, "big"); err != nil {
		t.Fatal(err)
	}
	img = decodePNG(t, buf.Bytes())
	// The diagonal (75 % per row) is drawn: compared with an all-zero
	// matrix, about 120 cells of some 7×7 pixels are dark.
	zero := make([][]int, n)
	for i := range zero {
		zero[i] = make([]int, n)
	}
	var blank bytes.Buffer
	if err := Confusion(&blank, zero, names, "big"); err != nil {
		t.Fatal(err)
	}
	if d, d0 := darkPixels(img), darkPixels(decodePNG(t, blank.Bytes())); d-d0 < 120*20 {
		t.Errorf("%d dark pixels, %d without counts: the diagonal is not drawn", d, d0)
	}
	for name, c := range map[string]struct {
		m       [][]int
		classes []string
	}{
		"empty":    {nil, nil},
		"names":    {m, classes[:2]},
		"ragged":   {[][]int{{1, 2}, {3}}, []string{"a", "b"}},
		"negative": {[][]int{{1, -2}, {3, 4}}, []string{"a", "b"}},
	} {
		if err := Confusion(&buf, c.m, c.classes, ""); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestZoo(t *testing.T) {
	pts := []ZooPoint{
		{Label: "ViT-39M/16", Top1: 63.5, GMACs: 9.48, Published: 1469, Measured: 12},
		{Label: "ViT-8M/16", Top1: 41.1, GMACs: 1.98, Published: 4150, Measured: 60},
		{Label: "auto 22M/32", Top1: 53.7, GMACs: 1.9, Estimated: true, Published: 5504},
		{Label: "no accuracy", GMACs: 7},
	}
	var buf bytes.Buffer
	if err := Zoo(&buf, pts, "test machine"); err != nil {
		t.Fatal(err)
	}
	img := decodePNG(t, buf.Bytes())
	if b := img.Bounds(); b.Dx() != 14*120 || b.Dy() != 6*120 {
		t.Errorf("size %v", b.Size())
	}
	// Without throughput numbers the right panel is still drawn.
	if err := Zoo(&buf, []ZooPoint{{Label: "x", Top1: 50, GMACs: 2}}, ""); err != nil {
		t.Error(err)
	}
	if err := Zoo(&buf, nil, ""); err == nil {
		t.Error("no points accepted")
	}
	if err := Zoo(&buf, []ZooPoint{{Label: "x", GMACs: 2}}, ""); err == nil {
		t.Error("points without accuracy accepted")
	}
}

func darkPixels(img image.Image) int {
	dark := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			if darkness(img, x, y) > 3*0x8000 {
				dark++
			}
		}
	}
	return dark
}
