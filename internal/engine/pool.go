package engine

import (
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// The process-wide worker pool. Helper goroutines sleep until a parallel
// loop offers them work; nothing polls (unless SetSpinWait asks for it). A
// loop never waits for a helper that has not started: the calling goroutine
// always works through the tasks itself, a helper joins only while the loop
// is still open, and the caller waits only for helpers that joined. Nested
// or concurrent loops therefore cannot deadlock.
//
// Sleeping and waking use wait words (pool_wait_linux.go: futexes, so that a
// sleeping helper is one blocked thread that the kernel wakes directly):
// a goroutine parked on a channel takes 70–100 µs to run after it is woken
// on the project's 2-vCPU VMs (the Go scheduler hands it to an idle thread,
// which must wake and then steal it), a futex sleeper 3–4 µs when it has
// slept 200 µs (BenchmarkWake). Within an encode call, where helpers sleep
// for microseconds between loops, the futex wake-ups measured 20–30 µs on
// average (some 3 µs, some 60–80 µs: the sleeping vCPU has halted), and so
// did the caller's wake-up at the end of a loop; docs/performance.md has
// what that costs against polling.
var pool struct {
	mu     sync.Mutex
	offers []*loop // loops open to one more helper each, oldest first
	// pending is len(offers), for helpers polling without the lock.
	pending atomic.Int32
	// seq changes whenever an offer is added; idle helpers sleep on it.
	seq      uint32
	sleepers atomic.Int32
	started  int
}

// spinNanos is how long an idle helper polls for the next offer, and a
// caller for its helpers, before sleeping (SetSpinWait); 0: never.
var spinNanos atomic.Int64

// SetSpinWait sets how long the engine's idle threads poll for the next
// parallel loop, and a call for the threads still finishing its loop, before
// they sleep, for every model of the process. The default, 0, sleeps at
// once and burns no CPU while idle; a wait of tens of microseconds trades
// that CPU for latency where one call is split over several threads and
// waking a sleeping thread is slow (virtual machines: 20–30 µs a wake-up,
// paid on every parallel loop of a batch-1 encode; docs/performance.md).
// It returns the previous setting.
func SetSpinWait(d time.Duration) time.Duration {
	return time.Duration(spinNanos.Swap(max(int64(d), 0)))
}

// spinUntil polls done for up to the spin wait and reports whether it
// became true.
func spinUntil(done func() bool) bool {
	d := spinNanos.Load()
	if d <= 0 {
		return false
	}
	start := time.Now()
	for {
		for range 64 {
			if done() {
				return true
			}
			spinPause()
		}
		if time.Since(start).Nanoseconds() >= d {
			return done()
		}
	}
}

// maxOffers bounds the queue of offers; a loop whose offers do not fit runs
// with fewer helpers.
const maxOffers = 256

// ensureWorkers starts helpers until there are at least n.
func ensureWorkers(n int) {
	pool.mu.Lock()
	for pool.started < n {
		go helper()
		pool.started++
	}
	pool.mu.Unlock()
}

// helper runs the loops offered to it, sleeping on pool.seq while there
// are none.
func helper() {
	for {
		seq := atomic.LoadUint32(&pool.seq)
		pool.mu.Lock()
		var l *loop
		if len(pool.offers) > 0 {
			l = pool.offers[0]
			copy(pool.offers, pool.offers[1:])
			pool.offers[len(pool.offers)-1] = nil
			pool.offers = pool.offers[:len(pool.offers)-1]
			pool.pending.Store(int32(len(pool.offers)))
		}
		pool.mu.Unlock()
		if l != nil {
			l.help()
			continue
		}
		if spinUntil(func() bool { return pool.pending.Load() > 0 }) {
			continue
		}
		// An offer added after the load of seq changed it, so the wait
		// returns at once; one added before it was found above.
		pool.sleepers.Add(1)
		waitWord(&pool.seq, seq)
		pool.sleepers.Add(-1)
	}
}

// offer queues n offers of l and wakes up to n sleeping helpers.
func offer(l *loop, n int) {
	pool.mu.Lock()
	n = min(n, maxOffers-len(pool.offers))
	for range n {
		pool.offers = append(pool.offers, l)
	}
	pool.pending.Store(int32(len(pool.offers)))
	pool.mu.Unlock()
	if n <= 0 {
		return
	}
	atomic.AddUint32(&pool.seq, 1)
	if pool.sleepers.Load() > 0 {
		wakeWord(&pool.seq, n)
	}
}

// withdraw removes the offers of l that no helper took.
func withdraw(l *loop) {
	pool.mu.Lock()
	o := pool.offers[:0]
	for _, x := range pool.offers {
		if x != l {
			o = append(o, x)
		}
	}
	clear(pool.offers[len(o):])
	pool.offers = o
	pool.pending.Store(int32(len(pool.offers)))
	pool.mu.Unlock()
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
	// active counts the helpers inside the loop; the caller sleeps on it
	// (with waiting set) until it is zero.
	active  uint32
	waiting atomic.Bool
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
	atomic.AddUint32(&l.active, 1)
	l.mu.Unlock()
	l.work()
	if atomic.AddUint32(&l.active, ^uint32(0)) == 0 && l.waiting.Load() {
		wakeWord(&l.active, 1)
	}
}

// loopPool recycles loops. A helper that took an offer may reach the loop
// after it closed and was reopened by another parallelFor; it then joins
// that one, which is as good as any other loop: the fields it reads are
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
	l.waiting.Store(false)
	l.mu.Unlock()
	offer(l, helpers)
	l.work()
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	withdraw(l)
	// Every task is claimed; sleep until the helpers still running one
	// have left.
	spinUntil(func() bool { return atomic.LoadUint32(&l.active) == 0 })
	l.waiting.Store(true)
	for {
		a := atomic.LoadUint32(&l.active)
		if a == 0 {
			break
		}
		waitWord(&l.active, a)
	}
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
