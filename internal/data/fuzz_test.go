package data

import (
	"bytes"
	"testing"
)

func FuzzLabelCSV(f *testing.F) {
	for _, s := range []string{
		"path,label\na.png,0\nb.png,1\n",
		"a.png,cat\n\"b,c.png\",dog\r\n",
		"\ufeffpath,label,x\na,1,2\n",
		"a.png,missile\n",
		"a\"b,1\n",
		"",
	} {
		f.Add([]byte(s))
	}
	classes := []string{"cat", "dog", "missile", "missile"}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, cl := range [][]string{nil, classes} {
			l, err := parseLabelCSV(b, cl)
			if err != nil {
				continue
			}
			if l.Len() == 0 {
				t.Fatal("no error and no samples")
			}
			for _, s := range l.samples {
				if s.Label < 0 || (cl != nil && s.Label >= len(cl)) || s.Name == "" {
					t.Fatalf("bad sample %+v", s)
				}
			}
		}
	})
}

func FuzzCaptionCSV(f *testing.F) {
	for _, s := range []string{
		"image_path,caption\na.png,a cat\na.png,another\nb.png,\"x, y\"\n",
		"a.png,x\n",
		"\"unterminated,x\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := parseCaptionCSV(b)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, s := range l.samples {
			if len(s.Captions) == 0 || seen[s.Name] || s.Name == "" {
				t.Fatalf("bad sample %+v", s)
			}
			seen[s.Name] = true
		}
	})
}

func FuzzTar(f *testing.F) {
	f.Add(tarOf(f, "r/cat/1.png", "r/dog/2.jpg", "r/dog/sub/3.webp"))
	f.Add(tarOf(f, "0.jpg", "0.cls=1", "0.txt=a cat", "1.png", "1.cls=x", "2.txt=t"))
	f.Add(tarOf(f, "cat/", "cat/a.png=x", "cat/a.png=y"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		tr, err := NewTar(bytes.NewReader(b), int64(len(b)), Options{MaxBytes: 1 << 20, Classes: []string{"a", "b"}})
		if err != nil {
			return
		}
		if tr.Len() == 0 {
			t.Fatal("no error and no samples")
		}
		for i := range tr.Len() {
			s := tr.Sample(i)
			if s.Label < -1 || s.Label >= 2 && tr.Layout() == LayoutWebDataset {
				t.Fatalf("sample %d: label %d", i, s.Label)
			}
			if data, err := tr.Read(i); err == nil && int64(len(data)) > int64(len(b)) {
				t.Fatalf("sample %d: %d bytes from a %d-byte archive", i, len(data), len(b))
			}
		}
	})
}
