package serve

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Errors of the batcher, mapped to HTTP statuses by the handlers.
var (
	errQueueFull    = errors.New("serve: too many items waiting; retry later")
	errShuttingDown = errors.New("serve: shutting down")
)

// batchStats receives what a batcher did (metrics).
type batchStats interface {
	batch(kind string, size int, wait, run time.Duration)
}

// batcher merges the items of concurrent requests into engine calls of at
// most maxBatch items. It runs up to workers calls at a time: while they
// run, new requests queue up and form the next batch, so batches grow with
// load.
// When the engine is free and fewer items wait than the previous batch
// had, the batch is held open up to maxWait for the rest (so a lone client
// never waits, and a busy server keeps its batches full). Each
// request keeps its context: a cancelled request's waiting items are
// dropped, and a running call is cancelled only when every request in it
// is. With maxBatch 0 (batching off) each request calls run directly,
// concurrently with the others.
type batcher[T, R any] struct {
	kind     string
	maxBatch int
	maxWait  time.Duration
	maxQueue int // most items waiting or running (0: unlimited)
	run      func(ctx context.Context, items []T) ([]R, error)
	stats    batchStats

	in      chan *job[T, R]
	quit    chan struct{}
	done    chan struct{}
	queued  atomic.Int64 // items accepted and not yet finished
	workers int          // engine calls at once
	mu      sync.Mutex   // guards the jobs' progress fields
	once    sync.Once
	base    context.Context
	cancel  context.CancelFunc
}

// job is one request's items.
type job[T, R any] struct {
	ctx   context.Context
	items []T
	out   []R
	// Guarded by the batcher's mu:
	next    int   // items handed to batches so far
	running int   // engine calls with items of this job in flight
	err     error // first error, set before done closes
	closed  bool  // done is closed
	done    chan struct{}
	arrived time.Time // for the queue-wait metric
}

func newBatcher[T, R any](kind string, maxBatch int, maxWait time.Duration, maxQueue, workers int,
	run func(context.Context, []T) ([]R, error), stats batchStats) *batcher[T, R] {
	b := &batcher[T, R]{kind: kind, maxBatch: maxBatch, maxWait: maxWait, maxQueue: maxQueue, workers: max(workers, 1), run: run, stats: stats,
		in: make(chan *job[T, R], 1024), quit: make(chan struct{}), done: make(chan struct{})}
	b.base, b.cancel = context.WithCancel(context.Background())
	if maxBatch > 0 {
		go b.loop()
	} else {
		close(b.done)
	}
	return b
}

// depth returns the number of items accepted and not yet finished.
func (b *batcher[T, R]) depth() int64 { return b.queued.Load() }

// do encodes items and returns one result per item, or the request's
// context error, errQueueFull or errShuttingDown.
func (b *batcher[T, R]) do(ctx context.Context, items []T) ([]R, error) {
	if len(items) == 0 {
		return nil, nil
	}
	n := int64(len(items))
	if q := b.queued.Add(n); b.maxQueue > 0 && q > int64(b.maxQueue) && q != n {
		b.queued.Add(-n)
		return nil, errQueueFull
	}
	select {
	case <-b.quit:
		b.queued.Add(-n)
		return nil, errShuttingDown
	default:
	}
	if b.maxBatch <= 0 { // batching off
		defer b.queued.Add(-n)
		start := time.Now()
		out, err := b.run(ctx, items)
		if b.stats != nil {
			b.stats.batch(b.kind, len(items), 0, time.Since(start))
		}
		return out, err
	}
	j := &job[T, R]{ctx: ctx, items: items, out: make([]R, len(items)), done: make(chan struct{}), arrived: time.Now()}
	select {
	case b.in <- j:
	case <-b.quit:
		b.queued.Add(-n)
		return nil, errShuttingDown
	case <-ctx.Done():
		b.queued.Add(-n)
		return nil, ctx.Err()
	}
	select {
	case <-j.done:
		if j.err != nil {
			return nil, j.err
		}
		return j.out, nil
	case <-ctx.Done():
		// The loop drops the rest of the job and does the accounting.
		return nil, ctx.Err()
	case <-b.done:
		select {
		case <-j.done:
			if j.err != nil {
				return nil, j.err
			}
			return j.out, nil
		default:
			return nil, errShuttingDown // sent after the loop had stopped
		}
	}
}

// close stops the batcher: waiting requests fail with errShuttingDown and a
// running call is cancelled. Call it after the HTTP server has drained.
func (b *batcher[T, R]) close() {
	b.once.Do(func() {
		close(b.quit)
		b.cancel()
	})
	<-b.done
}

func (b *batcher[T, R]) loop() {
	var workers sync.WaitGroup
	defer func() {
		workers.Wait()
		close(b.done)
	}()
	var pending []*job[T, R] // jobs with items not yet handed to a batch
	lastSize := 0            // items in the previous batch
	left := func() int {
		b.mu.Lock()
		defer b.mu.Unlock()
		n := 0
		for _, j := range pending {
			n += len(j.items) - j.next
		}
		return n
	}
	slots := make(chan struct{}, b.workers)
	for {
		if len(pending) == 0 {
			select {
			case j := <-b.in:
				pending = append(pending, j)
			case <-b.quit:
				b.failAll(pending)
				return
			}
		}
		// Wait for a free engine slot, queueing what arrives meanwhile.
	acquire:
		for {
			select {
			case slots <- struct{}{}:
				break acquire
			case j := <-b.in:
				pending = append(pending, j)
			case <-b.quit:
				b.failAll(pending)
				return
			}
		}
		// Take what is already waiting.
	drain:
		for left() < b.maxBatch {
			select {
			case j := <-b.in:
				pending = append(pending, j)
			default:
				break drain
			}
		}
		// Hold the batch open only while it is smaller than the last one:
		// a busy server expects as many items again, and a lone client
		// never waits.
		target := min(b.maxBatch, lastSize)
		if b.maxWait > 0 && left() < target {
			t := time.NewTimer(b.maxWait)
		wait:
			for left() < target {
				select {
				case j := <-b.in:
					pending = append(pending, j)
				case <-t.C:
					break wait
				case <-b.quit:
					break wait
				}
			}
			t.Stop()
		}
		select {
		case <-b.quit:
			<-slots
			b.failAll(pending)
			return
		default:
		}
		lastSize = min(left(), b.maxBatch)
		var bt *batch[T, R]
		pending, bt = b.takeBatch(pending)
		if bt == nil {
			<-slots
			continue
		}
		workers.Add(1)
		go func() {
			defer workers.Done()
			defer func() { <-slots }()
			b.runBatch(bt)
		}()
	}
}

// segment is a part of one job in a batch.
type segment[T, R any] struct {
	j        *job[T, R]
	from, to int
}

// batch is one engine call's items.
type batch[T, R any] struct {
	segs  []segment[T, R]
	items []T
	wait  time.Duration // the longest time an item waited
}

// takeBatch forms one batch from the front of pending and returns the jobs
// still pending; the batch is nil when every waiting job was cancelled.
func (b *batcher[T, R]) takeBatch(pending []*job[T, R]) ([]*job[T, R], *batch[T, R]) {
	b.mu.Lock()
	defer b.mu.Unlock()
	bt := &batch[T, R]{}
	now := time.Now()
	keep := pending[:0]
	for _, j := range pending {
		if j.err == nil && j.ctx.Err() != nil { // cancelled while waiting: drop the rest
			j.err = j.ctx.Err()
		}
		if j.err != nil { // failed or cancelled: give up the rest
			b.dropLocked(j)
			continue
		}
		if room := b.maxBatch - len(bt.items); room > 0 {
			to := min(j.next+room, len(j.items))
			bt.segs = append(bt.segs, segment[T, R]{j, j.next, to})
			bt.items = append(bt.items, j.items[j.next:to]...)
			j.next = to
			j.running++
			bt.wait = max(bt.wait, now.Sub(j.arrived))
		}
		if j.next < len(j.items) {
			keep = append(keep, j)
		}
	}
	clear(pending[len(keep):])
	if len(bt.items) == 0 {
		return keep, nil
	}
	return keep, bt
}

// runBatch runs one engine call and hands out its results.
func (b *batcher[T, R]) runBatch(bt *batch[T, R]) {
	// The call's context ends when every request in it is cancelled.
	ctx, cancel := context.WithCancel(b.base)
	var live atomic.Int32
	live.Store(int32(len(bt.segs)))
	stops := make([]func() bool, len(bt.segs))
	for i, s := range bt.segs {
		stops[i] = context.AfterFunc(s.j.ctx, func() {
			if live.Add(-1) == 0 {
				cancel()
			}
		})
	}
	start := time.Now()
	out, err := b.run(ctx, bt.items)
	if err == nil && len(out) != len(bt.items) {
		err = errors.New("serve: engine returned a wrong number of results")
	}
	if b.stats != nil {
		b.stats.batch(b.kind, len(bt.items), bt.wait, time.Since(start))
	}
	for _, stop := range stops {
		stop()
	}
	cancel()
	b.mu.Lock()
	defer b.mu.Unlock()
	off := 0
	for _, s := range bt.segs {
		n := s.to - s.from
		j := s.j
		j.running--
		if err != nil {
			if j.err == nil {
				j.err = err
				if ce := j.ctx.Err(); ce != nil {
					j.err = ce
				}
			}
		} else {
			copy(j.out[s.from:s.to], out[off:off+n])
		}
		off += n
		b.queued.Add(-int64(n))
		if j.err != nil {
			b.dropLocked(j) // a failed job gives up its remaining items
		} else if j.next == len(j.items) && j.running == 0 {
			j.closed = true
			close(j.done)
		}
	}
}

// dropLocked abandons a failed job's remaining items, and completes it
// when none of its items is in an engine call. b.mu is held.
func (b *batcher[T, R]) dropLocked(j *job[T, R]) {
	b.queued.Add(-int64(len(j.items) - j.next))
	j.next = len(j.items)
	if j.running == 0 && !j.closed {
		j.closed = true
		close(j.done)
	}
}

// failAll fails the waiting jobs and those still in the channel.
func (b *batcher[T, R]) failAll(pending []*job[T, R]) {
	b.mu.Lock()
	defer b.mu.Unlock()
	fail := func(j *job[T, R]) {
		if j.err == nil {
			j.err = errShuttingDown
		}
		b.dropLocked(j)
	}
	for _, j := range pending {
		fail(j)
	}
	for {
		select {
		case j := <-b.in:
			fail(j)
		default:
			return
		}
	}
}
