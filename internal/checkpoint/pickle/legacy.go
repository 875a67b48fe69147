package pickle

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/big"

	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

// legacyMagic is the first pickle of a legacy file.
var legacyMagic, _ = new(big.Int).SetString("1950a86a20f9469cfc6c", 16)

// legacyProtocol is the second pickle of a legacy file.
const legacyProtocol = 1001

// parseLegacy reads the legacy container: five pickles (magic number,
// protocol version, sys info, the object, the storage keys) followed by each
// storage's int64 element count and data, in key order.
func parseLegacy(data []byte) (*File, error) {
	pos := 0
	next := func(what string, load func(any) (any, error)) (any, error) {
		v, n, err := unpickle(what, data[pos:], load)
		if err != nil {
			return nil, fmt.Errorf("legacy checkpoint at byte %d: %w", pos, err)
		}
		pos += n
		return v, nil
	}
	magic, err := next("magic number", nil)
	if err != nil {
		return nil, err
	}
	if !isMagic(magic) {
		return nil, fmt.Errorf("%w: a pickle, but not a torch.save file (no legacy magic number)", ErrFormat)
	}
	proto, err := next("protocol version", nil)
	if err != nil {
		return nil, err
	}
	if p, _ := proto.(int64); p != legacyProtocol {
		return nil, fmt.Errorf("%w: legacy protocol version is not %d", ErrFormat, legacyProtocol)
	}
	sysInfo, err := next("sys info", nil)
	if err != nil {
		return nil, err
	}
	si, ok := sysInfo.(*dict)
	if !ok {
		return nil, fmt.Errorf("%w: legacy sys info is a %s, not a dict", ErrFormat, typeName(sysInfo))
	}
	littleEndian := true
	if v, ok := si.get("little_endian"); ok {
		if littleEndian, ok = v.(bool); !ok {
			return nil, fmt.Errorf("%w: legacy sys info little_endian is a %s", ErrFormat, typeName(v))
		}
	}
	st := newStorageTable(true)
	top, err := next("object", st.load)
	if err != nil {
		return nil, err
	}
	keysV, err := next("storage keys", nil)
	if err != nil {
		return nil, err
	}
	kl, ok := keysV.(*list)
	if !ok {
		return nil, fmt.Errorf("%w: legacy storage key list is a %s", ErrFormat, typeName(keysV))
	}

	var order binary.ByteOrder = binary.LittleEndian
	if !littleEndian {
		order = binary.BigEndian
	}
	raw := make(map[string][]byte, len(kl.items))
	for _, k := range kl.items {
		key, ok := k.(string)
		if !ok {
			return nil, fmt.Errorf("%w: legacy storage key is a %s", ErrFormat, typeName(k))
		}
		s := st.byKey[key]
		if s == nil {
			return nil, fmt.Errorf("%w: legacy storage %q has data but no tensor refers to it", ErrFormat, key)
		}
		if _, dup := raw[key]; dup {
			return nil, fmt.Errorf("%w: legacy storage %q listed twice", ErrFormat, key)
		}
		if len(data)-pos < 8 {
			return nil, fmt.Errorf("%w: legacy storage %q: data ends at byte %d (truncated?)", ErrFormat, key, len(data))
		}
		count := order.Uint64(data[pos:])
		pos += 8
		if count != uint64(s.numel) {
			return nil, fmt.Errorf("%w: legacy storage %q holds %d elements, its persistent id says %d", ErrFormat, key, count, s.numel)
		}
		n := s.numel * int64(s.dtype.Size())
		if n > int64(len(data)-pos) {
			return nil, fmt.Errorf("%w: legacy storage %q: %d bytes wanted at byte %d, file has %d (truncated?)", ErrFormat, key, n, pos, len(data))
		}
		raw[key] = data[pos : pos+int(n) : pos+int(n)]
		pos += int(n)
	}
	sd, err := stateDict(top)
	if err != nil {
		return nil, err
	}
	alloc := budget(len(data))
	ts, err := collect(sd, func(name string, v *view) (*tensor.Tensor, error) {
		key := v.st.key
		b, ok := raw[key]
		if !ok {
			return nil, fmt.Errorf("%w: tensor %q: storage %q has no data in the file", ErrFormat, name, key)
		}
		return materialize(name, v, b, !littleEndian, alloc)
	})
	if err != nil {
		return nil, err
	}
	return &File{Format: FormatLegacy, Tensors: ts}, nil
}

func le64(x uint64) []byte {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint64(b, x)
	return b
}

func float64bits(f float64) uint64 { return math.Float64bits(f) }
