package data

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sync"
)

// Item is one processed sample.
type Item[T any] struct {
	// Index is the sample's position in the dataset.
	Index int
	// Sample describes the sample.
	Sample Sample
	// Value is what the processing function returned; the zero value when
	// Err is set.
	Value T
	// Err is the error of reading or processing this sample; other samples
	// are not affected.
	Err error
}

// PipelineOptions configures NewPipeline.
type PipelineOptions struct {
	// BatchSize is the number of samples per batch (default 32).
	BatchSize int
	// Workers is the number of goroutines reading and processing samples
	// (default GOMAXPROCS).
	Workers int
	// Prefetch is the number of batches prepared ahead of the consumer
	// (default 2).
	Prefetch int
	// Indices lists the samples to process, in order; nil means all samples
	// in dataset order.
	Indices []int
}

// Pipeline reads and processes the samples of a dataset on several
// goroutines and returns them in batches, in order: the batches and the
// items within them follow Indices whatever the scheduling, so results are
// deterministic. Memory is bounded by (Prefetch+2)·BatchSize processed
// samples. A Pipeline is used from one goroutine.
type Pipeline[T any] struct {
	ctx     context.Context
	cancel  context.CancelFunc
	batches chan *pending[T]
	wg      sync.WaitGroup
	closed  bool
}

type pending[T any] struct {
	items []Item[T]
	left  sync.WaitGroup
}

type job[T any] struct {
	b   *pending[T]
	pos int
}

// NewPipeline starts processing ds with fn, which receives each sample and
// its bytes and may run concurrently with itself. Call Close when done (it
// is safe to stop early).
func NewPipeline[T any](ctx context.Context, ds Dataset, fn func(Sample, []byte) (T, error), opts PipelineOptions) *Pipeline[T] {
	if opts.BatchSize <= 0 {
		opts.BatchSize = 32
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	if opts.Prefetch <= 0 {
		opts.Prefetch = 2
	}
	idx := opts.Indices
	if idx == nil {
		idx = make([]int, ds.Len())
		for i := range idx {
			idx[i] = i
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	p := &Pipeline[T]{ctx: ctx, cancel: cancel, batches: make(chan *pending[T], opts.Prefetch)}
	jobs := make(chan job[T], opts.BatchSize)

	for range opts.Workers {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for j := range jobs {
				it := &j.b.items[j.pos]
				if ctx.Err() == nil {
					it.Value, it.Err = process(ds, it, fn)
				} else {
					it.Err = ctx.Err()
				}
				j.b.left.Done()
			}
		}()
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer close(jobs)
		defer close(p.batches)
		for start := 0; start < len(idx); start += opts.BatchSize {
			end := min(start+opts.BatchSize, len(idx))
			b := &pending[T]{items: make([]Item[T], end-start)}
			for k := range b.items {
				i := idx[start+k]
				b.items[k].Index = i
				if i < 0 || i >= ds.Len() {
					b.items[k].Err = fmt.Errorf("data: index %d out of range [0, %d)", i, ds.Len())
					continue
				}
				b.items[k].Sample = ds.Sample(i)
			}
			b.left.Add(len(b.items))
			select {
			case p.batches <- b:
			case <-ctx.Done():
				return
			}
			for k := range b.items {
				if b.items[k].Err != nil {
					b.left.Done()
					continue
				}
				select {
				case jobs <- job[T]{b, k}:
				case <-ctx.Done():
					for ; k < len(b.items); k++ {
						b.items[k].Err = ctx.Err()
						b.left.Done()
					}
					return
				}
			}
		}
	}()
	return p
}

func process[T any](ds Dataset, it *Item[T], fn func(Sample, []byte) (T, error)) (v T, err error) {
	b, err := ds.Read(it.Index)
	if err != nil {
		return v, err
	}
	return fn(it.Sample, b)
}

// Next returns the next batch in order, io.EOF after the last one, or the
// context's error once it is cancelled.
func (p *Pipeline[T]) Next() ([]Item[T], error) {
	if p.closed {
		return nil, io.EOF
	}
	select {
	case b, ok := <-p.batches:
		if !ok {
			if err := p.ctx.Err(); err != nil && !p.closed {
				return nil, err
			}
			return nil, io.EOF
		}
		b.left.Wait()
		if err := p.ctx.Err(); err != nil {
			return nil, err
		}
		return b.items, nil
	case <-p.ctx.Done():
		return nil, p.ctx.Err()
	}
}

// Close stops the workers and waits for them.
func (p *Pipeline[T]) Close() {
	if p.closed {
		return
	}
	p.closed = true
	p.cancel()
	for range p.batches { // unblock the producer
	}
	p.wg.Wait()
}
