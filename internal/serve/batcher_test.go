package serve

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinyclip-go/tinyclip"
	"github.com/tinyclip-go/tinyclip/internal/imageproc"
)

// fakeModel is a fast Model with recorded, optionally blocking engine calls.
type fakeModel struct {
	dim   int
	block chan struct{} // when set, engine calls wait until it is closed (or their context ends)
	gate  chan struct{} // when set, each engine call waits for one value (or its context's end)
	quiet bool          // record nothing (fuzzing)

	mu    sync.Mutex
	calls [][]string // the texts of each EncodeTexts call ("#image" per image)
	ctxs  []context.Context
	start chan struct{}
}

func newFakeModel(dim int) *fakeModel {
	return &fakeModel{dim: dim, start: make(chan struct{}, 1024)}
}

// vec is a deterministic unit vector for a string.
func (f *fakeModel) vec(s string) []float32 {
	v := make([]float32, f.dim)
	for i := range v {
		h := fnv.New32a()
		fmt.Fprintf(h, "%d:%s", i, s)
		v[i] = float32(h.Sum32()%2000)/1000 - 1
	}
	return tinyclip.Normalize(v)
}

func (f *fakeModel) enter(ctx context.Context, items []string) error {
	if f.quiet {
		return nil
	}
	f.mu.Lock()
	f.calls = append(f.calls, items)
	f.ctxs = append(f.ctxs, ctx)
	f.mu.Unlock()
	f.start <- struct{}{}
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (f *fakeModel) EncodeTexts(ctx context.Context, texts []string, _ ...tinyclip.EncodeOption) ([][]float32, error) {
	if err := f.enter(ctx, slices.Clone(texts)); err != nil {
		return nil, err
	}
	out := make([][]float32, len(texts))
	for i, t := range texts {
		out[i] = f.vec(t)
	}
	return out, nil
}

func (f *fakeModel) EncodePixels(ctx context.Context, pixels []float32, n int, _ ...tinyclip.EncodeOption) ([][]float32, error) {
	items := make([]string, n)
	out := make([][]float32, n)
	per := len(pixels) / n
	for i := range n {
		var sum float64
		for _, p := range pixels[i*per : (i+1)*per] {
			sum += float64(p)
		}
		items[i] = fmt.Sprintf("#image %.3f", sum)
		out[i] = f.vec(items[i])
	}
	if err := f.enter(ctx, items); err != nil {
		return nil, err
	}
	return out, nil
}

func (f *fakeModel) Preprocess(data []byte) ([]float32, error) {
	return imageproc.Preprocess(data, imageproc.DefaultOptions())
}

func (f *fakeModel) Tokenize(text string) ([]int, error) {
	return make([]int, min(len(strings.Fields(text))+2, 77)), nil
}
func (f *fakeModel) EmbedDim() int       { return f.dim }
func (f *fakeModel) LogitScale() float32 { return float32(math.Log(100)) }

// waitCalls waits until n engine calls have started.
func (f *fakeModel) waitCalls(t testing.TB, n int) {
	t.Helper()
	for range n {
		select {
		case <-f.start:
		case <-time.After(10 * time.Second):
			t.Fatal("engine call did not start")
		}
	}
}

func (f *fakeModel) allCalls() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func textBatcher(f *fakeModel, maxBatch int, maxWait time.Duration, maxQueue int) *batcher[string, []float32] {
	return newBatcher("text", maxBatch, maxWait, maxQueue, 1, func(ctx context.Context, t []string) ([][]float32, error) {
		return f.EncodeTexts(ctx, t)
	}, nil)
}

// result of one do call.
type result struct {
	out [][]float32
	err error
}

func goDo(b *batcher[string, []float32], ctx context.Context, items []string) chan result {
	ch := make(chan result, 1)
	go func() {
		out, err := b.do(ctx, items)
		ch <- result{out, err}
	}()
	return ch
}

// waitDepth waits until the batcher holds n items.
func waitDepth(t *testing.T, b *batcher[string, []float32], n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for b.depth() != n {
		if time.Now().After(deadline) {
			t.Fatalf("depth %d, want %d", b.depth(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestBatcherMerges(t *testing.T) {
	f := newFakeModel(8)
	f.block = make(chan struct{})
	b := textBatcher(f, 8, 0, 0)
	defer b.close()
	first := goDo(b, context.Background(), []string{"first"})
	f.waitCalls(t, 1) // the engine is busy: the next requests queue up
	var chans []chan result
	var inputs [][]string
	for i := range 6 {
		in := []string{fmt.Sprintf("r%d-a", i), fmt.Sprintf("r%d-b", i), fmt.Sprintf("r%d-c", i)}
		inputs = append(inputs, in)
		chans = append(chans, goDo(b, context.Background(), in))
	}
	waitDepth(t, b, 1+18)
	close(f.block)
	if r := <-first; r.err != nil {
		t.Fatal(r.err)
	}
	for i, ch := range chans {
		r := <-ch
		if r.err != nil {
			t.Fatal(r.err)
		}
		for k, text := range inputs[i] {
			if !slices.Equal(r.out[k], f.vec(text)) {
				t.Errorf("request %d item %d: wrong embedding", i, k)
			}
		}
	}
	calls := f.allCalls()
	// 18 queued items in batches of at most 8: 8, 8, 2; requests split
	// across batches keep their order.
	var sizes []int
	var flat []string
	for _, c := range calls[1:] {
		sizes = append(sizes, len(c))
		flat = append(flat, c...)
	}
	if !slices.Equal(sizes, []int{8, 8, 2}) {
		t.Errorf("batch sizes %v, want [8 8 2]", sizes)
	}
	if len(flat) != 18 {
		t.Errorf("%d items encoded, want 18", len(flat))
	}
	if b.depth() != 0 {
		t.Errorf("depth %d after all requests", b.depth())
	}
}

func TestBatcherCancelWaiting(t *testing.T) {
	f := newFakeModel(4)
	f.block = make(chan struct{})
	b := textBatcher(f, 16, 0, 0)
	defer b.close()
	first := goDo(b, context.Background(), []string{"running"})
	f.waitCalls(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	gone := goDo(b, ctx, []string{"cancelled-1", "cancelled-2"})
	kept := goDo(b, context.Background(), []string{"kept"})
	waitDepth(t, b, 4)
	cancel()
	select {
	case r := <-gone:
		if !errors.Is(r.err, context.Canceled) {
			t.Errorf("cancelled request: %v", r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a cancelled request kept waiting for the engine")
	}
	close(f.block)
	<-first
	if r := <-kept; r.err != nil || !slices.Equal(r.out[0], f.vec("kept")) {
		t.Errorf("kept request: %v", r.err)
	}
	for _, c := range f.allCalls() {
		for _, item := range c {
			if strings.HasPrefix(item, "cancelled") {
				t.Errorf("cancelled item %q reached the engine", item)
			}
		}
	}
	waitDepth(t, b, 0)
}

func TestBatcherCancelRunning(t *testing.T) {
	f := newFakeModel(4)
	f.gate = make(chan struct{})
	defer close(f.gate)
	b := textBatcher(f, 16, 0, 0)
	defer b.close()
	busy := goDo(b, context.Background(), []string{"busy"})
	f.waitCalls(t, 1)
	ctx1, cancel1 := context.WithCancel(context.Background())
	ctx2, cancel2 := context.WithCancel(context.Background())
	r1 := goDo(b, ctx1, []string{"one"})
	r2 := goDo(b, ctx2, []string{"two"})
	waitDepth(t, b, 3)
	f.gate <- struct{}{} // finish the first call: the two requests form the next batch
	if r := <-busy; r.err != nil {
		t.Fatal(r.err)
	}
	f.waitCalls(t, 1)
	calls := f.allCalls()
	if len(calls) != 2 || len(calls[1]) != 2 {
		t.Fatalf("calls %v, want a batch of both requests", calls)
	}
	f.mu.Lock()
	engineCtx := f.ctxs[1]
	f.mu.Unlock()
	cancel1()
	if r := <-r1; !errors.Is(r.err, context.Canceled) {
		t.Errorf("request 1: %v", r.err)
	}
	time.Sleep(20 * time.Millisecond)
	if engineCtx.Err() != nil {
		t.Fatal("the engine call was cancelled while another request still needed it")
	}
	cancel2()
	select {
	case <-engineCtx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the engine call went on after every request in it was cancelled")
	}
	if r := <-r2; !errors.Is(r.err, context.Canceled) {
		t.Errorf("request 2: %v", r.err)
	}
	waitDepth(t, b, 0)
}

func TestBatcherQueueFull(t *testing.T) {
	f := newFakeModel(4)
	f.block = make(chan struct{})
	b := textBatcher(f, 2, 0, 4)
	defer b.close()
	r1 := goDo(b, context.Background(), []string{"a", "b"})
	f.waitCalls(t, 1)
	r2 := goDo(b, context.Background(), []string{"c", "d"})
	waitDepth(t, b, 4)
	if _, err := b.do(context.Background(), []string{"e"}); !errors.Is(err, errQueueFull) {
		t.Errorf("over the queue limit: %v", err)
	}
	close(f.block)
	for _, ch := range []chan result{r1, r2} {
		if r := <-ch; r.err != nil {
			t.Error(r.err)
		}
	}
	if _, err := b.do(context.Background(), []string{"e"}); err != nil {
		t.Errorf("after the queue drained: %v", err)
	}
}

func TestBatcherClose(t *testing.T) {
	f := newFakeModel(4)
	f.block = make(chan struct{})
	b := textBatcher(f, 1, 0, 0)
	running := goDo(b, context.Background(), []string{"running"})
	f.waitCalls(t, 1)
	waiting := goDo(b, context.Background(), []string{"waiting"})
	waitDepth(t, b, 2)
	b.close() // cancels the running call
	if r := <-running; !errors.Is(r.err, context.Canceled) {
		t.Errorf("running request: %v", r.err)
	}
	if r := <-waiting; !errors.Is(r.err, errShuttingDown) {
		t.Errorf("waiting request: %v", r.err)
	}
	if _, err := b.do(context.Background(), []string{"late"}); !errors.Is(err, errShuttingDown) {
		t.Errorf("after close: %v", err)
	}
}

func TestBatcherOff(t *testing.T) {
	f := newFakeModel(4)
	f.block = make(chan struct{})
	b := textBatcher(f, 0, 0, 0)
	defer b.close()
	a := goDo(b, context.Background(), []string{"a"})
	c := goDo(b, context.Background(), []string{"b", "c"})
	f.waitCalls(t, 2) // both run at once, each on its own
	close(f.block)
	for _, ch := range []chan result{a, c} {
		if r := <-ch; r.err != nil {
			t.Error(r.err)
		}
	}
	sizes := []int{}
	for _, c := range f.allCalls() {
		sizes = append(sizes, len(c))
	}
	slices.Sort(sizes)
	if !slices.Equal(sizes, []int{1, 2}) {
		t.Errorf("calls of sizes %v, want [1 2]", sizes)
	}
}

// TestBatcherAdaptiveWait: with nobody else sending, a request is
// not held for maxWait; after a batch of several, the next one is held
// until as many items arrived.
func TestBatcherAdaptiveWait(t *testing.T) {
	f := newFakeModel(4)
	b := textBatcher(f, 16, time.Hour, 0)
	defer b.close()
	for i := range 3 {
		done := make(chan error, 1)
		go func() {
			_, err := b.do(context.Background(), []string{fmt.Sprint("alone ", i)})
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("a lone request was held for maxWait")
		}
	}
	// A batch of three: the next batch waits for three items.
	f.gate = make(chan struct{})
	first := goDo(b, context.Background(), []string{"x"})
	f.waitCalls(t, 4)
	three := goDo(b, context.Background(), []string{"a", "b", "c"})
	waitDepth(t, b, 4)
	f.gate <- struct{}{}
	<-first
	f.waitCalls(t, 1)
	f.gate <- struct{}{}
	<-three
	one := goDo(b, context.Background(), []string{"d"})
	waitDepth(t, b, 1)
	time.Sleep(20 * time.Millisecond)
	if n := len(f.allCalls()); n != 5 {
		t.Fatalf("%d calls; the fourth item should wait for company", n)
	}
	two := goDo(b, context.Background(), []string{"e", "f"})
	f.waitCalls(t, 1)
	close(f.gate)
	<-one
	<-two
	calls := f.allCalls()
	if last := calls[len(calls)-1]; len(last) != 3 {
		t.Errorf("last batch %v, want d, e, f together", last)
	}
}

// TestBatcherWorkers: with two workers, a second batch runs while the
// first is still in the engine, and a third waits for a free worker.
func TestBatcherWorkers(t *testing.T) {
	f := newFakeModel(4)
	f.gate = make(chan struct{})
	b := newBatcher("text", 4, 0, 0, 2, func(ctx context.Context, in []string) ([][]float32, error) {
		return f.EncodeTexts(ctx, in)
	}, nil)
	defer b.close()
	r1 := goDo(b, context.Background(), []string{"a"})
	f.waitCalls(t, 1)
	r2 := goDo(b, context.Background(), []string{"b"})
	f.waitCalls(t, 1) // both calls in flight
	r3 := goDo(b, context.Background(), []string{"c"})
	r4 := goDo(b, context.Background(), []string{"d"})
	waitDepth(t, b, 4)
	time.Sleep(10 * time.Millisecond)
	if n := len(f.allCalls()); n != 2 {
		t.Fatalf("%d calls with two workers busy", n)
	}
	f.gate <- struct{}{} // one worker frees: c and d form one batch
	f.waitCalls(t, 1)
	close(f.gate)
	for _, ch := range []chan result{r1, r2, r3, r4} {
		if r := <-ch; r.err != nil {
			t.Error(r.err)
		}
	}
	calls := f.allCalls()
	if len(calls) != 3 || len(calls[2]) != 2 {
		t.Errorf("calls %v, want [a] [b] [c d]", calls)
	}
}
