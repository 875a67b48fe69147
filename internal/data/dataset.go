// Package data reads image datasets for evaluation and training: ImageFolder
// directories with torchvision's semantics, CSV lists (path,label and
// image_path,caption), and tar archives read in place (an ImageFolder packed
// into a tar, or webdataset shards of {key}.jpg + {key}.cls / {key}.txt).
//
// A Dataset is an ordered, indexed list of samples: the order is fixed when
// the dataset is opened (and never depends on the file system's listing
// order), the image bytes of a sample are read only when asked for, and a
// sample that cannot be read gives an error for that sample alone. Decoding is
// not part of a Dataset; Pipeline runs any decode or preprocessing function on
// many goroutines and hands back the results in dataset order.
//
// For training, Stream turns a dataset into an endless sequence of
// fixed-size, augmented and tokenized batches (shuffled per epoch from a
// seed, resumable from a Cursor), OpenTraining opens training sources
// (webdataset shards with brace ranges, caption CSVs, ImageFolders), and
// Synthetic generates an image–caption dataset of coloured shapes for
// tests and experiments.
package data

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Sample describes one item of a Dataset.
type Sample struct {
	// Name identifies the sample in reports: the image's path relative to
	// the ImageFolder root with '/' separators (also inside a tar), the path
	// as written in a CSV file, or a webdataset image's member name. When
	// several sources are concatenated, names are prefixed with the source's
	// base name and ':'.
	Name string
	// Label is the class index, or -1 when the sample has no label.
	Label int
	// Captions are the texts paired with the image (retrieval data); nil when
	// there are none.
	Captions []string
}

// Dataset is a finite, ordered list of image samples. Implementations are
// safe for concurrent use; Read may be called from many goroutines.
type Dataset interface {
	// Len returns the number of samples.
	Len() int
	// Sample returns the description of sample i, 0 <= i < Len().
	Sample(i int) Sample
	// Read returns the encoded image bytes of sample i. An error concerns
	// this sample only (missing or oversized file, bad label, ...).
	Read(i int) ([]byte, error)
	// Classes returns the class names the dataset itself defines (the
	// ImageFolder sub-folder names, in label order), or nil when its labels
	// are indices into a list given elsewhere.
	Classes() []string
	// Close releases open files.
	Close() error
}

// Errors callers can test for with errors.Is.
var (
	// ErrEmpty is returned when a source holds no samples at all.
	ErrEmpty = errors.New("data: no images found")
	// ErrTooLarge is returned by Read for a file larger than Options.MaxBytes.
	ErrTooLarge = errors.New("data: file too large")
	// ErrFormat is returned for a malformed list or archive.
	ErrFormat = errors.New("data: malformed input")
)

// DefaultMaxBytes is the largest image file Read returns by default.
const DefaultMaxBytes int64 = 256 << 20

// Options configures Open.
type Options struct {
	// Classes are the class names used to resolve labels written as names in
	// a CSV file and to check label indices (which must be below
	// len(Classes) when it is set).
	Classes []string
	// Captions reads CSV files as image_path,caption pairs instead of
	// path,label.
	Captions bool
	// MaxBytes is the largest image file Read accepts; 0 means
	// DefaultMaxBytes.
	MaxBytes int64
}

func (o *Options) maxBytes() int64 {
	if o.MaxBytes <= 0 {
		return DefaultMaxBytes
	}
	return o.MaxBytes
}

// imageExtensions are the file extensions torchvision's ImageFolder accepts
// (compared case-insensitively): .jpg .jpeg .png .ppm .bmp .pgm .tif .tiff
// .webp.
var imageExtensions = []string{".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"}

// IsImageName reports whether name ends with one of torchvision's image
// extensions (.jpg .jpeg .png .ppm .bmp .pgm .tif .tiff .webp), ignoring case,
// as its has_file_allowed_extension does.
func IsImageName(name string) bool {
	l := strings.ToLower(name)
	for _, e := range imageExtensions {
		if strings.HasSuffix(l, e) {
			return true
		}
	}
	return false
}

// Open opens the dataset at path: a directory is read as an ImageFolder, a
// .csv file as a path,label list (image_path,caption with opts.Captions), and
// a .tar file as a webdataset shard when it holds .cls or .txt members next
// to its images, otherwise as an ImageFolder packed into a tar.
func Open(path string, opts Options) (Dataset, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	if st.IsDir() {
		return OpenImageFolder(path, opts)
	}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".csv":
		if opts.Captions {
			return OpenCaptionCSV(path, opts)
		}
		return OpenLabelCSV(path, opts)
	case ".tar":
		return OpenTar(path, opts)
	}
	return nil, fmt.Errorf("data: %s: not a directory, .csv or .tar file", path)
}

// OpenAll opens each path with Open and concatenates the datasets in the
// given order (see Concat). A single path is returned as Open gives it.
func OpenAll(paths []string, opts Options) (Dataset, error) {
	if len(paths) == 0 {
		return nil, fmt.Errorf("data: no dataset given")
	}
	var list []Dataset
	for _, p := range paths {
		d, err := Open(p, opts)
		if err != nil {
			for _, o := range list {
				o.Close()
			}
			return nil, err
		}
		list = append(list, d)
	}
	if len(list) == 1 {
		return list[0], nil
	}
	names := make([]string, len(paths))
	for i, p := range paths {
		names[i] = filepath.Base(p)
	}
	return Concat(names, list...)
}

// Concat joins datasets one after another. Sample names are prefixed with
// the matching entry of names and ':'. The class lists of the parts must be
// equal (or all nil). Closing the result closes the parts.
func Concat(names []string, parts ...Dataset) (Dataset, error) {
	if len(names) != len(parts) {
		return nil, fmt.Errorf("data: concat: %d names for %d datasets", len(names), len(parts))
	}
	c := &concat{names: names, parts: parts}
	for i, p := range parts {
		if i > 0 && !equalStrings(p.Classes(), parts[0].Classes()) {
			return nil, fmt.Errorf("data: concat: %s has other class folders than %s", names[i], names[0])
		}
		c.starts = append(c.starts, c.n)
		c.n += p.Len()
	}
	return c, nil
}

type concat struct {
	names  []string
	parts  []Dataset
	starts []int
	n      int
}

func (c *concat) locate(i int) (int, int) {
	k := len(c.starts) - 1
	for k > 0 && c.starts[k] > i {
		k--
	}
	return k, i - c.starts[k]
}

func (c *concat) Len() int { return c.n }
func (c *concat) Sample(i int) Sample {
	k, j := c.locate(i)
	s := c.parts[k].Sample(j)
	s.Name = c.names[k] + ":" + s.Name
	return s
}
func (c *concat) Read(i int) ([]byte, error) {
	k, j := c.locate(i)
	return c.parts[k].Read(j)
}
func (c *concat) Classes() []string { return c.parts[0].Classes() }
func (c *concat) Close() error {
	var errs []error
	for _, p := range c.parts {
		errs = append(errs, p.Close())
	}
	return errors.Join(errs...)
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// readFile reads a whole file, refusing files above max bytes.
func readFile(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	if st.Size() > max {
		return nil, fmt.Errorf("%s: %w (%d bytes, limit %d)", path, ErrTooLarge, st.Size(), max)
	}
	buf := make([]byte, st.Size())
	if _, err := io.ReadFull(f, buf); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return buf, nil
}
