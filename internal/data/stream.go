package data

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tinyclip-go/tinyclip/internal/imageproc"
)

// ImageSource is implemented by datasets that hold decoded images, such as
// Synthetic: a Stream takes the image from Image instead of decoding the
// bytes of Read.
type ImageSource interface {
	// Image returns sample i as a raster.
	Image(i int) (*imageproc.Image, error)
}

// Cursor is a position in a training stream: the next sample to read is
// the Index-th of epoch Epoch's order. The zero Cursor is the start.
type Cursor struct {
	Epoch int `json:"epoch"`
	Index int `json:"index"`
}

// DefaultTemplate is the caption template for labelled samples without a
// caption when StreamOptions.Templates is empty.
const DefaultTemplate = "a photo of a {}."

// StreamOptions configures NewStream.
type StreamOptions struct {
	// BatchSize is the number of samples of every batch (at least 1).
	BatchSize int
	// Seed determines the order of every epoch and every random choice.
	Seed uint64
	// Transform gives the output size, the normalisation and the pixel
	// budget of the training transform (Variant is ignored).
	Transform imageproc.Options
	// Tokenize turns a caption into token ids (SOT … EOT, at most the
	// model's context length). Required.
	Tokenize func(text string) ([]int, error)
	// Templates make captions for samples that have a label but no
	// caption (ImageFolder, label CSV, webdataset .cls): "{}" or "{class}"
	// is replaced by the class name; one template is drawn per sample.
	// Empty means DefaultTemplate.
	Templates []string
	// Classes name the labels when the dataset defines no class names
	// (Dataset.Classes() == nil).
	Classes []string
	// Workers is the number of decoding goroutines (default GOMAXPROCS).
	Workers int
	// Prefetch is the number of batches decoded ahead of the consumer
	// (default 2).
	Prefetch int
	// Sequential keeps the dataset order in every epoch instead of a
	// shuffled one.
	Sequential bool
	// Start is where the stream begins (a Batch.Next of an earlier run).
	Start Cursor
}

// Skip records a sample that could not be used.
type Skip struct {
	// Index is the sample's dataset index, Name its name.
	Index int
	Name  string
	// Err says why.
	Err error
}

// Batch is one fixed-size training batch.
type Batch struct {
	// Images holds BatchSize normalised images [B, 3, S, S].
	Images []float32
	// Tokens holds BatchSize token rows (unpadded).
	Tokens [][]int
	// Indices are the samples' dataset indices.
	Indices []int
	// Epoch is the epoch the batch belongs to.
	Epoch int
	// Next is the cursor just after the batch's last sample: a stream
	// started there continues with the batch that follows this one.
	Next Cursor
	// Skipped lists the samples passed over while the batch was assembled
	// (unreadable, undecodable or uncaptioned).
	Skipped []Skip
	// Dropped counts the samples of an epoch's incomplete last batch,
	// discarded just before this batch.
	Dropped int
}

// Stream produces fixed-size training batches from a dataset, epoch after
// epoch without end: each epoch visits the samples in an order drawn from
// (Seed, epoch) (EpochOrder); samples are read, decoded, converted to RGB,
// cropped with RandomResizedCrop and normalised, and their caption
// tokenized, on Workers goroutines, with a random source per sample
// derived from (Seed, epoch, index), and handed out in order. Corrupt
// samples are skipped (and reported in the batch that would have held
// them); the incomplete batch at the end of an epoch is dropped, so every
// batch has BatchSize samples and all samples of a batch come from one
// epoch. The batches are a deterministic function of the dataset, the
// options and Start, whatever the scheduling. A Stream is used from one
// goroutine.
type Stream struct {
	ds     Dataset
	opts   StreamOptions
	n      int
	size   int
	img    ImageSource
	cancel context.CancelFunc
	ctx    context.Context
	queue  chan *future
	wg     sync.WaitGroup
	closed bool

	// worker counters (Stats)
	processed, failed, busy atomic.Int64

	// consumer state
	epochStart  bool // the current epoch was read from its first sample
	epochBatch  int  // batches completed in the current epoch
	epochFailed int
	firstErr    error
}

type future struct {
	epoch, pos, idx int
	end             bool // end-of-epoch marker
	done            chan struct{}
	pixels          []float32
	tokens          []int
	err             error
}

// NewStream starts the stream. It fails when the dataset has fewer samples
// than a batch or the options are invalid. Call Close when done.
func NewStream(ctx context.Context, ds Dataset, opts StreamOptions) (*Stream, error) {
	if ds == nil {
		return nil, fmt.Errorf("data: stream: nil dataset")
	}
	if opts.BatchSize < 1 {
		return nil, fmt.Errorf("data: stream: batch size %d", opts.BatchSize)
	}
	if opts.Tokenize == nil {
		return nil, fmt.Errorf("data: stream: no tokenizer")
	}
	n := ds.Len()
	if n < opts.BatchSize {
		return nil, fmt.Errorf("data: stream: %d samples, fewer than one batch of %d", n, opts.BatchSize)
	}
	if opts.Start.Epoch < 0 || opts.Start.Index < 0 || opts.Start.Index > n {
		return nil, fmt.Errorf("data: stream: start cursor %+v outside a dataset of %d samples", opts.Start, n)
	}
	if opts.Transform.Size <= 0 {
		return nil, fmt.Errorf("data: stream: image size %d", opts.Transform.Size)
	}
	for _, t := range opts.Templates {
		if !strings.Contains(t, "{}") && !strings.Contains(t, "{class}") {
			return nil, fmt.Errorf("data: stream: template %q has no {} or {class}", t)
		}
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	if opts.Prefetch <= 0 {
		opts.Prefetch = 2
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &Stream{
		ds: ds, opts: opts, n: n, size: opts.Transform.Size, cancel: cancel, ctx: ctx,
		queue:      make(chan *future, opts.Prefetch*opts.BatchSize),
		epochStart: opts.Start.Index == 0,
	}
	s.img, _ = ds.(ImageSource)
	jobs := make(chan *future, opts.Workers)
	for range opts.Workers {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for f := range jobs {
				if ctx.Err() == nil {
					t0 := time.Now()
					f.pixels, f.tokens, f.err = s.process(f.epoch, f.idx)
					s.busy.Add(int64(time.Since(t0)))
					if f.err != nil {
						s.failed.Add(1)
					} else {
						s.processed.Add(1)
					}
				} else {
					f.err = ctx.Err()
				}
				close(f.done)
			}
		}()
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(jobs)
		start := opts.Start
		for epoch := start.Epoch; ; epoch++ {
			order, _ := s.order(epoch)
			from := 0
			if epoch == start.Epoch {
				from = start.Index
			}
			for pos := from; pos < n; pos++ {
				f := &future{epoch: epoch, pos: pos, idx: order[pos], done: make(chan struct{})}
				select {
				case s.queue <- f:
				case <-ctx.Done():
					return
				}
				select {
				case jobs <- f:
				case <-ctx.Done():
					return
				}
			}
			end := &future{epoch: epoch, end: true, done: make(chan struct{})}
			close(end.done)
			select {
			case s.queue <- end:
			case <-ctx.Done():
				return
			}
		}
	}()
	return s, nil
}

// orderStream and sampleStream separate the random streams drawn from the
// seed.
const (
	orderStream  = 0x6f72646572 // "order"
	sampleStream = 0x73616d706c // "sampl"
)

// EpochOrder returns the order in which a Stream with this seed visits the
// n samples of a dataset in epoch epoch (a permutation of 0..n−1, or the
// identity when sequential), and the state of the generator after drawing
// it (rand.PCG.MarshalBinary), which changes if the shuffling algorithm
// does: trainers store it in checkpoints to refuse a resume that would see
// another order.
func EpochOrder(seed uint64, epoch, n int, sequential bool) ([]int, []byte) {
	pcg := rand.NewPCG(seed, orderStream^uint64(epoch)<<40)
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	if !sequential {
		r := rand.New(pcg)
		r.Shuffle(n, func(i, j int) { order[i], order[j] = order[j], order[i] })
	}
	state, _ := pcg.MarshalBinary() // never fails
	return order, state
}

func (s *Stream) order(epoch int) ([]int, []byte) {
	return EpochOrder(s.opts.Seed, epoch, s.n, s.opts.Sequential)
}

// sampleRNG is the random source of sample idx in epoch.
func (s *Stream) sampleRNG(epoch, idx int) *rand.Rand {
	return rand.New(rand.NewPCG(s.opts.Seed^sampleStream, uint64(epoch)<<40^uint64(idx)))
}

// process reads, augments and tokenizes one sample.
func (s *Stream) process(epoch, idx int) ([]float32, []int, error) {
	sample := s.ds.Sample(idx)
	rng := s.sampleRNG(epoch, idx)
	var m *imageproc.Image
	var err error
	if s.img != nil {
		m, err = s.img.Image(idx)
	} else {
		var b []byte
		if b, err = s.ds.Read(idx); err == nil {
			m, err = imageproc.Decode(b, s.opts.Transform.MaxPixels)
		}
	}
	if err != nil {
		return nil, nil, err
	}
	// The official webdataset and CSV loaders convert to RGB on opening.
	if m, err = imageproc.ConvertRGB(m); err != nil {
		return nil, nil, err
	}
	crop, err := imageproc.RandomResizedCrop(m, rng, s.opts.Transform)
	if err != nil {
		return nil, nil, err
	}
	pixels := make([]float32, 3*s.size*s.size)
	if err := imageproc.ToTensor(crop, s.opts.Transform, pixels); err != nil {
		return nil, nil, err
	}
	text, err := s.caption(sample, rng)
	if err != nil {
		return nil, nil, err
	}
	tokens, err := s.opts.Tokenize(text)
	if err != nil {
		return nil, nil, fmt.Errorf("caption %q: %w", truncate(text, 60), err)
	}
	return pixels, tokens, nil
}

// caption picks the sample's text: one of its captions, or a template
// filled with its class name.
func (s *Stream) caption(sample Sample, rng *rand.Rand) (string, error) {
	if len(sample.Captions) > 0 {
		return sample.Captions[rng.IntN(len(sample.Captions))], nil
	}
	if sample.Label < 0 {
		return "", fmt.Errorf("%w: sample has neither a caption nor a label", ErrFormat)
	}
	classes := s.ds.Classes()
	if classes == nil {
		classes = s.opts.Classes
	}
	if sample.Label >= len(classes) {
		return "", fmt.Errorf("%w: label %d has no class name (%d classes given)", ErrFormat, sample.Label, len(classes))
	}
	t := DefaultTemplate
	if len(s.opts.Templates) > 0 {
		t = s.opts.Templates[rng.IntN(len(s.opts.Templates))]
	}
	name := classes[sample.Label]
	return strings.ReplaceAll(strings.ReplaceAll(t, "{class}", name), "{}", name), nil
}

// ErrNoBatch is returned when a whole epoch yields no complete batch
// because too many samples fail.
var ErrNoBatch = errors.New("data: an epoch gave no complete batch")

// Next returns the next batch. It fails with the context's error once the
// stream's context is cancelled, and with ErrNoBatch when an epoch read
// from its start gives no complete batch.
func (s *Stream) Next() (*Batch, error) {
	if s.closed {
		return nil, fmt.Errorf("data: stream closed")
	}
	bs := s.opts.BatchSize
	plane := 3 * s.size * s.size
	b := &Batch{Images: make([]float32, bs*plane), Tokens: make([][]int, 0, bs), Indices: make([]int, 0, bs)}
	for len(b.Tokens) < bs {
		var f *future
		select {
		case f = <-s.queue:
		case <-s.ctx.Done():
			return nil, fmt.Errorf("data: stream: %w", s.ctx.Err())
		}
		select {
		case <-f.done:
		case <-s.ctx.Done():
			return nil, fmt.Errorf("data: stream: %w", s.ctx.Err())
		}
		if f.end {
			if s.epochStart && s.epochBatch == 0 {
				return nil, fmt.Errorf("%w: epoch %d: %d of %d samples failed (first: %v)", ErrNoBatch, f.epoch, s.epochFailed, s.n, s.firstErr)
			}
			b.Dropped += len(b.Tokens)
			b.Tokens, b.Indices = b.Tokens[:0], b.Indices[:0]
			s.epochStart, s.epochBatch, s.epochFailed, s.firstErr = true, 0, 0, nil
			continue
		}
		if f.err != nil {
			if s.ctx.Err() != nil {
				return nil, fmt.Errorf("data: stream: %w", s.ctx.Err())
			}
			name := s.ds.Sample(f.idx).Name
			b.Skipped = append(b.Skipped, Skip{Index: f.idx, Name: name, Err: f.err})
			s.epochFailed++
			if s.firstErr == nil {
				s.firstErr = fmt.Errorf("%s: %w", name, f.err)
			}
			continue
		}
		copy(b.Images[len(b.Tokens)*plane:], f.pixels)
		b.Tokens = append(b.Tokens, f.tokens)
		b.Indices = append(b.Indices, f.idx)
		b.Epoch = f.epoch
		b.Next = Cursor{Epoch: f.epoch, Index: f.pos + 1}
	}
	if b.Next.Index >= s.n {
		b.Next = Cursor{Epoch: b.Next.Epoch + 1}
	}
	s.epochBatch++
	return b, nil
}

// StreamStats counts the work of a Stream's decoding goroutines since the
// stream started.
type StreamStats struct {
	// Workers is the number of decoding goroutines.
	Workers int
	// Samples counts the samples read, decoded, augmented and tokenized;
	// Failed those that failed (skipped). Samples decoded ahead of the
	// consumer are included.
	Samples, Failed int64
	// Busy is the time the workers spent on samples, summed over the
	// workers (idle time waiting for the consumer excluded).
	Busy time.Duration
}

// ImagesPerSecond is the pipeline's own throughput: the samples all
// workers together process per second while busy, Samples / (Busy /
// Workers). It is what the input pipeline can deliver on this host, apart
// from how fast the consumer takes batches (other work on the same cores,
// such as training on the CPU, slows the workers and shows here). 0 before
// the first sample.
func (s StreamStats) ImagesPerSecond() float64 {
	if s.Busy <= 0 || s.Workers <= 0 {
		return 0
	}
	return float64(s.Samples+s.Failed) / (s.Busy.Seconds() / float64(s.Workers))
}

// Stats returns the work done so far. It may be called from any goroutine.
func (s *Stream) Stats() StreamStats {
	return StreamStats{
		Workers: s.opts.Workers, Samples: s.processed.Load(), Failed: s.failed.Load(),
		Busy: time.Duration(s.busy.Load()),
	}
}

// Close stops the decoding goroutines and waits for them.
func (s *Stream) Close() {
	if s.closed {
		return
	}
	s.closed = true
	s.cancel() // the producer and the workers watch the context
	s.wg.Wait()
}
