package search

import (
	"bytes"
	"container/list"
	"context"
	"errors"
	"image"
	"image/jpeg"
	"runtime"
	"sync"

	"github.com/tinyclip-go/tinyclip/internal/imageproc"
)

// makeThumbnail decodes an image file and returns a JPEG whose longer side is
// at most size pixels (box-filtered; images already smaller keep their size).
func makeThumbnail(data []byte, size int, maxPixels int64) ([]byte, error) {
	m, err := imageproc.Decode(data, maxPixels)
	if err != nil {
		return nil, err
	}
	rgb, err := imageproc.ConvertRGB(m)
	if err != nil {
		return nil, err
	}
	w, h := rgb.Width, rgb.Height
	tw, th := w, h
	if w > size || h > size {
		if w >= h {
			tw, th = size, max(1, int(int64(h)*int64(size)/int64(w)))
		} else {
			tw, th = max(1, int(int64(w)*int64(size)/int64(h))), size
		}
	}
	out := image.NewRGBA(image.Rect(0, 0, tw, th))
	boxResize(out, rgb.Pix, w, h, tw, th)
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, out, &jpeg.Options{Quality: 85}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// boxResize averages the source pixels (RGB, w×h) falling into each target
// pixel (tw×th ≤ w×h).
func boxResize(dst *image.RGBA, src []uint8, w, h, tw, th int) {
	for ty := 0; ty < th; ty++ {
		y0, y1 := ty*h/th, max((ty+1)*h/th, ty*h/th+1)
		for tx := 0; tx < tw; tx++ {
			x0, x1 := tx*w/tw, max((tx+1)*w/tw, tx*w/tw+1)
			var r, g, b, n uint64
			for y := y0; y < y1; y++ {
				row := src[(y*w+x0)*3 : (y*w+x1)*3]
				for i := 0; i < len(row); i += 3 {
					r += uint64(row[i])
					g += uint64(row[i+1])
					b += uint64(row[i+2])
				}
				n += uint64(x1 - x0)
			}
			o := dst.PixOffset(tx, ty)
			dst.Pix[o] = uint8((r + n/2) / n)
			dst.Pix[o+1] = uint8((g + n/2) / n)
			dst.Pix[o+2] = uint8((b + n/2) / n)
			dst.Pix[o+3] = 255
		}
	}
}

// thumbCache keeps recently made thumbnails up to a byte budget, makes each
// at most once at a time, and bounds how many are decoded concurrently.
type thumbCache struct {
	mu       sync.Mutex
	budget   int
	used     int
	lru      *list.List // of *thumbEntry, most recent first
	entries  map[string]*list.Element
	inflight map[string]*thumbCall
	sem      chan struct{}
}

type thumbEntry struct {
	key  string
	data []byte
}

type thumbCall struct {
	done chan struct{}
	data []byte
	err  error
}

func newThumbCache(budget int) *thumbCache {
	return &thumbCache{
		budget:   budget,
		lru:      list.New(),
		entries:  map[string]*list.Element{},
		inflight: map[string]*thumbCall{},
		sem:      make(chan struct{}, runtime.GOMAXPROCS(0)),
	}
}

// get returns the cached thumbnail for key or makes it with build.
func (c *thumbCache) get(ctx context.Context, key string, build func() ([]byte, error)) ([]byte, error) {
	c.mu.Lock()
	if e, ok := c.entries[key]; ok {
		c.lru.MoveToFront(e)
		data := e.Value.(*thumbEntry).data
		c.mu.Unlock()
		return data, nil
	}
	if call, ok := c.inflight[key]; ok {
		c.mu.Unlock()
		select {
		case <-call.done:
			if call.err != nil && errors.Is(call.err, context.Canceled) && ctx.Err() == nil {
				return c.get(ctx, key, build) // the maker's client went away, not ours
			}
			return call.data, call.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	call := &thumbCall{done: make(chan struct{})}
	c.inflight[key] = call
	c.mu.Unlock()

	select {
	case c.sem <- struct{}{}:
		call.data, call.err = build()
		<-c.sem
	case <-ctx.Done():
		call.err = ctx.Err()
	}

	c.mu.Lock()
	delete(c.inflight, key)
	if call.err == nil && len(call.data) <= c.budget {
		c.entries[key] = c.lru.PushFront(&thumbEntry{key, call.data})
		c.used += len(call.data)
		for c.used > c.budget {
			e := c.lru.Back()
			te := e.Value.(*thumbEntry)
			c.lru.Remove(e)
			delete(c.entries, te.key)
			c.used -= len(te.data)
		}
	}
	c.mu.Unlock()
	close(call.done)
	return call.data, call.err
}
