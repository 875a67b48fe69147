package pickle

import (
	"encoding/binary"
	"fmt"
	"math/bits"

	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

type globalKind int

const (
	kindOrderedDict globalKind = iota + 1
	kindRebuildTensorV2
	kindRebuildTensor
	kindRebuildParameter
	kindRebuildParameterWithState
	kindStorage
)

// storageDType is a storage class's element type.
type storageDType = tensor.DType

// storageClasses maps torch storage class names to element types.
var storageClasses = map[string]tensor.DType{
	"FloatStorage":    tensor.F32,
	"HalfStorage":     tensor.F16,
	"BFloat16Storage": tensor.BF16,
	"DoubleStorage":   tensor.F64,
	"LongStorage":     tensor.I64,
	"IntStorage":      tensor.I32,
	"ShortStorage":    tensor.I16,
	"CharStorage":     tensor.I8,
	"ByteStorage":     tensor.U8,
	"BoolStorage":     tensor.Bool,
}

// storageClassOf is the reverse of storageClasses.
var storageClassOf = func() map[tensor.DType]string {
	m := map[tensor.DType]string{}
	for k, v := range storageClasses {
		m[v] = k
	}
	return m
}()

// lookupGlobal resolves the globals a weight file may name (spec §2.1.2).
// Everything else is refused.
func lookupGlobal(module, name string) (*global, bool) {
	g := &global{module: module, name: name}
	switch module + "." + name {
	case "collections.OrderedDict":
		g.kind = kindOrderedDict
	case "torch._utils._rebuild_tensor_v2":
		g.kind = kindRebuildTensorV2
	case "torch._utils._rebuild_tensor":
		g.kind = kindRebuildTensor
	case "torch._utils._rebuild_parameter":
		g.kind = kindRebuildParameter
	case "torch._utils._rebuild_parameter_with_state":
		g.kind = kindRebuildParameterWithState
	default:
		if module != "torch" && module != "torch.cuda" {
			return nil, false
		}
		dt, ok := storageClasses[name]
		if !ok {
			return nil, false
		}
		g.kind, g.dtype = kindStorage, dt
	}
	return g, true
}

// storage is a typed storage named by a persistent id. A legacy view
// storage refers to a slice [offset, offset+numel) of its root.
type storage struct {
	key    string // container key of the data ("0", "1", ...)
	dtype  tensor.DType
	numel  int64
	root   *storage // non-nil for a legacy view storage
	offset int64    // element offset into root
}

// view is a tensor: a strided view of a storage.
type view struct {
	st     *storage
	offset int64
	shape  []int64
	stride []int64
	extent int64 // largest element index reached + 1; 0 for an empty view
}

// call interprets a REDUCE of an allow-listed callable.
func (u *unpickler) call(op int, f any, args tuple) (any, error) {
	g, ok := f.(*global)
	if !ok {
		return nil, u.errf(op, "REDUCE calls a %s", typeName(f))
	}
	switch g.kind {
	case kindOrderedDict:
		d := newDict()
		if len(args) == 1 { // OrderedDict(iterable of pairs)
			l, ok := args[0].(*list)
			if !ok {
				return nil, u.errf(op, "OrderedDict(%s)", typeName(args[0]))
			}
			for _, it := range l.items {
				p, ok := it.(tuple)
				if !ok || len(p) != 2 {
					return nil, u.errf(op, "OrderedDict item is a %s, want a pair", typeName(it))
				}
				d.set(p[0], p[1])
			}
		} else if len(args) != 0 {
			return nil, u.errf(op, "OrderedDict with %d arguments", len(args))
		}
		return d, nil
	case kindRebuildTensorV2, kindRebuildTensor:
		// _rebuild_tensor_v2(storage, offset, size, stride, requires_grad,
		// backward_hooks[, metadata]); _rebuild_tensor(storage, offset, size, stride).
		if g.kind == kindRebuildTensorV2 && len(args) != 6 && len(args) != 7 ||
			g.kind == kindRebuildTensor && len(args) != 4 {
			return nil, u.errf(op, "%s with %d arguments", g.name, len(args))
		}
		v, err := newView(args[0], args[1], args[2], args[3])
		if err != nil {
			return nil, u.errf(op, "%s: %v", g.name, err)
		}
		return v, nil
	case kindRebuildParameter, kindRebuildParameterWithState:
		// _rebuild_parameter(data, requires_grad, backward_hooks[, state]).
		if g.kind == kindRebuildParameter && len(args) != 3 ||
			g.kind == kindRebuildParameterWithState && len(args) != 4 {
			return nil, u.errf(op, "%s with %d arguments", g.name, len(args))
		}
		v, ok := args[0].(*view)
		if !ok {
			return nil, u.errf(op, "%s of a %s, want a tensor", g.name, typeName(args[0]))
		}
		return v, nil
	}
	return nil, u.errf(op, "%s.%s is not callable", g.module, g.name)
}

// toInt64s converts a tuple of non-negative ints.
func toInt64s(what string, v any) ([]int64, error) {
	t, ok := v.(tuple)
	if !ok {
		return nil, fmt.Errorf("%s is a %s, want a tuple", what, typeName(v))
	}
	out := make([]int64, len(t))
	for i, x := range t {
		n, ok := x.(int64)
		if !ok || n < 0 {
			return nil, fmt.Errorf("%s[%d] is not a non-negative int", what, i)
		}
		out[i] = n
	}
	return out, nil
}

// newView checks a tensor's storage, offset, size and stride: the view must
// lie inside its storage.
func newView(st, offset, size, stride any) (*view, error) {
	s, ok := st.(*storage)
	if !ok {
		return nil, fmt.Errorf("storage argument is a %s", typeName(st))
	}
	off, ok := offset.(int64)
	if !ok || off < 0 {
		return nil, fmt.Errorf("storage offset is not a non-negative int")
	}
	shape, err := toInt64s("size", size)
	if err != nil {
		return nil, err
	}
	strides, err := toInt64s("stride", stride)
	if err != nil {
		return nil, err
	}
	if len(shape) != len(strides) {
		return nil, fmt.Errorf("size has %d dimensions but stride %d", len(shape), len(strides))
	}
	// Largest element index + 1, with overflow checks.
	numel, extent := uint64(1), uint64(1)
	for i, d := range shape {
		if d == 0 {
			numel = 0
			continue
		}
		hi, lo := bits.Mul64(uint64(d-1), uint64(strides[i]))
		if hi != 0 || lo > 1<<62 {
			return nil, fmt.Errorf("size %v with stride %v overflows", shape, strides)
		}
		if extent += lo; extent > 1<<62 {
			return nil, fmt.Errorf("size %v with stride %v overflows", shape, strides)
		}
		if hi, lo = bits.Mul64(numel, uint64(d)); hi != 0 || lo > 1<<62 {
			return nil, fmt.Errorf("size %v overflows", shape)
		}
		numel = lo
	}
	if numel > 0 {
		if uint64(off) > 1<<62 || uint64(off)+extent > uint64(s.numel) {
			return nil, fmt.Errorf("view (offset %d, size %v, stride %v) reaches element %d of a storage of %d elements",
				off, shape, strides, uint64(off)+extent-1, s.numel)
		}
		if numel > uint64(s.numel) {
			return nil, fmt.Errorf("view (size %v, stride %v) has %d elements, more than its storage's %d (overlapping strides)",
				shape, strides, numel, s.numel)
		}
	} else if off > s.numel {
		return nil, fmt.Errorf("offset %d beyond a storage of %d elements", off, s.numel)
	}
	if numel == 0 {
		extent = 0
	}
	return &view{st: s, offset: off, shape: shape, stride: strides, extent: int64(extent)}, nil
}

// storageTable resolves persistent ids to storages, one per key.
type storageTable struct {
	byKey  map[string]*storage
	views  map[string]*storage // legacy view storages by view key
	legacy bool
}

func newStorageTable(legacy bool) *storageTable {
	return &storageTable{byKey: map[string]*storage{}, views: map[string]*storage{}, legacy: legacy}
}

// load resolves ('storage', StorageClass, key, location, numel[, view_metadata]).
func (t *storageTable) load(pid any) (any, error) {
	p, ok := pid.(tuple)
	if !ok || len(p) < 5 || len(p) > 6 {
		return nil, fmt.Errorf("%w: persistent id is a %s, want a 5- or 6-tuple", ErrFormat, typeName(pid))
	}
	if s, _ := p[0].(string); s != "storage" {
		return nil, fmt.Errorf("%w: persistent id of type %s, want 'storage'", ErrFormat, typeName(p[0]))
	}
	g, ok := p[1].(*global)
	if !ok || g.kind != kindStorage {
		return nil, fmt.Errorf("%w: persistent id names a %s, want a storage class", ErrFormat, typeName(p[1]))
	}
	key, ok := p[2].(string)
	if !ok {
		return nil, fmt.Errorf("%w: storage key is a %s", ErrFormat, typeName(p[2]))
	}
	numel, ok := p[4].(int64)
	if !ok || numel < 0 || numel > 1<<56 {
		return nil, fmt.Errorf("%w: storage %q: element count is not a valid int", ErrFormat, key)
	}
	s := t.byKey[key]
	if s == nil {
		s = &storage{key: key, dtype: g.dtype, numel: numel}
		t.byKey[key] = s
	} else if s.dtype != g.dtype || s.numel != numel {
		return nil, fmt.Errorf("%w: storage %q named as %d×%s and as %d×%s", ErrFormat, key, s.numel, s.dtype, numel, g.dtype)
	}
	if len(p) == 5 || p[5] == nil {
		return s, nil
	}
	// Legacy view metadata: (view_key, offset, view_size) in elements.
	vm, ok := p[5].(tuple)
	if !ok || len(vm) != 3 {
		return nil, fmt.Errorf("%w: storage %q: view metadata is a %s, want a 3-tuple", ErrFormat, key, typeName(p[5]))
	}
	vk, ok1 := vm[0].(string)
	off, ok2 := vm[1].(int64)
	size, ok3 := vm[2].(int64)
	if !ok1 || !ok2 || !ok3 || off < 0 || size < 0 || off > numel || size > numel-off {
		return nil, fmt.Errorf("%w: storage %q: bad view metadata", ErrFormat, key)
	}
	if v := t.views[vk]; v != nil {
		return v, nil
	}
	v := &storage{key: key, dtype: g.dtype, numel: size, root: s, offset: off}
	t.views[vk] = v
	return v, nil
}

// allocator hands out copy buffers within a byte budget, so that a file
// cannot make the reader allocate much more than its own size.
type allocator struct{ left int64 }

func (a *allocator) alloc(name string, n int64) ([]byte, error) {
	if n > a.left {
		return nil, fmt.Errorf("%w: tensor %q needs %d bytes of copies, beyond the budget the file size allows", ErrFormat, name, n)
	}
	a.left -= n
	return make([]byte, n), nil
}

// materialize makes a contiguous little-endian tensor of v. raw holds the
// bytes of v's root storage in the file's byte order. A contiguous view of
// little-endian data aliases raw.
func materialize(name string, v *view, raw []byte, bigEndian bool, a *allocator) (*tensor.Tensor, error) {
	es := int64(v.st.dtype.Size())
	off := v.offset
	if v.st.root != nil {
		off += v.st.offset
	}
	shape := make([]int, len(v.shape))
	numel := int64(1)
	for i, d := range v.shape {
		shape[i] = int(d)
		numel *= d
	}
	t := &tensor.Tensor{Name: name, DType: v.st.dtype, Shape: shape}
	if numel == 0 {
		t.Data = []byte{}
		return t, nil
	}
	if (off+v.extent)*es > int64(len(raw)) {
		return nil, fmt.Errorf("%w: tensor %q lies outside its storage data", ErrFormat, name)
	}
	if contiguous(v.shape, v.stride) {
		b := raw[off*es : (off+numel)*es : (off+numel)*es]
		if !bigEndian || es == 1 {
			t.Data = b
			return t, nil
		}
		out, err := a.alloc(name, numel*es)
		if err != nil {
			return nil, err
		}
		copy(out, b)
		swapBytes(out, int(es))
		t.Data = out
		return t, nil
	}
	out, err := a.alloc(name, numel*es)
	if err != nil {
		return nil, err
	}
	// Gather element by element with an odometer over the dimensions.
	idx := make([]int64, len(v.shape))
	src := off
	for i := int64(0); i < numel; i++ {
		s := src * es
		copy(out[i*es:(i+1)*es], raw[s:s+es])
		for d := len(idx) - 1; d >= 0; d-- {
			idx[d]++
			src += v.stride[d]
			if idx[d] < v.shape[d] {
				break
			}
			src -= idx[d] * v.stride[d]
			idx[d] = 0
		}
	}
	if bigEndian {
		swapBytes(out, int(es))
	}
	t.Data = out
	return t, nil
}

// contiguous reports whether strides are row-major contiguous for shape
// (dimensions of size 1 may have any stride).
func contiguous(shape, stride []int64) bool {
	want := int64(1)
	for i := len(shape) - 1; i >= 0; i-- {
		if shape[i] == 1 {
			continue
		}
		if stride[i] != want {
			return false
		}
		want *= shape[i]
	}
	return true
}

// swapBytes reverses the bytes of each es-byte element in place.
func swapBytes(b []byte, es int) {
	switch es {
	case 2:
		for i := 0; i+1 < len(b); i += 2 {
			binary.LittleEndian.PutUint16(b[i:], binary.BigEndian.Uint16(b[i:]))
		}
	case 4:
		for i := 0; i+3 < len(b); i += 4 {
			binary.LittleEndian.PutUint32(b[i:], binary.BigEndian.Uint32(b[i:]))
		}
	case 8:
		for i := 0; i+7 < len(b); i += 8 {
			binary.LittleEndian.PutUint64(b[i:], binary.BigEndian.Uint64(b[i:]))
		}
	}
}
