package data

import (
	"context"
	"math"
	"testing"
	"time"
)

// TestStreamStats: the worker counters account for every sample handed
// out or skipped, count no more than what the queue lets the workers
// decode ahead, and give a positive, finite throughput.
func TestStreamStats(t *testing.T) {
	root := t.TempDir()
	writePNGFolder(t, root, 20, map[int]bool{3: true, 11: true})
	ds, err := OpenImageFolder(root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	opts := streamOpts(4, 16)
	opts.Workers, opts.Prefetch = 2, 1
	s, err := NewStream(context.Background(), ds, opts)
	if err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Workers != 2 {
		t.Errorf("stats %+v: want 2 workers", st)
	}
	good, skipped, positions := 0, 0, 0
	for range 6 { // 18 good samples per epoch: the 5th batch starts epoch 1
		b, err := s.Next()
		if err != nil {
			t.Fatal(err)
		}
		good += len(b.Tokens)
		skipped += len(b.Skipped)
		positions += len(b.Tokens) + len(b.Skipped) + b.Dropped
	}
	s.Close()
	st := s.Stats()
	if st.Samples < int64(good) || st.Failed < int64(skipped) {
		t.Errorf("stats %+v: fewer than the %d samples and %d skips handed out", st, good, skipped)
	}
	// The workers run at most a queue (Prefetch·BatchSize) and one job per
	// worker ahead of the consumer.
	if ahead := st.Samples + st.Failed - int64(positions); ahead > int64(opts.Prefetch*opts.BatchSize+opts.Workers+1) {
		t.Errorf("stats %+v: %d samples beyond the %d consumed positions", st, ahead, positions)
	}
	if st.Busy <= 0 {
		t.Errorf("busy %v", st.Busy)
	}
	if r := st.ImagesPerSecond(); !(r > 0) || math.IsInf(r, 0) {
		t.Errorf("images/s %v", r)
	}
}

func TestStreamStatsRate(t *testing.T) {
	for _, c := range []struct {
		st   StreamStats
		want float64
	}{
		{StreamStats{}, 0},
		{StreamStats{Workers: 2, Samples: 10}, 0},
		{StreamStats{Workers: 2, Samples: 10, Busy: time.Second}, 20},
		{StreamStats{Workers: 4, Samples: 6, Failed: 2, Busy: 2 * time.Second}, 16},
	} {
		if got := c.st.ImagesPerSecond(); got != c.want {
			t.Errorf("%+v: %v images/s, want %v", c.st, got, c.want)
		}
	}
}
