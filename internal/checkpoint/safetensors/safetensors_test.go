package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tinyclip-go/tinyclip/internal/fixtures"
	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

// fixtureFiles are the safetensors files of fixtures/models with their
// tensor counts (manifest.json).
var fixtureFiles = []struct {
	path string
	keys int
	meta map[string]string
}{
	{"vit-p16/open_clip/open_clip_model.safetensors", 62, nil},
	{"vit-p16/hf/model.safetensors", 78, map[string]string{"format": "pt"}},
	{"vit-p32-quickgelu/open_clip/open_clip_model.safetensors", 62, nil},
	{"vit-p32-quickgelu/hf/model.safetensors", 80, map[string]string{"format": "pt"}},
	{"resnet/open_clip/open_clip_model.safetensors", 171, nil},
	{"auto-pruned/open_clip/open_clip_model.safetensors", 74, nil},
}

func TestOpenFixtures(t *testing.T) {
	for _, ff := range fixtureFiles {
		t.Run(ff.path, func(t *testing.T) {
			f, err := Open(fixtures.Path(t, "fixtures", "models", ff.path))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if len(f.Tensors) != ff.keys || len(f.Names) != ff.keys {
				t.Errorf("%d tensors, %d names; want %d", len(f.Tensors), len(f.Names), ff.keys)
			}
			if !reflect.DeepEqual(f.Metadata, ff.meta) {
				t.Errorf("metadata %v, want %v", f.Metadata, ff.meta)
			}
		})
	}
}

// TestWriteReproducesFixtures writes every fixture file's tensors back and
// compares the result byte for byte with the file (same header order, same
// padding, same data layout).
func TestWriteReproducesFixtures(t *testing.T) {
	for _, ff := range fixtureFiles {
		t.Run(ff.path, func(t *testing.T) {
			path := fixtures.Path(t, "fixtures", "models", ff.path)
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			f, err := Parse(want)
			if err != nil {
				t.Fatal(err)
			}
			var ts []*tensor.Tensor
			for _, n := range f.Names {
				ts = append(ts, f.Tensors[n])
			}
			// Reverse the order: Write must sort by itself.
			for i, j := 0, len(ts)-1; i < j; i, j = i+1, j-1 {
				ts[i], ts[j] = ts[j], ts[i]
			}
			var got bytes.Buffer
			if err := Write(&got, ts, f.Metadata); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				n := binary.LittleEndian.Uint64(want)
				t.Errorf("written file differs from the fixture (len %d vs %d); header:\n got %.300s\nwant %.300s",
					got.Len(), len(want), got.Bytes()[8:], want[8:8+n])
			}
		})
	}
}

func le32(vs ...float32) []byte {
	return tensor.FromFloat32("", []int{len(vs)}, vs).Data
}

func TestRoundTrip(t *testing.T) {
	ts := []*tensor.Tensor{
		{Name: "f32", DType: tensor.F32, Shape: []int{2, 3}, Data: le32(1, 2, 3, 4, 5, 6)},
		{Name: "scalar", DType: tensor.F32, Shape: []int{}, Data: le32(3.5)},
		{Name: "f16", DType: tensor.F16, Shape: []int{3}, Data: []byte{0, 0x3c, 0, 0xc0, 0xff, 0x7b}},
		{Name: "bf16", DType: tensor.BF16, Shape: []int{1, 2}, Data: []byte{0x80, 0x3f, 0x00, 0xc0}},
		{Name: "i64", DType: tensor.I64, Shape: []int{2}, Data: []byte{1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
		{Name: "f64", DType: tensor.F64, Shape: []int{1}, Data: []byte{0, 0, 0, 0, 0, 0, 0xf0, 0x3f}},
		{Name: "i32", DType: tensor.I32, Shape: []int{1}, Data: []byte{7, 0, 0, 0}},
		{Name: "i16", DType: tensor.I16, Shape: []int{1}, Data: []byte{7, 0}},
		{Name: "i8", DType: tensor.I8, Shape: []int{2}, Data: []byte{0xff, 1}},
		{Name: "u8", DType: tensor.U8, Shape: []int{3}, Data: []byte{1, 2, 3}},
		{Name: "bool", DType: tensor.Bool, Shape: []int{2}, Data: []byte{1, 0}},
		{Name: "empty_rows", DType: tensor.F32, Shape: []int{0, 40}, Data: []byte{}},
		{Name: "empty_cols", DType: tensor.F32, Shape: []int{40, 0}},
		{Name: "empty_big", DType: tensor.F16, Shape: []int{1 << 40, 0}},
		{Name: `odd "name" <&> é`, DType: tensor.U8, Shape: []int{1}, Data: []byte{9}},
	}
	for _, meta := range []map[string]string{nil, {}, {"format": "pt", "x": `"<>"`}} {
		var b bytes.Buffer
		if err := Write(&b, ts, meta); err != nil {
			t.Fatal(err)
		}
		data := b.Bytes()
		n := binary.LittleEndian.Uint64(data)
		if n%8 != 0 {
			t.Errorf("header length %d not a multiple of 8", n)
		}
		f, err := Parse(data)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(f.Metadata, meta) {
			t.Errorf("metadata %v, want %v", f.Metadata, meta)
		}
		if len(f.Tensors) != len(ts) {
			t.Fatalf("%d tensors, want %d", len(f.Tensors), len(ts))
		}
		for _, w := range ts {
			g := f.Tensors[w.Name]
			if g == nil {
				t.Errorf("%s missing", w.Name)
				continue
			}
			if g.DType != w.DType || !reflect.DeepEqual(g.Shape, w.Shape) || !bytes.Equal(g.Data, w.Data) {
				t.Errorf("%s: got %s %v %x, want %s %v %x", w.Name, g.DType, g.Shape, g.Data, w.DType, w.Shape, w.Data)
			}
		}
		// Larger element types come first in the data.
		if f.Names[0] != "i64" || f.Names[1] != "f64" || f.Names[len(f.Names)-1] != "bool" {
			t.Errorf("data order %v", f.Names)
		}
	}
}

func TestWriteRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		ts   []*tensor.Tensor
		want string
	}{
		{"duplicate", []*tensor.Tensor{{Name: "a", DType: tensor.U8, Shape: []int{1}, Data: []byte{1}}, {Name: "a", DType: tensor.U8, Shape: []int{1}, Data: []byte{1}}}, "duplicate"},
		{"reserved", []*tensor.Tensor{{Name: "__metadata__", DType: tensor.U8, Shape: []int{1}, Data: []byte{1}}}, "reserved"},
		{"dtype", []*tensor.Tensor{{Name: "a", DType: "U64", Shape: []int{1}, Data: make([]byte, 8)}}, "unsupported dtype"},
		{"short data", []*tensor.Tensor{{Name: "a", DType: tensor.F32, Shape: []int{2}, Data: make([]byte, 4)}}, "bytes of data"},
		{"negative dim", []*tensor.Tensor{{Name: "a", DType: tensor.F32, Shape: []int{-1}}}, "bytes of data"},
		{"nil", []*tensor.Tensor{nil}, "nil tensor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Write(&bytes.Buffer{}, tc.ts, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

// file assembles a safetensors file from a header and data.
func file(header string, data []byte) []byte {
	b := make([]byte, 8, 8+len(header)+len(data))
	binary.LittleEndian.PutUint64(b, uint64(len(header)))
	b = append(b, header...)
	return append(b, data...)
}

func TestParseAccepts(t *testing.T) {
	for _, tc := range []struct {
		name   string
		file   []byte
		tensor string
		shape  []int
		nbytes int
	}{
		{"space padding", file(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}    `, make([]byte, 8)), "a", []int{2}, 8},
		{"newline padding", file("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}\n", []byte{1}), "a", []int{1}, 1},
		{"scalar", file(`{"s":{"dtype":"I64","shape":[],"data_offsets":[0,8]}}`, make([]byte, 8)), "s", []int{}, 8},
		{"zero-size first", file(`{"z":{"dtype":"F32","shape":[0,4],"data_offsets":[0,0]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, []byte{1}), "z", []int{0, 4}, 0},
		{"zero-size last", file(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"z":{"dtype":"F32","shape":[4,0],"data_offsets":[1,1]}}`, []byte{1}), "z", []int{4, 0}, 0},
		{"zero-size huge dim", file(`{"z":{"dtype":"F32","shape":[1099511627776,0],"data_offsets":[0,0]}}`, nil), "z", []int{1 << 40, 0}, 0},
		{"metadata and unknown field", file(`{"__metadata__":{"format":"pt"},"a":{"dtype":"BOOL","shape":[1],"data_offsets":[0,1],"extra":1}}`, []byte{1}), "a", []int{1}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			g := f.Tensors[tc.tensor]
			if g == nil || !reflect.DeepEqual(g.Shape, tc.shape) || len(g.Data) != tc.nbytes {
				t.Errorf("tensor %s = %+v, want shape %v and %d bytes", tc.tensor, g, tc.shape, tc.nbytes)
			}
		})
	}
	f, err := Parse(file(`{}`, nil))
	if err != nil || len(f.Tensors) != 0 {
		t.Errorf("empty header: %v, %v", f, err)
	}
}

func TestParseRejects(t *testing.T) {
	huge := make([]byte, 8)
	binary.LittleEndian.PutUint64(huge, MaxHeaderSize+1)
	huge = append(huge, '{', '}')
	overflow := make([]byte, 8)
	binary.LittleEndian.PutUint64(overflow, 1<<63)
	one := `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`
	for _, tc := range []struct {
		name string
		file []byte
		want string
	}{
		{"empty", nil, "shorter than the 8-byte"},
		{"7 bytes", []byte{2, 0, 0, 0, 0, 0, 0}, "shorter than the 8-byte"},
		{"header past end", file(one, make([]byte, 8))[:40], "truncated"},
		{"header too large", huge, "exceeds"},
		{"header length overflow", overflow, "exceeds"},
		{"zero header", file("", nil), "does not start with a JSON object"},
		{"array header", file(`[1,2]`, nil), "does not start with a JSON object"},
		{"leading space", file(` {}`, nil), "does not start with a JSON object"},
		{"invalid json", file(`{"a":`, nil), "header"},
		{"not utf-8", file("{\"a\xff\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", []byte{1}), "UTF-8"},
		{"trailing garbage", file(one+"xx", make([]byte, 8)), "after the JSON object"},
		{"second object", file(one+"{}", make([]byte, 8)), "after the JSON object"},
		{"nul padding", file(one+"\x00\x00", make([]byte, 8)), "after the JSON object"},
		{"duplicate name", file(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`, []byte{1, 2}), "duplicate tensor name"},
		{"duplicate metadata", file(`{"__metadata__":{},"__metadata__":{}}`, nil), "duplicate __metadata__"},
		{"metadata not strings", file(`{"__metadata__":{"a":1}}`, nil), "__metadata__"},
		{"entry not object", file(`{"a":[1]}`, nil), `tensor "a"`},
		{"missing dtype", file(`{"a":{"shape":[1],"data_offsets":[0,1]}}`, []byte{1}), "missing dtype"},
		{"missing shape", file(`{"a":{"dtype":"U8","data_offsets":[0,1]}}`, []byte{1}), "missing shape"},
		{"missing offsets", file(`{"a":{"dtype":"U8","shape":[1]}}`, []byte{1}), "missing data_offsets"},
		{"unknown dtype", file(`{"a":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}}`, []byte{1}), "unsupported dtype"},
		{"field name case", file(`{"a":{"Dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, []byte{1}), "missing dtype"},
		{"null shape", file(`{"a":{"dtype":"U8","shape":null,"data_offsets":[0,1]}}`, []byte{1}), "missing shape"},
		{"lowercase dtype", file(`{"a":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)), "unsupported dtype"},
		{"three offsets", file(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1,1]}}`, []byte{1}), "2 entries"},
		{"fractional offset", file(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1.5]}}`, []byte{1}), `tensor "a"`},
		{"negative dim", file(`{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}}`, nil), "negative or too large"},
		{"shape overflow", file(`{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}}`, nil), "negative or too large"},
		{"size mismatch", file(`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, make([]byte, 8)), "want 12"},
		{"dtype size mismatch", file(`{"a":{"dtype":"F16","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8)), "want 4"},
		{"negative offset", file(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[-1,0]}}`, []byte{1}), "outside"},
		{"reversed offsets", file(`{"a":{"dtype":"U8","shape":[0],"data_offsets":[1,0]}}`, []byte{1}), "outside"},
		{"truncated data", file(one, make([]byte, 4)), "truncated"},
		{"overlap", file(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}`, make([]byte, 3)), "overlaps"},
		{"same span twice", file(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}`, make([]byte, 2)), "overlaps"},
		{"zero-size inside", file(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"z":{"dtype":"U8","shape":[0],"data_offsets":[1,1]}}`, make([]byte, 2)), "overlaps"},
		{"gap", file(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`, make([]byte, 2)), "gap of 1 bytes"},
		{"uncovered tail", file(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, make([]byte, 3)), "cover 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.file)
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("err = %v, want ErrFormat", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

// TestTruncatedFixture cuts a fixture file at several points: every cut is
// an ErrFormat naming the file.
func TestTruncatedFixture(t *testing.T) {
	src := fixtures.Path(t, "fixtures", "models", "vit-p32-quickgelu/hf/model.safetensors")
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	n := int(binary.LittleEndian.Uint64(data))
	dir := t.TempDir()
	for _, cut := range []int{0, 4, 8, 9, 8 + n/2, 8 + n - 1, 8 + n, 8 + n + 1, len(data) / 2, len(data) - 1} {
		p := filepath.Join(dir, "cut.safetensors")
		if err := os.WriteFile(p, data[:cut], 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Open(p)
		if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), p) {
			t.Errorf("cut at %d: err = %v, want ErrFormat naming the file", cut, err)
		}
	}
	if _, err := Open(filepath.Join(dir, "missing.safetensors")); err == nil || errors.Is(err, ErrFormat) {
		t.Errorf("missing file: err = %v", err)
	}
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "m.safetensors")
	a := []*tensor.Tensor{{Name: "a", DType: tensor.F32, Shape: []int{2}, Data: le32(1, 2)}}
	if err := WriteFile(p, a, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	b := []*tensor.Tensor{{Name: "b", DType: tensor.U8, Shape: []int{1}, Data: []byte{7}}}
	if err := WriteFile(p, b, nil); err != nil { // replaces
		t.Fatal(err)
	}
	bad := []*tensor.Tensor{{Name: "c", DType: tensor.F32, Shape: []int{3}, Data: []byte{1}}}
	if err := WriteFile(p, bad, nil); err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("invalid tensor: err = %v, want an error naming %s", err, p)
	}
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if len(f.Tensors) != 1 || f.Tensors["b"] == nil || f.Tensors["b"].Data[0] != 7 {
		t.Errorf("after a failed write the file holds %v, want the previous content", f.Names)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("directory holds %d entries, want 1 (no temporary files left)", len(ents))
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v", st.Mode())
	}
	if err := WriteFile(filepath.Join(dir, "no/such/dir/x.safetensors"), a, nil); err == nil {
		t.Error("write into a missing directory succeeded")
	}
}

func FuzzParse(f *testing.F) {
	var b bytes.Buffer
	Write(&b, []*tensor.Tensor{
		{Name: "a", DType: tensor.F32, Shape: []int{2}, Data: le32(1, 2)},
		{Name: "z", DType: tensor.F16, Shape: []int{0, 3}},
		{Name: "s", DType: tensor.I64, Shape: []int{}, Data: make([]byte, 8)},
	}, map[string]string{"format": "pt"})
	f.Add(b.Bytes())
	f.Add(file(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}`, make([]byte, 3)))
	f.Add(file(`{"__metadata__":{"a":1}}`, nil))
	f.Add(file(`{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}}`, nil))
	// Small files made of a few tensors of each fixture (whole fixture
	// headers are several kilobytes, which makes mutation slow).
	for _, ff := range fixtureFiles {
		p, err := Open(fixtures.Path(f, "fixtures", "models", ff.path))
		if err != nil {
			f.Fatal(err)
		}
		var ts []*tensor.Tensor
		for _, n := range p.Names {
			if tt := p.Tensors[n]; len(tt.Data) <= 64 && len(ts) < 4 {
				ts = append(ts, tt)
			}
		}
		var b bytes.Buffer
		if err := Write(&b, ts, p.Metadata); err != nil {
			f.Fatal(err)
		}
		f.Add(b.Bytes())
		p.Close()
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error does not wrap ErrFormat: %v", err)
			}
			return
		}
		ts := make([]*tensor.Tensor, 0, len(p.Names))
		for _, n := range p.Names {
			tt := p.Tensors[n]
			if len(tt.Data) != tt.NumElements()*tt.DType.Size() {
				t.Fatalf("%s: %d bytes for %v %s", n, len(tt.Data), tt.Shape, tt.DType)
			}
			ts = append(ts, tt)
		}
		var out bytes.Buffer
		if err := Write(&out, ts, p.Metadata); err != nil {
			t.Fatalf("re-write of a valid file: %v", err)
		}
		q, err := Parse(out.Bytes())
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		for n, tt := range p.Tensors {
			u := q.Tensors[n]
			if u == nil || u.DType != tt.DType || !reflect.DeepEqual(u.Shape, tt.Shape) || !bytes.Equal(u.Data, tt.Data) {
				t.Fatalf("%s changed in a round trip", n)
			}
		}
	})
}
