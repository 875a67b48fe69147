package train

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/tinyclip-go/tinyclip/internal/config"
	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

// microMaskedJSON is a minimal regular model for masked-checkpoint seeds.
const microMaskedJSON = `{"embed_dim": 4, "vision_cfg": {"image_size": 8, "layers": 1, "width": 8, "head_width": 4, "patch_size": 4},
	"text_cfg": {"context_length": 5, "vocab_size": 10, "width": 8, "heads": 2, "layers": 1}}`

// microMasked writes a masked checkpoint of the micro model with log-alphas
// spread over [−6, 6] and returns its bytes.
func microMasked(t testing.TB) []byte {
	t.Helper()
	cfg, err := config.Parse([]byte(microMaskedJSON))
	if err != nil {
		t.Fatal(err)
	}
	arch, err := config.FromConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w, err := Init(arch, 1)
	if err != nil {
		t.Fatal(err)
	}
	l0, err := InitialL0(arch)
	if err != nil {
		t.Fatal(err)
	}
	for n, x := range l0 {
		v := f32(t, x)
		for i := range v {
			v[i] = float32((i*7)%13) - 6
		}
		l0[n] = tensor.FromFloat32(n, x.Shape, v)
	}
	dir := t.TempDir()
	if err := WriteMaskedModel(dir, arch, w, l0); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, MaskedModelFile))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzReadMaskedModel feeds arbitrary bytes to ReadMaskedModel: it must
// return an error or a model that EvalMasks and Prune handle, never panic.
func FuzzReadMaskedModel(f *testing.F) {
	seed := microMasked(f)
	f.Add(seed)
	f.Add(seed[:len(seed)/2])
	f.Add([]byte{})
	f.Add([]byte("\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":1}        "))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "m.safetensors")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		arch, w, l0, err := ReadMaskedModel(path, nil)
		if err != nil {
			return
		}
		m, err := EvalMasks(arch, l0)
		if err != nil {
			t.Fatalf("EvalMasks of a model ReadMaskedModel accepted: %v", err)
		}
		if _, _, err := Prune(arch, w, m); err != nil {
			// Only a tower with every hidden dimension removed may fail.
			t.Logf("prune: %v", err)
		}
	})
}

// FuzzDeterministicRow checks the evaluation-mask rule on arbitrary
// log-alphas: values are 0 or the soft value, and the number of zeros is
// round(n − Σ score) clamped to [0, n].
func FuzzDeterministicRow(f *testing.F) {
	f.Add([]byte{0, 128, 255, 7})
	f.Add([]byte{10, 10, 10, 10, 10, 10})
	f.Fuzz(func(t *testing.T, data []byte) {
		row := make([]float32, len(data))
		sum := 0.0
		for i, b := range data {
			row[i] = (float32(b) - 128) / 8
			sum += float64(gateScore(row[i]))
		}
		z := deterministicRow(row)
		zeros := 0
		for i, v := range z {
			if v == 0 {
				zeros++
			} else if v != softGate(row[i]) {
				t.Fatalf("gate %d = %v, want 0 or %v", i, v, softGate(row[i]))
			}
		}
		k := int(math.RoundToEven(float64(len(row)) - sum))
		k = max(0, min(k, len(row)))
		if zeros != k && !(zeros > k && softZeros(row) >= zeros) {
			t.Fatalf("%d zeros, want %d", zeros, k)
		}
	})
}

// softZeros counts gates whose soft value is itself 0 (log-alpha far
// below 0 underflows).
func softZeros(row []float32) int {
	n := 0
	for _, a := range row {
		if softGate(a) == 0 {
			n++
		}
	}
	return n
}
