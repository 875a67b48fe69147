package eval

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tinyclip-go/tinyclip/internal/fixtures"
)

// TestBuiltinLists checks the embedded lists against the shared originals,
// byte for byte, and the counts and quirks their README states.
func TestBuiltinLists(t *testing.T) {
	dir := fixtures.Path(t, "data", "zeroshot")
	for _, c := range []struct {
		name, file string
		n          int
		classes    bool
	}{
		{"imagenet", "imagenet1k-classnames.txt", 1000, true},
		{"cifar10", "cifar10-classnames.txt", 10, true},
		{"cifar100", "cifar100-classnames.txt", 100, true},
		{"openai80", "imagenet-templates-openai80.txt", 80, false},
		{"simple7", "imagenet-templates-simple7.txt", 7, false},
		{"cifar18", "cifar-templates-18.txt", 18, false},
	} {
		want, err := os.ReadFile(filepath.Join(dir, c.file))
		if err != nil {
			t.Fatal(err)
		}
		got, err := lists.ReadFile("lists/" + c.file)
		if err != nil || string(got) != string(want) {
			t.Errorf("%s: embedded copy differs from %s (%v)", c.name, c.file, err)
		}
		var l []string
		var ok bool
		if c.classes {
			l, ok = ClassSet(c.name)
		} else {
			l, ok = TemplateSet(c.name)
		}
		if !ok || len(l) != c.n || strings.Join(l, "\n")+"\n" != string(want) {
			t.Errorf("%s: %d entries (ok %v), want the %d lines of the file", c.name, len(l), ok, c.n)
		}
		// The loaders accept the built-in name and the file alike.
		load := LoadTemplates
		if c.classes {
			load = LoadClasses
		}
		for _, arg := range []string{c.name, strings.ToUpper(c.name), filepath.Join(dir, c.file)} {
			if l2, err := load(arg); err != nil || strings.Join(l2, "\n") != strings.Join(l, "\n") {
				t.Errorf("load(%q): %d entries, %v", arg, len(l2), err)
			}
		}
	}
	in, _ := ClassSet("imagenet")
	if in[657] != "missile" || in[744] != "missile" || in[836] != "sunglasses" || in[837] != "sunglasses" {
		t.Error("the repeated ImageNet names are not at 657/744 and 836/837")
	}
	if DefaultTemplates("cifar100") != "cifar18" || DefaultTemplates("imagenet") != "openai80" || DefaultTemplates("my.txt") != "openai80" {
		t.Error("DefaultTemplates")
	}
}

func TestLoadListErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if l, err := LoadClasses(write("ok.txt", "\ufeffcat\r\n\n  \nsea lion\ncat\n")); err != nil || strings.Join(l, "|") != "cat|sea lion|cat" {
		t.Errorf("classes file: %q, %v", l, err)
	}
	if l, err := LoadTemplates(write("t.txt", "a photo of a {}.\nitap of {}")); err != nil || len(l) != 2 {
		t.Errorf("templates file: %q, %v", l, err)
	}
	for _, c := range []struct {
		name string
		err  func() error
		want string
	}{
		{"unknown name", func() error { _, err := LoadClasses("imagenet21k"); return err }, "neither built in (cifar10, cifar100, imagenet) nor an existing file"},
		{"missing templates", func() error { _, err := LoadTemplates(filepath.Join(dir, "none.txt")); return err }, "template list"},
		{"empty file", func() error { _, err := LoadClasses(write("empty.txt", "\n \n")); return err }, "is empty"},
		{"directory", func() error { _, err := LoadClasses(dir); return err }, "is a directory"},
		{"no placeholder", func() error { _, err := LoadTemplates(write("bad.txt", "a photo of a {}.\na photo\n")); return err }, `template 2 ("a photo") has no {}`},
		{"not UTF-8", func() error { _, err := LoadClasses(write("latin1.txt", "caf\xe9\n")); return err }, "not valid UTF-8"},
	} {
		err := c.err()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
	if _, err := LoadClasses("imagenet21k"); !errors.Is(err, ErrUnknownList) {
		t.Errorf("unknown list: %v does not wrap ErrUnknownList", err)
	}
}
