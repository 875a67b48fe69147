// Package plot draws the evaluation figures as PNG images in pure Go (with
// gonum.org/v1/plot): the confusion matrix of a zero-shot evaluation, and the
// model zoo's accuracy against compute and throughput (the TinyCLIP paper's
// Figure 1).
package plot

import (
	"bytes"
	"errors"
	"fmt"
	"image/color"
	"io"
	"math"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/palette"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// render draws into a PNG canvas of w×h and writes it to out. gonum/plot
// panics on some degenerate inputs; those become errors.
func render(out io.Writer, w, h vg.Length, drawFn func(draw.Canvas) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("plot: %v", r)
		}
	}()
	img := vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(120))
	dc := draw.New(img)
	if err := drawFn(dc); err != nil {
		return err
	}
	var buf bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(&buf); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	_, err = out.Write(buf.Bytes())
	return err
}

// blues is a white-to-dark-blue palette.
type blues []color.Color

func (b blues) Colors() []color.Color { return b }

func newBlues(n int) palette.Palette {
	p := make(blues, n)
	for i := range p {
		t := float64(i) / float64(n-1)
		p[i] = color.RGBA{
			R: uint8(math.Round(255 - t*(255-8))),
			G: uint8(math.Round(255 - t*(255-48))),
			B: uint8(math.Round(255 - t*(255-107))),
			A: 255,
		}
	}
	return p
}

// confusionGrid presents a confusion matrix with true labels top to bottom
// (grid row r is label n-1-r) as row-normalised fractions.
type confusionGrid struct {
	frac [][]float64
}

func (g confusionGrid) Dims() (c, r int) { return len(g.frac), len(g.frac) }
func (g confusionGrid) Z(c, r int) float64 {
	return g.frac[len(g.frac)-1-r][c]
}
func (g confusionGrid) X(c int) float64 { return float64(c) }
func (g confusionGrid) Y(r int) float64 { return float64(r) }
func (g confusionGrid) Min() float64    { return 0 }
func (g confusionGrid) Max() float64    { return 1 }

// maxLabelledClasses is the largest class count drawn with class names on
// the axes and counts in the cells.
const maxLabelledClasses = 40

// Confusion writes a PNG heat map of the confusion matrix m (m[l][p] counts
// samples of label l predicted as p), each row scaled by its total, so the
// diagonal shows per-class accuracy. Up to 40 classes the axes carry the class
// names and up to 20 each cell its count.
func Confusion(out io.Writer, m [][]int, classes []string, title string) error {
	n := len(m)
	if n == 0 {
		return errors.New("plot: empty confusion matrix")
	}
	if len(classes) != n {
		return fmt.Errorf("plot: %d class names for a %d×%d matrix", len(classes), n, n)
	}
	g := confusionGrid{frac: make([][]float64, n)}
	for l, row := range m {
		if len(row) != n {
			return fmt.Errorf("plot: confusion row %d has %d values, want %d", l, len(row), n)
		}
		total := 0
		for _, v := range row {
			if v < 0 {
				return fmt.Errorf("plot: negative count in confusion row %d", l)
			}
			total += v
		}
		g.frac[l] = make([]float64, n)
		for p, v := range row {
			if total > 0 {
				g.frac[l][p] = float64(v) / float64(total)
			}
		}
	}
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "predicted class"
	p.Y.Label.Text = "true class (each row scaled to its total)"
	hm := plotter.NewHeatMap(g, newBlues(256))
	p.Add(hm)
	side := vg.Length(7) * vg.Inch
	if n <= maxLabelledClasses {
		rev := make([]string, n)
		for i, c := range classes {
			rev[n-1-i] = c
		}
		p.NominalX(classes...)
		p.NominalY(rev...)
		p.X.Tick.Label.Rotation = math.Pi / 4
		p.X.Tick.Label.XAlign = draw.XRight
		p.X.Tick.Label.YAlign = draw.YTop
		if n <= 20 {
			var xys plotter.XYs
			var labels []string
			for l, row := range m {
				for pr, v := range row {
					xys = append(xys, plotter.XY{X: float64(pr), Y: float64(n - 1 - l)})
					labels = append(labels, strconv.Itoa(v))
				}
			}
			lb, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: labels})
			if err != nil {
				return fmt.Errorf("plot: %w", err)
			}
			for i := range lb.TextStyle {
				lb.TextStyle[i].Font.Size = vg.Points(8)
				lb.TextStyle[i].XAlign = draw.XCenter
				lb.TextStyle[i].YAlign = draw.YCenter
				if g.frac[i/n][i%n] > 0.55 {
					lb.TextStyle[i].Color = color.White
				}
			}
			p.Add(lb)
		}
	} else {
		p.X.Label.Text = fmt.Sprintf("predicted class (0..%d)", n-1)
		p.Y.Label.Text = fmt.Sprintf("true class (%d..0, top to bottom)", n-1)
		p.Y.Tick.Marker = plot.ConstantTicks{}
		p.X.Tick.Marker = plot.ConstantTicks{}
		side = vg.Length(10) * vg.Inch
	}
	return render(out, side, side, func(c draw.Canvas) error {
		pad := vg.Inch / 6
		p.Draw(draw.Crop(c, pad, -pad, pad, -pad))
		return nil
	})
}
