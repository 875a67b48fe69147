package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"text/tabwriter"

	"github.com/tinyclip-go/tinyclip/internal/config"
	"github.com/tinyclip-go/tinyclip/internal/eval/plot"
)

func init() {
	register(command{"models", "list the model zoo with parameter counts and GMACs", runModels, 90})
}

func runModels(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "models", "[--json] [--plot FILE.png [--measure all|NAME,...] [--throughput BENCH.json]]")
	asJSON := fs.Bool("json", false, "print the registry as JSON")
	plotPath := fs.String("plot", "", "write a PNG of published ImageNet top-1 against GMACs and against throughput (pairs/s)")
	measure := fs.String("measure", "", "with --plot: measure our pairs/s with 'tinyclip bench' on random weights of these zoo models (comma-separated, or all)")
	measureBatch := fs.Int("measure-batch", 8, "batch size of --measure")
	measureThreads := fs.Int("measure-threads", runtime.GOMAXPROCS(0), "threads of --measure")
	throughput := fs.String("throughput", "", "with --plot: measured throughput from saved 'tinyclip bench --json' reports (one JSON object per model, or an array)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected arguments %q", pos)
	}
	if *plotPath == "" && (*measure != "" || *throughput != "") {
		return usagef("--measure and --throughput go with --plot FILE.png")
	}
	models := config.Models()
	if *plotPath != "" {
		return plotZoo(ctx, e, models, *plotPath, *measure, *throughput, *measureBatch, *measureThreads)
	}
	if *asJSON {
		type release struct {
			Name        string  `json:"name"`
			Pretrain    string  `json:"pretrain,omitempty"`
			Top1        float64 `json:"imagenet_top1,omitempty"`
			ReadmeGMACs float64 `json:"readme_gmacs,omitempty"`
			PairsPerSec int     `json:"readme_pairs_per_s,omitempty"`
			HFRepo      string  `json:"hf_repo,omitempty"`
			URL         string  `json:"url,omitempty"`
			Note        string  `json:"note,omitempty"`
		}
		type entry struct {
			Name           string         `json:"name"`
			Inheritance    string         `json:"inheritance,omitempty"`
			Exact          bool           `json:"exact"`
			ImageParams    int64          `json:"image_params"`
			TextParams     int64          `json:"text_params_without_token_embedding"`
			TokenEmbParams int64          `json:"token_embedding_params,omitempty"`
			TotalParams    int64          `json:"total_params,omitempty"`
			ImageGMACs     float64        `json:"image_gmacs,omitempty"`
			TextGMACs      float64        `json:"text_gmacs,omitempty"`
			GMACs          float64        `json:"gmacs"`
			Config         *config.Config `json:"config,omitempty"`
			Releases       []release      `json:"releases,omitempty"`
			Comment        string         `json:"comment,omitempty"`
		}
		out := make([]entry, 0, len(models))
		for _, m := range models {
			en := entry{Name: m.Name, Inheritance: string(m.Inheritance), Config: m.Config}
			if m.Config != nil {
				en.Exact = true
				en.ImageParams, en.TextParams = m.Params.Image, m.Params.TextNoTokenEmb
				en.TokenEmbParams, en.TotalParams = m.Params.TokenEmb, m.Params.Total
				en.ImageGMACs, en.TextGMACs = gmacs(m.MACs.Image), gmacs(m.MACs.Text)
				en.GMACs = gmacs(m.MACs.Total())
			} else if m.Estimate != nil {
				en.ImageParams, en.TextParams = m.Estimate.ImageParams, m.Estimate.TextParamsNoTE
				en.GMACs = m.Estimate.GMACs
				en.Comment = "estimate from the model name; the architecture is read from the checkpoint"
			}
			for i := range m.Releases {
				r := &m.Releases[i]
				en.Releases = append(en.Releases, release{m.ReleaseName(r), r.Pretrain, r.Top1, r.ReadmeGMACs, r.PairsPerSec, r.HFRepo, r.URL, r.Note})
			}
			out = append(out, en)
		}
		return e.printJSON(out)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "model\tinherit\timage params\ttext params*\ttotal params\tGMACs image+text\tIN-1K top-1\tREADME GMACs\t")
	for _, m := range models {
		top1, readme := "-", "-"
		if len(m.Releases) > 0 {
			var t, r []string
			for _, rel := range m.Releases {
				if rel.Top1 > 0 {
					t = append(t, fmt.Sprintf("%.1f", rel.Top1))
				}
				if rel.ReadmeGMACs > 0 {
					r = append(r, fmt.Sprintf("%.1f", rel.ReadmeGMACs))
				}
			}
			if len(t) > 0 {
				top1 = strings.Join(t, "/")
			}
			if len(r) > 0 {
				readme = strings.Join(r, "/")
			}
		}
		inh := string(m.Inheritance)
		if inh == "" {
			inh = "-"
		}
		if m.Config != nil {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.3f + %.3f = %.3f\t%s\t%s\t\n", m.Name, inh,
				commas(m.Params.Image), commas(m.Params.TextNoTokenEmb), commas(m.Params.Total),
				gmacs(m.MACs.Image), gmacs(m.MACs.Text), gmacs(m.MACs.Total()), top1, readme)
		} else if m.Estimate != nil {
			fmt.Fprintf(tw, "%s\t%s\t≈%s\t≈%s\t?\t≈%.1f (estimate)\t%s\t%s\t\n", m.Name, inh,
				commas(m.Estimate.ImageParams), commas(m.Estimate.TextParamsNoTE), m.Estimate.GMACs, top1, readme)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, "\n* text params without the token embedding (the \"Text-xxM\" of the name). GMACs: image 224x224 + text at 77 tokens.")
	fmt.Fprintln(e.stdout, "  Auto models: per-layer sizes are not published; exact counts come from the checkpoint (tinyclip embed loads it).")
	return nil
}

func gmacs(m int64) float64 { return float64(m) / 1e9 }

// commas formats n with thousands separators.
func commas(n int64) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + commas(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// zooMeasured is our throughput of one model, in the units of 'tinyclip bench'.
type zooMeasured struct {
	Model     string  `json:"model"`
	ImagesPS  float64 `json:"images_per_s"`
	TextsPS   float64 `json:"texts_per_s"`
	PairsPS   float64 `json:"pairs_per_s"`
	Batch     int     `json:"batch"`
	Threads   int     `json:"threads"`
	Precision string  `json:"precision"`
}

// zooBenchReport is the part of a 'tinyclip bench --json' report read here.
type zooBenchReport struct {
	Model     string `json:"model"`
	Precision string `json:"precision"`
	Rows      []struct {
		Batch      int     `json:"batch"`
		Threads    int     `json:"threads"`
		ImagesPerS float64 `json:"images_per_s"`
		TextsPerS  float64 `json:"texts_per_s"`
		PairsPerS  float64 `json:"pairs_per_s"`
	} `json:"rows"`
}

// best returns the report's row with the most pairs/s.
func (b *zooBenchReport) best() (zooMeasured, bool) {
	var m zooMeasured
	for _, r := range b.Rows {
		if r.PairsPerS > m.PairsPS {
			m = zooMeasured{b.Model, r.ImagesPerS, r.TextsPerS, r.PairsPerS, r.Batch, r.Threads, b.Precision}
		}
	}
	return m, m.PairsPS > 0
}

// readThroughput reads saved bench reports: a sequence of JSON objects, or
// arrays of them. Each model's best row is kept.
func readThroughput(path string) (map[string]zooMeasured, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]zooMeasured{}
	dec := json.NewDecoder(f)
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		var reports []zooBenchReport
		if len(raw) > 0 && raw[0] == '[' {
			err = json.Unmarshal(raw, &reports)
		} else {
			var one zooBenchReport
			err = json.Unmarshal(raw, &one)
			reports = []zooBenchReport{one}
		}
		if err != nil {
			return nil, fmt.Errorf("%s: not a 'tinyclip bench --json' report: %w", path, err)
		}
		for i := range reports {
			if m, ok := reports[i].best(); ok {
				key := strings.ToLower(reports[i].Model)
				if m.PairsPS > out[key].PairsPS {
					out[key] = m
				}
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no bench report with measurements", path)
	}
	return out, nil
}

// measureZoo runs 'tinyclip bench --random NAME' in-process for each model.
func measureZoo(ctx context.Context, e *env, names []string, batch, threads int) (map[string]zooMeasured, error) {
	found := false
	for _, c := range commands {
		found = found || c.name == "bench"
	}
	if !found {
		return nil, fmt.Errorf("--measure needs the bench command, which this build lacks")
	}
	out := map[string]zooMeasured{}
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		fmt.Fprintf(e.stderr, "tinyclip models: measuring %s (random weights, batch %d, %d threads)\n", name, batch, threads)
		var buf, errb bytes.Buffer
		args := []string{"bench", "--random", name, "--batch", fmt.Sprint(batch), "--threads", fmt.Sprint(threads),
			"--warmup", "1", "--iters", "3", "--json"}
		if code := run(ctx, &env{strings.NewReader(""), &buf, &errb}, args); code != 0 {
			return nil, fmt.Errorf("measuring %s: tinyclip %s: exit %d: %s", name, strings.Join(args, " "), code, strings.TrimSpace(errb.String()))
		}
		var b zooBenchReport
		if err := json.Unmarshal(buf.Bytes(), &b); err != nil {
			return nil, fmt.Errorf("measuring %s: bench output: %w", name, err)
		}
		m, ok := b.best()
		if !ok {
			return nil, fmt.Errorf("measuring %s: bench reported no throughput", name)
		}
		m.Model = name
		out[strings.ToLower(name)] = m
	}
	return out, nil
}

// zooLabel is a short name for the figure: without the "TinyCLIP-" prefix,
// with the pretraining data when a model has several releases.
func zooLabel(m *config.ModelInfo, r *config.Release) string {
	l := strings.TrimPrefix(m.Name, "TinyCLIP-")
	if len(m.Releases) > 1 {
		l += " (" + r.Pretrain + ")"
	}
	return l
}

func plotZoo(ctx context.Context, e *env, models []config.ModelInfo, path, measure, throughput string, batch, threads int) error {
	var meas map[string]zooMeasured
	var note string
	var err error
	switch {
	case measure != "" && throughput != "":
		return usagef("give --measure or --throughput, not both")
	case measure != "":
		var names []string
		if strings.EqualFold(measure, "all") {
			for _, m := range models {
				if m.Config != nil && len(m.Releases) > 0 && m.Releases[0].Top1 > 0 {
					names = append(names, m.Name)
				}
			}
		} else {
			for _, n := range strings.Split(measure, ",") {
				mi, ok := config.Lookup(strings.TrimSpace(n))
				if !ok {
					return usagef("--measure: unknown model %q (see 'tinyclip models')", n)
				}
				if mi.Config == nil {
					return usagef("--measure: %s has no published architecture to build random weights from", mi.Name)
				}
				names = append(names, mi.Name)
			}
		}
		if meas, err = measureZoo(ctx, e, names, batch, threads); err != nil {
			return err
		}
		note = fmt.Sprintf("ours, CPU, %d threads, batch %d, random weights", threads, batch)
	case throughput != "":
		if meas, err = readThroughput(throughput); err != nil {
			return err
		}
		note = "ours, CPU, from " + filepath.Base(throughput)
	}
	var pts []plot.ZooPoint
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "model\tIN-1K top-1\tGMACs\tpublished pairs/s (GPU)\tmeasured pairs/s\tmeasured images/s\tmeasured texts/s\t")
	for _, m := range models {
		for i := range m.Releases {
			r := &m.Releases[i]
			if r.Top1 <= 0 {
				continue
			}
			p := plot.ZooPoint{Label: zooLabel(&m, r), Top1: r.Top1, Published: float64(r.PairsPerSec)}
			if m.Config != nil {
				p.GMACs = gmacs(m.MACs.Total())
			} else if m.Estimate != nil {
				p.GMACs, p.Estimated = m.Estimate.GMACs, true
			}
			ms, ok := meas[strings.ToLower(m.Name)]
			if !ok {
				ms, ok = meas[strings.ToLower(m.ReleaseName(r))]
			}
			mp, mi, mt := "-", "-", "-"
			if ok {
				p.Measured = ms.PairsPS
				mp, mi, mt = fmt.Sprintf("%.1f", ms.PairsPS), fmt.Sprintf("%.1f", ms.ImagesPS), fmt.Sprintf("%.1f", ms.TextsPS)
			}
			est := ""
			if p.Estimated {
				est = "≈"
			}
			fmt.Fprintf(tw, "%s\t%.1f\t%s%.2f\t%d\t%s\t%s\t%s\t\n", p.Label, p.Top1, est, p.GMACs, r.PairsPerSec, mp, mi, mt)
			pts = append(pts, p)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := plot.Zoo(&buf, pts, note); err != nil {
		return err
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "\nwrote %s (top-1 and pairs/s published in the TinyCLIP README; GMACs ours, exact for manual models, estimated for auto ones", path)
	if note != "" {
		fmt.Fprintf(e.stdout, "; measured: %s", note)
	}
	fmt.Fprintln(e.stdout, ")")
	return nil
}
