package data

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/tinyclip-go/tinyclip/internal/imageproc"
)

func TestSyntheticDeterministic(t *testing.T) {
	a, err := NewSynthetic(SyntheticOptions{N: 50, Seed: 7, Size: 32})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewSynthetic(SyntheticOptions{N: 50, Seed: 7, Size: 32})
	c, _ := NewSynthetic(SyntheticOptions{N: 50, Seed: 8, Size: 32})
	differ := 0
	for i := 0; i < a.Len(); i++ {
		ia, err := a.Image(i)
		if err != nil {
			t.Fatal(err)
		}
		ib, _ := b.Image(i)
		ic, _ := c.Image(i)
		if !bytes.Equal(ia.Pix, ib.Pix) || !reflect.DeepEqual(a.Sample(i), b.Sample(i)) {
			t.Fatalf("sample %d differs between two datasets of the same seed", i)
		}
		if !bytes.Equal(ia.Pix, ic.Pix) {
			differ++
		}
		// The PNG of Read decodes to the same raster.
		raw, err := a.Read(i)
		if err != nil {
			t.Fatal(err)
		}
		dec, err := imageproc.Decode(raw, 0)
		if err != nil {
			t.Fatal(err)
		}
		if dec.Mode != imageproc.ModeRGB || !bytes.Equal(dec.Pix, ia.Pix) {
			t.Fatalf("sample %d: PNG decodes to %s, other pixels", i, dec.Mode)
		}
	}
	if differ < 45 {
		t.Errorf("only %d of 50 images differ between seeds 7 and 8", differ)
	}
}

// TestSyntheticCaptions checks that captions and labels describe the
// scene and that the pixels show the object colour.
func TestSyntheticCaptions(t *testing.T) {
	ds, _ := NewSynthetic(SyntheticOptions{N: 400, Seed: 1, Size: 48})
	classes := ds.Classes()
	if len(classes) != 16 || classes[0] != "red circle" || classes[15] != "yellow cross" {
		t.Fatalf("classes %q", classes)
	}
	seenLabel := map[int]bool{}
	seenForm := map[string]bool{}
	for i := 0; i < ds.Len(); i++ {
		s := ds.Sample(i)
		sc := ds.Scene(i)
		if len(s.Captions) != 1 || s.Captions[0] != sc.Caption {
			t.Fatalf("sample %d captions %q, scene %q", i, s.Captions, sc.Caption)
		}
		seenLabel[s.Label] = true
		colour, shape, _ := strings.Cut(classes[s.Label], " ")
		capt := s.Captions[0]
		if !strings.Contains(capt, colour+" "+shape) {
			t.Fatalf("sample %d: caption %q does not name %q", i, capt, classes[s.Label])
		}
		count := []string{"a ", "two ", "three "}[sc.Count-1]
		if !strings.Contains(capt, count) {
			t.Fatalf("sample %d: caption %q misses the count %d", i, capt, sc.Count)
		}
		if sc.Count > 1 && !strings.Contains(capt, shape+"s") && !strings.Contains(capt, "crosses") {
			t.Fatalf("sample %d: caption %q is not plural", i, capt)
		}
		form := "plain"
		switch {
		case strings.HasPrefix(capt, "a photo"):
			form = "photo"
		case strings.Contains(capt, "image with"):
			form = "image"
		case strings.Contains(capt, "background") && strings.Contains(capt, " the "):
			form = "both"
		case strings.Contains(capt, "background"):
			form = "background"
		case strings.Contains(capt, " the "):
			form = "position"
		}
		seenForm[form] = true
		m, err := ds.Image(i)
		if err != nil {
			t.Fatal(err)
		}
		// Some pixel is close to the object colour.
		want := synthColours[sc.Colour].rgb
		found := false
		for p := 0; p+3 <= len(m.Pix) && !found; p += 3 {
			d := 0
			for ch := 0; ch < 3; ch++ {
				d = max(d, abs(int(m.Pix[p+ch])-int(want[ch])))
			}
			found = d <= 8
		}
		if !found {
			t.Fatalf("sample %d (%q): no pixel of the object colour", i, capt)
		}
	}
	if len(seenLabel) != 16 {
		t.Errorf("%d of 16 classes in 400 samples", len(seenLabel))
	}
	if len(seenForm) != 6 {
		t.Errorf("caption phrasings: %v", seenForm)
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func TestParseSynthetic(t *testing.T) {
	for _, c := range []struct {
		spec   string
		ok     bool
		n      int
		seed   uint64
		hasErr bool
	}{
		{"synthetic", true, DefaultSyntheticLen, 5, false},
		{"synthetic:100", true, 100, 5, false},
		{"synthetic:100:9", true, 100, 9, false},
		{"synthetic:0", true, 0, 0, true},
		{"synthetic:x", true, 0, 0, true},
		{"synthetic:1:2:3", true, 0, 0, true},
		{"synthetic:1:-2", true, 0, 0, true},
		{"synthetics", false, 0, 0, false},
		{"data/synthetic", false, 0, 0, false},
	} {
		o, ok, err := ParseSynthetic(c.spec, 5)
		if ok != c.ok || (err != nil) != c.hasErr {
			t.Errorf("%q: ok %v err %v", c.spec, ok, err)
			continue
		}
		if ok && err == nil && (o.N != c.n || o.Seed != c.seed) {
			t.Errorf("%q: %+v", c.spec, o)
		}
	}
}

func TestExpandShards(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"a.tar", []string{"a.tar"}},
		{"s-{000..002}.tar", []string{"s-000.tar", "s-001.tar", "s-002.tar"}},
		{"s{8..10}", []string{"s8", "s9", "s10"}},
		{"{0..1}-{00..01}", []string{"0-00", "0-01", "1-00", "1-01"}},
	} {
		got, err := ExpandShards(c.in)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q: %q, %v", c.in, got, err)
		}
	}
	for _, bad := range []string{"s{1..}", "s{2..1}", "s{a..b}", "s{1..2", "s}", "{0..999999999}"} {
		if _, err := ExpandShards(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func FuzzExpandShards(f *testing.F) {
	for _, s := range []string{"a.tar", "s-{000..009}.tar", "{1..3}{0..1}", "{", "}", "{-1..2}", "{+1..2}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, err := ExpandShards(s)
		if err != nil {
			return
		}
		if len(out) == 0 || len(out) > 1<<20 {
			t.Fatalf("%q: %d names", s, len(out))
		}
		if !strings.Contains(s, "{") && (len(out) != 1 || out[0] != s) {
			t.Fatalf("%q: %q", s, out)
		}
	})
}

func FuzzParseSynthetic(f *testing.F) {
	for _, s := range []string{"synthetic", "synthetic:10", "synthetic:10:3", "synthetic:", "synthetic::", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		o, ok, err := ParseSynthetic(s, 1)
		if !ok || err != nil {
			return
		}
		if _, err := NewSynthetic(o); err != nil {
			t.Fatalf("%q parsed to %+v, which NewSynthetic refuses: %v", s, o, err)
		}
	})
}
