package data

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLabelCSV(t *testing.T) {
	classes := []string{"cat", "dog", "missile", "missile"}
	for _, c := range []struct {
		name, csv string
		classes   []string
		want      []Sample
		err       string
	}{
		{"header and indices", "path,label\nx/a.png,0\nb.jpg,1\n", nil,
			[]Sample{{Name: "x/a.png", Label: 0}, {Name: "b.jpg", Label: 1}}, ""},
		{"no header, names, blank lines, spaces, CRLF", "a.png, dog\r\n\r\n  \n\"c,d.png\",cat\r\n", classes,
			[]Sample{{Name: "a.png", Label: 1}, {Name: "c,d.png", Label: 0}}, ""},
		{"BOM and extra columns", "\ufeffpath,label,comment\na.png,3,x\n", classes,
			[]Sample{{Name: "a.png", Label: 3}}, ""},
		{"unknown name", "path,label\na.png,cow\n", classes, nil, `line 2: data: malformed input: unknown label "cow"`},
		{"name without classes", "a.png,cat\nb.png,cat\n", nil, nil, "line 2"},
		{"ambiguous name", "a.png,missile\n", classes, nil, "ambiguous class name \"missile\" (classes 2 and 3)"},
		{"out of range", "a.png,4\n", classes, nil, "label out of range: 4 (4 classes)"},
		{"negative", "path,label\na.png,-1\n", nil, nil, "line 2"},
		{"one column", "a.png\n", nil, nil, "line 1: want path,label, got 1 column(s)"},
		{"bad quoting", "a.png,1\n\"b.png,1\n", nil, nil, "line 2"},
		{"empty path", ",1\n", nil, nil, "empty path"},
		{"header only", "path,label\n", nil, nil, "no images found"},
		{"empty", "", nil, nil, "no images found"},
	} {
		t.Run(c.name, func(t *testing.T) {
			l, err := parseLabelCSV([]byte(c.csv), c.classes)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one containing %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			sameSamples(t, l.samples, c.want)
		})
	}
}

func TestCaptionCSV(t *testing.T) {
	for _, c := range []struct {
		name, csv string
		want      []Sample
		err       string
	}{
		{"header, several captions, order of first appearance",
			"image_path,caption\nb.png,a dog\na.png,\"a cat, sitting\"\nb.png,another dog\n",
			[]Sample{{Name: "b.png", Label: -1, Captions: []string{"a dog", "another dog"}},
				{Name: "a.png", Label: -1, Captions: []string{"a cat, sitting"}}}, ""},
		{"no header", "a.png,x\n", []Sample{{Name: "a.png", Label: -1, Captions: []string{"x"}}}, ""},
		{"filepath,title header", "filepath,title\na.png,x\n", []Sample{{Name: "a.png", Label: -1, Captions: []string{"x"}}}, ""},
		{"one column", "image_path,caption\na.png\n", nil, "line 2: want image_path,caption"},
		{"empty", "image_path,caption\n", nil, "no images found"},
	} {
		t.Run(c.name, func(t *testing.T) {
			l, err := parseCaptionCSV([]byte(c.csv))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one containing %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			sameSamples(t, l.samples, c.want)
		})
	}
}

func TestCSVPaths(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "img", "a.png"), "A")
	abs := writeFile(t, filepath.Join(t.TempDir(), "b.png"), "B")
	list := writeFile(t, filepath.Join(dir, "list.csv"), "path,label\nimg/a.png,0\n"+abs+",1\nimg/missing.png,0\n")
	ds, err := Open(list, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ds.Close()
	if ds.Classes() != nil {
		t.Errorf("a CSV list defines no classes, got %q", ds.Classes())
	}
	for i, want := range []string{"A", "B"} {
		b, err := ds.Read(i)
		if err != nil || string(b) != want {
			t.Errorf("Read(%d) = %q, %v; want %q (paths relative to the CSV's folder, or absolute)", i, b, err, want)
		}
	}
	if _, err := ds.Read(2); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := Open(filepath.Join(dir, "list.txt"), Options{}); err == nil {
		t.Error("opened a .txt path")
	}
}
