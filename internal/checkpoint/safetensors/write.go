package safetensors

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

// dtypeRank orders dtypes as the reference implementation sorts them when
// writing (its Dtype enum, descending): 64-bit types first, then 32-, 16- and
// 8-bit ones.
var dtypeRank = map[tensor.DType]int{
	tensor.I64: 13, tensor.F64: 12, tensor.F32: 11, tensor.I32: 9,
	tensor.BF16: 8, tensor.F16: 7, tensor.I16: 5, tensor.I8: 2,
	tensor.U8: 1, tensor.Bool: 0,
}

// Write writes tensors as a safetensors file in the reference layout: the
// header lists "__metadata__" (omitted when metadata is nil) and then the
// tensors in data order, larger element types first and by name within a
// type; it is padded with spaces to a multiple of 8 bytes; the data follows
// contiguously without gaps. Each tensor's Data must hold exactly its
// elements; names must be unique.
func Write(w io.Writer, tensors []*tensor.Tensor, metadata map[string]string) error {
	ts := append([]*tensor.Tensor(nil), tensors...)
	seen := make(map[string]bool, len(ts))
	for _, t := range ts {
		if t == nil {
			return fmt.Errorf("safetensors: write: nil tensor")
		}
		if t.Name == "__metadata__" {
			return fmt.Errorf("safetensors: write: tensor name %q is reserved", t.Name)
		}
		if seen[t.Name] {
			return fmt.Errorf("safetensors: write: duplicate tensor name %q", t.Name)
		}
		seen[t.Name] = true
		if _, ok := dtypeRank[t.DType]; !ok {
			return fmt.Errorf("safetensors: write: tensor %q: unsupported dtype %q", t.Name, t.DType)
		}
		n, ok := byteSize(t.Shape, t.DType.Size(), len(t.Data))
		if !ok || n != len(t.Data) {
			return fmt.Errorf("safetensors: write: tensor %q: %d bytes of data for shape %v of %s", t.Name, len(t.Data), t.Shape, t.DType)
		}
	}
	sort.SliceStable(ts, func(i, j int) bool {
		ri, rj := dtypeRank[ts[i].DType], dtypeRank[ts[j].DType]
		if ri != rj {
			return ri > rj
		}
		return ts[i].Name < ts[j].Name
	})

	var h bytes.Buffer
	h.WriteByte('{')
	first := true
	comma := func() {
		if !first {
			h.WriteByte(',')
		}
		first = false
	}
	if metadata != nil {
		comma()
		h.WriteString(`"__metadata__":{`)
		keys := make([]string, 0, len(metadata))
		for k := range metadata {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for i, k := range keys {
			if i > 0 {
				h.WriteByte(',')
			}
			writeJSONString(&h, k)
			h.WriteByte(':')
			writeJSONString(&h, metadata[k])
		}
		h.WriteByte('}')
	}
	off := 0
	for _, t := range ts {
		comma()
		writeJSONString(&h, t.Name)
		h.WriteString(`:{"dtype":"`)
		h.WriteString(string(t.DType))
		h.WriteString(`","shape":[`)
		for i, d := range t.Shape {
			if i > 0 {
				h.WriteByte(',')
			}
			h.WriteString(strconv.Itoa(d))
		}
		h.WriteString(`],"data_offsets":[`)
		h.WriteString(strconv.Itoa(off))
		h.WriteByte(',')
		off += len(t.Data)
		h.WriteString(strconv.Itoa(off))
		h.WriteString("]}")
	}
	h.WriteByte('}')
	for h.Len()%8 != 0 {
		h.WriteByte(' ')
	}
	if h.Len() > MaxHeaderSize {
		return fmt.Errorf("safetensors: write: header of %d bytes exceeds the %d-byte limit", h.Len(), MaxHeaderSize)
	}

	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(h.Len()))
	if _, err := w.Write(n[:]); err != nil {
		return fmt.Errorf("safetensors: write: %w", err)
	}
	if _, err := w.Write(h.Bytes()); err != nil {
		return fmt.Errorf("safetensors: write: %w", err)
	}
	for _, t := range ts {
		if _, err := w.Write(t.Data); err != nil {
			return fmt.Errorf("safetensors: write %s: %w", t.Name, err)
		}
	}
	return nil
}

// writeJSONString appends s as a JSON string without HTML escaping.
func writeJSONString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	enc.Encode(s)           // cannot fail for a string
	b.Truncate(b.Len() - 1) // the newline Encode appends
}

// WriteFile writes tensors to path as Write does, atomically: the data goes
// to a temporary file in the same directory, which is synced and then renamed
// over path, so path holds either its old content or the complete new file.
func WriteFile(path string, tensors []*tensor.Tensor, metadata map[string]string) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	if err := Write(bw, tensors, metadata); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("safetensors: %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("safetensors: %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("safetensors: %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("safetensors: %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	return nil
}
