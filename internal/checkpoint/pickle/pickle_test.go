package pickle

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/tinyclip-go/tinyclip/internal/checkpoint/safetensors"
	"github.com/tinyclip-go/tinyclip/internal/fixtures"
	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

// releasePrefixes are the key prefixes of the TinyCLIP release layout and
// what they stand for in open_clip names (fixtures/models/README.md).
var releasePrefixes = []struct{ from, to string }{
	{"_image_encoder.module.", ""},
	{"_text_encoder.module.", ""},
	{"_logit_scale.module.", ""},
	{"image_encoder_without_ddp.", ""},
	{"text_encoder_without_ddp.", ""},
}

func openClipName(k string) string {
	for _, p := range releasePrefixes {
		if strings.HasPrefix(k, p.from) {
			return p.to + strings.TrimPrefix(k, p.from)
		}
	}
	return k
}

// fixturePT lists the .pt fixtures with manifest.json's format, key count
// and dtypes, and the open_clip file holding the same values.
var fixturePT = []struct {
	path, format string
	keys         int
	dtypes       []tensor.DType
	openClip     string
}{
	{"vit-p16/tinyclip_fp32.pt", FormatZip, 62, []tensor.DType{tensor.F32}, "vit-p16/open_clip/open_clip_model.safetensors"},
	{"vit-p32-quickgelu/tinyclip_fp16.pt", FormatZip, 62, []tensor.DType{tensor.F16, tensor.F32}, "vit-p32-quickgelu/open_clip/open_clip_model.safetensors"},
	{"resnet/tinyclip_bf16.pt", FormatZip, 171, []tensor.DType{tensor.BF16, tensor.I64}, "resnet/open_clip/open_clip_model.safetensors"},
	{"resnet/tinyclip_fp32_legacy.pt", FormatLegacy, 171, []tensor.DType{tensor.F32, tensor.I64}, "resnet/open_clip/open_clip_model.safetensors"},
	{"auto-pruned/tinyclip_auto_fp32.pt", FormatZip, 147, []tensor.DType{tensor.F32}, "auto-pruned/open_clip/open_clip_model.safetensors"},
}

// sameValues reports whether two tensors hold the same shape and the same
// values after conversion to float32, bit for bit.
func sameValues(t *testing.T, name string, got, want *tensor.Tensor) {
	t.Helper()
	if !slices.Equal(got.Shape, want.Shape) {
		t.Errorf("%s: shape %v, want %v", name, got.Shape, want.Shape)
		return
	}
	g, err1 := got.Float32()
	w, err2 := want.Float32()
	if err1 != nil || err2 != nil {
		t.Errorf("%s: %v %v", name, err1, err2)
		return
	}
	for i := range g {
		if math.Float32bits(g[i]) != math.Float32bits(w[i]) {
			t.Errorf("%s[%d] = %v, want %v", name, i, g[i], w[i])
			return
		}
	}
}

func TestFixtures(t *testing.T) {
	for _, fx := range fixturePT {
		t.Run(fx.path, func(t *testing.T) {
			f, err := Open(fixtures.Path(t, "fixtures", "models", fx.path))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if f.Format != fx.format {
				t.Errorf("format %q, want %q", f.Format, fx.format)
			}
			if len(f.Tensors) != fx.keys {
				t.Errorf("%d tensors, want %d", len(f.Tensors), fx.keys)
			}
			dts := map[tensor.DType]bool{}
			for _, tt := range f.Tensors {
				dts[tt.DType] = true
			}
			for _, d := range fx.dtypes {
				if !dts[d] {
					t.Errorf("no %s tensor", d)
				}
				delete(dts, d)
			}
			if len(dts) != 0 {
				t.Errorf("unexpected dtypes %v", dts)
			}
			ref, err := safetensors.Open(fixtures.Path(t, "fixtures", "models", fx.openClip))
			if err != nil {
				t.Fatal(err)
			}
			defer ref.Close()
			covered := map[string]bool{}
			for k, tt := range f.Tensors {
				n := openClipName(k)
				want := ref.Tensors[n]
				if want == nil {
					t.Errorf("%s (%s) not in %s", k, n, fx.openClip)
					continue
				}
				covered[n] = true
				sameValues(t, k, tt, want)
			}
			if len(covered) != len(ref.Tensors) {
				t.Errorf("%d of %d open_clip tensors covered", len(covered), len(ref.Tensors))
			}
		})
	}
}

// TestAliasesShareData checks that the auto-pruned file's alias keys give
// one set of bytes (one storage) and that zero-size tensors are empty.
func TestAliasesShareData(t *testing.T) {
	f, err := Open(fixtures.Path(t, "fixtures", "models", "auto-pruned/tinyclip_auto_fp32.pt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	a := f.Tensors["_image_encoder.module.visual.proj"]
	b := f.Tensors["image_encoder_without_ddp.visual.proj"]
	if a == nil || b == nil || unsafe.SliceData(a.Data) != unsafe.SliceData(b.Data) {
		t.Errorf("aliases do not share their data")
	}
	z := f.Tensors["_image_encoder.module.visual.transformer.resblocks.0.mlp.c_fc.weight"]
	if z == nil || !reflect.DeepEqual(z.Shape, []int{0, 40}) || len(z.Data) != 0 {
		t.Errorf("zero-size c_fc.weight = %+v", z)
	}
}

var testTensors = []*tensor.Tensor{
	tensor.FromFloat32("f32", []int{2, 3}, []float32{1, 2, 3, 4, 5, 6}),
	tensor.FromFloat32("scalar", []int{}, []float32{3.5}),
	{Name: "f16", DType: tensor.F16, Shape: []int{3, 1}, Data: []byte{0, 0x3c, 0, 0xc0, 0xff, 0x7b}},
	{Name: "bf16", DType: tensor.BF16, Shape: []int{2}, Data: []byte{0x80, 0x3f, 0x00, 0xc0}},
	{Name: "f64", DType: tensor.F64, Shape: []int{1}, Data: []byte{0, 0, 0, 0, 0, 0, 0xf0, 0x3f}},
	{Name: "i64", DType: tensor.I64, Shape: []int{}, Data: []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
	{Name: "i32", DType: tensor.I32, Shape: []int{1}, Data: []byte{7, 0, 0, 0}},
	{Name: "i16", DType: tensor.I16, Shape: []int{1}, Data: []byte{7, 0}},
	{Name: "i8", DType: tensor.I8, Shape: []int{2}, Data: []byte{0xff, 1}},
	{Name: "u8", DType: tensor.U8, Shape: []int{1, 1, 1, 3}, Data: []byte{1, 2, 3}},
	{Name: "bool", DType: tensor.Bool, Shape: []int{2}, Data: []byte{1, 0}},
	{Name: "zero_rows", DType: tensor.F32, Shape: []int{0, 40}, Data: []byte{}},
	{Name: "zero_cols", DType: tensor.F32, Shape: []int{40, 0}},
	{Name: "five_dims", DType: tensor.U8, Shape: []int{1, 2, 1, 2, 1}, Data: []byte{1, 2, 3, 4}},
	{Name: "big", DType: tensor.U8, Shape: []int{70000}, Data: bytes.Repeat([]byte{5}, 70000)},
}

func withAlias(ts []*tensor.Tensor) []*tensor.Tensor {
	a := *ts[0]
	a.Name = "alias.of.f32"
	return append(append([]*tensor.Tensor(nil), ts...), &a)
}

func checkSame(t *testing.T, got map[string]*tensor.Tensor, want []*tensor.Tensor) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%d tensors, want %d", len(got), len(want))
	}
	for _, w := range want {
		g := got[w.Name]
		if g == nil {
			t.Errorf("%s missing", w.Name)
			continue
		}
		if g.DType != w.DType || !slices.Equal(g.Shape, w.Shape) || !bytes.Equal(g.Data, w.Data) {
			t.Errorf("%s: got %s %v, want %s %v", w.Name, g.DType, g.Shape, w.DType, w.Shape)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	many := make([]*tensor.Tensor, 2500) // several SETITEMS batches, LONG_BINPUT memo
	for i := range many {
		many[i] = tensor.FromFloat32(fmt.Sprintf("layer.%d.weight", i), []int{1}, []float32{float32(i)})
	}
	for _, tc := range []struct {
		name string
		ts   []*tensor.Tensor
	}{
		{"dtypes and shapes", withAlias(testTensors)},
		{"many", many},
	} {
		for _, w := range []struct {
			format string
			write  func(*bytes.Buffer, []*tensor.Tensor) error
		}{
			{FormatZip, func(b *bytes.Buffer, ts []*tensor.Tensor) error { return WriteTorchZip(b, ts) }},
			{FormatLegacy, func(b *bytes.Buffer, ts []*tensor.Tensor) error { return WriteLegacy(b, ts) }},
		} {
			t.Run(tc.name+"/"+w.format, func(t *testing.T) {
				var b bytes.Buffer
				if err := w.write(&b, tc.ts); err != nil {
					t.Fatal(err)
				}
				f, err := Parse(b.Bytes())
				if err != nil {
					t.Fatal(err)
				}
				if f.Format != w.format {
					t.Errorf("format %s", f.Format)
				}
				checkSame(t, f.Tensors, tc.ts)
				if tc.name == "dtypes and shapes" && unsafe.SliceData(f.Tensors["f32"].Data) != unsafe.SliceData(f.Tensors["alias.of.f32"].Data) {
					t.Errorf("aliased tensors were written as two storages")
				}
			})
		}
	}
}

// TestZipLayout checks the container details of WriteTorchZip: entry names,
// 64-byte alignment of every record, version 3, stored entries.
func TestZipLayout(t *testing.T) {
	var b bytes.Buffer
	if err := WriteTorchZip(&b, withAlias(testTensors)); err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(b.Bytes()), int64(b.Len()))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
		off, err := f.DataOffset()
		if err != nil || off%64 != 0 {
			t.Errorf("%s: data at offset %d (%v), want a multiple of 64", f.Name, off, err)
		}
		if f.Method != zip.Store {
			t.Errorf("%s: method %d, want stored", f.Name, f.Method)
		}
		if f.Name == "archive/version" {
			rc, _ := f.Open()
			var v bytes.Buffer
			v.ReadFrom(rc)
			if v.String() != "3\n" {
				t.Errorf("version %q", v.String())
			}
		}
	}
	want := []string{"archive/data.pkl", "archive/byteorder"}
	for i := 0; i < len(testTensors); i++ { // the alias adds no storage
		want = append(want, fmt.Sprintf("archive/data/%d", i))
	}
	want = append(want, "archive/version")
	if !reflect.DeepEqual(names, want) {
		t.Errorf("entries %v, want %v", names, want)
	}
}

// TestRewriteFixtures reads each .pt fixture, writes it in both containers
// and reads it back unchanged.
func TestRewriteFixtures(t *testing.T) {
	for _, fx := range fixturePT {
		f, err := Open(fixtures.Path(t, "fixtures", "models", fx.path))
		if err != nil {
			t.Fatal(err)
		}
		var ts []*tensor.Tensor
		for _, tt := range f.Tensors {
			ts = append(ts, tt)
		}
		for _, write := range []func(*bytes.Buffer, []*tensor.Tensor) error{
			func(b *bytes.Buffer, ts []*tensor.Tensor) error { return WriteTorchZip(b, ts) },
			func(b *bytes.Buffer, ts []*tensor.Tensor) error { return WriteLegacy(b, ts) },
		} {
			var b bytes.Buffer
			if err := write(&b, ts); err != nil {
				t.Fatal(err)
			}
			g, err := Parse(b.Bytes())
			if err != nil {
				t.Fatalf("%s: %v", fx.path, err)
			}
			checkSame(t, g.Tensors, ts)
		}
		f.Close()
	}
}

func TestWriteRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		ts   []*tensor.Tensor
		want string
	}{
		{"duplicate", []*tensor.Tensor{testTensors[0], testTensors[0]}, "duplicate"},
		{"dtype", []*tensor.Tensor{{Name: "a", DType: "U64", Shape: []int{1}, Data: make([]byte, 8)}}, "unsupported dtype"},
		{"short data", []*tensor.Tensor{{Name: "a", DType: tensor.F32, Shape: []int{2}, Data: make([]byte, 4)}}, "bytes of data"},
		{"negative dim", []*tensor.Tensor{{Name: "a", DType: tensor.F32, Shape: []int{-1}}}, "negative"},
		{"nil", []*tensor.Tensor{nil}, "nil tensor"},
	} {
		for _, write := range []func(*bytes.Buffer, []*tensor.Tensor) error{
			func(b *bytes.Buffer, ts []*tensor.Tensor) error { return WriteTorchZip(b, ts) },
			func(b *bytes.Buffer, ts []*tensor.Tensor) error { return WriteLegacy(b, ts) },
		} {
			if err := write(&bytes.Buffer{}, tc.ts); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: err = %v, want it to mention %q", tc.name, err, tc.want)
			}
		}
	}
}

// --- hand-made pickles ---

// pk builds pickles opcode by opcode for the tests.
type pk struct{ *encoder }

func newPK() pk { return pk{newEncoder()} }

// pid writes a zip persistent id ('storage', cls, key, 'cpu', numel).
func (p pk) pid(class, key string, numel int64) {
	p.op('(')
	p.str("storage")
	p.global("torch", class)
	p.str(key)
	p.str("cpu")
	p.int(numel)
	p.op('t', 'Q')
}

// view writes _rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict()).
func (p pk) view(class, key string, numel, offset int64, size, stride []int64) {
	p.global("torch._utils", "_rebuild_tensor_v2")
	p.op('(')
	p.pid(class, key, numel)
	p.int(offset)
	p.intTuple(size)
	p.intTuple(stride)
	p.op(0x89)
	p.emptyOrderedDict()
	p.op('t', 'R')
}

// zipOf wraps a data.pkl and storages into a torch zip under "dir/".
func zipOf(t testing.TB, dir string, pkl []byte, extra ...zipEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := writeZip(&b, append([]zipEntry{{dir + "data.pkl", pkl}}, extra...)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func f32bytes(vs ...float32) []byte { return tensor.FromFloat32("", []int{len(vs)}, vs).Data }

func TestStridedAndSharedViews(t *testing.T) {
	// One storage of 8 floats 0..7 and several views of it.
	p := newPK()
	p.op('}', '(')
	p.str("transposed") // [2,3] row-major data seen as its transpose [3,2]
	p.view("FloatStorage", "0", 8, 0, []int64{3, 2}, []int64{1, 3})
	p.str("offset") // elements 5..7
	p.view("FloatStorage", "0", 8, 5, []int64{3}, []int64{1})
	p.str("every_other") // 1,3,5,7
	p.view("FloatStorage", "0", 8, 1, []int64{4}, []int64{2})
	p.str("size1_dims") // odd strides on size-1 dims are still contiguous
	p.view("FloatStorage", "0", 8, 2, []int64{1, 2, 1}, []int64{99, 1, 7})
	p.str("empty") // zero-size view anywhere in range
	p.view("FloatStorage", "0", 8, 8, []int64{0, 3}, []int64{3, 1})
	p.op('u')
	want := map[string][]float32{
		"transposed":  {0, 3, 1, 4, 2, 5},
		"offset":      {5, 6, 7},
		"every_other": {1, 3, 5, 7},
		"size1_dims":  {2, 3},
		"empty":       {},
	}
	data := f32bytes(0, 1, 2, 3, 4, 5, 6, 7)
	be := make([]byte, len(data))
	for i := 0; i < len(data); i += 4 {
		binary.BigEndian.PutUint32(be[i:], binary.LittleEndian.Uint32(data[i:]))
	}
	for _, tc := range []struct {
		name  string
		file  []byte
		alias bool
	}{
		{"little", zipOf(t, "m/", p.stop(), zipEntry{"m/data/0", data}), true},
		{"big", zipOf(t, "m/", p.b.Bytes(), zipEntry{"m/byteorder", []byte("big")}, zipEntry{"m/data/0", be}), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			for name, w := range want {
				got, err := f.Tensors[name].Float32()
				if err != nil || !reflect.DeepEqual(got, w) {
					t.Errorf("%s = %v (%v), want %v", name, got, err, w)
				}
			}
			// The contiguous view aliases the file; the strided one is a copy.
			inFile := func(b []byte) bool {
				s, e := uintptr(unsafe.Pointer(unsafe.SliceData(tc.file))), uintptr(unsafe.Pointer(unsafe.SliceData(b)))
				return e >= s && e < s+uintptr(len(tc.file))
			}
			if inFile(f.Tensors["offset"].Data) != tc.alias || inFile(f.Tensors["transposed"].Data) {
				t.Errorf("aliasing: contiguous view in file = %v, strided = %v", inFile(f.Tensors["offset"].Data), inFile(f.Tensors["transposed"].Data))
			}
		})
	}
}

// TestTopLevel covers the wrappers of spec §2.1.3 and non-tensor leaves.
func TestTopLevel(t *testing.T) {
	sd := func(p pk) {
		p.emptyOrderedDict()
		p.op('(')
		p.str("w")
		p.view("FloatStorage", "0", 2, 0, []int64{2}, []int64{1})
		p.str("input_resolution")
		p.int(224)
		p.str("temperature")
		p.op('G')
		binary.Write(&p.b, binary.BigEndian, 2.5)
		p.str("flag")
		p.op(0x88)
		p.op('u')
		// The _metadata BUILD torch attaches to state dicts.
		p.op('}')
		p.str("_metadata")
		p.emptyOrderedDict()
		p.op('s', 'b')
	}
	wrapped := func(key string) []byte {
		p := newPK()
		p.op('}', '(')
		p.str("epoch")
		p.int(7)
		p.str(key)
		sd(p)
		p.str("optimizer") // other entries may hold tensors too
		p.op('}')
		p.str("exp_avg")
		p.view("FloatStorage", "1", 1, 0, []int64{1}, []int64{1})
		p.op('s', 'u')
		return p.stop()
	}
	bare := newPK()
	sd(bare)
	storages := []zipEntry{{"a/data/0", f32bytes(1, 2)}, {"a/data/1", f32bytes(9)}}
	for _, tc := range []struct {
		name string
		pkl  []byte
	}{
		{"state_dict", wrapped("state_dict")},
		{"model", wrapped("model")},
		{"bare", bare.stop()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse(zipOf(t, "a/", tc.pkl, storages...))
			if err != nil {
				t.Fatal(err)
			}
			if len(f.Tensors) != 4 {
				t.Errorf("%d tensors, want 4", len(f.Tensors))
			}
			if w, _ := f.Tensors["w"].Float32(); !reflect.DeepEqual(w, []float32{1, 2}) {
				t.Errorf("w = %v", w)
			}
			for name, want := range map[string]*tensor.Tensor{
				"input_resolution": {DType: tensor.I64, Shape: []int{}, Data: le64(224)},
				"temperature":      {DType: tensor.F64, Shape: []int{}, Data: le64(math.Float64bits(2.5))},
				"flag":             {DType: tensor.Bool, Shape: []int{}, Data: []byte{1}},
			} {
				g := f.Tensors[name]
				if g == nil || g.DType != want.DType || !reflect.DeepEqual(g.Shape, want.Shape) || !bytes.Equal(g.Data, want.Data) {
					t.Errorf("%s = %+v, want %+v", name, g, want)
				}
			}
		})
	}
}

// forbidden writes a top-level dict {"state_dict": {...}, key: <global(...)>}.
func forbidden(module, name, key string, stack bool) []byte {
	p := newPK()
	p.op('}', '(')
	p.str("state_dict")
	p.emptyOrderedDict()
	p.str(key)
	if stack {
		p.str(module)
		p.str(name)
		p.op(0x93)
	} else {
		p.op('c')
		p.b.WriteString(module + "\n" + name + "\n")
	}
	p.op(')', 'R', 'u')
	return p.stop()
}

func TestForbiddenGlobals(t *testing.T) {
	for _, tc := range []struct{ module, name, key string }{
		{"argparse", "Namespace", "args"},
		{"builtins", "eval", "x"},
		{"__builtin__", "eval", "x"},
		{"os", "system", "cmd"},
		{"posix", "system", "cmd"},
		{"numpy.core.multiarray", "scalar", "best_acc"},
		{"numpy", "dtype", "d"},
		{"_codecs", "encode", "b"},
		{"torch.nn.modules.linear", "Linear", "m"},
		{"torch", "load", "m"},
		{"torch._utils", "_rebuild_qtensor", "q"},
		{"collections", "defaultdict", "d"},
		{"copy_reg", "_reconstructor", "o"},
	} {
		for _, stack := range []bool{false, true} {
			pkl := forbidden(tc.module, tc.name, tc.key, stack)
			_, err := Parse(zipOf(t, "snap/", pkl))
			var ge *GlobalError
			if !errors.Is(err, ErrForbiddenGlobal) || !errors.As(err, &ge) {
				t.Errorf("%s.%s: err = %v, want ErrForbiddenGlobal", tc.module, tc.name, err)
				continue
			}
			if ge.Module != tc.module || ge.Name != tc.name || ge.Key != tc.key || ge.File != "snap/data.pkl" {
				t.Errorf("%s.%s: error %+v", tc.module, tc.name, ge)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.module+"."+tc.name) || !strings.Contains(msg, `"`+tc.key+`"`) {
				t.Errorf("message %q does not name the global and the entry", msg)
			}
		}
	}
	// The unpickler alone, with a global at the top level and via EXT1.
	for _, data := range [][]byte{
		[]byte("\x80\x02cposix\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85q\x02Rq\x03."),
		{0x80, 2, 0x82, 1, '.'},
	} {
		if _, _, err := unpickle("p", data, nil); !errors.Is(err, ErrForbiddenGlobal) {
			t.Errorf("err = %v, want ErrForbiddenGlobal", err)
		}
	}
}

func TestMalformedPickles(t *testing.T) {
	good := newPK()
	good.op('}', '(')
	good.str("w")
	good.view("FloatStorage", "0", 2, 0, []int64{2}, []int64{1})
	good.op('u')
	goodPkl := good.stop()
	st := zipEntry{"a/data/0", f32bytes(1, 2)}
	// viewPkl makes {"w": view} with a custom view.
	viewPkl := func(class string, numel, offset int64, size, stride []int64) []byte {
		p := newPK()
		p.op('}')
		p.str("w")
		p.view(class, "0", numel, offset, size, stride)
		p.op('s')
		return p.stop()
	}
	raw := func(s string) []byte { return append([]byte{0x80, 2}, s...) }
	for _, tc := range []struct {
		name string
		pkl  []byte
		want string
	}{
		{"unknown opcode", raw("}\xff."), "unknown opcode 0xff"},
		{"truncated", goodPkl[:len(goodPkl)/2], "truncated"},
		{"no STOP", goodPkl[:len(goodPkl)-1], "before STOP"},
		{"empty", nil, "before STOP"},
		{"protocol 6", []byte{0x80, 6, '}', '.'}, "protocol 6"},
		{"stack underflow", raw("s."), "stack underflow"},
		{"pop of a mark", raw("}(0."), "no tensors"},
		{"leftover", raw("}}."), "STOP with 1 values"},
		{"memo missing", raw("h\x05."), "memo entry 5"},
		{"append to dict", raw("}Na."), "APPEND to a dict"},
		{"setitem on list", raw("]NNs."), "SETITEM on a list"},
		{"odd setitems", raw("}(Nu."), "SETITEMS with 1 items"},
		{"reduce non-global", raw("X\x01\x00\x00\x00a)R."), "REDUCE calls a str"},
		{"reduce without tuple", raw("ccollections\nOrderedDict\nNR."), "want a tuple"},
		{"storage class called", raw("ctorch\nFloatStorage\n)R."), "not callable"},
		{"build on tuple", raw(")}b."), "BUILD of a tuple"},
		{"newobj of storage", raw("ctorch\nFloatStorage\n)\x81."), "NEWOBJ"},
		{"protocol 0 string", raw("S'a'\n."), "not supported"},
		{"string too long", raw("X\xff\xff\x00\x00ab."), "exceeds"},
		{"invalid utf-8", raw("X\x01\x00\x00\x00\xff."), "UTF-8"},
		{"huge int", append(raw("\x8b\x00\x00\x01\x00"), make([]byte, 65536)...), "too large"},
		{"persistent id not tuple", raw("}X\x01\x00\x00\x00wNQs."), "persistent id"},
		{"bad rebuild args", raw("}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n)Rs."), "0 arguments"},
		{"not a mapping", raw("]."), "not a mapping"},
		{"no tensors", raw("}."), "no tensors"},
		{"non-tensor entry", raw("}X\x01\x00\x00\x00wX\x01\x00\x00\x00xs."), `"w" is a str`},
		{"non-string key", raw("}K\x01K\x01s."), "not a string"},
		{"trailing bytes", append(goodPkl, 'N'), "after STOP"},
		{"out of bounds", viewPkl("FloatStorage", 2, 1, []int64{2}, []int64{1}), "reaches element 2 of a storage of 2"},
		{"stride out of bounds", viewPkl("FloatStorage", 2, 0, []int64{2}, []int64{2}), "reaches element 2"},
		{"overlapping 2-d", viewPkl("FloatStorage", 2, 0, []int64{2, 2}, []int64{0, 1}), "more than its storage"},
		{"overlapping strides", viewPkl("FloatStorage", 2, 0, []int64{3}, []int64{0}), "overlapping strides"},
		{"offset beyond", viewPkl("FloatStorage", 2, 3, []int64{0}, []int64{1}), "offset 3 beyond"},
		{"size/stride rank", viewPkl("FloatStorage", 2, 0, []int64{2}, []int64{1, 1}), "but stride 2"},
		{"numel mismatch", viewPkl("FloatStorage", 3, 0, []int64{2}, []int64{1}), "want 12"},
		{"dtype mismatch", viewPkl("DoubleStorage", 2, 0, []int64{2}, []int64{1}), "want 16"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(zipOf(t, "a/", tc.pkl, st))
			if err == nil || errors.Is(err, ErrForbiddenGlobal) || !errors.Is(err, ErrFormat) {
				t.Fatalf("err = %v, want ErrFormat", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
	// A storage named with two dtypes.
	p := newPK()
	p.op('}', '(')
	p.str("a")
	p.view("FloatStorage", "0", 2, 0, []int64{2}, []int64{1})
	p.str("b")
	p.view("HalfStorage", "0", 2, 0, []int64{2}, []int64{1})
	p.op('u')
	if _, err := Parse(zipOf(t, "a/", p.stop(), st)); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), `storage "0" named as`) {
		t.Errorf("storage with two dtypes: %v", err)
	}
}

func TestMalformedZip(t *testing.T) {
	good := newPK()
	good.op('}')
	good.str("w")
	good.view("FloatStorage", "0", 2, 0, []int64{2}, []int64{1})
	good.op('s')
	pkl := good.stop()
	st := zipEntry{"a/data/0", f32bytes(1, 2)}
	if _, err := Parse(zipOf(t, "a/", pkl, st)); err != nil {
		t.Fatalf("valid archive: %v", err)
	}
	corrupt := zipOf(t, "a/", pkl, st)
	i := bytes.Index(corrupt, f32bytes(1, 2))
	corrupt[i] ^= 1
	deflated := func() []byte {
		var b bytes.Buffer
		zw := zip.NewWriter(&b)
		for _, e := range []zipEntry{{"a/data.pkl", pkl}, st} {
			w, _ := zw.CreateHeader(&zip.FileHeader{Name: e.name, Method: zip.Deflate})
			w.Write(e.data)
		}
		zw.Close()
		return b.Bytes()
	}()
	if f, err := Parse(deflated); err != nil || len(f.Tensors) != 1 {
		t.Errorf("deflated archive: %v", err)
	}
	for _, tc := range []struct {
		name string
		file []byte
		is   error
		want string
	}{
		{"torchscript constants", zipOf(t, "a/", pkl, st, zipEntry{"a/constants.pkl", pkl}), ErrTorchScript, "TorchScript"},
		{"torchscript code", zipOf(t, "a/", pkl, st, zipEntry{"a/code/__torch__/m.py", []byte("x")}), ErrTorchScript, "TorchScript"},
		{"no data.pkl", func() []byte { var b bytes.Buffer; writeZip(&b, []zipEntry{st}); return b.Bytes() }(), ErrFormat, "without a data.pkl"},
		{"two data.pkl", zipOf(t, "a/", pkl, st, zipEntry{"b/data.pkl", pkl}), ErrFormat, "several data.pkl"},
		{"nested data.pkl only", zipOf(t, "a/b/", pkl, st), ErrFormat, "without a data.pkl"},
		{"missing storage", zipOf(t, "a/", pkl), ErrFormat, `"a/data/0" missing`},
		{"short storage", zipOf(t, "a/", pkl, zipEntry{"a/data/0", f32bytes(1)}), ErrFormat, "want 8"},
		{"bad byteorder", zipOf(t, "a/", pkl, st, zipEntry{"a/byteorder", []byte("middle")}), ErrFormat, "byteorder"},
		{"duplicate entry", zipOf(t, "a/", pkl, st, st), ErrFormat, "duplicate entry"},
		{"crc", corrupt, ErrFormat, "CRC"},
		{"empty zip", []byte("PK\x05\x06" + strings.Repeat("\x00", 18)), ErrFormat, "without entries"},
		{"not a checkpoint", []byte("hello"), ErrFormat, "neither"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.file)
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %v mentioning %q", err, tc.is, tc.want)
			}
		})
	}
}

// legacyFile assembles a legacy file from the object pickle, key list and
// raw storage records.
func legacyFile(obj []byte, keys []string, littleEndian bool, records ...[]byte) []byte {
	var b bytes.Buffer
	var src bytes.Buffer
	WriteLegacy(&src, []*tensor.Tensor{tensor.FromFloat32("x", []int{1}, []float32{1})})
	// Reuse the first two pickles (magic, protocol) of a written file.
	_, n1, _ := unpickle("", src.Bytes(), nil)
	_, n2, _ := unpickle("", src.Bytes()[n1:], nil)
	b.Write(src.Bytes()[:n1+n2])
	e := newEncoder()
	e.op('}')
	e.str("little_endian")
	if littleEndian {
		e.op(0x88)
	} else {
		e.op(0x89)
	}
	e.op('s')
	b.Write(e.stop())
	b.Write(obj)
	e = newEncoder()
	e.op(']', '(')
	for _, k := range keys {
		e.str(k)
	}
	e.op('e')
	b.Write(e.stop())
	for _, r := range records {
		b.Write(r)
	}
	return b.Bytes()
}

func record(order binary.ByteOrder, count uint64, data []byte) []byte {
	b := make([]byte, 8)
	order.PutUint64(b, count)
	return append(b, data...)
}

func TestLegacy(t *testing.T) {
	// A legacy pickle whose storage is a view of a root storage (pre-1.0 files).
	obj := func(viewMeta bool) []byte {
		p := newPK()
		p.op('}')
		p.str("w")
		p.global("torch._utils", "_rebuild_tensor")
		p.op('(', '(')
		p.str("storage")
		p.global("torch", "FloatStorage")
		p.str("root")
		p.str("cuda:0")
		p.int(4)
		if viewMeta {
			p.op('(')
			p.str("v")
			p.int(1)
			p.int(2)
			p.op('t')
		} else {
			p.op('N')
		}
		p.op('t', 'Q')
		p.int(0)
		p.intTuple([]int64{2})
		p.intTuple([]int64{1})
		p.op('t', 'R', 's')
		return p.stop()
	}
	data := f32bytes(1, 2, 3, 4)
	be := make([]byte, 16)
	for i := 0; i < 16; i += 4 {
		binary.BigEndian.PutUint32(be[i:], binary.LittleEndian.Uint32(data[i:]))
	}
	le, bigE := binary.LittleEndian, binary.BigEndian
	for _, tc := range []struct {
		name string
		file []byte
		want []float32
		err  string
	}{
		{"plain", legacyFile(obj(false), []string{"root"}, true, record(le, 4, data)), []float32{1, 2}, ""},
		{"view storage", legacyFile(obj(true), []string{"root"}, true, record(le, 4, data)), []float32{2, 3}, ""},
		{"big endian", legacyFile(obj(true), []string{"root"}, false, record(bigE, 4, be)), []float32{2, 3}, ""},
		{"count mismatch", legacyFile(obj(false), []string{"root"}, true, record(le, 3, data)), nil, "holds 3 elements"},
		{"truncated data", legacyFile(obj(false), []string{"root"}, true, record(le, 4, data[:10])), nil, "truncated"},
		{"no record", legacyFile(obj(false), []string{"root"}, true), nil, "truncated"},
		{"unknown key", legacyFile(obj(false), []string{"other"}, true, record(le, 4, data)), nil, "no tensor refers"},
		{"key twice", legacyFile(obj(false), []string{"root", "root"}, true, record(le, 4, data), record(le, 4, data)), nil, "listed twice"},
		{"no data", legacyFile(obj(false), nil, true), nil, "no data in the file"},
		{"bad magic", append([]byte{0x80, 2, 'K', 1, '.'}, legacyFile(obj(false), []string{"root"}, true, record(le, 4, data))...), nil, "magic"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse(tc.file)
			if tc.err != "" {
				if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("err = %v, want ErrFormat mentioning %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if f.Format != FormatLegacy {
				t.Errorf("format %s", f.Format)
			}
			if got, _ := f.Tensors["w"].Float32(); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("w = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestTruncatedFixtures cuts the .pt fixtures at several points: every cut
// fails with ErrFormat naming the file.
func TestTruncatedFixtures(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"vit-p16/tinyclip_fp32.pt", "resnet/tinyclip_fp32_legacy.pt"} {
		data, err := os.ReadFile(fixtures.Path(t, "fixtures", "models", name))
		if err != nil {
			t.Fatal(err)
		}
		for _, cut := range []int{1, 2, 4, 10, 100, 5000, len(data) / 3, len(data) / 2, len(data) - 100, len(data) - 1} {
			p := filepath.Join(dir, fmt.Sprintf("cut%d.pt", cut))
			if err := os.WriteFile(p, data[:cut], 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Open(p)
			if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), p) {
				t.Errorf("%s cut at %d: err = %v, want ErrFormat naming the file", name, cut, err)
			}
		}
	}
}

// --- fuzzing ---

// smallFixtureFile writes the n smallest tensors of a fixture with write.
func smallFixtureFile(f *testing.F, path string, n int, write func(*bytes.Buffer, []*tensor.Tensor) error) []byte {
	ff, err := Open(fixtures.Path(f, "fixtures", "models", path))
	if err != nil {
		f.Fatal(err)
	}
	defer ff.Close()
	var ts []*tensor.Tensor
	for _, t := range ff.Tensors {
		if len(t.Data) <= 64 && len(ts) < n {
			ts = append(ts, t)
		}
	}
	var b bytes.Buffer
	if err := write(&b, ts); err != nil {
		f.Fatal(err)
	}
	return b.Bytes()
}

func zipWriter(b *bytes.Buffer, ts []*tensor.Tensor) error    { return WriteTorchZip(b, ts) }
func legacyWriter(b *bytes.Buffer, ts []*tensor.Tensor) error { return WriteLegacy(b, ts) }

func FuzzUnpickle(f *testing.F) {
	for _, fx := range fixturePT {
		data := smallFixtureFile(f, fx.path, 3, zipWriter)
		zr, _ := zip.NewReader(bytes.NewReader(data), int64(len(data)))
		rc, _ := zr.File[0].Open()
		var pkl bytes.Buffer
		pkl.ReadFrom(rc)
		f.Add(pkl.Bytes())
	}
	f.Add(forbidden("argparse", "Namespace", "args", false))
	f.Add(forbidden("os", "system", "x", true))
	f.Add([]byte("\x80\x02]q\x00h\x00a.")) // a list containing itself
	f.Add([]byte("\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00\x8c\x01a\x94."))
	f.Add([]byte("\x80\x02(I01\nL12L\nF1.5\ng0\nK\x01\x8f(\x90\x91l(dt."))
	f.Fuzz(func(t *testing.T, data []byte) {
		st := newStorageTable(false)
		v, _, err := unpickle("fuzz", data, st.load)
		if err != nil {
			if !errors.Is(err, ErrFormat) && !errors.Is(err, ErrForbiddenGlobal) {
				t.Fatalf("error wraps neither ErrFormat nor ErrForbiddenGlobal: %v", err)
			}
			return
		}
		sd, err := stateDict(v)
		if err != nil {
			return
		}
		// Resolve every view against zero-filled storages of the right size.
		collect(sd, func(name string, vw *view) (*tensor.Tensor, error) {
			root := vw.st
			if root.root != nil {
				root = root.root
			}
			raw := make([]byte, min(root.numel, 1<<16)*int64(root.dtype.Size()))
			if root.numel > 1<<16 {
				return nil, ErrFormat
			}
			tt, err := materialize(name, vw, raw, false, budget(len(data)))
			if err == nil && len(tt.Data) != tt.NumElements()*tt.DType.Size() {
				t.Fatalf("%s: %d bytes for shape %v", name, len(tt.Data), tt.Shape)
			}
			return tt, err
		})
	})
}

func FuzzTorchZip(f *testing.F) {
	for _, fx := range fixturePT {
		f.Add(smallFixtureFile(f, fx.path, 3, zipWriter))
	}
	f.Add(smallFixtureFile(f, "resnet/tinyclip_fp32_legacy.pt", 3, legacyWriter))
	f.Add(zipOf(f, "a/", forbidden("argparse", "Namespace", "args", false)))
	checkCRC = false // let mutations of data.pkl through (TestMalformedZip checks CRCs)
	f.Cleanup(func() { checkCRC = true })
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrFormat) && !errors.Is(err, ErrForbiddenGlobal) && !errors.Is(err, ErrTorchScript) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		for name, tt := range file.Tensors {
			if len(tt.Data) != tt.NumElements()*tt.DType.Size() {
				t.Fatalf("%s: %d bytes for shape %v of %s", name, len(tt.Data), tt.Shape, tt.DType)
			}
		}
	})
}
