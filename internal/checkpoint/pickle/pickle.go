// Package pickle reads PyTorch checkpoints (torch.save files: the zip
// container and the legacy pre-1.6 stream) with a restricted unpickler that
// never executes anything: only the opcodes and the allow-listed globals a
// state dict needs are understood (collections.OrderedDict, the
// torch._utils tensor and parameter rebuilders, the storage classes); any
// other global is refused with ErrForbiddenGlobal. It also writes state dicts
// in both containers.
package pickle

import (
	"bytes"
	"errors"
	"fmt"
	"math/big"

	"github.com/tinyclip-go/tinyclip/internal/checkpoint/internal/mmap"
	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

// Container formats, as File.Format reports them.
const (
	FormatZip    = "torch-zip"    // torch.save since PyTorch 1.6
	FormatLegacy = "torch-legacy" // _use_new_zipfile_serialization=False
)

var (
	// ErrFormat is wrapped by errors about malformed or truncated files.
	ErrFormat = errors.New("pickle: malformed checkpoint")
	// ErrForbiddenGlobal is wrapped (by *GlobalError) when a pickle names a
	// global outside the allow-list: the file holds objects other than
	// tensors and state dicts, which are never constructed.
	ErrForbiddenGlobal = errors.New("pickle: forbidden global")
	// ErrTorchScript is returned for TorchScript archives (torch.jit.save),
	// which hold a program rather than a state dict.
	ErrTorchScript = errors.New("pickle: TorchScript archive, not a state dict")
)

// GlobalError reports a refused global.
type GlobalError struct {
	Module, Name string
	File         string // the pickle, e.g. "model/data.pkl"
	Offset       int    // byte offset of the opcode naming it
	// Key is the top-level entry whose value uses the global (e.g. "args"
	// of a training snapshot), "" when not known.
	Key string
}

// Error names the file, the offset, the global and the top-level entry.
func (e *GlobalError) Error() string {
	where := ""
	if e.Key != "" {
		where = fmt.Sprintf(" in top-level entry %q", e.Key)
	}
	return fmt.Sprintf("pickle: %s: offset %d: forbidden global %s.%s%s (only tensors and state dicts are loaded; nothing is executed)",
		e.File, e.Offset, e.Module, e.Name, where)
}

// Unwrap makes errors.Is(err, ErrForbiddenGlobal) hold.
func (e *GlobalError) Unwrap() error { return ErrForbiddenGlobal }

// File is a PyTorch checkpoint read into tensors.
type File struct {
	// Format is FormatZip or FormatLegacy.
	Format string
	// Tensors maps the state dict's keys (as stored) to contiguous
	// little-endian tensors; they may alias the file mapping. Plain numbers
	// stored in the state dict become 0-d tensors (int → I64, float → F64,
	// bool → BOOL).
	Tensors map[string]*tensor.Tensor
	release func() error
}

// Close releases the file mapping. Tensors must not be used after.
func (f *File) Close() error {
	if f.release == nil {
		return nil
	}
	r := f.release
	f.release = nil
	return r()
}

// Open reads the checkpoint at path, memory-mapped. Errors name the file.
func Open(path string) (*File, error) {
	data, release, err := mmap.Map(path)
	if err != nil {
		return nil, fmt.Errorf("pickle: %w", err)
	}
	f, err := Parse(data)
	if err != nil {
		release()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f.release = release
	return f, nil
}

// Parse reads a checkpoint held in memory, zip or legacy by its first bytes.
// Tensors may alias data.
func Parse(data []byte) (*File, error) {
	switch {
	case bytes.HasPrefix(data, []byte("PK\x03\x04")):
		return parseZip(data)
	case len(data) > 0 && data[0] == 0x80:
		return parseLegacy(data)
	case bytes.HasPrefix(data, []byte("PK")):
		return nil, fmt.Errorf("%w: zip archive without entries", ErrFormat)
	}
	return nil, fmt.Errorf("%w: neither a torch zip archive nor a legacy pickle", ErrFormat)
}

// budget is how many bytes of copies (byte swapping, strided gathers,
// decompression) a file of n bytes may cause.
func budget(n int) *allocator { return &allocator{left: 8*int64(n) + 16<<20} }

// stateDict picks the state dict out of the top-level object:
// {"state_dict": sd, ...}, {"model": sd, ...} or a bare mapping.
func stateDict(top any) (*dict, error) {
	d, ok := top.(*dict)
	if !ok {
		return nil, fmt.Errorf("%w: top-level object is a %s, not a mapping", ErrFormat, typeName(top))
	}
	for _, k := range []string{"state_dict", "model"} {
		if v, ok := d.get(k); ok {
			if sd, ok := v.(*dict); ok {
				return sd, nil
			}
		}
	}
	return d, nil
}

// collect turns a state dict's entries into tensors; resolve makes a
// tensor of a view.
func collect(sd *dict, resolve func(name string, v *view) (*tensor.Tensor, error)) (map[string]*tensor.Tensor, error) {
	out := make(map[string]*tensor.Tensor, len(sd.keys))
	for i, k := range sd.keys {
		name, ok := k.(string)
		if !ok {
			return nil, fmt.Errorf("%w: state dict key %d is a %s, not a string", ErrFormat, i, typeName(k))
		}
		var t *tensor.Tensor
		switch v := sd.vals[i].(type) {
		case *view:
			var err error
			if t, err = resolve(name, v); err != nil {
				return nil, err
			}
		case int64:
			t = &tensor.Tensor{Name: name, DType: tensor.I64, Shape: []int{}, Data: le64(uint64(v))}
		case float64:
			t = &tensor.Tensor{Name: name, DType: tensor.F64, Shape: []int{}, Data: le64(float64bits(v))}
		case bool:
			b := byte(0)
			if v {
				b = 1
			}
			t = &tensor.Tensor{Name: name, DType: tensor.Bool, Shape: []int{}, Data: []byte{b}}
		default:
			return nil, fmt.Errorf("%w: state dict entry %q is a %s, not a tensor", ErrFormat, name, typeName(v))
		}
		out[name] = t
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: the state dict holds no tensors", ErrFormat)
	}
	return out, nil
}

// isMagic reports whether v is the legacy format's magic number.
func isMagic(v any) bool {
	n, ok := v.(*big.Int)
	return ok && n.Cmp(legacyMagic) == 0
}
