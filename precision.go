package tinyclip

import (
	"fmt"
	"strings"

	"github.com/tinyclip-go/tinyclip/internal/engine"
)

// Precision is the arithmetic of a model's matrix products with weights.
type Precision string

const (
	// FP32 computes in float32, as the official PyTorch model (the default).
	FP32 Precision = "fp32"
	// BF16 rounds the weights of every linear layer and convolution to
	// bfloat16 once at load, and the activations entering those products
	// as they are computed; the products accumulate in float32 (AVX-512
	// BF16 dot products, about twice as fast). Attention, softmax,
	// LayerNorm and the residual sums stay float32. Embeddings differ from
	// FP32 ones by a cosine of 0.999 or closer on the models measured (see
	// docs/performance.md). On CPUs without AVX512-BF16 the model runs in
	// FP32; Model.Precision says which.
	BF16 Precision = "bf16"
)

// ParsePrecision returns the Precision named by s ("fp32" or "bf16",
// case-insensitive).
func ParsePrecision(s string) (Precision, error) {
	switch p := Precision(strings.ToLower(s)); p {
	case FP32, BF16:
		return p, nil
	}
	return "", fmt.Errorf("tinyclip: unknown precision %q (want fp32 or bf16)", s)
}

// WithPrecision selects the arithmetic of the weight products (default
// FP32). An unknown value makes Load fail.
func WithPrecision(p Precision) Option { return func(o *options) { o.precision = p } }

// Precision returns the arithmetic the model runs with: the one asked for
// with WithPrecision, or FP32 where the CPU lacks what it needs.
func (m *Model) Precision() Precision {
	if m.eng.Precision() == engine.BF16 {
		return BF16
	}
	return FP32
}

// enginePrecision maps a Precision to the engine's.
func enginePrecision(p Precision) (engine.Precision, error) {
	switch p {
	case "", FP32:
		return engine.FP32, nil
	case BF16:
		return engine.BF16, nil
	}
	return 0, fmt.Errorf("tinyclip: unknown precision %q (want fp32 or bf16)", string(p))
}
