package data

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// ImageFolder is a directory with one sub-folder per class, read as
// torchvision's datasets.ImageFolder reads it: the class names are the
// sub-folder names sorted by code point and the label of a class is its
// position; each class folder is walked recursively, following symbolic
// links, and its files are taken in the order of torchvision's
// make_dataset — directories sorted by their full path, then file names
// sorted within each directory — keeping the names that end with one of
// torchvision's image extensions (any case; see IsImageName). Files directly
// in the root are ignored.
//
// Like torchvision, a class folder without any image is an error. Unlike
// Python's os.walk, a sub-directory that cannot be listed is an error too
// (os.walk skips it silently), and symbolic links that lead back to a
// directory being walked are not followed again.
type ImageFolder struct {
	root    string
	classes []string
	paths   []string
	names   []string
	labels  []int
	max     int64
}

// OpenImageFolder lists the ImageFolder at root.
func OpenImageFolder(root string, opts Options) (*ImageFolder, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	f := &ImageFolder{root: root, max: opts.maxBytes()}
	for _, e := range entries {
		if isDir(filepath.Join(root, e.Name()), e) {
			f.classes = append(f.classes, e.Name())
		}
	}
	sort.Strings(f.classes) // os.ReadDir sorts already; byte order = code point order
	if len(f.classes) == 0 {
		return nil, fmt.Errorf("data: %s: %w: no class sub-folders (an ImageFolder has one sub-folder per class)", root, ErrEmpty)
	}
	var empty []string
	for label, class := range f.classes {
		dir := filepath.Join(root, class)
		var dirs []walkedDir
		if err := walk(dir, nil, &dirs); err != nil {
			return nil, fmt.Errorf("data: %w", err)
		}
		sort.Slice(dirs, func(i, j int) bool { return dirs[i].path < dirs[j].path })
		n := len(f.paths)
		for _, d := range dirs {
			for _, name := range d.files { // sorted by os.ReadDir
				if !IsImageName(name) {
					continue
				}
				p := filepath.Join(d.path, name)
				rel, err := filepath.Rel(root, p)
				if err != nil {
					rel = p
				}
				f.paths = append(f.paths, p)
				f.names = append(f.names, filepath.ToSlash(rel))
				f.labels = append(f.labels, label)
			}
		}
		if len(f.paths) == n {
			empty = append(empty, class)
		}
	}
	if len(empty) > 0 {
		return nil, fmt.Errorf("data: %s: %w in class folder(s) %s (extensions %s)", root, ErrEmpty,
			strings.Join(quoteAll(empty), ", "), strings.Join(imageExtensions, " "))
	}
	return f, nil
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = fmt.Sprintf("%q", v)
	}
	return out
}

// isDir reports whether the directory entry at path is a directory,
// following a symbolic link (a broken link is no directory), as Python's
// DirEntry.is_dir().
func isDir(path string, e os.DirEntry) bool {
	if e.Type()&os.ModeSymlink == 0 {
		return e.IsDir()
	}
	st, err := os.Stat(path)
	return err == nil && st.IsDir()
}

type walkedDir struct {
	path  string
	files []string
}

// walk lists dir and its sub-directories (following symbolic links) as
// os.walk(followlinks=True) does: every directory with the names of its
// non-directory entries. ancestors guards against link cycles.
func walk(dir string, ancestors []os.FileInfo, out *[]walkedDir) error {
	st, err := os.Stat(dir)
	if err != nil {
		return err
	}
	for _, a := range ancestors {
		if os.SameFile(a, st) {
			return nil // a link back into the walk: os.walk would loop
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	wd := walkedDir{path: dir}
	var subdirs []string
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if isDir(p, e) {
			subdirs = append(subdirs, p)
		} else {
			wd.files = append(wd.files, e.Name())
		}
	}
	*out = append(*out, wd)
	ancestors = append(ancestors, st)
	for _, s := range subdirs {
		if err := walk(s, ancestors, out); err != nil {
			return err
		}
	}
	return nil
}

// Len returns the number of images.
func (f *ImageFolder) Len() int { return len(f.paths) }

// Sample returns the name (path relative to the root) and label of image i.
func (f *ImageFolder) Sample(i int) Sample {
	return Sample{Name: f.names[i], Label: f.labels[i]}
}

// Path returns the file path of image i.
func (f *ImageFolder) Path(i int) string { return f.paths[i] }

// Read returns the bytes of image i.
func (f *ImageFolder) Read(i int) ([]byte, error) {
	return readFile(f.paths[i], f.max)
}

// Classes returns the class folder names in label order.
func (f *ImageFolder) Classes() []string { return f.classes }

// Close does nothing: files are opened per Read.
func (f *ImageFolder) Close() error { return nil }
