package train

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// LogRecord is one line of DIR/log.jsonl: a training step, or (with Eval
// set) an evaluation after Step iterations. Values that are not finite or
// not computed are omitted.
type LogRecord struct {
	Step             int                `json:"step"`
	OptimizerStep    int64              `json:"optimizer_step,omitempty"`
	Epoch            int                `json:"epoch,omitempty"`
	LR               float64            `json:"lr,omitempty"`
	Loss             *float64           `json:"loss,omitempty"`
	SoftI2T          *float64           `json:"soft_i2t,omitempty"`
	SoftT2I          *float64           `json:"soft_t2i,omitempty"`
	Hard             *float64           `json:"hard,omitempty"`
	GradNorm         *float64           `json:"grad_norm,omitempty"`
	ClipCoef         *float64           `json:"clip_coef,omitempty"`
	Scale            *float64           `json:"logit_scale,omitempty"`
	Seconds          float64            `json:"seconds,omitempty"`
	SamplesPerSecond float64            `json:"samples_per_second,omitempty"`
	SkippedSamples   int                `json:"skipped_samples,omitempty"`
	NonFinite        bool               `json:"non_finite,omitempty"`
	Extra            map[string]float64 `json:"extra,omitempty"`
	Eval             map[string]float64 `json:"eval,omitempty"`

	// DataSeconds is the part of Seconds spent waiting for the batch;
	// DataImagesPerSecond the input pipeline's own throughput so far
	// (data.StreamStats.ImagesPerSecond), when the data reports it.
	DataSeconds         float64 `json:"data_seconds,omitempty"`
	DataImagesPerSecond float64 `json:"data_images_per_second,omitempty"`
}

// num returns a pointer to x, or nil when x is not finite (JSON has no
// NaN).
func num(x float64) *float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return nil
	}
	return &x
}

// openLog opens DIR/log.jsonl for appending. On a resume it first drops
// the records written after the checkpoint (a killed run logs steps it
// will redo); on a fresh start it empties the file.
func (r *runner) openLog() error {
	path := filepath.Join(r.o.Dir, LogFile)
	var kept bytes.Buffer
	if r.iter > 0 {
		f, err := os.Open(path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("train: %w", err)
		}
		if err == nil {
			sc := bufio.NewScanner(f)
			sc.Buffer(make([]byte, 1<<16), 1<<24)
			for sc.Scan() {
				var rec LogRecord
				if json.Unmarshal(sc.Bytes(), &rec) != nil || rec.Step > r.iter {
					continue
				}
				kept.Write(sc.Bytes())
				kept.WriteByte('\n')
				r.keep(rec)
			}
			f.Close()
			if err := sc.Err(); err != nil {
				return fmt.Errorf("train: %s: %w", path, err)
			}
		}
	}
	if err := writeFileAtomic(path, kept.Bytes()); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	r.logF = f
	return nil
}

// keep remembers a record for the curves.
func (r *runner) keep(rec LogRecord) {
	if rec.Eval != nil {
		r.evals = append(r.evals, rec)
	} else {
		r.points = append(r.points, rec)
	}
}

// record appends a record to the log.
func (r *runner) record(rec LogRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("train: log: %w", err)
	}
	if _, err := r.logF.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("train: log: %w", err)
	}
	r.keep(rec)
	return nil
}

// drawCurves rewrites DIR/curves.png; a failure is logged, not fatal.
func (r *runner) drawCurves() {
	if len(r.points) == 0 && len(r.evals) == 0 {
		return
	}
	var buf bytes.Buffer
	if err := WriteCurves(&buf, r.points, r.evals); err != nil {
		r.log.Warn("drawing the curves", "err", err)
		return
	}
	if err := writeFileAtomic(filepath.Join(r.o.Dir, CurvesFile), buf.Bytes()); err != nil {
		r.log.Warn("writing the curves", "err", err)
	}
}

// WriteCurves draws a PNG of the training loss against the step (with a
// moving average when there are many steps) above the evaluation metrics
// against the step (when there are any).
func WriteCurves(w io.Writer, steps, evals []LogRecord) (err error) {
	defer func() {
		if p := recover(); p != nil { // gonum/plot panics on some degenerate inputs
			err = fmt.Errorf("train: curves: %v", p)
		}
	}()
	var plots []*plot.Plot
	loss := plot.New()
	loss.Title.Text = "training loss"
	loss.X.Label.Text = "step"
	loss.Y.Label.Text = "loss"
	var xy plotter.XYs
	for _, s := range steps {
		if s.Loss != nil {
			xy = append(xy, plotter.XY{X: float64(s.Step), Y: *s.Loss})
		}
	}
	if len(xy) > 0 {
		l, err := plotter.NewLine(xy)
		if err != nil {
			return fmt.Errorf("train: curves: %w", err)
		}
		l.Color = color.RGBA{160, 175, 200, 255}
		loss.Add(l)
		loss.Legend.Add("loss", l)
		if win := len(xy) / 25; win >= 2 {
			avg := make(plotter.XYs, len(xy))
			sum := 0.0
			for i := range xy {
				sum += xy[i].Y
				if i >= win {
					sum -= xy[i-win].Y
				}
				avg[i] = plotter.XY{X: xy[i].X, Y: sum / float64(min(i+1, win))}
			}
			a, err := plotter.NewLine(avg)
			if err != nil {
				return fmt.Errorf("train: curves: %w", err)
			}
			a.Color = color.RGBA{8, 48, 107, 255}
			a.Width = vg.Points(1.5)
			loss.Add(a)
			loss.Legend.Add(fmt.Sprintf("mean of %d", win), a)
		}
		loss.Legend.Top = true
	}
	loss.Add(plotter.NewGrid())
	plots = append(plots, loss)

	if len(evals) > 0 {
		ev := plot.New()
		ev.Title.Text = "evaluation"
		ev.X.Label.Text = "step"
		ev.Y.Label.Text = "accuracy / recall"
		keys := map[string]bool{}
		for _, e := range evals {
			for k := range e.Eval {
				if !strings.HasSuffix(k, "/images") { // counts, not rates
					keys[k] = true
				}
			}
		}
		names := make([]string, 0, len(keys))
		for k := range keys {
			names = append(names, k)
		}
		sort.Strings(names)
		colours := []color.Color{ // matplotlib's tab10
			color.RGBA{31, 119, 180, 255}, color.RGBA{255, 127, 14, 255}, color.RGBA{44, 160, 44, 255},
			color.RGBA{214, 39, 40, 255}, color.RGBA{148, 103, 189, 255}, color.RGBA{140, 86, 75, 255},
			color.RGBA{227, 119, 194, 255}, color.RGBA{127, 127, 127, 255}, color.RGBA{188, 189, 34, 255},
			color.RGBA{23, 190, 207, 255},
		}
		ev.Y.Min, ev.Y.Max = 0, 1
		for i, k := range names {
			var pts plotter.XYs
			for _, e := range evals {
				if v, ok := e.Eval[k]; ok && !math.IsNaN(v) && !math.IsInf(v, 0) {
					pts = append(pts, plotter.XY{X: float64(e.Step), Y: v})
				}
			}
			if len(pts) == 0 {
				continue
			}
			l, sc, err := plotter.NewLinePoints(pts)
			if err != nil {
				return fmt.Errorf("train: curves: %w", err)
			}
			l.Color = colours[i%len(colours)]
			sc.Color = l.Color
			ev.Add(l, sc)
			ev.Legend.Add(k, l, sc)
		}
		ev.Legend.Top = false
		ev.Legend.Left = false
		ev.Add(plotter.NewGrid())
		plots = append(plots, ev)
	}

	width, height := 8*vg.Inch, 4*vg.Inch*vg.Length(len(plots))
	img := vgimg.NewWith(vgimg.UseWH(width, height), vgimg.UseDPI(110))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: len(plots), Cols: 1, PadTop: vg.Points(6), PadBottom: vg.Points(6), PadX: vg.Points(6), PadY: vg.Points(12)}
	grid := [][]*plot.Plot{}
	for _, p := range plots {
		grid = append(grid, []*plot.Plot{p})
	}
	canvases := plot.Align(grid, tiles, dc)
	for i, p := range plots {
		p.Draw(canvases[i][0])
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(w); err != nil {
		return fmt.Errorf("train: curves: %w", err)
	}
	return nil
}
