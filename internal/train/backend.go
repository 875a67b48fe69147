package train

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/gobackend"
)

// BackendEnv names the environment variable that selects the backend
// NewStudent (and everything built on it) uses when no backend is given
// explicitly: a BackendSpec ("go", "xla:cuda", ...). Unset means "go".
const BackendEnv = "TINYCLIP_BACKEND"

// ErrNoXLA is returned (wrapped) for an XLA backend by a binary built
// without XLA support (the xla build tag and cgo).
var ErrNoXLA = errors.New("this binary was built without XLA support")

// xlaHowTo tells how to get an XLA build.
const xlaHowTo = "rebuild with 'CGO_ENABLED=1 GOEXPERIMENT=simd go build -tags xla ./cmd/tinyclip' " +
	"(needs gcc; see docs/distillation.md, section GPU)"

// BackendSpec is a parsed backend selection, the value of --backend:
//
//	go                 GoMLX's pure-Go backend (the default)
//	xla:cpu            XLA with a CPU PJRT plugin
//	xla:cuda           XLA with the CUDA PJRT plugin
//	xla:/path/p.so     XLA with the PJRT plugin at that absolute path
//
// An XLA spec may end in comma-separated plugin options passed to go-xla
// ("xla:cuda,memory_fraction=0.9"); tf32 defaults to false (float32 matrix
// products in full float32) unless an option sets it.
type BackendSpec struct {
	// Kind is "go" or "xla".
	Kind string
	// Plugin is, for XLA, "cpu", "cuda", another plugin name, or an
	// absolute path to a plugin file.
	Plugin string
	// Options are the plugin options after the first comma ("" if none).
	Options string
}

// String returns the spec in the form ParseBackend reads.
func (s BackendSpec) String() string {
	if s.Kind != "xla" {
		return "go"
	}
	out := "xla:" + s.Plugin
	if s.Options != "" {
		out += "," + s.Options
	}
	return out
}

// ParseBackend parses a backend selection (see BackendSpec). The empty
// string means "go".
func ParseBackend(s string) (BackendSpec, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "" || s == "go":
		return BackendSpec{Kind: "go"}, nil
	case s == "xla":
		return BackendSpec{}, fmt.Errorf("train: backend %q: name the plugin: xla:cuda, xla:cpu or xla:/path/to/plugin.so", s)
	case strings.HasPrefix(s, "xla:"):
		rest := strings.TrimPrefix(s, "xla:")
		plugin, opts, _ := strings.Cut(rest, ",")
		if plugin == "" {
			return BackendSpec{}, fmt.Errorf("train: backend %q: no plugin after xla:", s)
		}
		if strings.ContainsAny(plugin, "/\\") && !filepath.IsAbs(plugin) {
			return BackendSpec{}, fmt.Errorf("train: backend %q: a plugin path must be absolute", s)
		}
		for _, o := range strings.Split(opts, ",") {
			if strings.ContainsAny(o, " \t\n") {
				return BackendSpec{}, fmt.Errorf("train: backend %q: malformed plugin option %q", s, o)
			}
		}
		return BackendSpec{Kind: "xla", Plugin: plugin, Options: opts}, nil
	}
	return BackendSpec{}, fmt.Errorf("train: backend %q: want go, xla:cuda, xla:cpu or xla:/path/to/plugin.so", s)
}

// BackendOptions configure NewBackend.
type BackendOptions struct {
	// AllowDownload lets go-xla download a missing PJRT plugin (from
	// GitHub or PyPI) when discovery finds none. Off, nothing is ever
	// downloaded.
	AllowDownload bool
	// Search overrides where plugins are looked for (nil:
	// DefaultPluginSearch()).
	Search *PluginSearch
}

// Backend is a created GoMLX backend and how it was found.
type Backend struct {
	compute.Backend
	// Spec is the selection it was made from.
	Spec BackendSpec
	// PluginPath is the PJRT plugin file an XLA backend loaded ("" for
	// the Go backend).
	PluginPath string
}

// Name describes the backend for logs and checkpoints: "go", or
// "xla:<plugin>" with the plugin's file for XLA.
func (b *Backend) Name() string {
	if b.Spec.Kind != "xla" {
		return "go"
	}
	if b.PluginPath != "" {
		return "xla:" + b.PluginPath
	}
	return b.Spec.String()
}

// xlaBackend creates an XLA backend; set by the xla build (backend_xla.go).
var xlaBackend func(spec BackendSpec, o BackendOptions) (*Backend, error)

// XLA reports whether this binary can create XLA backends (built with the
// xla tag and cgo).
func XLA() bool { return xlaBackend != nil }

// goBackend is the process-wide pure-Go GoMLX backend. Operations run one
// after the other (ops_sequential), each parallelised inside: GoMLX's
// parallel op scheduling deadlocks with GOMAXPROCS=1 (design.md §3.2) and
// gains little on few cores.
var goBackend = sync.OnceValues(func() (compute.Backend, error) {
	return gobackend.New("ops_sequential")
})

// NewBackend creates the backend a spec names (see ParseBackend). The Go
// backend is shared by the whole process; an XLA backend loads its plugin,
// found by FindPlugin, and owns its devices. Without XLA support in the
// binary an XLA spec fails with an error wrapping ErrNoXLA.
func NewBackend(spec string, o BackendOptions) (*Backend, error) {
	s, err := ParseBackend(spec)
	if err != nil {
		return nil, err
	}
	if s.Kind == "go" {
		b, err := goBackend()
		if err != nil {
			return nil, fmt.Errorf("train: GoMLX backend: %w", err)
		}
		return &Backend{Backend: b, Spec: s}, nil
	}
	if xlaBackend == nil {
		return nil, fmt.Errorf("train: backend %s: %w: %s", s, ErrNoXLA, xlaHowTo)
	}
	return xlaBackend(s, o)
}

// CheckBackend reports, without creating anything, a backend selection
// this binary cannot serve: a malformed spec, or XLA without XLA support
// (wrapping ErrNoXLA). Plugins are looked for only by NewBackend.
func CheckBackend(spec string) error {
	s, err := ParseBackend(spec)
	if err != nil {
		return err
	}
	if s.Kind == "xla" && xlaBackend == nil {
		return fmt.Errorf("train: backend %s: %w: %s", s, ErrNoXLA, xlaHowTo)
	}
	return nil
}

// defaultBackend is the backend NewStudent uses: the one BackendEnv names,
// else the Go backend.
var defaultBackend = sync.OnceValues(func() (compute.Backend, error) {
	spec := os.Getenv(BackendEnv)
	if spec == "" || spec == "go" {
		return goBackend()
	}
	b, err := NewBackend(spec, BackendOptions{})
	if err != nil {
		return nil, fmt.Errorf("%s=%s: %w", BackendEnv, spec, err)
	}
	return b, nil
})

// unwrapBackend returns the GoMLX backend inside a *Backend (GoMLX may
// look at the concrete type), or b itself.
func unwrapBackend(b compute.Backend) compute.Backend {
	if w, ok := b.(*Backend); ok && w != nil {
		return w.Backend
	}
	return b
}

// Backend returns the backend the student's graphs run on.
func (s *Student) Backend() compute.Backend { return s.backend }

// isGoBackend reports GoMLX's pure-Go backend (one device, no
// collectives).
func isGoBackend(b compute.Backend) bool {
	b = unwrapBackend(b)
	if g, err := goBackend(); err == nil && b == g {
		return true
	}
	return strings.HasPrefix(strings.ToLower(b.Name()), "go")
}
