package data

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
)

// maxListBytes bounds the size of a CSV list read into memory.
const maxListBytes = 1 << 30

// List is a dataset given as a list of image files (a CSV file): each
// sample's image is read from its path, relative paths being taken relative
// to the list's directory.
type List struct {
	base    string
	samples []Sample
	paths   []string
	max     int64
}

// OpenLabelCSV reads a CSV list of path,label rows. A label is a class index
// or, when opts.Classes is set, a class name (which must name exactly one
// class). The first row is a header when its label is neither; blank rows
// are skipped and columns after the second are ignored. Relative paths are
// relative to the CSV file's directory; Sample names are the paths as
// written.
func OpenLabelCSV(path string, opts Options) (*List, error) {
	b, err := readList(path)
	if err != nil {
		return nil, err
	}
	l, err := parseLabelCSV(b, opts.Classes)
	if err != nil {
		return nil, fmt.Errorf("data: %s: %w", path, err)
	}
	l.base, l.max = filepath.Dir(path), opts.maxBytes()
	l.resolve()
	return l, nil
}

// OpenCaptionCSV reads a CSV list of image_path,caption rows. Rows naming the
// same image are one sample with several captions, in row order; samples are
// in the order of each image's first row. A first row whose columns are
// header names (image_path/path/filepath/image/file/filename and
// caption/text/title) is skipped. Relative paths are relative to the CSV
// file's directory.
func OpenCaptionCSV(path string, opts Options) (*List, error) {
	b, err := readList(path)
	if err != nil {
		return nil, err
	}
	l, err := parseCaptionCSV(b)
	if err != nil {
		return nil, fmt.Errorf("data: %s: %w", path, err)
	}
	l.base, l.max = filepath.Dir(path), opts.maxBytes()
	l.resolve()
	return l, nil
}

func readList(path string) ([]byte, error) {
	b, err := readFile(path, maxListBytes)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	return b, nil
}

func (l *List) resolve() {
	l.paths = make([]string, len(l.samples))
	for i, s := range l.samples {
		p := filepath.FromSlash(s.Name)
		if !filepath.IsAbs(p) {
			p = filepath.Join(l.base, p)
		}
		l.paths[i] = p
	}
}

func newCSVReader(b []byte) *csv.Reader {
	r := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))))
	r.FieldsPerRecord = -1
	r.ReuseRecord = false
	return r
}

// rows calls fn for every non-blank CSV record with its 1-based line number.
func rows(b []byte, fn func(line int, rec []string) error) error {
	r := newCSVReader(b)
	for {
		rec, err := r.Read()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return fmt.Errorf("%w: line %d: %v", ErrFormat, pe.Line, pe.Err)
			}
			return fmt.Errorf("%w: %v", ErrFormat, err)
		}
		line, _ := r.FieldPos(0)
		if strings.TrimSpace(strings.Join(rec, "")) == "" {
			continue
		}
		if err := fn(line, rec); err != nil {
			return err
		}
	}
}

func parseLabelCSV(b []byte, classes []string) (*List, error) {
	l := &List{}
	first := true
	err := rows(b, func(line int, rec []string) error {
		isFirst := first
		first = false
		if len(rec) < 2 {
			return fmt.Errorf("%w: line %d: want path,label, got %d column(s)", ErrFormat, line, len(rec))
		}
		p, lab := strings.TrimSpace(rec[0]), strings.TrimSpace(rec[1])
		label, err := parseLabel(lab, classes)
		if err != nil {
			if isFirst && !errors.Is(err, errAmbiguous) && !errors.Is(err, errRange) {
				return nil // header
			}
			return fmt.Errorf("line %d: %w", line, err)
		}
		if p == "" {
			return fmt.Errorf("%w: line %d: empty path", ErrFormat, line)
		}
		l.samples = append(l.samples, Sample{Name: p, Label: label})
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(l.samples) == 0 {
		return nil, fmt.Errorf("%w: no path,label rows", ErrEmpty)
	}
	return l, nil
}

var (
	errAmbiguous = fmt.Errorf("%w: ambiguous class name", ErrFormat)
	errRange     = fmt.Errorf("%w: label out of range", ErrFormat)
)

// parseLabel reads a label: a decimal class index, or a class name.
func parseLabel(s string, classes []string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 0 || (classes != nil && n >= len(classes)) {
			return 0, fmt.Errorf("%w: %d (%d classes)", errRange, n, len(classes))
		}
		return n, nil
	}
	idx := -1
	for i, c := range classes {
		if c == s {
			if idx >= 0 {
				return 0, fmt.Errorf("%w %q (classes %d and %d): use the index", errAmbiguous, s, idx, i)
			}
			idx = i
		}
	}
	if idx < 0 {
		return 0, fmt.Errorf("%w: unknown label %q (neither a class index nor a class name)", ErrFormat, s)
	}
	return idx, nil
}

var (
	pathHeaders    = []string{"image_path", "path", "filepath", "image", "file", "filename"}
	captionHeaders = []string{"caption", "text", "title"}
)

func isOneOf(s string, list []string) bool {
	s = strings.ToLower(strings.TrimSpace(s))
	for _, v := range list {
		if s == v {
			return true
		}
	}
	return false
}

func parseCaptionCSV(b []byte) (*List, error) {
	l := &List{}
	index := map[string]int{}
	first := true
	err := rows(b, func(line int, rec []string) error {
		isFirst := first
		first = false
		if len(rec) < 2 {
			return fmt.Errorf("%w: line %d: want image_path,caption, got %d column(s)", ErrFormat, line, len(rec))
		}
		if isFirst && isOneOf(rec[0], pathHeaders) && isOneOf(rec[1], captionHeaders) {
			return nil
		}
		p := strings.TrimSpace(rec[0])
		if p == "" {
			return fmt.Errorf("%w: line %d: empty image path", ErrFormat, line)
		}
		i, ok := index[p]
		if !ok {
			i = len(l.samples)
			index[p] = i
			l.samples = append(l.samples, Sample{Name: p, Label: -1})
		}
		l.samples[i].Captions = append(l.samples[i].Captions, rec[1])
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(l.samples) == 0 {
		return nil, fmt.Errorf("%w: no image_path,caption rows", ErrEmpty)
	}
	return l, nil
}

// Len returns the number of images.
func (l *List) Len() int { return len(l.samples) }

// Sample returns sample i.
func (l *List) Sample(i int) Sample {
	s := l.samples[i]
	s.Captions = append([]string(nil), s.Captions...)
	return s
}

// Path returns the file path of image i.
func (l *List) Path(i int) string { return l.paths[i] }

// Read returns the bytes of image i.
func (l *List) Read(i int) ([]byte, error) { return readFile(l.paths[i], l.max) }

// Classes returns nil: a list's labels index a class list given elsewhere.
func (l *List) Classes() []string { return nil }

// Close does nothing.
func (l *List) Close() error { return nil }
