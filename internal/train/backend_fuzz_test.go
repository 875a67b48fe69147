package train

import (
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParseBackend: any --backend value is either refused with an error or
// parsed into a spec whose String form parses back to the same spec; an
// accepted XLA spec names a plugin that is a plain name or an absolute
// path, and FindPlugin on it with an empty search never panics.
func FuzzParseBackend(f *testing.F) {
	for _, s := range []string{"", "go", " go ", "xla", "xla:", "xla:cuda", "xla:cpu", "xla:/opt/p.so",
		"xla:cuda,tf32=true,memory_fraction=0.9", "xla:cuda,,", "xla:lib/p.so", "xla:cuda,a b", "xla:*", "xla:../x", "gpu"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseBackend(in)
		if err != nil {
			return
		}
		again, err := ParseBackend(s.String())
		if err != nil || again != s {
			t.Fatalf("ParseBackend(%q) = %+v; its String %q parses to %+v, %v", in, s, s.String(), again, err)
		}
		switch s.Kind {
		case "go":
			if s.Plugin != "" || s.Options != "" {
				t.Fatalf("go spec with plugin fields: %+v", s)
			}
		case "xla":
			if s.Plugin == "" || strings.Contains(s.Plugin, ",") ||
				(strings.ContainsAny(s.Plugin, "/\\") && !filepath.IsAbs(s.Plugin)) {
				t.Fatalf("ParseBackend(%q): plugin %q", in, s.Plugin)
			}
			_, _ = FindPlugin(s.Plugin, &PluginSearch{})
		default:
			t.Fatalf("ParseBackend(%q): kind %q", in, s.Kind)
		}
	})
}
