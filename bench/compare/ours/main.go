// Command ours is the tinyclip side of bench/compare: it reads JSON
// commands on stdin and answers JSON lines, like torch_runner.py.
//
//	{"op": "run", "model": DIR, "tower": "image"|"text", "batch": B,
//	 "threads": T, "precision": "fp32"|"bf16", "iters": N, "warmup": W,
//	 "offset": K}  ->  {"ms": median ms per item, "tokens": mean tokens}
//	{"op": "macs", "model": DIR}  ->  {"image_gmacs": G}
//
// Images are random normalised pixels (preprocessing is not timed, as for
// the peers); texts are "a photo of a {class}." over the ImageNet classes
// from class K on, tokenized and run on their real tokens.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/tinyclip-go/tinyclip"
	"github.com/tinyclip-go/tinyclip/internal/config"
)

type command struct {
	Op        string `json:"op"`
	Model     string `json:"model"`
	Tower     string `json:"tower"`
	Batch     int    `json:"batch"`
	Threads   int    `json:"threads"`
	Precision string `json:"precision"`
	Iters     int    `json:"iters"`
	Warmup    int    `json:"warmup"`
	Offset    int    `json:"offset"`
	// SpinUs is tinyclip.SetSpinWait in microseconds for this run (0: the
	// default, sleep at once).
	SpinUs int `json:"spin_us"`
}

type result struct {
	ImageGMACs float64 `json:"image_gmacs,omitempty"`
	Ms         float64 `json:"ms,omitempty"`
	Tokens     float64 `json:"tokens,omitempty"`
	Precision  string  `json:"precision,omitempty"`
	Error      string  `json:"error,omitempty"`
}

var (
	models = map[string]*tinyclip.Model{}
	names  []string
)

func model(ctx context.Context, c *command) (*tinyclip.Model, error) {
	key := fmt.Sprintf("%s|%d|%s", c.Model, c.Threads, c.Precision)
	if m, ok := models[key]; ok {
		return m, nil
	}
	p, err := tinyclip.ParsePrecision(c.Precision)
	if err != nil {
		return nil, err
	}
	m, err := tinyclip.Load(ctx, c.Model, tinyclip.WithThreads(c.Threads), tinyclip.WithPrecision(p))
	if err != nil {
		return nil, err
	}
	models[key] = m
	return m, nil
}

func run(ctx context.Context, c *command) (result, error) {
	m, err := model(ctx, c)
	if err != nil {
		return result{}, err
	}
	defer tinyclip.SetSpinWait(tinyclip.SetSpinWait(time.Duration(c.SpinUs) * time.Microsecond))
	b := c.Batch
	const s = 224
	r := rand.New(rand.NewPCG(1, 1))
	pixels := make([]float32, b*3*s*s)
	for i := range pixels {
		pixels[i] = float32(r.NormFloat64())
	}
	var times []float64
	var tokens, texts float64
	for i := range c.Warmup + c.Iters {
		var texts0 []string
		if c.Tower == "text" {
			for j := range b {
				texts0 = append(texts0, "a photo of a "+names[(c.Offset+i*b+j)%len(names)]+".")
			}
		}
		start := time.Now()
		if c.Tower == "image" {
			_, err = m.EncodePixels(ctx, pixels, b, tinyclip.Raw())
		} else {
			_, err = m.EncodeTexts(ctx, texts0, tinyclip.Raw())
		}
		el := float64(time.Since(start).Nanoseconds()) / 1e6
		if err != nil {
			return result{}, err
		}
		if i >= c.Warmup {
			times = append(times, el/float64(b))
			for _, t := range texts0 {
				ids, _ := m.Tokenize(t)
				tokens += float64(len(ids))
				texts++
			}
		}
	}
	slices.Sort(times)
	med := times[len(times)/2]
	if len(times)%2 == 0 {
		med = (times[len(times)/2-1] + med) / 2
	}
	res := result{Ms: med, Precision: string(m.Precision())}
	if texts > 0 {
		res.Tokens = tokens / texts
	}
	return res, nil
}

// imageGMACs returns the image tower's multiply-accumulates (spec §10).
func imageGMACs(ctx context.Context, c *command) (float64, error) {
	c.Threads, c.Precision = 1, "fp32"
	m, err := model(ctx, c)
	if err != nil {
		return 0, err
	}
	a, err := config.FromConfig(m.Config())
	if err != nil {
		return 0, err
	}
	return float64(a.MACs().Image) / 1e9, nil
}

func main() {
	data, err := os.ReadFile(os.Getenv("CLASSNAMES"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "ours: CLASSNAMES:", err)
		os.Exit(1)
	}
	names = strings.Split(strings.TrimSpace(string(data)), "\n")
	ctx := context.Background()
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<24)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var c command
		var res result
		if err := json.Unmarshal(in.Bytes(), &c); err != nil {
			res.Error = err.Error()
		} else if c.Op == "macs" {
			if res.ImageGMACs, err = imageGMACs(ctx, &c); err != nil {
				res.Error = err.Error()
			}
		} else if c.Op != "run" {
			res.Error = "unknown op " + c.Op
		} else if res, err = run(ctx, &c); err != nil {
			res.Error = err.Error()
		}
		if err := out.Encode(res); err != nil {
			os.Exit(1)
		}
	}
}
