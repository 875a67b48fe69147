package pickle

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"strconv"
	"unsafe"

	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

// encoder writes protocol-2 pickle opcodes, memoizing repeated globals and
// strings as CPython's pickler does.
type encoder struct {
	b    bytes.Buffer
	memo map[string]int // "g:module.name" or "s:string" → memo index
}

func newEncoder() *encoder {
	e := &encoder{memo: map[string]int{}}
	e.b.Write([]byte{0x80, 2}) // PROTO 2
	return e
}

func (e *encoder) op(b ...byte) { e.b.Write(b) }

// put memoizes the top of the stack under key.
func (e *encoder) put(key string) {
	i := len(e.memo)
	e.memo[key] = i
	if i < 256 {
		e.op('q', byte(i))
	} else {
		e.op('r')
		binary.Write(&e.b, binary.LittleEndian, uint32(i))
	}
}

// get pushes a memoized value, reporting whether key was memoized.
func (e *encoder) get(key string) bool {
	i, ok := e.memo[key]
	if !ok {
		return false
	}
	if i < 256 {
		e.op('h', byte(i))
	} else {
		e.op('j')
		binary.Write(&e.b, binary.LittleEndian, uint32(i))
	}
	return true
}

func (e *encoder) global(module, name string) {
	key := "g:" + module + "." + name
	if e.get(key) {
		return
	}
	e.op('c')
	e.b.WriteString(module + "\n" + name + "\n")
	e.put(key)
}

func (e *encoder) str(s string) {
	key := "s:" + s
	if e.get(key) {
		return
	}
	e.op('X')
	binary.Write(&e.b, binary.LittleEndian, uint32(len(s)))
	e.b.WriteString(s)
	e.put(key)
}

func (e *encoder) int(x int64) {
	switch {
	case x >= 0 && x < 1<<8:
		e.op('K', byte(x))
	case x >= 0 && x < 1<<16:
		e.op('M', byte(x), byte(x>>8))
	case x >= -1<<31 && x < 1<<31:
		e.op('J')
		binary.Write(&e.b, binary.LittleEndian, int32(x))
	default:
		e.op(0x8a, 8)
		binary.Write(&e.b, binary.LittleEndian, x)
	}
}

// intTuple writes a tuple of ints.
func (e *encoder) intTuple(xs []int64) {
	if len(xs) == 0 {
		e.op(')')
		return
	}
	if len(xs) > 3 {
		e.op('(')
	}
	for _, x := range xs {
		e.int(x)
	}
	switch len(xs) {
	case 1, 2, 3:
		e.op(0x84 + byte(len(xs)))
	default:
		e.op('t')
	}
}

// emptyOrderedDict writes collections.OrderedDict().
func (e *encoder) emptyOrderedDict() {
	e.global("collections", "OrderedDict")
	e.op(')', 'R')
}

// tensorRef writes _rebuild_tensor_v2 of a contiguous view: the persistent
// id (with a trailing None in legacy files), offset, size, stride,
// requires_grad=False and empty backward hooks.
func (e *encoder) tensorRef(dt tensor.DType, key string, numel int64, shape []int64, legacy bool) {
	e.global("torch._utils", "_rebuild_tensor_v2")
	e.op('(', '(')
	e.str("storage")
	e.global("torch", storageClassOf[dt])
	e.str(key)
	e.str("cpu")
	e.int(numel)
	if legacy {
		e.op('N')
	}
	e.op('t', 'Q')
	e.int(0)
	e.intTuple(shape)
	stride := make([]int64, len(shape))
	s := int64(1)
	for i := len(shape) - 1; i >= 0; i-- {
		stride[i] = s
		s *= max(shape[i], 1)
	}
	e.intTuple(stride)
	e.op(0x89)
	e.emptyOrderedDict()
	e.op('t', 'R')
}

func (e *encoder) stop() []byte {
	e.op('.')
	return e.b.Bytes()
}

// storageRef is one storage to write.
type storageRef struct {
	key   string
	dtype tensor.DType
	data  []byte
}

// planStorages checks the tensors and assigns storages: tensors whose Data
// is the very same slice share one storage (as aliased tensors do in torch).
func planStorages(tensors []*tensor.Tensor) ([]storageRef, []int, error) {
	seen := map[string]bool{}
	type ident struct {
		p  unsafe.Pointer
		n  int
		dt tensor.DType
	}
	byIdent := map[ident]int{}
	var sts []storageRef
	which := make([]int, len(tensors))
	for i, t := range tensors {
		if t == nil {
			return nil, nil, fmt.Errorf("pickle: write: nil tensor")
		}
		if seen[t.Name] {
			return nil, nil, fmt.Errorf("pickle: write: duplicate tensor name %q", t.Name)
		}
		seen[t.Name] = true
		if _, ok := storageClassOf[t.DType]; !ok {
			return nil, nil, fmt.Errorf("pickle: write: tensor %q: unsupported dtype %q", t.Name, t.DType)
		}
		n := 1
		for _, d := range t.Shape {
			if d < 0 {
				return nil, nil, fmt.Errorf("pickle: write: tensor %q: negative dimension in %v", t.Name, t.Shape)
			}
			n *= d
		}
		if len(t.Data) != n*t.DType.Size() {
			return nil, nil, fmt.Errorf("pickle: write: tensor %q: %d bytes of data for shape %v of %s", t.Name, len(t.Data), t.Shape, t.DType)
		}
		if len(t.Data) > 0 {
			id := ident{unsafe.Pointer(unsafe.SliceData(t.Data)), len(t.Data), t.DType}
			if j, ok := byIdent[id]; ok {
				which[i] = j
				continue
			}
			byIdent[id] = len(sts)
		}
		which[i] = len(sts)
		sts = append(sts, storageRef{key: strconv.Itoa(len(sts)), dtype: t.DType, data: t.Data})
	}
	return sts, which, nil
}

// statePickle encodes the OrderedDict of tensors.
func statePickle(tensors []*tensor.Tensor, sts []storageRef, which []int, legacy bool) []byte {
	e := newEncoder()
	e.emptyOrderedDict()
	e.put("statedict")
	for i, t := range tensors {
		if i%1000 == 0 {
			if i > 0 {
				e.op('u')
			}
			e.op('(')
		}
		e.str(t.Name)
		s := sts[which[i]]
		shape := make([]int64, len(t.Shape))
		for j, d := range t.Shape {
			shape[j] = int64(d)
		}
		e.tensorRef(t.DType, s.key, int64(len(s.data)/s.dtype.Size()), shape, legacy)
	}
	if len(tensors) > 0 {
		e.op('u')
	}
	return e.stop()
}

// zipEntry is one record of a torch zip archive.
type zipEntry struct {
	name string
	data []byte
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// writeZip writes stored (uncompressed) entries whose data starts on
// 64-byte boundaries, as PyTorch's writer does (padding goes in an extra
// field of the local header).
func writeZip(w io.Writer, entries []zipEntry) error {
	cw := &countingWriter{w: w}
	zw := zip.NewWriter(cw)
	for _, en := range entries {
		if err := zw.Flush(); err != nil {
			return err
		}
		const localHeader = 30
		const extraHeader = 4
		pos := cw.n + localHeader + int64(len(en.name)) + extraHeader
		pad := (64 - pos%64) % 64
		extra := make([]byte, extraHeader+pad)
		binary.LittleEndian.PutUint16(extra, 0x4246) // "FB", PyTorch's padding field
		binary.LittleEndian.PutUint16(extra[2:], uint16(pad))
		for i := extraHeader; i < len(extra); i++ {
			extra[i] = 'Z'
		}
		fh := &zip.FileHeader{
			Name:               en.name,
			Method:             zip.Store,
			CRC32:              crc32.ChecksumIEEE(en.data),
			CompressedSize64:   uint64(len(en.data)),
			UncompressedSize64: uint64(len(en.data)),
			Extra:              extra,
		}
		wr, err := zw.CreateRaw(fh)
		if err != nil {
			return err
		}
		if _, err := wr.Write(en.data); err != nil {
			return err
		}
	}
	return zw.Close()
}

// WriteTorchZip writes tensors as torch.save(state_dict) does since PyTorch
// 1.6: a zip archive (folder "archive") with data.pkl (protocol 2, an
// OrderedDict of _rebuild_tensor_v2 views), byteorder "little", one
// data/<key> record per storage (stored, 64-byte aligned) and version "3".
// Tensors whose Data is the same slice share a storage.
func WriteTorchZip(w io.Writer, tensors []*tensor.Tensor) error {
	sts, which, err := planStorages(tensors)
	if err != nil {
		return err
	}
	entries := []zipEntry{
		{"archive/data.pkl", statePickle(tensors, sts, which, false)},
		{"archive/byteorder", []byte("little")},
	}
	for _, s := range sts {
		entries = append(entries, zipEntry{"archive/data/" + s.key, s.data})
	}
	entries = append(entries, zipEntry{"archive/version", []byte("3\n")})
	if err := writeZip(w, entries); err != nil {
		return fmt.Errorf("pickle: write: %w", err)
	}
	return nil
}

// WriteLegacy writes tensors in the legacy torch.save format
// (_use_new_zipfile_serialization=False): magic number, protocol version,
// sys info, the state dict and the storage keys as five pickles, then each
// storage's element count and data, little-endian.
func WriteLegacy(w io.Writer, tensors []*tensor.Tensor) error {
	sts, which, err := planStorages(tensors)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	// Magic number as LONG1.
	m := legacyMagic.Bytes() // big-endian
	e := newEncoder()
	e.op(0x8a, byte(len(m)))
	for i := len(m) - 1; i >= 0; i-- {
		e.op(m[i])
	}
	out.Write(e.stop())
	e = newEncoder()
	e.int(legacyProtocol)
	out.Write(e.stop())
	e = newEncoder()
	e.op('}', '(')
	e.str("protocol_version")
	e.int(legacyProtocol)
	e.str("little_endian")
	e.op(0x88)
	e.str("type_sizes")
	e.op('}', '(')
	for _, kv := range []struct {
		k string
		v int64
	}{{"short", 2}, {"int", 4}, {"long", 4}} {
		e.str(kv.k)
		e.int(kv.v)
	}
	e.op('u', 'u')
	out.Write(e.stop())
	out.Write(statePickle(tensors, sts, which, true))
	e = newEncoder()
	e.op(']', '(')
	for _, s := range sts {
		e.str(s.key)
	}
	e.op('e')
	out.Write(e.stop())
	if _, err := w.Write(out.Bytes()); err != nil {
		return fmt.Errorf("pickle: write: %w", err)
	}
	for _, s := range sts {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(s.data)/s.dtype.Size()))
		if _, err := w.Write(n[:]); err != nil {
			return fmt.Errorf("pickle: write: %w", err)
		}
		if _, err := w.Write(s.data); err != nil {
			return fmt.Errorf("pickle: write: %w", err)
		}
	}
	return nil
}
