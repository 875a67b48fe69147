// Command loadtest measures the throughput and latency of the tinyclip
// service on this machine: for each setting of batching (on, off) and each
// number of concurrent clients, it serves a model in-process on 127.0.0.1,
// lets the clients send requests back to back for a fixed time (or up to a
// request budget), and reports requests per second, p50/p99 latency, errors
// and the mean engine batch. Settings are run in rounds, alternating, and
// the medians over rounds are reported, so that a noisy machine affects all
// settings alike.
//
// Usage:
//
//	go run ./cmd/loadtest [-model DIR] [-inputs DIR] [-kind text|image|mixed] [-clients 1,4,16]
//	    [-batching on,off] [-duration 5s] [-max-requests 50000] [-rounds 3] [-json FILE]
//
// With -url it loads a server that is already running instead (which must
// listen on a loopback address); batching is then whatever that server does.
package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tinyclip-go/tinyclip"
	"github.com/tinyclip-go/tinyclip/internal/serve"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

// result is one run: one setting, one number of clients, one round.
type result struct {
	Batching   string  `json:"batching"`
	Clients    int     `json:"clients"`
	Round      int     `json:"round"`
	Requests   int     `json:"requests"`
	Errors     int     `json:"errors"`
	Seconds    float64 `json:"seconds"`
	RPS        float64 `json:"rps"`
	ItemsPS    float64 `json:"items_per_s"`
	P50ms      float64 `json:"p50_ms"`
	P99ms      float64 `json:"p99_ms"`
	MeanBatch  float64 `json:"mean_batch"`
	FirstError string  `json:"first_error,omitempty"`
}

func run() error {
	model := flag.String("model", filepath.Join("..", "shared", "fixtures", "models", "vit-p16"), "model to serve (a path, or anything --model takes if already cached)")
	inputs := flag.String("inputs", filepath.Join("..", "shared", "fixtures", "models", "inputs"), "folder with the image inputs (a_square.png, b_wide.png, c_tall.jpg, d_square.jpg)")
	kind := flag.String("kind", "text", "request kind: text (one text per request), image (one image), mixed (alternating)")
	items := flag.Int("items", 1, "inputs per request")
	clientsFlag := flag.String("clients", "1,4,16", "numbers of concurrent clients")
	batchingFlag := flag.String("batching", "on,off", "batching settings to compare")
	duration := flag.Duration("duration", 5*time.Second, "length of each run")
	warmup := flag.Duration("warmup", time.Second, "untimed load before each run")
	maxRequests := flag.Int("max-requests", 50000, "most requests per run")
	rounds := flag.Int("rounds", 3, "rounds over all settings (medians are reported)")
	maxBatch := flag.Int("max-batch", 32, "server --max-batch")
	maxWait := flag.Duration("max-wait", 2*time.Millisecond, "server --max-wait")
	workers := flag.Int("workers", 2, "server --workers")
	threads := flag.Int("threads", 0, "engine goroutines per call (0: GOMAXPROCS)")
	target := flag.String("url", "", "load this running server (loopback only) instead of serving in-process")
	jsonOut := flag.String("json", "", "also write every run as JSON to this file")
	flag.Parse()

	clients, err := intList(*clientsFlag)
	if err != nil {
		return fmt.Errorf("-clients: %w", err)
	}
	settings := strings.Split(*batchingFlag, ",")
	for _, s := range settings {
		if s != "on" && s != "off" {
			return fmt.Errorf("-batching: %q is neither on nor off", s)
		}
	}
	if *target != "" {
		if err := checkLoopback(*target); err != nil {
			return err
		}
		settings = []string{"external"}
	}
	if *rounds < 1 || *items < 1 || *duration <= 0 || *maxRequests < 1 {
		return errors.New("-rounds, -items, -duration and -max-requests must be positive")
	}
	bodies, err := requestBodies(*inputs, *kind, *items)
	if err != nil {
		return err
	}

	ctx := context.Background()
	var m *tinyclip.Model
	if *target == "" {
		var opts []tinyclip.Option
		if *threads > 0 {
			opts = append(opts, tinyclip.WithThreads(*threads))
		}
		if m, err = tinyclip.Load(ctx, *model, opts...); err != nil {
			return err
		}
	}
	fmt.Printf("loadtest: model %s, %s requests × %d inputs, %v per run (+%v warm-up), ≤ %d requests, %d rounds, server max-batch %d max-wait %v workers %d, GOMAXPROCS %d, %s/%s\n",
		*model, *kind, *items, *duration, *warmup, *maxRequests, *rounds, *maxBatch, *maxWait, *workers, runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH)

	var all []result
	for round := 1; round <= *rounds; round++ {
		for _, n := range clients {
			// Alternate the order of the settings between rounds.
			order := slices.Clone(settings)
			if round%2 == 0 {
				slices.Reverse(order)
			}
			for _, setting := range order {
				base, reg, stop := *target, (*prometheus.Registry)(nil), func() {}
				if base == "" {
					if base, reg, stop, err = startServer(m, setting == "on", *maxBatch, *maxWait, *workers); err != nil {
						return err
					}
				}
				r := load(base, bodies, n, *warmup, *duration, *maxRequests, reg)
				stop()
				r.Batching, r.Clients, r.Round = setting, n, round
				r.ItemsPS = r.RPS * float64(*items)
				all = append(all, r)
				fmt.Fprintf(os.Stderr, "round %d batching %-8s clients %2d: %8.1f req/s  p50 %7.2f ms  p99 %7.2f ms  errors %d  mean batch %.1f\n",
					round, setting, n, r.RPS, r.P50ms, r.P99ms, r.Errors, r.MeanBatch)
			}
		}
	}
	report(os.Stdout, all, settings, clients)
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(all, "", "  ")
		if err := os.WriteFile(*jsonOut, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	for _, r := range all {
		if r.Errors > 0 {
			return fmt.Errorf("%d errors in a run (batching %s, %d clients): %s", r.Errors, r.Batching, r.Clients, r.FirstError)
		}
	}
	return nil
}

func intList(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// checkLoopback refuses targets other than this machine.
func checkLoopback(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" {
		return fmt.Errorf("-url %q: want http://127.0.0.1:PORT", raw)
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("-url %q: only loopback addresses may be loaded", raw)
	}
	return nil
}

// requestBodies builds the JSON bodies the clients cycle through.
func requestBodies(dir, kind string, items int) ([][]byte, error) {
	texts := []string{"a photo of a cat", "a photo of a dog", "a diagram", "a bird on a branch", "a red car in the rain",
		"two people on a beach at sunset", "a bowl of fruit", "the quick brown fox jumps over the lazy dog",
		"a black and white photo of a city street", "an astronaut riding a horse", "a close-up of a flower", "a plate of pasta"}
	var images []string
	if kind != "text" {
		for _, name := range []string{"a_square.png", "b_wide.png", "c_tall.jpg", "d_square.jpg"} {
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				return nil, fmt.Errorf("image inputs: %w (see -inputs)", err)
			}
			images = append(images, base64.StdEncoding.EncodeToString(b))
		}
	}
	var bodies [][]byte
	for i := range 24 {
		var input []any
		for k := range items {
			j := i*items + k
			isImage := kind == "image" || kind == "mixed" && (i+k)%2 == 1
			if isImage {
				input = append(input, map[string]any{"type": "image", "image": images[j%len(images)]})
			} else {
				input = append(input, texts[j%len(texts)])
			}
		}
		if kind != "text" && kind != "image" && kind != "mixed" {
			return nil, fmt.Errorf("-kind %q: want text, image or mixed", kind)
		}
		b, _ := json.Marshal(map[string]any{"input": input})
		bodies = append(bodies, b)
	}
	return bodies, nil
}

// startServer serves m on a free loopback port.
func startServer(m *tinyclip.Model, batching bool, maxBatch int, maxWait time.Duration, workers int) (string, *prometheus.Registry, func(), error) {
	reg := prometheus.NewRegistry()
	if maxWait == 0 {
		maxWait = -1
	}
	s := serve.New(m, serve.Options{MaxBatch: maxBatch, MaxWait: maxWait, Workers: workers, NoBatching: !batching, Registry: reg,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, nil, err
	}
	hs := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		hs.Shutdown(ctx)
		s.Close()
	}
	return "http://" + ln.Addr().String(), reg, stop, nil
}

// batchTotals returns the summed count and sum of tinyclip_batch_size.
func batchTotals(reg *prometheus.Registry) (count uint64, sum float64) {
	if reg == nil {
		return 0, 0
	}
	mfs, err := reg.Gather()
	if err != nil {
		return 0, 0
	}
	for _, mf := range mfs {
		if mf.GetName() == "tinyclip_batch_size" {
			for _, mt := range mf.GetMetric() {
				count += mt.GetHistogram().GetSampleCount()
				sum += mt.GetHistogram().GetSampleSum()
			}
		}
	}
	return count, sum
}

// load runs n clients against base: warm-up, then a timed run.
func load(base string, bodies [][]byte, n int, warmup, d time.Duration, maxRequests int, reg *prometheus.Registry) result {
	tr := &http.Transport{MaxIdleConns: n, MaxIdleConnsPerHost: n, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: time.Minute}
	fire := func(i int) (time.Duration, error) {
		start := time.Now()
		resp, err := client.Post(base+"/v1/embeddings", "application/json", bytes.NewReader(bodies[i%len(bodies)]))
		if err != nil {
			return 0, err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return time.Since(start), err
	}
	phase := func(d time.Duration, budget int, record bool) ([]time.Duration, int, string, time.Duration) {
		var next atomic.Int64
		var mu sync.Mutex
		var lat []time.Duration
		errs, first := 0, ""
		deadline := time.Now().Add(d)
		start := time.Now()
		var wg sync.WaitGroup
		for c := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var mine []time.Duration
				for time.Now().Before(deadline) {
					i := int(next.Add(1))
					if i > budget {
						break
					}
					l, err := fire(i + c)
					mu.Lock()
					if err != nil {
						errs++
						if first == "" {
							first = err.Error()
						}
					}
					mu.Unlock()
					if err == nil {
						mine = append(mine, l)
					}
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			}()
		}
		wg.Wait()
		_ = record
		return lat, errs, first, time.Since(start)
	}
	if warmup > 0 {
		phase(warmup, maxRequests, false)
	}
	c0, s0 := batchTotals(reg)
	lat, errs, first, elapsed := phase(d, maxRequests, true)
	c1, s1 := batchTotals(reg)
	r := result{Requests: len(lat) + errs, Errors: errs, FirstError: first, Seconds: elapsed.Seconds()}
	r.RPS = float64(len(lat)) / elapsed.Seconds()
	if len(lat) > 0 {
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		r.P50ms = ms(lat[len(lat)/2])
		r.P99ms = ms(lat[min(len(lat)-1, len(lat)*99/100)])
	}
	if c1 > c0 {
		r.MeanBatch = (s1 - s0) / float64(c1-c0)
	}
	return r
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// report prints the medians over rounds as a Markdown table, and the
// batching speed-up per number of clients.
func report(w io.Writer, all []result, settings []string, clients []int) {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(w)
	fmt.Fprintln(tw, "| batching\t clients\t req/s (median)\t p50 ms\t p99 ms\t mean batch\t errors\t requests\t")
	fmt.Fprintln(tw, "|---\t---\t---\t---\t---\t---\t---\t---\t")
	rps := map[string]map[int]float64{}
	for _, s := range settings {
		rps[s] = map[int]float64{}
		for _, n := range clients {
			var r, p50, p99, mb []float64
			errs, reqs := 0, 0
			for _, x := range all {
				if x.Batching == s && x.Clients == n {
					r, p50, p99, mb = append(r, x.RPS), append(p50, x.P50ms), append(p99, x.P99ms), append(mb, x.MeanBatch)
					errs += x.Errors
					reqs += x.Requests
				}
			}
			rps[s][n] = median(r)
			fmt.Fprintf(tw, "| %s\t %d\t %.0f\t %.2f\t %.2f\t %.1f\t %d\t %d\t\n", s, n, median(r), median(p50), median(p99), median(mb), errs, reqs)
		}
	}
	tw.Flush()
	if rps["on"] != nil && rps["off"] != nil {
		fmt.Fprintln(w)
		for _, n := range clients {
			if off := rps["off"][n]; off > 0 {
				fmt.Fprintf(w, "batching speed-up at %d clients: %.2f×\n", n, rps["on"][n]/off)
			}
		}
	}
}
