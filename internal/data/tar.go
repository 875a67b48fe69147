package data

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
)

// Layout is how a tar archive's members form samples.
type Layout int

const (
	// LayoutImageFolder is an ImageFolder packed into a tar: members
	// [top/]class/.../file.png. When every member lies under one top-level
	// folder that holds sub-folders, that folder is the root.
	LayoutImageFolder Layout = iota
	// LayoutWebDataset is a webdataset shard: consecutive members sharing a
	// key (the member name up to the first '.' of its base name) form one
	// sample, {key}.jpg|png|webp|... its image, {key}.cls its class index,
	// {key}.txt its caption.
	LayoutWebDataset
)

// String returns the layout's name.
func (l Layout) String() string {
	if l == LayoutWebDataset {
		return "webdataset"
	}
	return "imagefolder"
}

// webdataset image extensions, in order of preference when a sample has
// several.
var wdsImageExts = []string{"jpg", "jpeg", "png", "webp", "bmp", "ppm", "pgm", "tif", "tiff", "gif"}

// maxTextMember bounds .cls and .txt members, which are read when the
// archive is indexed.
const maxTextMember = 1 << 20

// Tar is a dataset read from a tar archive in place: the archive is indexed
// once (member names, offsets and sizes; the small .cls and .txt members of a
// webdataset are read then) and images are read from their offsets when
// asked for. Only regular-file members count; links, devices and sparse
// files are ignored or reported per sample.
type Tar struct {
	r       io.ReaderAt
	closer  io.Closer
	layout  Layout
	classes []string
	samples []Sample
	members []member // the image member of each sample
	max     int64
}

type member struct {
	name      string
	off, size int64
	err       error
}

// OpenTar indexes the tar archive at path (see NewTar).
func OpenTar(path string, opts Options) (*Tar, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("data: %w", err)
	}
	t, err := NewTar(f, st.Size(), opts)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("data: %s: %w", path, err)
	}
	t.closer = f
	return t, nil
}

// NewTar indexes a tar archive of size bytes read through r. The layout is
// LayoutWebDataset when some key has both an image member and a .cls or .txt
// member, LayoutImageFolder otherwise. Webdataset labels are checked against
// opts.Classes when it is set.
func NewTar(r io.ReaderAt, size int64, opts Options) (*Tar, error) {
	ms, err := indexTar(r, size)
	if err != nil {
		return nil, err
	}
	t := &Tar{r: r, max: opts.maxBytes()}
	if isWebDataset(ms) {
		t.layout = LayoutWebDataset
		err = t.webDataset(ms, opts.Classes)
	} else {
		t.layout = LayoutImageFolder
		err = t.imageFolder(ms)
	}
	if err != nil {
		return nil, err
	}
	return t, nil
}

// posReader tracks the read position, so the offset of each member's data
// is known when tar.Reader.Next returns (tar.Reader reads headers only, in
// whole blocks, and skips data with Seek).
type posReader struct {
	r   *io.SectionReader
	pos int64
}

func (p *posReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.pos += int64(n)
	return n, err
}

func (p *posReader) Seek(off int64, whence int) (int64, error) {
	n, err := p.r.Seek(off, whence)
	if err == nil {
		p.pos = n
	}
	return n, err
}

// indexTar lists the regular-file members of an archive (and the directory
// members, with size -1), with cleaned names.
func indexTar(r io.ReaderAt, size int64) ([]member, error) {
	pr := &posReader{r: io.NewSectionReader(r, 0, size)}
	tr := tar.NewReader(pr)
	var ms []member
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: tar member %d: %v", ErrFormat, len(ms)+1, err)
		}
		name := cleanName(h.Name)
		if name == "" {
			continue
		}
		switch h.Typeflag {
		case tar.TypeDir:
			ms = append(ms, member{name: name, size: -1})
		case tar.TypeReg, tar.TypeGNUSparse:
			m := member{name: name, off: pr.pos, size: h.Size}
			if h.Typeflag == tar.TypeGNUSparse || isPAXSparse(h) {
				m.err = fmt.Errorf("%w: %s is a sparse tar member (not supported)", ErrFormat, name)
			} else if h.Size < 0 || pr.pos > size || h.Size > size-pr.pos {
				m.err = fmt.Errorf("%w: %s: data runs past the end of the archive", ErrFormat, name)
			}
			ms = append(ms, m)
		}
	}
	return ms, nil
}

func isPAXSparse(h *tar.Header) bool {
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// cleanName turns a member name into a clean relative slash path ("" for
// the archive root).
func cleanName(n string) string {
	n = path.Clean("/" + strings.TrimPrefix(n, "./"))
	return strings.TrimPrefix(n, "/")
}

// splitKey splits a member name into its webdataset key and extension: the
// key is everything up to the first '.' of the base name, the extension
// (lower-cased) the rest.
func splitKey(name string) (key, ext string) {
	dir, base := path.Split(name)
	i := strings.IndexByte(base, '.')
	if i < 0 {
		return name, ""
	}
	return dir + base[:i], strings.ToLower(base[i+1:])
}

func isWDSImage(ext string) bool {
	for _, e := range wdsImageExts {
		if ext == e {
			return true
		}
	}
	return false
}

func isWebDataset(ms []member) bool {
	images, meta := map[string]bool{}, map[string]bool{}
	for _, m := range ms {
		if m.size < 0 {
			continue
		}
		key, ext := splitKey(m.name)
		switch {
		case isWDSImage(ext):
			images[key] = true
		case ext == "cls" || ext == "txt":
			meta[key] = true
		}
	}
	for k := range meta {
		if images[k] {
			return true
		}
	}
	return false
}

// readMember reads a small member whole.
func (t *Tar) readMember(m member, limit int64) ([]byte, error) {
	if m.err != nil {
		return nil, m.err
	}
	if m.size > limit {
		return nil, fmt.Errorf("%s: %w (%d bytes, limit %d)", m.name, ErrTooLarge, m.size, limit)
	}
	buf := make([]byte, m.size)
	if _, err := t.r.ReadAt(buf, m.off); err != nil && !(err == io.EOF && len(buf) == 0) {
		return nil, fmt.Errorf("%s: %w", m.name, err)
	}
	return buf, nil
}

func (t *Tar) webDataset(ms []member, classes []string) error {
	var group []member
	var key string
	flush := func() {
		if len(group) == 0 {
			return
		}
		t.addWDSSample(key, group, classes)
		group = group[:0]
	}
	for _, m := range ms {
		if m.size < 0 {
			continue
		}
		k, ext := splitKey(m.name)
		if ext == "" || strings.HasPrefix(path.Base(m.name), "__") {
			continue
		}
		if k != key {
			flush()
			key = k
		}
		group = append(group, m)
	}
	flush()
	if len(t.samples) == 0 {
		return fmt.Errorf("%w: no webdataset samples", ErrEmpty)
	}
	return nil
}

func (t *Tar) addWDSSample(key string, group []member, classes []string) {
	byExt := map[string]member{}
	var dup error
	for _, m := range group {
		_, ext := splitKey(m.name)
		if _, ok := byExt[ext]; ok && dup == nil {
			dup = fmt.Errorf("%w: duplicate member %s in sample %q", ErrFormat, m.name, key)
		}
		byExt[ext] = m
	}
	s := Sample{Name: key, Label: -1}
	img := member{name: key}
	found := false
	for _, e := range wdsImageExts {
		if m, ok := byExt[e]; ok {
			img, found = m, true
			s.Name = m.name
			break
		}
	}
	_, hasCls := byExt["cls"]
	_, hasTxt := byExt["txt"]
	if !found && !hasCls && !hasTxt {
		return // no image, no label, no caption: not a sample (e.g. metadata)
	}
	switch {
	case dup != nil:
		img.err = dup
	case !found:
		img.err = fmt.Errorf("%w: sample %q has no image member (%s)", ErrFormat, key, strings.Join(wdsImageExts, ", "))
	}
	if m, ok := byExt["cls"]; ok && img.err == nil {
		b, err := t.readMember(m, maxTextMember)
		if err == nil {
			s.Label, err = parseCls(b, classes)
		}
		if err != nil {
			img.err = fmt.Errorf("%s: %w", m.name, err)
		}
	}
	if m, ok := byExt["txt"]; ok && img.err == nil {
		b, err := t.readMember(m, maxTextMember)
		if err != nil {
			img.err = fmt.Errorf("%s: %w", m.name, err)
		} else {
			s.Captions = []string{strings.TrimRight(string(b), "\r\n")}
		}
	}
	t.samples = append(t.samples, s)
	t.members = append(t.members, img)
}

func parseCls(b []byte, classes []string) (int, error) {
	s := strings.TrimSpace(string(b))
	n, err := strconv.Atoi(s)
	if err != nil {
		return -1, fmt.Errorf("%w: class %q is not an integer", ErrFormat, truncate(s, 40))
	}
	if n < 0 || (classes != nil && n >= len(classes)) {
		return -1, fmt.Errorf("%w: class %d out of range (%d classes)", ErrFormat, n, len(classes))
	}
	return n, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

func (t *Tar) imageFolder(ms []member) error {
	files := map[string]member{} // later members replace earlier ones, as on extraction
	dirs := map[string]bool{}
	addParents := func(name string) {
		for d := path.Dir(name); d != "." && d != "/" && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	for _, m := range ms {
		if m.size < 0 {
			dirs[m.name] = true
		} else {
			files[m.name] = m
		}
		addParents(m.name)
	}
	children := func(parent string) (subdirs []string, nfiles int) {
		for d := range dirs {
			if path.Dir(d) == parent {
				subdirs = append(subdirs, path.Base(d))
			}
		}
		for f := range files {
			if path.Dir(f) == parent && !dirs[f] {
				nfiles++
			}
		}
		sort.Strings(subdirs)
		return
	}
	root := "."
	if top, n := children("."); len(top) == 1 && n == 0 {
		if sub, _ := children(top[0]); len(sub) > 0 {
			root = top[0]
		}
	}
	t.classes, _ = children(root)
	if len(t.classes) == 0 {
		return fmt.Errorf("%w: no class folders in the archive", ErrEmpty)
	}
	label := map[string]int{}
	for i, c := range t.classes {
		label[c] = i
	}
	type entry struct {
		dir, base, rel string
		label          int
		m              member
	}
	var list []entry
	for name, m := range files {
		if dirs[name] || !IsImageName(name) {
			continue
		}
		rel := name
		if root != "." {
			if !strings.HasPrefix(name, root+"/") {
				continue
			}
			rel = name[len(root)+1:]
		}
		class, _, ok := strings.Cut(rel, "/")
		if !ok {
			continue // a file in the root
		}
		list = append(list, entry{dir: path.Dir(rel), base: path.Base(rel), rel: rel, label: label[class], m: m})
	}
	sort.Slice(list, func(i, j int) bool {
		a, b := list[i], list[j]
		if a.label != b.label {
			return a.label < b.label
		}
		if a.dir != b.dir {
			return a.dir < b.dir
		}
		return a.base < b.base
	})
	count := make([]int, len(t.classes))
	for _, e := range list {
		t.samples = append(t.samples, Sample{Name: e.rel, Label: e.label})
		t.members = append(t.members, e.m)
		count[e.label]++
	}
	var empty []string
	for i, n := range count {
		if n == 0 {
			empty = append(empty, t.classes[i])
		}
	}
	if len(empty) > 0 {
		return fmt.Errorf("%w in class folder(s) %s (extensions %s)", ErrEmpty, strings.Join(quoteAll(empty), ", "),
			strings.Join(imageExtensions, " "))
	}
	return nil
}

// Layout returns how the archive was read.
func (t *Tar) Layout() Layout { return t.layout }

// Len returns the number of samples.
func (t *Tar) Len() int { return len(t.samples) }

// Sample returns sample i.
func (t *Tar) Sample(i int) Sample {
	s := t.samples[i]
	s.Captions = append([]string(nil), s.Captions...)
	return s
}

// Read returns the image bytes of sample i.
func (t *Tar) Read(i int) ([]byte, error) {
	b, err := t.readMember(t.members[i], t.max)
	if err != nil {
		if errors.Is(err, ErrTooLarge) || errors.Is(err, ErrFormat) {
			return nil, err
		}
		return nil, fmt.Errorf("data: %w", err)
	}
	return b, nil
}

// Classes returns the class folder names of an ImageFolder archive, nil for
// a webdataset.
func (t *Tar) Classes() []string {
	if t.layout == LayoutWebDataset {
		return nil
	}
	return t.classes
}

// Close closes the archive file.
func (t *Tar) Close() error {
	if t.closer != nil {
		return t.closer.Close()
	}
	return nil
}
