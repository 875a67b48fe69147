package train

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tinyclip-go/tinyclip/internal/checkpoint"
	"github.com/tinyclip-go/tinyclip/internal/checkpoint/safetensors"
	"github.com/tinyclip-go/tinyclip/internal/config"
	"github.com/tinyclip-go/tinyclip/internal/fixtures"
	"github.com/tinyclip-go/tinyclip/internal/npy"
	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

// readSafetensors reads a .safetensors or .safetensors.gz fixture into
// memory (tensors do not alias any mapping) with its metadata.
func readSafetensors(t testing.TB, path string) (map[string]*tensor.Tensor, map[string]string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if raw, err = io.ReadAll(zr); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	f, err := safetensors.Parse(raw)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return f.Tensors, f.Metadata
}

// readConfigArch reads an official-form config.json and resolves it.
func readConfigArch(t testing.TB, path string) *config.Arch {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	a, err := config.FromConfig(cfg)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return a
}

// loadModelDir opens a model directory and resolves its architecture from
// config and shapes. The tensors are copied out of the file mapping.
func loadModelDir(t testing.TB, dir string) (*config.Arch, map[string]*tensor.Tensor) {
	t.Helper()
	ck, err := checkpoint.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	shapes := make(map[string][]int)
	ts := make(map[string]*tensor.Tensor)
	for n, x := range ck.Tensors {
		shapes[n] = x.Shape
		ts[n] = cloneTensor(x)
	}
	a, err := config.Resolve(ck.Config, shapes)
	if err != nil {
		t.Fatalf("%s: %v", dir, err)
	}
	return a, ts
}

func readNpy(t testing.TB, path string) *npy.Array {
	t.Helper()
	a, err := npy.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// tokenRows turns an int64 [n, C] array into rows.
func tokenRows(a *npy.Array) [][]int {
	n, c := a.Shape[0], a.Shape[1]
	rows := make([][]int, n)
	for i := range rows {
		rows[i] = make([]int, c)
		for j := range c {
			rows[i][j] = int(a.I64[i*c+j])
		}
	}
	return rows
}

func f32(t testing.TB, x *tensor.Tensor) []float32 {
	t.Helper()
	v, err := x.Float32()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// maxAbs returns max|x|.
func maxAbs(x []float32) float64 {
	m := 0.0
	for _, v := range x {
		m = math.Max(m, math.Abs(float64(v)))
	}
	return m
}

// maxDiff returns max|a−b| (+Inf on a length mismatch or NaN).
func maxDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	m := 0.0
	for i := range a {
		d := math.Abs(float64(a[i]) - float64(b[i]))
		if math.IsNaN(d) {
			return math.Inf(1)
		}
		m = math.Max(m, d)
	}
	return m
}

// tensorRel is max|got−want| / max|want|, the fixtures' per-tensor measure.
func tensorRel(got, want []float32) float64 {
	d := maxDiff(got, want)
	if m := maxAbs(want); m > 0 {
		return d / m
	}
	return d
}

// rowRel is the model fixtures' measure: per row max|got−want| / ‖want‖₂,
// maximum over rows of width w.
func rowRel(got, want []float32, w int) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	worst := 0.0
	for r := 0; r < len(want); r += w {
		n := 0.0
		for _, v := range want[r : r+w] {
			n += float64(v) * float64(v)
		}
		d := maxDiff(got[r:r+w], want[r:r+w]) / math.Sqrt(n)
		worst = math.Max(worst, d)
	}
	return worst
}

func readJSON(t testing.TB, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func distillPath(t testing.TB, elem ...string) string {
	return fixtures.Path(t, append([]string{"fixtures", "distill"}, elem...)...)
}

func modelsPath(t testing.TB, elem ...string) string {
	return fixtures.Path(t, append([]string{"fixtures", "models"}, elem...)...)
}

var _ = filepath.Join
