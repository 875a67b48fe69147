package data

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// writeTree creates files (with their path as content) and directories
// (names ending in "/") under root.
func writeTree(t *testing.T, root string, names ...string) {
	t.Helper()
	for _, n := range names {
		p := filepath.Join(root, filepath.FromSlash(n))
		if strings.HasSuffix(n, "/") {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// folderTree is an ImageFolder whose order exercises every rule of
// torchvision's make_dataset: class folders sorted by code point ("B" before
// "a"), files of the class folder before those of sub-folders, sub-folders
// ordered by their full path ("x y" sorts between "x" and "x/z" because ' '
// < '/'), extensions matched case-insensitively, other files ignored, files in
// the root ignored, an empty sub-folder harmless.
var folderTree = []string{
	"root.jpg",
	"a/2.png", "a/10.png", "a/x/z/1.jpg", "a/x/0.webp", "a/x y/0.JPEG", "a/note.txt", "a/.hidden.png",
	"a/empty/",
	"B/img.Tiff", "B/img.pgm", "B/img.bmp", "B/img.gif",
	"c-d/deep/er/f.ppm", "c-d/deep.png",
}

// wantFolder is folderTree's order, worked out by hand from the rules.
var wantFolder = []Sample{
	{Name: "B/img.Tiff", Label: 0},
	{Name: "B/img.bmp", Label: 0},
	{Name: "B/img.pgm", Label: 0},
	{Name: "a/.hidden.png", Label: 1},
	{Name: "a/10.png", Label: 1},
	{Name: "a/2.png", Label: 1},
	{Name: "a/x/0.webp", Label: 1},
	{Name: "a/x y/0.JPEG", Label: 1},
	{Name: "a/x/z/1.jpg", Label: 1},
	{Name: "c-d/deep.png", Label: 2},
	{Name: "c-d/deep/er/f.ppm", Label: 2},
}

func samples(ds Dataset) []Sample {
	out := make([]Sample, ds.Len())
	for i := range out {
		out[i] = ds.Sample(i)
	}
	return out
}

func sameSamples(t *testing.T, got, want []Sample) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d samples, want %d:\n got %v\nwant %v", len(got), len(want), got, want)
	}
	for i := range want {
		if got[i].Name != want[i].Name || got[i].Label != want[i].Label ||
			strings.Join(got[i].Captions, "\x00") != strings.Join(want[i].Captions, "\x00") {
			t.Errorf("sample %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestImageFolderOrder(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, folderTree...)
	f, err := OpenImageFolder(root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(f.Classes(), ","); got != "B,a,c-d" {
		t.Errorf("classes %q, want B,a,c-d", got)
	}
	sameSamples(t, samples(f), wantFolder)
	for i := range f.Len() {
		b, err := f.Read(i)
		if err != nil || string(b) != f.Sample(i).Name {
			t.Errorf("Read(%d) = %q, %v; want the file's content %q", i, b, err, f.Sample(i).Name)
		}
	}
}

// TestImageFolderTorchvisionOrder checks the order against torchvision's
// make_dataset, transcribed in Python (os.walk(followlinks=True), sorted
// walk tuples, sorted file names, lower-cased extension test), when a
// Python interpreter is available.
func TestImageFolderTorchvisionOrder(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("TINYCLIP_REQUIRE_REFCLIP") != "" {
			t.Fatal("TINYCLIP_REQUIRE_REFCLIP is set but python3 is not installed")
		}
		t.Skip("python3 not found: only the hand-worked order of TestImageFolderOrder is checked")
	}
	root := t.TempDir()
	writeTree(t, root, folderTree...)
	// A symbolic link to a directory is followed, as with followlinks=True.
	if err := os.Symlink(filepath.Join(root, "a", "x"), filepath.Join(root, "c-d", "link")); err != nil {
		t.Fatal(err)
	}
	const script = `
import os, sys, json
EXT = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
root = sys.argv[1]
classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
out = []
for ci, c in enumerate(classes):
    for r, _, fnames in sorted(os.walk(os.path.join(root, c), followlinks=True)):
        for f in sorted(fnames):
            p = os.path.join(r, f)
            if p.lower().endswith(EXT):
                out.append([os.path.relpath(p, root), ci])
print(json.dumps({"classes": classes, "samples": out}))
`
	out, err := exec.Command(py, "-c", script, root).Output()
	if err != nil {
		t.Fatalf("python3: %v", err)
	}
	var ref struct {
		Classes []string
		Samples [][2]any
	}
	if err := json.Unmarshal(out, &ref); err != nil {
		t.Fatal(err)
	}
	var want []Sample
	for _, s := range ref.Samples {
		want = append(want, Sample{Name: s[0].(string), Label: int(s[1].(float64))})
	}
	f, err := OpenImageFolder(root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !equalStrings(f.Classes(), ref.Classes) {
		t.Errorf("classes %q, Python %q", f.Classes(), ref.Classes)
	}
	sameSamples(t, samples(f), want)
}

func TestImageFolderErrors(t *testing.T) {
	t.Run("empty", func(t *testing.T) {
		_, err := OpenImageFolder(t.TempDir(), Options{})
		if !errors.Is(err, ErrEmpty) || !strings.Contains(err.Error(), "no class sub-folders") {
			t.Errorf("got %v", err)
		}
	})
	t.Run("class without images", func(t *testing.T) {
		root := t.TempDir()
		writeTree(t, root, "cat/1.png", "dog/readme.txt", "owl/")
		_, err := OpenImageFolder(root, Options{})
		if !errors.Is(err, ErrEmpty) || !strings.Contains(err.Error(), `"dog", "owl"`) {
			t.Errorf("got %v", err)
		}
	})
	t.Run("missing", func(t *testing.T) {
		_, err := Open(filepath.Join(t.TempDir(), "nope"), Options{})
		if !errors.Is(err, os.ErrNotExist) {
			t.Errorf("got %v", err)
		}
	})
	t.Run("link cycle", func(t *testing.T) {
		root := t.TempDir()
		writeTree(t, root, "cat/1.png")
		if err := os.Symlink(filepath.Join(root, "cat"), filepath.Join(root, "cat", "loop")); err != nil {
			t.Fatal(err)
		}
		f, err := OpenImageFolder(root, Options{})
		if err != nil || f.Len() != 1 {
			t.Errorf("got %v samples, %v; want 1", f, err)
		}
	})
	t.Run("unreadable and oversized files are per-sample errors", func(t *testing.T) {
		root := t.TempDir()
		writeTree(t, root, "cat/1.png", "cat/2.png", "cat/3.png")
		if err := os.Symlink(filepath.Join(root, "gone.png"), filepath.Join(root, "cat", "0.png")); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "cat", "2.png"), bytes.Repeat([]byte("x"), 100), 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := OpenImageFolder(root, Options{MaxBytes: 50})
		if err != nil {
			t.Fatal(err)
		}
		if f.Len() != 4 {
			t.Fatalf("%d samples, want 4 (the broken link counts as a file)", f.Len())
		}
		if _, err := f.Read(0); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("broken link: %v", err)
		}
		if _, err := f.Read(2); !errors.Is(err, ErrTooLarge) {
			t.Errorf("oversized: %v", err)
		}
		if b, err := f.Read(3); err != nil || string(b) != "cat/3.png" {
			t.Errorf("good file: %q, %v", b, err)
		}
	})
}
