package imageproc

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/tinyclip-go/tinyclip/internal/fixtures"
)

// fuzzBudget bounds the pixels FuzzDecode lets through, so that the fuzzer's
// memory stays small whatever the headers claim.
const fuzzBudget = 1 << 18

// FuzzDecode checks that arbitrary bytes give an error or a consistent image
// within the pixel budget, never a panic, and that every decoded image goes
// through both transforms.
func FuzzDecode(f *testing.F) {
	var seeds []string
	in, _ := filepath.Glob(fixtures.Path(f, "fixtures", "preprocess", "inputs", "*"))
	bad, _ := filepath.Glob(fixtures.Path(f, "fixtures", "preprocess", "malformed", "*"))
	corpus, _ := filepath.Glob(filepath.Join("testdata", "pillow", "in", "*"))
	seeds = append(append(append(seeds, in...), bad...), corpus...)
	for _, name := range seeds {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		if len(b) <= 64<<10 {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data, fuzzBudget)
		if err != nil {
			return
		}
		if err := m.check(); err != nil {
			t.Fatalf("decoded image: %v", err)
		}
		if int64(m.Width)*int64(m.Height) > fuzzBudget {
			t.Fatalf("decoded %dx%d above the budget", m.Width, m.Height)
		}
		cfg, err := DecodeConfig(data)
		if err != nil || cfg.Mode != m.Mode || cfg.Width != m.Width || cfg.Height != m.Height {
			t.Fatalf("DecodeConfig %+v, %v; Decode %s %dx%d", cfg, err, m.Mode, m.Width, m.Height)
		}
		for _, v := range []Variant{OpenCLIP, HF} {
			opts := DefaultOptions()
			opts.Size = 8
			opts.Variant = v
			out, err := Transform(m, opts)
			if err != nil || out.Mode != ModeRGB || len(out.Pix) != 8*8*3 {
				t.Fatalf("%v transform of %s %dx%d: %v", v, m.Mode, m.Width, m.Height, err)
			}
		}
	})
}
