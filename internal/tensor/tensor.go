// Package tensor defines the named, typed arrays that checkpoint readers
// produce and the engine consumes, and exact conversions between float
// formats (float32, float16, bfloat16).
package tensor

import (
	"encoding/binary"
	"fmt"
	"math"
)

// DType is the element type of a stored tensor, spelled as in safetensors.
type DType string

// The element types a checkpoint may hold.
const (
	F32  DType = "F32"
	F16  DType = "F16"
	BF16 DType = "BF16"
	F64  DType = "F64"
	I64  DType = "I64"
	I32  DType = "I32"
	I16  DType = "I16"
	I8   DType = "I8"
	U8   DType = "U8"
	Bool DType = "BOOL"
)

// Size returns the number of bytes of one element, or 0 for an unknown type.
func (d DType) Size() int {
	switch d {
	case F64, I64:
		return 8
	case F32, I32:
		return 4
	case F16, BF16, I16:
		return 2
	case I8, U8, Bool:
		return 1
	}
	return 0
}

// IsFloat reports whether d is a floating-point type.
func (d DType) IsFloat() bool {
	return d == F32 || d == F16 || d == BF16 || d == F64
}

// Tensor is one named array of a checkpoint. Data holds the elements
// contiguously in row-major order, little-endian; it may alias a memory-mapped
// file and must not be modified.
type Tensor struct {
	Name  string
	DType DType
	Shape []int
	Data  []byte
}

// NumElements returns the product of the shape (1 for a scalar).
func (t *Tensor) NumElements() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// ShapeString formats the shape as "[a b c]".
func (t *Tensor) ShapeString() string { return fmt.Sprint(t.Shape) }

// Float32 converts the elements to a new float32 slice. Float types are
// converted exactly (float16 and bfloat16 widen without rounding); integer
// types are converted as by a C cast.
func (t *Tensor) Float32() ([]float32, error) {
	n := t.NumElements()
	size := t.DType.Size()
	if size == 0 {
		return nil, fmt.Errorf("tensor: %s: unsupported dtype %q", t.Name, t.DType)
	}
	if len(t.Data) != n*size {
		return nil, fmt.Errorf("tensor: %s: %d bytes of data for shape %v of %s (want %d)",
			t.Name, len(t.Data), t.Shape, t.DType, n*size)
	}
	out := make([]float32, n)
	b := t.Data
	le := binary.LittleEndian
	switch t.DType {
	case F32:
		for i := range out {
			out[i] = math.Float32frombits(le.Uint32(b[4*i:]))
		}
	case F16:
		for i := range out {
			out[i] = Float16ToFloat32(le.Uint16(b[2*i:]))
		}
	case BF16:
		for i := range out {
			out[i] = math.Float32frombits(uint32(le.Uint16(b[2*i:])) << 16)
		}
	case F64:
		for i := range out {
			out[i] = float32(math.Float64frombits(le.Uint64(b[8*i:])))
		}
	case I64:
		for i := range out {
			out[i] = float32(int64(le.Uint64(b[8*i:])))
		}
	case I32:
		for i := range out {
			out[i] = float32(int32(le.Uint32(b[4*i:])))
		}
	case I16:
		for i := range out {
			out[i] = float32(int16(le.Uint16(b[2*i:])))
		}
	case I8:
		for i := range out {
			out[i] = float32(int8(b[i]))
		}
	case U8, Bool:
		for i := range out {
			out[i] = float32(b[i])
		}
	}
	return out, nil
}

// Float16ToFloat32 widens an IEEE 754 half-precision value exactly.
func Float16ToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0:
		if mant == 0 {
			return math.Float32frombits(sign)
		}
		// Subnormal: value = mant · 2^-24.
		f := float32(mant) * (1.0 / (1 << 24))
		if sign != 0 {
			f = -f
		}
		return f
	case exp == 0x1f:
		return math.Float32frombits(sign | 0xff<<23 | mant<<13)
	default:
		return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
	}
}

// Float32ToFloat16 rounds a float32 to the nearest half-precision value (ties
// to even), as PyTorch's .half() does.
func Float32ToFloat16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff { // Inf or NaN
		if mant != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		if e < -10 {
			return sign
		}
		mant |= 0x800000
		shift := uint32(14 - e)
		half := mant >> shift
		rem := mant & (1<<shift - 1)
		mid := uint32(1) << (shift - 1)
		if rem > mid || (rem == mid && half&1 == 1) {
			half++
		}
		return sign | uint16(half)
	}
	half := uint32(e)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && half&1 == 1) {
		half++
	}
	return sign | uint16(half)
}

// Float32ToBFloat16 rounds a float32 to bfloat16 (ties to even), as PyTorch does.
func Float32ToBFloat16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 { // NaN
		return uint16(b>>16) | 0x40
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// FromFloat32 makes a contiguous F32 tensor from values.
func FromFloat32(name string, shape []int, values []float32) *Tensor {
	data := make([]byte, 4*len(values))
	for i, v := range values {
		binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(v))
	}
	return &Tensor{Name: name, DType: F32, Shape: append([]int(nil), shape...), Data: data}
}
