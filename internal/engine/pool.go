package engine

import (
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// The process-wide worker pool: helper goroutines block on workCh until a
// parallel loop offers them work. A loop never waits for a helper that has
// not started: the calling goroutine always works through the tasks itself,
// a helper joins only while the loop is still open, and the caller waits
// only for helpers that joined. Nested or concurrent loops therefore cannot
// deadlock.
//
// Waking a blocked goroutine on another core takes about 90 µs on the
// project's VMs (the idle vCPU halts), as long as a small matrix product; an
// encode call runs dozens of parallel loops back to back. So a helper that
// finishes a loop keeps polling workCh for up to spinWindow before it
// blocks, and a caller polls for its helpers' completion for up to
// spinWindow before it blocks. Nothing spins longer than that: with no call
// in progress every helper is blocked.
var (
	workCh      = make(chan *loop, 256)
	workMu      sync.Mutex
	workStarted atomic.Int32
)

// spinWindow bounds each poll of the pool (see above).
const spinWindow = 50 * time.Microsecond

func ensureWorkers(n int) {
	if int(workStarted.Load()) >= n {
		return
	}
	workMu.Lock()
	defer workMu.Unlock()
	for int(workStarted.Load()) < n {
		go helper()
		workStarted.Add(1)
	}
}

// helper runs loops from workCh, polling for the next one for up to
// spinWindow before blocking.
func helper() {
	for l := range workCh {
		l.help()
		for deadline := time.Now().Add(spinWindow); time.Now().Before(deadline); {
			select {
			case next := <-workCh:
				next.help()
				deadline = time.Now().Add(spinWindow)
			default:
				runtime.Gosched()
			}
		}
	}
}

// resolveThreads returns the parallelism for a requested thread count
// (0 = GOMAXPROCS).
func resolveThreads(n int) int {
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	return max(n, 1)
}

// loop is one parallelFor call.
type loop struct {
	next   atomic.Int64
	tasks  int
	fn     func(i int)
	mu     sync.Mutex
	closed bool
	active atomic.Int32 // helpers inside work
	wg     sync.WaitGroup
}

// work claims and runs tasks until none is left.
func (l *loop) work() {
	for {
		i := int(l.next.Add(1)) - 1
		if i >= l.tasks {
			return
		}
		l.fn(i)
	}
}

// help runs tasks on a helper goroutine, unless the loop is already over.
func (l *loop) help() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.wg.Add(1)
	l.active.Add(1)
	l.mu.Unlock()
	l.work()
	l.active.Add(-1)
	l.wg.Done()
}

// loopPool recycles loops. A helper may still hold a stale pointer to a
// recycled loop (queued while the loop was open); it takes the lock, and
// either finds the loop closed and leaves, or joins whichever parallelFor
// reopened it, which is as good as any other loop: the fields it reads are
// written under the same lock.
var loopPool = sync.Pool{New: func() any { return new(loop) }}

// parallelFor calls fn(i) for every i in [0, tasks), on up to threads
// goroutines (the caller included). Tasks are claimed dynamically, so uneven
// tasks balance out. It returns when every call has returned.
func parallelFor(threads, tasks int, fn func(i int)) {
	if tasks <= 0 {
		return
	}
	helpers := min(threads, tasks) - 1
	if helpers <= 0 {
		for i := range tasks {
			fn(i)
		}
		return
	}
	ensureWorkers(helpers)
	l := loopPool.Get().(*loop)
	l.mu.Lock()
	l.next.Store(0)
	l.tasks, l.fn, l.closed = tasks, fn, false
	l.mu.Unlock()
	for range helpers {
		select {
		case workCh <- l:
		default: // queue full: the caller and the other helpers do the work
		}
	}
	l.work()
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	// Every task is claimed; poll briefly for the helpers still running one.
	for deadline := time.Now().Add(spinWindow); l.active.Load() > 0 && time.Now().Before(deadline); {
		runtime.Gosched()
	}
	l.wg.Wait()
	l.mu.Lock()
	l.fn = nil // no helper is inside: release what fn holds
	l.mu.Unlock()
	loopPool.Put(l)
}

// scratch is a float32 buffer from a size-classed pool. Its contents are
// undefined when obtained.
type scratch struct {
	f []float32
}

var scratchPools [64]sync.Pool

// getScratch returns a buffer of length n (capacity rounded up to a power of
// two); give it back with putScratch.
func getScratch(n int) *scratch {
	c := 0
	if n > 1 {
		c = bits.Len(uint(n - 1))
	}
	if s, ok := scratchPools[c].Get().(*scratch); ok {
		s.f = s.f[:n]
		return s
	}
	return &scratch{f: make([]float32, n, 1<<c)}
}

func putScratch(s *scratch) {
	if s == nil {
		return
	}
	c := bits.Len(uint(cap(s.f))) - 1
	if c < 0 || 1<<c != cap(s.f) {
		return
	}
	scratchPools[c].Put(s)
}

// parallelRange splits [0, n) into chunks of at least minChunk and calls
// fn(i0, i1) for each on up to threads goroutines; for memory-bound loops
// (copies, pooling, LayerNorm) that sit between parallel matrix products.
// Callers size minChunk so that a chunk is worth a synchronisation
// (tens of microseconds of work).
func parallelRange(threads, n, minChunk int, fn func(i0, i1 int)) {
	if n <= 0 {
		return
	}
	chunks := min(2*threads, (n+minChunk-1)/max(minChunk, 1))
	if threads <= 1 || chunks <= 1 {
		fn(0, n)
		return
	}
	parallelFor(threads, chunks, func(i int) {
		fn(i*n/chunks, (i+1)*n/chunks)
	})
}
