package data

import (
	"archive/tar"
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tinyclip-go/tinyclip/internal/fixtures"
)

// tarOf builds an archive: names ending in "/" are directories, the content
// of a file is its name unless given after a '=' ("a.cls=3").
func tarOf(t testing.TB, names ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		content := n
		if name, c, ok := strings.Cut(n, "="); ok {
			n, content = name, c
		}
		h := &tar.Header{Name: n, Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(content))}
		if strings.HasSuffix(n, "/") {
			h.Typeflag, h.Size, h.Mode = tar.TypeDir, 0, 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(content))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func openTarBytes(t *testing.T, b []byte, opts Options) *Tar {
	t.Helper()
	tr, err := NewTar(bytes.NewReader(b), int64(len(b)), opts)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestTarImageFolder(t *testing.T) {
	// The same tree as TestImageFolderOrder, under one top folder, members
	// in scrambled order, class directories implied by file paths only.
	var names []string
	for i := len(folderTree) - 1; i >= 0; i-- {
		names = append(names, "./top/"+folderTree[i])
	}
	tr := openTarBytes(t, tarOf(t, names...), Options{})
	if tr.Layout() != LayoutImageFolder {
		t.Fatalf("layout %v", tr.Layout())
	}
	if got := strings.Join(tr.Classes(), ","); got != "B,a,c-d" {
		t.Errorf("classes %q, want B,a,c-d", got)
	}
	sameSamples(t, samples(tr), wantFolder)
	for i := range tr.Len() {
		b, err := tr.Read(i)
		if want := "./top/" + tr.Sample(i).Name; err != nil || string(b) != want {
			t.Errorf("Read(%d) = %q, %v; want %q", i, b, err, want)
		}
	}

	// Without a single top folder the archive root holds the classes; a
	// later member replaces an earlier one of the same name.
	tr = openTarBytes(t, tarOf(t, "dog/", "cat/1.png=old", "dog/2.jpg", "cat/1.png=new", "top.png"), Options{})
	sameSamples(t, samples(tr), []Sample{{Name: "cat/1.png", Label: 0}, {Name: "dog/2.jpg", Label: 1}})
	if b, _ := tr.Read(0); string(b) != "new" {
		t.Errorf("duplicate member: read %q, want the later one", b)
	}

	for _, c := range []struct {
		name  string
		names []string
		err   string
	}{
		{"no classes", []string{"a.png", "b.png"}, "no class folders"},
		{"empty class", []string{"r/cat/1.png", "r/dog/x.txt"}, `class folder(s) "dog"`},
		{"empty archive", nil, "no class folders"},
	} {
		b := tarOf(t, c.names...)
		if _, err := NewTar(bytes.NewReader(b), int64(len(b)), Options{}); err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.err)
		}
	}
}

func TestTarWebDataset(t *testing.T) {
	b := tarOf(t,
		"__meta__.json={}",
		"s/000.jpg=J0", "s/000.cls=2\n", "s/000.txt=a cat\n",
		"s/001.png=P1", "s/001.jpg=J1", "s/001.cls= 0 ",
		"s/002.txt=no image",
		"s/003.webp=W3", "s/003.cls=x",
		"s/004.jpg=J4", "s/004.cls=7",
		"s/005.seg.png=S5", "s/005.jpeg=J5",
		"s/006.json={}",
		"s/007.jpg=A", "s/007.jpg=B",
	)
	tr := openTarBytes(t, b, Options{Classes: []string{"a", "b", "c"}})
	if tr.Layout() != LayoutWebDataset || tr.Classes() != nil {
		t.Fatalf("layout %v, classes %q", tr.Layout(), tr.Classes())
	}
	sameSamples(t, samples(tr), []Sample{
		{Name: "s/000.jpg", Label: 2, Captions: []string{"a cat"}},
		{Name: "s/001.jpg", Label: 0},
		{Name: "s/002", Label: -1},
		{Name: "s/003.webp", Label: -1},
		{Name: "s/004.jpg", Label: -1},
		{Name: "s/005.jpeg", Label: -1},
		{Name: "s/007.jpg", Label: -1},
	})
	for i, want := range []string{"J0", "J1", "no image member", "not an integer", "out of range (3 classes)", "J5", "duplicate member s/007.jpg"} {
		got, err := tr.Read(i)
		if strings.HasPrefix(want, "J") {
			if err != nil || string(got) != want {
				t.Errorf("Read(%d) = %q, %v; want %q", i, got, err, want)
			}
		} else if err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, ErrFormat) {
			t.Errorf("Read(%d): error %v, want ErrFormat with %q", i, err, want)
		}
	}
}

func TestTarMalformed(t *testing.T) {
	good := tarOf(t, "r/cat/1.png=0123456789", "r/dog/2.png")
	// Truncated inside the first member's data: the header is intact, the
	// data runs past the end.
	cut := good[:512+5]
	if _, err := NewTar(bytes.NewReader(cut), int64(len(cut)), Options{}); err == nil {
		t.Error("truncated archive accepted")
	}
	// A damaged header checksum.
	bad := append([]byte(nil), good...)
	bad[148] ^= 0x55
	if _, err := NewTar(bytes.NewReader(bad), int64(len(bad)), Options{}); !errors.Is(err, ErrFormat) {
		t.Errorf("bad checksum: %v", err)
	}
	// Over the size limit: a per-sample error.
	tr := openTarBytes(t, good, Options{MaxBytes: 5})
	if _, err := tr.Read(0); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized member: %v", err)
	}
}

// TestSharedTars reads the shared CIFAR-10 archives in place and checks them
// against the lists that come with them: cifar10-test.csv equals
// torchvision's ImageFolder sample list of the extracted cifar10-test.tar, and
// captions.csv holds the same pairs as the webdataset shard.
func TestSharedTars(t *testing.T) {
	dir := fixtures.Path(t, "data")
	classes := readLines(t, filepath.Join(dir, "zeroshot", "cifar10-classnames.txt"))

	tr, err := OpenTar(filepath.Join(dir, "train", "cifar10-test.tar"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if !equalStrings(tr.Classes(), classes) {
		t.Errorf("classes %q, want %q", tr.Classes(), classes)
	}
	list, err := OpenLabelCSV(filepath.Join(dir, "train", "cifar10-test.csv"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := samples(list)
	for i := range want {
		want[i].Name = strings.TrimPrefix(want[i].Name, "cifar10-test/")
	}
	sameSamples(t, samples(tr), want)
	png, err := tr.Read(tr.Len() - 1)
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) || !bytes.HasSuffix(png, []byte("IEND\xaeB`\x82")) {
		t.Errorf("last image: %d bytes, %v: not a whole PNG", len(png), err)
	}

	train, err := OpenTar(filepath.Join(dir, "train", "cifar10-train.tar"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer train.Close()
	if train.Len() != 2000 || train.Sample(0).Name != "airplane/0000.png" || train.Sample(1999).Name != "truck/0199.png" || train.Sample(1999).Label != 9 {
		t.Errorf("cifar10-train.tar: %d samples, first %+v, last %+v", train.Len(), train.Sample(0), train.Sample(1999))
	}

	shard, err := Open(filepath.Join(dir, "captions", "shard-000000.tar"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer shard.Close()
	caps, err := OpenCaptionCSV(filepath.Join(dir, "captions", "captions.csv"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if shard.Len() != 90 || caps.Len() != 90 {
		t.Fatalf("%d shard samples, %d CSV images; want 90", shard.Len(), caps.Len())
	}
	for i := range 90 {
		s, c := shard.Sample(i), caps.Sample(i)
		if len(s.Captions) != 1 || len(c.Captions) != 1 || s.Captions[0] != c.Captions[0] {
			t.Errorf("sample %d: shard %q, CSV %q", i, s.Captions, c.Captions)
		}
		if b, err := shard.Read(i); err != nil || !bytes.HasPrefix(b, []byte("\xff\xd8")) {
			t.Errorf("sample %d (%s): not a JPEG (%v)", i, s.Name, err)
		}
	}
	two, err := OpenCaptionCSV(filepath.Join(dir, "captions", "captions-2per-image.csv"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if two.Len() != 90 {
		t.Fatalf("captions-2per-image.csv: %d images, want 90", two.Len())
	}
	for i := range 90 {
		if s := two.Sample(i); len(s.Captions) != 2 || s.Captions[0] != caps.Sample(i).Captions[0] || s.Name != caps.Sample(i).Name {
			t.Errorf("image %d: %+v", i, s)
		}
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

func TestConcat(t *testing.T) {
	a := openTarBytes(t, tarOf(t, "0.jpg=a0", "0.cls=1", "1.jpg=a1", "1.cls=0"), Options{})
	b := openTarBytes(t, tarOf(t, "0.jpg=b0", "0.cls=0"), Options{})
	c, err := Concat([]string{"a.tar", "b.tar"}, a, b)
	if err != nil {
		t.Fatal(err)
	}
	sameSamples(t, samples(c), []Sample{{Name: "a.tar:0.jpg", Label: 1}, {Name: "a.tar:1.jpg", Label: 0}, {Name: "b.tar:0.jpg", Label: 0}})
	for i, want := range []string{"a0", "a1", "b0"} {
		if got, err := c.Read(i); err != nil || string(got) != want {
			t.Errorf("Read(%d) = %q, %v", i, got, err)
		}
	}
	folder := openTarBytes(t, tarOf(t, "cat/1.png"), Options{})
	if _, err := Concat([]string{"a", "f"}, a, folder); err == nil {
		t.Error("concatenated datasets with different class lists")
	}
}
