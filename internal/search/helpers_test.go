package search

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/tinyclip-go/tinyclip"
	"github.com/tinyclip-go/tinyclip/internal/imageproc"
)

// fakeEncoder embeds a text or an image file as a fixed function of its
// bytes (a seeded hash), so tests know every expected vector. Images must
// decode (imageproc.Decode), as with a real model. It records the images it
// embedded.
type fakeEncoder struct {
	dim  int
	seed byte

	mu       sync.Mutex
	embedded [][sha256.Size]byte // content hashes of successfully embedded images (not the probe)
	calls    int
	// afterCalls, when set, is called after each successful image call
	// with the number of calls so far (used to cancel mid-index).
	afterCalls func(n int)
}

func (f *fakeEncoder) vec(b []byte) []float32 {
	h := sha256.Sum256(append([]byte{f.seed}, b...))
	rng := rand.New(rand.NewPCG(uint64(h[0])|uint64(h[1])<<8|uint64(h[2])<<16|uint64(h[3])<<24, uint64(h[4])))
	v := make([]float32, f.dim)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return tinyclip.Normalize(v)
}

func (f *fakeEncoder) EncodeTexts(ctx context.Context, texts []string, _ ...tinyclip.EncodeOption) ([][]float32, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([][]float32, len(texts))
	for i, t := range texts {
		out[i] = f.vec([]byte("text:" + t))
	}
	return out, nil
}

func (f *fakeEncoder) EncodeImageBytes(ctx context.Context, data [][]byte, _ ...tinyclip.EncodeOption) ([][]float32, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([][]float32, len(data))
	for i, d := range data {
		if _, err := imageproc.Decode(d, 0); err != nil {
			return nil, err
		}
		out[i] = f.vec(d)
	}
	probe := probeImage()
	f.mu.Lock()
	f.calls++
	n := f.calls
	for _, d := range data {
		if !bytes.Equal(d, probe) {
			f.embedded = append(f.embedded, sha256.Sum256(d))
		}
	}
	after := f.afterCalls
	f.mu.Unlock()
	if after != nil {
		after(n)
	}
	return out, nil
}

// takeEmbedded returns and clears the record of embedded images.
func (f *fakeEncoder) takeEmbedded() [][sha256.Size]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.embedded
	f.embedded = nil
	return e
}

// testPNG returns a small PNG whose pixels depend on seed.
func testPNG(t testing.TB, seed uint64, w, h int) []byte {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 7))
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = uint8(rng.IntN(256))
	}
	for i := 3; i < len(img.Pix); i += 4 {
		img.Pix[i] = 255
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// solidPNG returns a w×h PNG of one colour.
func solidPNG(t testing.TB, c color.RGBA, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, c)
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// storedVectors reads every (path, embedding) from the index file directly.
func storedVectors(t testing.TB, db *DB) map[string][]float32 {
	t.Helper()
	rows, err := db.sql.Query(`SELECT path, embedding FROM images`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string][]float32{}
	for rows.Next() {
		var p string
		var b []byte
		if err := rows.Scan(&p, &b); err != nil {
			t.Fatal(err)
		}
		v, err := decodeVec(b)
		if err != nil {
			t.Fatal(err)
		}
		out[p] = v
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func maxAbsDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	var m float64
	for i := range a {
		m = math.Max(m, math.Abs(float64(a[i])-float64(b[i])))
	}
	return m
}

// bombPNG is the header of a 100000×100000 PNG: decoding it fully would
// need 30 GB.
func bombPNG(t testing.TB) []byte {
	t.Helper()
	var buf bytes.Buffer
	img := image.NewGray(image.Rect(0, 0, 1, 1))
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	// IHDR: length at 8, type at 12, width and height at 16..23, CRC at 29.
	copy(b[16:], []byte{0, 1, 0x86, 0xa0, 0, 1, 0x86, 0xa0})
	binary.BigEndian.PutUint32(b[29:], crc32.ChecksumIEEE(b[12:29]))
	return b
}

var errInjected = errors.New("injected")
