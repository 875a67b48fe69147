package pickle

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"

	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

// checkCRC enables the CRC check of stored entries; the fuzz test turns it
// off so that mutations reach the pickle behind the checksum.
var checkCRC = true

// zipArchive is an open torch zip container.
type zipArchive struct {
	data    []byte
	entries map[string]*zip.File
	dir     string // top folder with its trailing slash
	alloc   *allocator
	raw     map[string][]byte // storage bytes by key, once read
}

// parseZip reads a torch zip container: <dir>/data.pkl, <dir>/data/<key>,
// optionally <dir>/byteorder, wherever the entries sit in the archive.
func parseZip(data []byte) (*File, error) {
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		return nil, fmt.Errorf("%w: torch zip archive is truncated or corrupt (%v)", ErrFormat, err)
	}
	z := &zipArchive{data: data, entries: map[string]*zip.File{}, alloc: budget(len(data)), raw: map[string][]byte{}}
	var pkls []string
	for _, f := range zr.File {
		if _, dup := z.entries[f.Name]; dup {
			return nil, fmt.Errorf("%w: zip: duplicate entry %q", ErrFormat, f.Name)
		}
		z.entries[f.Name] = f
		if f.Name == "data.pkl" || strings.HasSuffix(f.Name, "/data.pkl") && strings.Count(f.Name, "/") == 1 {
			pkls = append(pkls, f.Name)
		}
	}
	for name := range z.entries {
		top, rest, _ := strings.Cut(name, "/")
		if rest == "constants.pkl" || strings.HasPrefix(rest, "code/") || name == "constants.pkl" {
			return nil, fmt.Errorf("%w (entry %q; load it with torch.jit.load and save its state_dict())", ErrTorchScript, top+"/"+rest)
		}
	}
	switch len(pkls) {
	case 0:
		return nil, fmt.Errorf("%w: zip archive without a data.pkl entry (not a PyTorch checkpoint)", ErrFormat)
	case 1:
	default:
		return nil, fmt.Errorf("%w: zip archive with several data.pkl entries (%s)", ErrFormat, strings.Join(pkls, ", "))
	}
	z.dir = strings.TrimSuffix(pkls[0], "data.pkl")

	bigEndian := false
	if f := z.entries[z.dir+"byteorder"]; f != nil {
		b, err := z.read(f)
		if err != nil {
			return nil, err
		}
		switch strings.TrimSpace(string(b)) {
		case "little":
		case "big":
			bigEndian = true
		default:
			return nil, fmt.Errorf("%w: %sbyteorder is %q, want little or big", ErrFormat, z.dir, b)
		}
	}

	pkl, err := z.read(z.entries[pkls[0]])
	if err != nil {
		return nil, err
	}
	st := newStorageTable(false)
	top, n, err := unpickle(pkls[0], pkl, st.load)
	if err != nil {
		return nil, err
	}
	if n != len(pkl) {
		return nil, fmt.Errorf("%w: %s: %d bytes after STOP", ErrFormat, pkls[0], len(pkl)-n)
	}
	sd, err := stateDict(top)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", pkls[0], err)
	}
	ts, err := collect(sd, func(name string, v *view) (*tensor.Tensor, error) {
		raw, err := z.storage(v.st)
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", name, err)
		}
		return materialize(name, v, raw, bigEndian, z.alloc)
	})
	if err != nil {
		return nil, err
	}
	return &File{Format: FormatZip, Tensors: ts}, nil
}

// storage returns the bytes of a storage's data/<key> entry.
func (z *zipArchive) storage(s *storage) ([]byte, error) {
	if s.root != nil {
		s = s.root
	}
	if b, ok := z.raw[s.key]; ok {
		return b, nil
	}
	name := z.dir + "data/" + s.key
	f := z.entries[name]
	if f == nil {
		return nil, fmt.Errorf("%w: storage entry %q missing", ErrFormat, name)
	}
	b, err := z.read(f)
	if err != nil {
		return nil, err
	}
	if want := s.numel * int64(s.dtype.Size()); int64(len(b)) != want {
		return nil, fmt.Errorf("%w: %s has %d bytes, want %d for %d elements of %s", ErrFormat, name, len(b), want, s.numel, s.dtype)
	}
	z.raw[s.key] = b
	return b, nil
}

// read returns an entry's content: a slice of the archive for stored
// entries, a budgeted copy for deflated ones. The CRC is checked.
func (z *zipArchive) read(f *zip.File) ([]byte, error) {
	switch f.Method {
	case zip.Store:
		off, err := f.DataOffset()
		if err != nil {
			return nil, fmt.Errorf("%w: zip entry %q: %v", ErrFormat, f.Name, err)
		}
		size := f.UncompressedSize64
		if f.CompressedSize64 != size || off < 0 || uint64(off) > uint64(len(z.data)) || size > uint64(len(z.data))-uint64(off) {
			return nil, fmt.Errorf("%w: zip entry %q (%d bytes at offset %d) extends beyond the %d-byte file (truncated?)",
				ErrFormat, f.Name, size, off, len(z.data))
		}
		b := z.data[off : uint64(off)+size : uint64(off)+size]
		if checkCRC && crc32.ChecksumIEEE(b) != f.CRC32 {
			return nil, fmt.Errorf("%w: zip entry %q: CRC mismatch (corrupted file)", ErrFormat, f.Name)
		}
		return b, nil
	case zip.Deflate:
		if f.UncompressedSize64 > uint64(z.alloc.left) {
			return nil, fmt.Errorf("%w: zip entry %q: %d bytes uncompressed, beyond the budget the file size allows", ErrFormat, f.Name, f.UncompressedSize64)
		}
		buf, _ := z.alloc.alloc(f.Name, int64(f.UncompressedSize64))
		rc, err := f.Open()
		if err != nil {
			return nil, fmt.Errorf("%w: zip entry %q: %v", ErrFormat, f.Name, err)
		}
		defer rc.Close()
		if _, err := io.ReadFull(rc, buf); err != nil {
			return nil, fmt.Errorf("%w: zip entry %q: %v", ErrFormat, f.Name, err)
		}
		// Reading past the end makes archive/zip check size and CRC.
		if n, err := rc.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			return nil, fmt.Errorf("%w: zip entry %q: bad size or CRC (%v)", ErrFormat, f.Name, err)
		}
		return buf, nil
	}
	return nil, fmt.Errorf("%w: zip entry %q: unsupported compression method %d", ErrFormat, f.Name, f.Method)
}
