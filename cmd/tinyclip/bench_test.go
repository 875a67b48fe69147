package main

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/tinyclip-go/tinyclip/internal/config"
)

func TestBench(t *testing.T) {
	cfg := writeTinyConfig(t)
	for _, prec := range []string{"fp32", "bf16"} {
		t.Run(prec, func(t *testing.T) {
			out, stderr, code := runCLI(t, "", "bench", "--random", cfg, "--seed", "2", "--batch", "1,3",
				"--threads", "1,2", "--iters", "1", "--warmup", "0", "--precision", prec, "--spin", "20us", "--json")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			var rep benchReport
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			if rep.SpinWaitUs != 20 {
				t.Errorf("spin_wait_us %g, want 20", rep.SpinWaitUs)
			}
			if len(rep.Rows) != 4 {
				t.Fatalf("%d rows, want 4 (2 batches × 2 thread counts)", len(rep.Rows))
			}
			for i, r := range rep.Rows {
				if r.Batch != []int{1, 3, 1, 3}[i] || r.Threads != []int{1, 1, 2, 2}[i] {
					t.Errorf("row %d: batch %d threads %d", i, r.Batch, r.Threads)
				}
				if !(r.MsImage > 0 && r.MsText > 0) {
					t.Errorf("row %d: ms/image %v, ms/text %v", i, r.MsImage, r.MsText)
				}
				// pairs/s is the harmonic combination of measure_throughput.py.
				want := 1 / (1/r.ImagesPerS + 1/r.TextsPerS)
				if math.Abs(r.PairsPerS-want) > 1e-9*want {
					t.Errorf("row %d: pairs/s %v, want %v", i, r.PairsPerS, want)
				}
			}
			a, err := config.FromConfig(mustParse(t, tinyConfig))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := rep.ImageGMACs, float64(a.MACs().Image)/1e9; math.Abs(got-want) > 1e-12 {
				t.Errorf("image GMACs %v, want %v", got, want)
			}
			if got, want := rep.TextGMACs77, float64(a.MACs().Text)/1e9; math.Abs(got-want) > 1e-12 {
				t.Errorf("77-token text GMACs %v, want %v", got, want)
			}
			// "a photo of a X." is at least 7 tokens with SOT and EOT.
			if rep.TextTokens < 7 || rep.TextTokens > 20 || rep.TextGMACs >= rep.TextGMACs77 {
				t.Errorf("texts: %v tokens, %v GMACs (77 tokens: %v)", rep.TextTokens, rep.TextGMACs, rep.TextGMACs77)
			}
			if rep.Precision == "bf16" {
				if rep.CosineImageMin == nil || *rep.CosineImageMin < 0.999 || *rep.CosineTextMin < 0.999 {
					t.Errorf("bf16 cosines %v %v, want ≥ 0.999", rep.CosineImageMin, rep.CosineTextMin)
				}
			} else if prec == "bf16" {
				t.Log("no AVX512-BF16: the model ran in fp32")
			}
		})
	}
	// The table form.
	out, stderr, code := runCLI(t, "", "bench", "--random", cfg, "--batch", "2", "--iters", "1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"ms/image", "pairs/s", "GMACs", "start-up"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func mustParse(t *testing.T, s string) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestBenchErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"neither", []string{"bench"}, "exactly one"},
		{"both", []string{"bench", "--model", "x", "--random", "RN50"}, "exactly one"},
		{"bad batch", []string{"bench", "--random", "RN50", "--batch", "0"}, "positive integer"},
		{"bad precision", []string{"bench", "--random", "RN50", "--precision", "fp8"}, "precision"},
		{"bad iters", []string{"bench", "--random", "RN50", "--iters", "0"}, "--iters"},
		{"negative spin", []string{"bench", "--random", "RN50", "--spin", "-5us"}, "--spin"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, stderr, code := runCLI(t, "", c.args...)
			if code != 2 || !strings.Contains(stderr, c.want) {
				t.Errorf("exit %d, stderr %q; want exit 2 and %q", code, stderr, c.want)
			}
		})
	}
}

func FuzzIntList(f *testing.F) {
	for _, s := range []string{"1,8", "1", " 2 , 3", "0", "-1", "1,,2", "x", "99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var l intList
		if err := l.Set(s); err != nil {
			return
		}
		if len(l) == 0 {
			t.Fatalf("%q: accepted as an empty list", s)
		}
		for _, v := range l {
			if v < 1 {
				t.Fatalf("%q: accepted %d", s, v)
			}
		}
		var again intList
		if err := again.Set(l.String()); err != nil || again.String() != l.String() {
			t.Fatalf("%q: String %q does not parse back (%v)", s, l.String(), err)
		}
	})
}
