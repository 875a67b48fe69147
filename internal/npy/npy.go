// Package npy reads and writes NumPy .npy arrays (format 1.0/2.0/3.0,
// little-endian, C order) of the element types the project uses.
package npy

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// Array is a decoded .npy file. Exactly one of the value slices is set,
// according to Descr.
type Array struct {
	Descr string // "<f4", "<i8", "|u1", "<f8", "<i4"
	Shape []int
	F32   []float32
	F64   []float64
	I64   []int64
	I32   []int32
	U8    []uint8
}

var (
	descrRe = regexp.MustCompile(`'descr':\s*'([^']*)'`)
	orderRe = regexp.MustCompile(`'fortran_order':\s*(True|False)`)
	shapeRe = regexp.MustCompile(`'shape':\s*\(([^)]*)\)`)
)

// maxElements caps allocations for hostile headers.
const maxElements = 1 << 31

// Read decodes a .npy stream.
func Read(r io.Reader) (*Array, error) {
	var magic [8]byte
	if _, err := io.ReadFull(r, magic[:]); err != nil {
		return nil, fmt.Errorf("npy: reading magic: %w", err)
	}
	if string(magic[:6]) != "\x93NUMPY" {
		return nil, errors.New("npy: not a .npy file")
	}
	var hlen int
	switch magic[6] {
	case 1:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, fmt.Errorf("npy: header length: %w", err)
		}
		hlen = int(binary.LittleEndian.Uint16(b[:]))
	case 2, 3:
		var b [4]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, fmt.Errorf("npy: header length: %w", err)
		}
		hlen = int(binary.LittleEndian.Uint32(b[:]))
		if hlen > 1<<20 {
			return nil, fmt.Errorf("npy: header of %d bytes is too large", hlen)
		}
	default:
		return nil, fmt.Errorf("npy: unsupported version %d", magic[6])
	}
	hdr := make([]byte, hlen)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, fmt.Errorf("npy: header: %w", err)
	}
	h := string(hdr)
	m := descrRe.FindStringSubmatch(h)
	if m == nil {
		return nil, errors.New("npy: header has no descr")
	}
	a := &Array{Descr: m[1]}
	if o := orderRe.FindStringSubmatch(h); o == nil || o[1] != "False" {
		return nil, errors.New("npy: only C-order arrays are supported")
	}
	s := shapeRe.FindStringSubmatch(h)
	if s == nil {
		return nil, errors.New("npy: header has no shape")
	}
	n := 1
	for _, f := range strings.Split(s[1], ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		d, err := strconv.Atoi(f)
		if err != nil || d < 0 {
			return nil, fmt.Errorf("npy: bad shape %q", s[1])
		}
		a.Shape = append(a.Shape, d)
		n *= d
		if n > maxElements {
			return nil, fmt.Errorf("npy: shape %q too large", s[1])
		}
	}
	var size int
	switch a.Descr {
	case "<f4", "<i4":
		size = 4
	case "<f8", "<i8":
		size = 8
	case "|u1", "<u1":
		size = 1
	default:
		return nil, fmt.Errorf("npy: unsupported dtype %q", a.Descr)
	}
	raw := make([]byte, n*size)
	if _, err := io.ReadFull(r, raw); err != nil {
		return nil, fmt.Errorf("npy: data: %w", err)
	}
	le := binary.LittleEndian
	switch a.Descr {
	case "<f4":
		a.F32 = make([]float32, n)
		for i := range a.F32 {
			a.F32[i] = math.Float32frombits(le.Uint32(raw[4*i:]))
		}
	case "<f8":
		a.F64 = make([]float64, n)
		for i := range a.F64 {
			a.F64[i] = math.Float64frombits(le.Uint64(raw[8*i:]))
		}
	case "<i4":
		a.I32 = make([]int32, n)
		for i := range a.I32 {
			a.I32[i] = int32(le.Uint32(raw[4*i:]))
		}
	case "<i8":
		a.I64 = make([]int64, n)
		for i := range a.I64 {
			a.I64[i] = int64(le.Uint64(raw[8*i:]))
		}
	default:
		a.U8 = raw
	}
	return a, nil
}

// ReadFile reads a .npy file, or a gzip-compressed one when the name ends in ".gz".
func ReadFile(path string) (*Array, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("npy: %s: %w", path, err)
		}
		defer zr.Close()
		r = zr
	}
	a, err := Read(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return a, nil
}

func header(descr string, shape []int) []byte {
	dims := make([]string, len(shape))
	for i, d := range shape {
		dims[i] = strconv.Itoa(d)
	}
	sh := strings.Join(dims, ", ")
	if len(shape) == 1 {
		sh += ","
	}
	h := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, sh)
	// Pad so that magic(6)+version(2)+len(2)+header is a multiple of 64, ending in '\n'.
	total := 10 + len(h) + 1
	pad := (64 - total%64) % 64
	h += strings.Repeat(" ", pad) + "\n"
	var buf bytes.Buffer
	buf.WriteString("\x93NUMPY\x01\x00")
	var l [2]byte
	binary.LittleEndian.PutUint16(l[:], uint16(len(h)))
	buf.Write(l[:])
	buf.WriteString(h)
	return buf.Bytes()
}

// WriteFloat32 writes a float32 array in .npy format 1.0.
func WriteFloat32(w io.Writer, shape []int, data []float32) error {
	buf := header("<f4", shape)
	out := make([]byte, len(buf)+4*len(data))
	copy(out, buf)
	for i, v := range data {
		binary.LittleEndian.PutUint32(out[len(buf)+4*i:], math.Float32bits(v))
	}
	_, err := w.Write(out)
	return err
}

// WriteUint8 writes a uint8 array in .npy format 1.0.
func WriteUint8(w io.Writer, shape []int, data []uint8) error {
	if _, err := w.Write(header("|u1", shape)); err != nil {
		return err
	}
	_, err := w.Write(data)
	return err
}

// WriteInt64 writes an int64 array in .npy format 1.0.
func WriteInt64(w io.Writer, shape []int, data []int64) error {
	buf := header("<i8", shape)
	out := make([]byte, len(buf)+8*len(data))
	copy(out, buf)
	for i, v := range data {
		binary.LittleEndian.PutUint64(out[len(buf)+8*i:], uint64(v))
	}
	_, err := w.Write(out)
	return err
}
