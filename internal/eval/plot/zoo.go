package plot

import (
	"errors"
	"fmt"
	"image/color"
	"io"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// ZooPoint is one released model in the zoo figure.
type ZooPoint struct {
	// Label names the point on the figure.
	Label string
	// Top1 is the published ImageNet-1k zero-shot top-1 accuracy, percent.
	Top1 float64
	// GMACs is the compute per image-text pair (image 224² + text at 77
	// tokens), in 10⁹ multiply-accumulates; Estimated marks an estimate.
	GMACs     float64
	Estimated bool
	// Published is the throughput the TinyCLIP README gives (pairs/s, GPU);
	// 0 when none.
	Published float64
	// Measured is our throughput in pairs/s; 0 when not measured.
	Measured float64
}

var (
	colPublished = color.RGBA{R: 31, G: 119, B: 180, A: 255}
	colEstimated = color.RGBA{R: 150, G: 150, B: 150, A: 255}
	colMeasured  = color.RGBA{R: 214, G: 39, B: 40, A: 255}
)

// Zoo writes a PNG with two panels: published top-1 accuracy against GMACs,
// and against throughput (pairs/s) on a log scale, with the README's published
// numbers and, where given, our measured ones as separate series.
// measuredNote describes how Measured was obtained (machine, batch, threads);
// it is printed in the legend.
func Zoo(out io.Writer, points []ZooPoint, measuredNote string) error {
	if len(points) == 0 {
		return errors.New("plot: no models")
	}
	left := plot.New()
	left.Title.Text = "ImageNet-1k zero-shot top-1 vs compute"
	left.X.Label.Text = "GMACs per image-text pair"
	left.Y.Label.Text = "top-1 (%), published"
	right := plot.New()
	right.Title.Text = "top-1 vs throughput"
	right.X.Label.Text = "image-text pairs per second (log scale)"
	right.Y.Label.Text = "top-1 (%), published"
	right.X.Scale = plot.LogScale{}
	right.X.Tick.Marker = plot.LogTicks{Prec: -1}
	for _, p := range []*plot.Plot{left, right} {
		p.Add(plotter.NewGrid())
		p.Legend.Top = false // bottom right: the fast, accurate corner stays clear
		p.Legend.Left = false
		p.Legend.TextStyle.Font.Size = vg.Points(8)
	}

	var exact, est, pub, meas plotter.XYs
	var exactL, estL, pubL, measL []string
	for _, p := range points {
		if p.Top1 <= 0 {
			continue
		}
		if p.GMACs > 0 {
			if p.Estimated {
				est = append(est, plotter.XY{X: p.GMACs, Y: p.Top1})
				estL = append(estL, p.Label)
			} else {
				exact = append(exact, plotter.XY{X: p.GMACs, Y: p.Top1})
				exactL = append(exactL, p.Label)
			}
		}
		if p.Published > 0 {
			pub = append(pub, plotter.XY{X: p.Published, Y: p.Top1})
			pubL = append(pubL, p.Label)
		}
		if p.Measured > 0 {
			meas = append(meas, plotter.XY{X: p.Measured, Y: p.Top1})
			measL = append(measL, p.Label)
		}
	}
	if len(exact)+len(est) == 0 {
		return errors.New("plot: no model with both an accuracy and a MAC count")
	}
	add := func(p *plot.Plot, xys plotter.XYs, labels []string, c color.Color, shape draw.GlyphDrawer, legend string) error {
		if len(xys) == 0 {
			return nil
		}
		s, err := plotter.NewScatter(xys)
		if err != nil {
			return fmt.Errorf("plot: %w", err)
		}
		s.GlyphStyle.Color = c
		s.GlyphStyle.Radius = vg.Points(3.5)
		s.GlyphStyle.Shape = shape
		p.Add(s)
		p.Legend.Add(legend, s)
		lb, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: labels})
		if err != nil {
			return fmt.Errorf("plot: %w", err)
		}
		for i := range lb.TextStyle {
			lb.TextStyle[i].Font.Size = vg.Points(6.5)
			lb.TextStyle[i].Color = c
		}
		lb.Offset = vg.Point{X: vg.Points(5), Y: vg.Points(-2)}
		p.Add(lb)
		return nil
	}
	if err := add(left, exact, exactL, colPublished, draw.CircleGlyph{}, "exact MAC count (config)"); err != nil {
		return err
	}
	if err := add(left, est, estL, colEstimated, draw.TriangleGlyph{}, "estimated MACs (auto-inherited, from the name)"); err != nil {
		return err
	}
	if err := add(right, pub, pubL, colPublished, draw.CircleGlyph{}, "published (TinyCLIP README, GPU)"); err != nil {
		return err
	}
	note := "measured (this project, CPU)"
	if measuredNote != "" {
		note = "measured: " + measuredNote
	}
	if err := add(right, meas, measL, colMeasured, draw.SquareGlyph{}, note); err != nil {
		return err
	}
	if len(pub)+len(meas) == 0 {
		right.Title.Text += " (no throughput numbers)"
		right.X.Scale = plot.LinearScale{}
		right.X.Tick.Marker = plot.DefaultTicks{}
	}
	// Room for the labels on the right of the points, above the top one,
	// and for the legend below the lowest one.
	left.X.Max *= 1.25
	for _, p := range []*plot.Plot{left, right} {
		p.Y.Max++
		p.Y.Min -= 0.12 * (p.Y.Max - p.Y.Min)
	}
	if len(pub)+len(meas) > 0 {
		right.X.Max *= 2.5
		right.X.Min /= 1.5
	}
	w, h := vg.Length(14)*vg.Inch, vg.Length(6)*vg.Inch
	return render(out, w, h, func(dc draw.Canvas) error {
		tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Inch / 4, PadTop: vg.Inch / 8, PadBottom: vg.Inch / 8,
			PadLeft: vg.Inch / 8, PadRight: vg.Inch / 4}
		cs := plot.Align([][]*plot.Plot{{left, right}}, tiles, dc)
		left.Draw(cs[0][0])
		right.Draw(cs[0][1])
		return nil
	})
}
