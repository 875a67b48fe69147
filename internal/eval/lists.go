package eval

import (
	"embed"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"unicode/utf8"
)

// The lists are copies of shared/data/zeroshot (see its README for sources):
// the official class names and prompt templates.
//
//go:embed lists/*.txt
var lists embed.FS

var classSets = map[string]string{
	"imagenet": "imagenet1k-classnames.txt",
	"cifar10":  "cifar10-classnames.txt",
	"cifar100": "cifar100-classnames.txt",
}

var templateSets = map[string]string{
	"openai80": "imagenet-templates-openai80.txt",
	"simple7":  "imagenet-templates-simple7.txt",
	"cifar18":  "cifar-templates-18.txt",
}

// ClassSetNames returns the names of the built-in class lists: imagenet
// (the 1000 OpenAI ImageNet-1k names, with the two repeated names of the
// official list), cifar10 and cifar100 (CLIP's spelling, label order).
func ClassSetNames() []string { return keys(classSets) }

// TemplateSetNames returns the names of the built-in template lists:
// openai80 (the 80 OpenAI ImageNet templates), simple7 (open_clip's 7-template
// subset) and cifar18 (CLIP's 18 CIFAR-10/100 templates).
func TemplateSetNames() []string { return keys(templateSets) }

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ClassSet returns the built-in class list called name, in label order.
func ClassSet(name string) ([]string, bool) { return builtin(classSets, name) }

// TemplateSet returns the built-in template list called name, in the
// official order.
func TemplateSet(name string) ([]string, bool) { return builtin(templateSets, name) }

func builtin(m map[string]string, name string) ([]string, bool) {
	file, ok := m[strings.ToLower(name)]
	if !ok {
		return nil, false
	}
	b, err := lists.ReadFile("lists/" + file)
	if err != nil {
		return nil, false // cannot happen: the files are embedded at build time
	}
	l, err := parseLines(b)
	return l, err == nil
}

// DefaultTemplates names the template set that goes with a class set: cifar18
// for cifar10 and cifar100, openai80 otherwise (ImageNet and user lists, as
// open_clip does).
func DefaultTemplates(classSet string) string {
	switch strings.ToLower(classSet) {
	case "cifar10", "cifar100":
		return "cifar18"
	}
	return "openai80"
}

// maxListFile bounds user class and template files.
const maxListFile = 16 << 20

// ErrUnknownList is returned for a class or template argument that is
// neither a built-in list nor a readable file.
var ErrUnknownList = errors.New("eval: unknown list")

// LoadClasses returns the built-in class list called arg, or reads the file
// arg: one class name per line, UTF-8, blank lines skipped, each line kept as
// it is apart from its line ending (as the reference reads it). Repeated names
// are allowed: classes are identified by their line.
func LoadClasses(arg string) ([]string, error) {
	if l, ok := ClassSet(arg); ok {
		return l, nil
	}
	l, err := readList(arg, "class", ClassSetNames())
	if err != nil {
		return nil, err
	}
	for i, c := range l {
		if strings.TrimSpace(c) == "" {
			return nil, fmt.Errorf("eval: %s: class %d is blank", arg, i)
		}
	}
	return l, nil
}

// LoadTemplates returns the built-in template list called arg, or reads the
// file arg: one template per line with "{}" where the class name goes.
func LoadTemplates(arg string) ([]string, error) {
	if l, ok := TemplateSet(arg); ok {
		return l, nil
	}
	l, err := readList(arg, "template", TemplateSetNames())
	if err != nil {
		return nil, err
	}
	for i, t := range l {
		if !strings.Contains(t, "{}") {
			return nil, fmt.Errorf("eval: %s: template %d (%q) has no {} for the class name", arg, i+1, t)
		}
	}
	return l, nil
}

func readList(path, kind string, builtins []string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s list %q is neither built in (%s) nor an existing file",
				ErrUnknownList, kind, path, strings.Join(builtins, ", "))
		}
		return nil, fmt.Errorf("eval: %s list: %w", kind, err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return nil, fmt.Errorf("%w: %s list %s is a directory, want a file with one entry per line", ErrUnknownList, kind, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxListFile+1))
	if err != nil {
		return nil, fmt.Errorf("eval: %s list %s: %w", kind, path, err)
	}
	if len(b) > maxListFile {
		return nil, fmt.Errorf("eval: %s list %s is larger than %d bytes", kind, path, maxListFile)
	}
	l, err := parseLines(b)
	if err != nil {
		return nil, fmt.Errorf("eval: %s list %s: %w", kind, path, err)
	}
	if len(l) == 0 {
		return nil, fmt.Errorf("eval: %s list %s is empty", kind, path)
	}
	return l, nil
}

// parseLines splits UTF-8 text into its non-blank lines, without line
// endings ("\n" or "\r\n").
func parseLines(b []byte) ([]string, error) {
	b = []byte(strings.TrimPrefix(string(b), "\ufeff"))
	if !utf8.Valid(b) {
		return nil, errors.New("not valid UTF-8")
	}
	var out []string
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSuffix(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		if strings.ContainsRune(line, 0) {
			return nil, fmt.Errorf("line %d contains a NUL byte", i+1)
		}
		out = append(out, line)
	}
	return out, nil
}
