package data

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// memDataset is a Dataset of n samples whose bytes are their index; samples
// in bad fail to read.
type memDataset struct {
	n     int
	bad   map[int]bool
	reads atomic.Int64
}

func (m *memDataset) Len() int            { return m.n }
func (m *memDataset) Sample(i int) Sample { return Sample{Name: strconv.Itoa(i), Label: i % 3} }
func (m *memDataset) Classes() []string   { return nil }
func (m *memDataset) Close() error        { return nil }
func (m *memDataset) Read(i int) ([]byte, error) {
	m.reads.Add(1)
	if m.bad[i] {
		return nil, fmt.Errorf("sample %d: %w", i, ErrFormat)
	}
	return []byte(strconv.Itoa(i)), nil
}

func TestPipelineOrder(t *testing.T) {
	ds := &memDataset{n: 103, bad: map[int]bool{5: true, 64: true}}
	// Random delays make the workers finish out of order.
	fn := func(s Sample, b []byte) (int, error) {
		time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
		n, err := strconv.Atoi(string(b))
		if n == 77 {
			return 0, errors.New("processing failed")
		}
		return n * 10, err
	}
	for _, workers := range []int{1, 3, 8} {
		p := NewPipeline(context.Background(), ds, fn, PipelineOptions{BatchSize: 10, Workers: workers})
		next, batches := 0, 0
		for {
			b, err := p.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			batches++
			if len(b) != 10 && next+len(b) != ds.n {
				t.Errorf("batch of %d in the middle", len(b))
			}
			for _, it := range b {
				if it.Index != next || it.Sample.Name != strconv.Itoa(next) {
					t.Fatalf("workers %d: item %d has index %d (%q)", workers, next, it.Index, it.Sample.Name)
				}
				switch next {
				case 5, 64:
					if !errors.Is(it.Err, ErrFormat) {
						t.Errorf("sample %d: error %v, want the read error", next, it.Err)
					}
				case 77:
					if it.Err == nil || it.Err.Error() != "processing failed" {
						t.Errorf("sample 77: error %v", it.Err)
					}
				default:
					if it.Err != nil || it.Value != 10*next {
						t.Errorf("sample %d: %v, %v", next, it.Value, it.Err)
					}
				}
				next++
			}
		}
		p.Close()
		if next != ds.n || batches != 11 {
			t.Errorf("workers %d: %d items in %d batches, want %d in 11", workers, next, batches, ds.n)
		}
	}
}

func TestPipelineIndices(t *testing.T) {
	ds := &memDataset{n: 10}
	idx := []int{9, 0, 4, 4, 12}
	p := NewPipeline(context.Background(), ds, func(s Sample, b []byte) (string, error) { return string(b), nil },
		PipelineOptions{BatchSize: 2, Indices: idx})
	defer p.Close()
	var got []Item[string]
	for {
		b, err := p.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, b...)
	}
	if len(got) != len(idx) {
		t.Fatalf("%d items, want %d", len(got), len(idx))
	}
	for k, i := range idx[:4] {
		if got[k].Index != i || got[k].Value != strconv.Itoa(i) || got[k].Err != nil {
			t.Errorf("item %d: %+v", k, got[k])
		}
	}
	if got[4].Err == nil {
		t.Error("index 12 of 10 samples: no error")
	}
}

func TestPipelineStopEarly(t *testing.T) {
	before := runtime.NumGoroutine()
	ds := &memDataset{n: 100000}
	ctx, cancel := context.WithCancel(context.Background())
	p := NewPipeline(ctx, ds, func(s Sample, b []byte) (int, error) { return 0, nil }, PipelineOptions{BatchSize: 8, Workers: 4})
	if _, err := p.Next(); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := p.Next(); !errors.Is(err, context.Canceled) {
		// A batch completed before the cancellation may still arrive.
		if _, err := p.Next(); !errors.Is(err, context.Canceled) {
			t.Errorf("after cancel: %v", err)
		}
	}
	p.Close()
	if r := ds.reads.Load(); r > 8*6 {
		t.Errorf("%d samples read after stopping at the first batch: prefetch is not bounded", r)
	}
	// Closing without reading to the end leaves no goroutine behind.
	p = NewPipeline(context.Background(), ds, func(s Sample, b []byte) (int, error) { return 0, nil }, PipelineOptions{})
	p.Next()
	p.Close()
	if _, err := p.Next(); err != io.EOF {
		t.Errorf("Next after Close: %v", err)
	}
	for range 50 {
		if runtime.NumGoroutine() <= before {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("%d goroutines before, %d after Close", before, runtime.NumGoroutine())
}
