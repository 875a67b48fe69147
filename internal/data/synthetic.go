package data

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/tinyclip-go/tinyclip/internal/imageproc"
)

// The vocabulary of the synthetic scenes. Object colours and shapes form
// the classes (colour-major: "red circle", "red square", ...); backgrounds
// never share an object colour.
var (
	synthColours = []struct {
		name string
		rgb  [3]uint8
	}{
		{"red", [3]uint8{215, 40, 40}},
		{"green", [3]uint8{40, 170, 60}},
		{"blue", [3]uint8{45, 85, 220}},
		{"yellow", [3]uint8{235, 205, 35}},
	}
	synthShapes      = []string{"circle", "square", "triangle", "cross"}
	synthBackgrounds = []struct {
		name string
		rgb  [3]uint8
	}{
		{"white", [3]uint8{240, 240, 240}},
		{"black", [3]uint8{20, 20, 20}},
		{"gray", [3]uint8{128, 128, 128}},
	}
	synthPositions = []string{"left", "right", "top", "bottom", "center"}
	synthCounts    = []string{"one", "two", "three"}
)

// DefaultSyntheticSize is the side of the generated images when
// SyntheticOptions.Size is 0.
const DefaultSyntheticSize = 64

// DefaultSyntheticLen is the number of samples of "synthetic" without a
// count.
const DefaultSyntheticLen = 10000

// maxSyntheticLen bounds the number of samples (the dataset is virtual,
// but its order is a permutation held in memory).
const maxSyntheticLen = 1 << 26

// SyntheticOptions configures NewSynthetic.
type SyntheticOptions struct {
	// N is the number of samples.
	N int
	// Seed selects the scenes: the same seed gives the same images and
	// captions; datasets with different seeds are independent draws (use
	// one for training and another for held-out evaluation).
	Seed uint64
	// Size is the side of the square images in pixels (default
	// DefaultSyntheticSize, at least 16).
	Size int
}

// Scene describes one synthetic image.
type Scene struct {
	// Colour, Shape, Background and Position index the vocabulary lists
	// (see SyntheticClasses for colour × shape).
	Colour, Shape, Background, Position int
	// Count is the number of objects, 1 to 3.
	Count int
	// Caption is the sample's text.
	Caption string
}

// Synthetic is a generated image–caption dataset for tests and
// experiments: each image shows one to three objects of one colour and
// shape (4 colours × 4 shapes) grouped in one region (left, right, top,
// bottom, centre) of a plain background (white, black, gray) with a little
// pixel noise, and its caption names them compositionally in one of several
// phrasings ("two red circles on the left.", "a photo of a blue square.",
// "three yellow crosses on a black background."). The label is the
// colour–shape class (Classes). Everything is a deterministic function of
// the seed and the sample index, computed on demand; a Synthetic is safe
// for concurrent use.
type Synthetic struct {
	n    int
	seed uint64
	size int
}

// NewSynthetic returns the dataset opts describes.
func NewSynthetic(opts SyntheticOptions) (*Synthetic, error) {
	if opts.N <= 0 || opts.N > maxSyntheticLen {
		return nil, fmt.Errorf("data: synthetic: %d samples, want 1 to %d", opts.N, maxSyntheticLen)
	}
	size := opts.Size
	if size == 0 {
		size = DefaultSyntheticSize
	}
	if size < 16 || size > 4096 {
		return nil, fmt.Errorf("data: synthetic: image size %d, want 16 to 4096", size)
	}
	return &Synthetic{n: opts.N, seed: opts.Seed, size: size}, nil
}

// ParseSynthetic reads a synthetic data specification,
// "synthetic[:N[:SEED]]" (N samples, default DefaultSyntheticLen; SEED
// default defaultSeed). ok is false when spec does not start with
// "synthetic", so that callers can try it before treating spec as a path.
func ParseSynthetic(spec string, defaultSeed uint64) (opts SyntheticOptions, ok bool, err error) {
	rest, found := strings.CutPrefix(spec, "synthetic")
	if !found || (rest != "" && rest[0] != ':') {
		return opts, false, nil
	}
	opts = SyntheticOptions{N: DefaultSyntheticLen, Seed: defaultSeed}
	if rest == "" {
		return opts, true, nil
	}
	parts := strings.Split(rest[1:], ":")
	if len(parts) > 2 {
		return opts, true, fmt.Errorf("data: %q: want synthetic[:N[:SEED]]", spec)
	}
	n, err := strconv.Atoi(parts[0])
	if err != nil || n <= 0 || n > maxSyntheticLen {
		return opts, true, fmt.Errorf("data: %q: sample count %q, want 1 to %d", spec, parts[0], maxSyntheticLen)
	}
	opts.N = n
	if len(parts) == 2 {
		s, err := strconv.ParseUint(parts[1], 10, 64)
		if err != nil {
			return opts, true, fmt.Errorf("data: %q: seed %q is not an unsigned integer", spec, parts[1])
		}
		opts.Seed = s
	}
	return opts, true, nil
}

// SyntheticClasses returns the class names of the synthetic scenes,
// colour-major ("red circle", "red square", ..., "yellow cross"); a
// sample's Label indexes this list.
func SyntheticClasses() []string {
	var out []string
	for _, c := range synthColours {
		for _, s := range synthShapes {
			out = append(out, c.name+" "+s)
		}
	}
	return out
}

// Len returns the number of samples.
func (s *Synthetic) Len() int { return s.n }

// Size returns the side of the images.
func (s *Synthetic) Size() int { return s.size }

// Classes returns SyntheticClasses().
func (s *Synthetic) Classes() []string { return SyntheticClasses() }

// Close does nothing.
func (s *Synthetic) Close() error { return nil }

// Sample returns sample i: its name ("synthetic-<seed>-<i>.png"), label
// and caption.
func (s *Synthetic) Sample(i int) Sample {
	sc := s.Scene(i)
	return Sample{
		Name:     fmt.Sprintf("synthetic-%d-%07d.png", s.seed, i),
		Label:    sc.Colour*len(synthShapes) + sc.Shape,
		Captions: []string{sc.Caption},
	}
}

// rng returns the generator of sample i; stream 0 draws the scene, stream
// 1 the placement and pixel noise.
func (s *Synthetic) rng(i int, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(s.seed^0x5eed5eed5eed5eed, uint64(i)<<1|stream))
}

// Scene returns the description of sample i.
func (s *Synthetic) Scene(i int) Scene {
	r := s.rng(i, 0)
	sc := Scene{
		Colour:     r.IntN(len(synthColours)),
		Shape:      r.IntN(len(synthShapes)),
		Background: r.IntN(len(synthBackgrounds)),
		Position:   r.IntN(len(synthPositions)),
		Count:      1 + r.IntN(3),
	}
	sc.Caption = caption(sc, r.IntN(6))
	return sc
}

// caption phrases a scene in form f (0–5).
func caption(sc Scene, f int) string {
	colour := synthColours[sc.Colour].name
	shape := synthShapes[sc.Shape]
	things := colour + " " + shape
	count := "a"
	if sc.Count > 1 {
		count = synthCounts[sc.Count-1]
		if shape == "cross" {
			things += "es"
		} else {
			things += "s"
		}
	}
	where := map[string]string{
		"left": "on the left", "right": "on the right", "top": "at the top",
		"bottom": "at the bottom", "center": "in the center",
	}[synthPositions[sc.Position]]
	bg := synthBackgrounds[sc.Background].name
	switch f {
	case 0:
		return count + " " + things + "."
	case 1:
		return count + " " + things + " " + where + "."
	case 2:
		return count + " " + things + " on a " + bg + " background."
	case 3:
		return "a photo of " + count + " " + things + "."
	case 4:
		return count + " " + things + " " + where + " on a " + bg + " background."
	default:
		return "a " + bg + " image with " + count + " " + things + " " + where + "."
	}
}

// Image returns the RGB raster of sample i.
func (s *Synthetic) Image(i int) (*imageproc.Image, error) {
	if i < 0 || i >= s.n {
		return nil, fmt.Errorf("data: synthetic: index %d out of range [0, %d)", i, s.n)
	}
	sc := s.Scene(i)
	r := s.rng(i, 1)
	n := s.size
	fn := float64(n)
	// Object radius and region (x0, y0, x1, y1) of the object centres.
	// The objects stand in a line along the region: a column in the left
	// or right half, a row in the top or bottom half or across the
	// middle, evenly spaced so that they never overlap.
	k := float64(sc.Count)
	rad := fn / 5 * (0.9 + 0.2*r.Float64())
	if sc.Count == 1 {
		rad *= 1.2
	}
	rad = math.Min(rad, fn/k/2.3)
	type pt struct{ x, y float64 }
	var centres []pt
	for j := 0; j < sc.Count; j++ {
		along := fn * (float64(j) + 0.5) / k
		across := fn / 2
		switch synthPositions[sc.Position] {
		case "left", "top":
			across = fn / 4
		case "right", "bottom":
			across = 3 * fn / 4
		}
		jit := func() float64 { return (r.Float64() - 0.5) * fn / 16 }
		c := pt{along + jit(), across + jit()}
		if p := synthPositions[sc.Position]; p == "left" || p == "right" {
			c.x, c.y = c.y, c.x
		}
		centres = append(centres, c)
	}
	bg := synthBackgrounds[sc.Background].rgb
	fg := synthColours[sc.Colour].rgb
	m := &imageproc.Image{Mode: imageproc.ModeRGB, Width: n, Height: n, Pix: make([]uint8, 3*n*n)}
	// 2×2 supersampling gives soft edges.
	offs := [4][2]float64{{0.25, 0.25}, {0.75, 0.25}, {0.25, 0.75}, {0.75, 0.75}}
	for y := 0; y < n; y++ {
		for x := 0; x < n; x++ {
			cover := 0
			for _, o := range offs {
				px, py := float64(x)+o[0], float64(y)+o[1]
				for _, c := range centres {
					if inside(sc.Shape, (px-c.x)/rad, (py-c.y)/rad) {
						cover++
						break
					}
				}
			}
			noise := r.IntN(17) - 8
			p := m.Pix[3*(y*n+x):]
			for ch := 0; ch < 3; ch++ {
				v := (int(bg[ch])*(4-cover)+int(fg[ch])*cover)/4 + noise
				p[ch] = uint8(min(255, max(0, v)))
			}
		}
	}
	return m, nil
}

// inside reports whether the point (x, y), in units of the object radius
// relative to its centre, lies in shape k.
func inside(k int, x, y float64) bool {
	switch synthShapes[k] {
	case "circle":
		return x*x+y*y <= 1
	case "square":
		return math.Abs(x) <= 0.82 && math.Abs(y) <= 0.82
	case "triangle": // pointing up, base at y = 0.7
		return y <= 0.7 && y >= -1 && math.Abs(x) <= (y+1)/1.7*0.98
	default: // cross
		ax, ay := math.Abs(x), math.Abs(y)
		return (ax <= 1 && ay <= 0.33) || (ax <= 0.33 && ay <= 1)
	}
}

// Read returns sample i as a PNG file.
func (s *Synthetic) Read(i int) ([]byte, error) {
	m, err := s.Image(i)
	if err != nil {
		return nil, err
	}
	img := image.NewRGBA(image.Rect(0, 0, m.Width, m.Height))
	for p := 0; p < m.Width*m.Height; p++ {
		img.Set(p%m.Width, p/m.Width, color.RGBA{m.Pix[3*p], m.Pix[3*p+1], m.Pix[3*p+2], 255})
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("data: synthetic: %w", err)
	}
	return buf.Bytes(), nil
}

// ExpandShards expands the brace ranges of a webdataset shard pattern:
// "data/shard-{000..099}.tar" names shard-000.tar to shard-099.tar (the
// numbers keep the width of the first bound when it has a leading zero).
// Several ranges multiply; a pattern without braces is returned as is. At
// most 1<<20 names are produced.
func ExpandShards(pattern string) ([]string, error) {
	open := strings.IndexByte(pattern, '{')
	if open < 0 {
		if strings.IndexByte(pattern, '}') >= 0 {
			return nil, fmt.Errorf("data: shard pattern %q: unmatched '}'", pattern)
		}
		return []string{pattern}, nil
	}
	end := strings.IndexByte(pattern[open:], '}')
	if end < 0 {
		return nil, fmt.Errorf("data: shard pattern %q: unmatched '{'", pattern)
	}
	end += open
	lo, hi, ok := strings.Cut(pattern[open+1:end], "..")
	a, errA := strconv.Atoi(lo)
	b, errB := strconv.Atoi(hi)
	if !ok || errA != nil || errB != nil || a < 0 || b < a || lo[0] == '+' || hi[0] == '+' {
		return nil, fmt.Errorf("data: shard pattern %q: want {FIRST..LAST} with 0 <= FIRST <= LAST", pattern)
	}
	rest, err := ExpandShards(pattern[end+1:])
	if err != nil {
		return nil, err
	}
	if int64(b-a+1)*int64(len(rest)) > 1<<20 {
		return nil, fmt.Errorf("data: shard pattern %q names more than %d files", pattern, 1<<20)
	}
	width := 0
	if len(lo) > 1 && lo[0] == '0' {
		width = len(lo)
	}
	out := make([]string, 0, (b-a+1)*len(rest))
	for k := a; k <= b; k++ {
		num := fmt.Sprintf("%0*d", width, k)
		for _, r := range rest {
			out = append(out, pattern[:open]+num+r)
		}
	}
	return out, nil
}

// OpenTraining opens training data: "synthetic[:N[:SEED]]" (see
// ParseSynthetic; SEED defaults to seed, images of side size), or one or
// more paths, each an ImageFolder directory, a caption CSV
// (image_path,caption) or a tar file (webdataset shards with {key}.txt
// captions; brace ranges as in ExpandShards), concatenated in the given
// order.
func OpenTraining(specs []string, seed uint64, size int, opts Options) (Dataset, error) {
	if len(specs) == 1 {
		if so, ok, err := ParseSynthetic(specs[0], seed); ok {
			if err != nil {
				return nil, err
			}
			so.Size = max(size, 16)
			return NewSynthetic(so)
		}
	}
	var paths []string
	for _, s := range specs {
		if _, ok, _ := ParseSynthetic(s, 0); ok {
			return nil, fmt.Errorf("data: %q: synthetic data cannot be combined with other sources", s)
		}
		p, err := ExpandShards(s)
		if err != nil {
			return nil, err
		}
		paths = append(paths, p...)
	}
	opts.Captions = true
	return OpenAll(paths, opts)
}
