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
	"sort"

	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

// MaxHeaderSize caps the JSON header (the reference implementation uses 100 MB).
const MaxHeaderSize = 100 << 20

// ErrFormat is wrapped by every error about a malformed file.
var ErrFormat = errors.New("safetensors: malformed file")

// File is an open safetensors file.
type File struct {
	Tensors  map[string]*tensor.Tensor
	Names    []string // in file order of their data
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

// Open memory-maps path and parses it.
func Open(path string) (*File, error) {
	data, unmap, err := mapFile(path)
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

type entry struct {
	DType       string `json:"dtype"`
	Shape       []int  `json:"shape"`
	DataOffsets []int  `json:"data_offsets"`
}

// Parse parses a whole safetensors file held in memory. The tensors alias data.
func Parse(data []byte) (*File, error) {
	if len(data) < 8 {
		return nil, fmt.Errorf("%w: %d bytes, shorter than the 8-byte header length", ErrFormat, len(data))
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

	// Decode into raw messages first to detect duplicate names.
	dec := json.NewDecoder(bytes.NewReader(hdr))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("%w: header is not a JSON object", ErrFormat)
	}
	f := &File{Tensors: map[string]*tensor.Tensor{}}
	type span struct {
		name       string
		begin, end int
	}
	var spans []span
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: header: %v", ErrFormat, err)
		}
		name, _ := kt.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("%w: header entry %q: %v", ErrFormat, name, err)
		}
		if name == "__metadata__" {
			if err := json.Unmarshal(raw, &f.Metadata); err != nil {
				return nil, fmt.Errorf("%w: __metadata__ must map strings to strings", ErrFormat)
			}
			continue
		}
		if _, dup := f.Tensors[name]; dup {
			return nil, fmt.Errorf("%w: duplicate tensor name %q", ErrFormat, name)
		}
		var e entry
		if err := json.Unmarshal(raw, &e); err != nil {
			return nil, fmt.Errorf("%w: tensor %q: %v", ErrFormat, name, err)
		}
		dt := tensor.DType(e.DType)
		if dt.Size() == 0 {
			return nil, fmt.Errorf("%w: tensor %q: unsupported dtype %q", ErrFormat, name, e.DType)
		}
		if len(e.DataOffsets) != 2 {
			return nil, fmt.Errorf("%w: tensor %q: data_offsets must have 2 entries", ErrFormat, name)
		}
		numel := 1
		for _, d := range e.Shape {
			if d < 0 {
				return nil, fmt.Errorf("%w: tensor %q: negative dimension in shape %v", ErrFormat, name, e.Shape)
			}
			if d != 0 && numel > len(buf)/d {
				return nil, fmt.Errorf("%w: tensor %q: shape %v larger than the file", ErrFormat, name, e.Shape)
			}
			numel *= d
		}
		b, en := e.DataOffsets[0], e.DataOffsets[1]
		if b < 0 || en < b || en > len(buf) {
			return nil, fmt.Errorf("%w: tensor %q: data_offsets [%d, %d] outside the %d-byte data buffer (truncated?)", ErrFormat, name, b, en, len(buf))
		}
		if en-b != numel*dt.Size() {
			return nil, fmt.Errorf("%w: tensor %q: %d bytes for shape %v of %s (want %d)", ErrFormat, name, en-b, e.Shape, dt, numel*dt.Size())
		}
		shape := e.Shape
		if shape == nil {
			shape = []int{}
		}
		f.Tensors[name] = &tensor.Tensor{Name: name, DType: dt, Shape: shape, Data: buf[b:en:en]}
		spans = append(spans, span{name, b, en})
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrFormat, err)
	}
	sort.Slice(spans, func(i, j int) bool {
		if spans[i].begin != spans[j].begin {
			return spans[i].begin < spans[j].begin
		}
		return spans[i].end < spans[j].end
	})
	pos := 0
	for _, s := range spans {
		if s.begin < pos {
			return nil, fmt.Errorf("%w: tensor %q overlaps another tensor's data", ErrFormat, s.name)
		}
		if s.begin > pos {
			return nil, fmt.Errorf("%w: gap of %d bytes before tensor %q", ErrFormat, s.begin-pos, s.name)
		}
		pos = s.end
		f.Names = append(f.Names, s.name)
	}
	if pos != len(buf) {
		return nil, fmt.Errorf("%w: data buffer has %d bytes but tensors cover %d", ErrFormat, len(buf), pos)
	}
	return f, nil
}
