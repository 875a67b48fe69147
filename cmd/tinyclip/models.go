package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/tinyclip-go/tinyclip/internal/config"
)

func init() {
	register(command{"models", "list the model zoo with parameter counts and GMACs", runModels, 90})
}

func runModels(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "models", "[--json]")
	asJSON := fs.Bool("json", false, "print the registry as JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected arguments %q", pos)
	}
	models := config.Models()
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
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
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
