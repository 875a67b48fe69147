// Package safetensors reads and writes the safetensors format: an 8-byte
// little-endian header length, a JSON header naming each tensor's dtype,
// shape and byte span, then the raw data. Files are memory-mapped; tensors
// alias the mapping until Close.
package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"sort"
	"unicode/utf8"

	"github.com/tinyclip-go/tinyclip/internal/checkpoint/internal/mmap"
	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

// MaxHeaderSize caps the JSON header (the reference implementation uses 100 MB).
const MaxHeaderSize = 100 << 20

// ErrFormat is wrapped by every error about a malformed file.
var ErrFormat = errors.New("safetensors: malformed file")

// File is an open safetensors file.
type File struct {
	// Tensors maps each name to its tensor; the data aliases the file.
	Tensors map[string]*tensor.Tensor
	// Names lists the tensor names in the order of their data.
	Names []string
	// Metadata is the "__metadata__" map, nil when absent.
	Metadata map[string]string
	unmap    func() error
}

// Close releases the file mapping. Tensors of the file must not be used after.
func (f *File) Close() error {
	if f.unmap == nil {
		return nil
	}
	u := f.unmap
	f.unmap = nil
	return u()
}

// Open memory-maps path and parses it. Errors name the file.
func Open(path string) (*File, error) {
	data, unmap, err := mmap.Map(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	f, err := Parse(data)
	if err != nil {
		unmap()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f.unmap = unmap
	return f, nil
}

// Parse parses a whole safetensors file held in memory. The tensors alias data.
func Parse(data []byte) (*File, error) {
	if len(data) < 8 {
		return nil, fmt.Errorf("%w: %d bytes, shorter than the 8-byte header length (truncated?)", ErrFormat, len(data))
	}
	n := binary.LittleEndian.Uint64(data)
	if n > MaxHeaderSize {
		return nil, fmt.Errorf("%w: header length %d exceeds the %d-byte limit", ErrFormat, n, MaxHeaderSize)
	}
	if n > uint64(len(data)-8) {
		return nil, fmt.Errorf("%w: header length %d but only %d bytes follow (truncated?)", ErrFormat, n, len(data)-8)
	}
	hdr := data[8 : 8+n]
	buf := data[8+n:]
	if len(hdr) < 2 || hdr[0] != '{' {
		return nil, fmt.Errorf("%w: header does not start with a JSON object", ErrFormat)
	}
	if !utf8.Valid(hdr) {
		return nil, fmt.Errorf("%w: header is not valid UTF-8", ErrFormat)
	}

	dec := json.NewDecoder(bytes.NewReader(hdr))
	if _, err := dec.Token(); err != nil { // the '{' checked above
		return nil, fmt.Errorf("%w: header: %v", ErrFormat, err)
	}
	f := &File{Tensors: map[string]*tensor.Tensor{}}
	type span struct {
		name       string
		begin, end int
	}
	var spans []span
	seenMeta := false
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: header: %v", ErrFormat, err)
		}
		name, ok := kt.(string)
		if !ok {
			return nil, fmt.Errorf("%w: header: object key expected", ErrFormat)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("%w: header entry %q: %v", ErrFormat, name, err)
		}
		if name == "__metadata__" {
			if seenMeta {
				return nil, fmt.Errorf("%w: duplicate __metadata__", ErrFormat)
			}
			seenMeta = true
			if err := json.Unmarshal(raw, &f.Metadata); err != nil {
				return nil, fmt.Errorf("%w: __metadata__ must map strings to strings", ErrFormat)
			}
			continue
		}
		if _, dup := f.Tensors[name]; dup {
			return nil, fmt.Errorf("%w: duplicate tensor name %q", ErrFormat, name)
		}
		t, b, e, err := parseEntry(name, raw, len(buf))
		if err != nil {
			return nil, err
		}
		t.Data = buf[b:e:e]
		f.Tensors[name] = t
		spans = append(spans, span{name, b, e})
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrFormat, err)
	}
	for _, c := range hdr[dec.InputOffset():] {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return nil, fmt.Errorf("%w: header: data after the JSON object (only space padding is allowed)", ErrFormat)
		}
	}

	sort.Slice(spans, func(i, j int) bool {
		if spans[i].begin != spans[j].begin {
			return spans[i].begin < spans[j].begin
		}
		if spans[i].end != spans[j].end {
			return spans[i].end < spans[j].end
		}
		return spans[i].name < spans[j].name
	})
	pos := 0
	for _, s := range spans {
		if s.begin < pos {
			return nil, fmt.Errorf("%w: tensor %q [%d, %d] overlaps another tensor's data", ErrFormat, s.name, s.begin, s.end)
		}
		if s.begin > pos {
			return nil, fmt.Errorf("%w: gap of %d bytes before tensor %q", ErrFormat, s.begin-pos, s.name)
		}
		pos = s.end
		f.Names = append(f.Names, s.name)
	}
	if pos != len(buf) {
		return nil, fmt.Errorf("%w: data buffer has %d bytes but the tensors cover %d", ErrFormat, len(buf), pos)
	}
	return f, nil
}

// parseEntry decodes and checks one header entry against a data buffer of
// size bufLen, returning the tensor (without data) and its byte span.
func parseEntry(name string, raw []byte, bufLen int) (*tensor.Tensor, int, int, error) {
	// Field names are matched exactly (encoding/json would ignore case);
	// unknown fields are ignored, as by the reference implementation.
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return nil, 0, 0, fmt.Errorf("%w: tensor %q: entry is not a JSON object", ErrFormat, name)
	}
	var dtype string
	var shape, offs []int
	for _, fd := range []struct {
		key string
		dst any
	}{{"dtype", &dtype}, {"shape", &shape}, {"data_offsets", &offs}} {
		v, ok := fields[fd.key]
		if !ok || string(bytes.TrimSpace(v)) == "null" {
			return nil, 0, 0, fmt.Errorf("%w: tensor %q: missing %s", ErrFormat, name, fd.key)
		}
		if err := json.Unmarshal(v, fd.dst); err != nil {
			return nil, 0, 0, fmt.Errorf("%w: tensor %q: %s: %v", ErrFormat, name, fd.key, err)
		}
	}
	dt := tensor.DType(dtype)
	if dt.Size() == 0 {
		return nil, 0, 0, fmt.Errorf("%w: tensor %q: unsupported dtype %q", ErrFormat, name, dtype)
	}
	if len(offs) != 2 {
		return nil, 0, 0, fmt.Errorf("%w: tensor %q: data_offsets must have 2 entries, has %d", ErrFormat, name, len(offs))
	}
	if shape == nil {
		shape = []int{} // "shape": [] decodes to an empty, non-nil slice; keep it so
	}
	nbytes, ok := byteSize(shape, dt.Size(), math.MaxInt64/2)
	if !ok {
		return nil, 0, 0, fmt.Errorf("%w: tensor %q: shape %v of %s has a negative or too large dimension", ErrFormat, name, shape, dt)
	}
	b, en := offs[0], offs[1]
	if b < 0 || en < b || en > bufLen {
		return nil, 0, 0, fmt.Errorf("%w: tensor %q: data_offsets [%d, %d] outside the %d-byte data buffer (truncated?)", ErrFormat, name, b, en, bufLen)
	}
	if en-b != nbytes {
		return nil, 0, 0, fmt.Errorf("%w: tensor %q: %d bytes for shape %v of %s (want %d)", ErrFormat, name, en-b, shape, dt, nbytes)
	}
	return &tensor.Tensor{Name: name, DType: dt, Shape: shape}, b, en, nil
}

// byteSize returns numel(shape)·size when no dimension is negative and the
// result does not exceed limit (a zero-size tensor may have large dims).
func byteSize(shape []int, size, limit int) (int, bool) {
	for _, d := range shape {
		if d < 0 {
			return 0, false
		}
		if d == 0 {
			return 0, true
		}
	}
	n := uint64(size)
	for _, d := range shape {
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 || lo > uint64(limit) {
			return 0, false
		}
		n = lo
	}
	if n > uint64(limit) {
		return 0, false
	}
	return int(n), true
}
