package tinyclip

import (
	"context"
	"os"
	"testing"

	"github.com/tinyclip-go/tinyclip/internal/fixtures"
)

func TestParsePrecision(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Precision
		ok   bool
	}{{"fp32", FP32, true}, {"BF16", BF16, true}, {"int8", "", false}, {"", "", false}} {
		got, err := ParsePrecision(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParsePrecision(%q) = %q, %v", tt.in, got, err)
		}
	}
}

// TestPrecisionBF16 loads every fixture model in BF16 and checks that its
// embeddings stay within a cosine of 0.999 of the FP32 ones (the bar of
// issue 3), or that the model fell back to FP32 on a CPU without BF16.
func TestPrecisionBF16(t *testing.T) {
	ctx := context.Background()
	img, err := os.ReadFile(fixtures.Path(t, "fixtures", "models", "inputs", "a_square.png"))
	if err != nil {
		t.Fatal(err)
	}
	texts := []string{"a photo of a cat.", "a diagram", ""}
	for _, name := range []string{"vit-p16", "vit-p32-quickgelu", "resnet", "auto-pruned"} {
		t.Run(name, func(t *testing.T) {
			fp := loadFixture(t, name+"/open_clip")
			bf := loadFixture(t, name+"/open_clip", WithPrecision(BF16))
			if fp.Precision() != FP32 {
				t.Errorf("default precision %s", fp.Precision())
			}
			if bf.Precision() == FP32 {
				t.Log("BF16 not supported by this CPU: FP32 fallback")
			}
			for _, kind := range []string{"image", "text"} {
				var a, b [][]float32
				var err1, err2 error
				if kind == "image" {
					a, err1 = fp.EncodeImageBytes(ctx, [][]byte{img})
					b, err2 = bf.EncodeImageBytes(ctx, [][]byte{img})
				} else {
					a, err1 = fp.EncodeTexts(ctx, texts)
					b, err2 = bf.EncodeTexts(ctx, texts)
				}
				if err1 != nil || err2 != nil {
					t.Fatal(err1, err2)
				}
				for i := range a {
					if c := Cosine(a[i], b[i]); c < 0.999 {
						t.Errorf("%s %d: cosine bf16 vs fp32 %.6f < 0.999", kind, i, c)
					} else {
						t.Logf("%s %d: cosine bf16 vs fp32 %.6f", kind, i, c)
					}
				}
			}
		})
	}
	if _, err := Load(ctx, fixtures.Path(t, "fixtures", "models", "vit-p16"), WithPrecision("fp16")); err == nil {
		t.Error("Load accepted precision fp16")
	}
}
