package train

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// PluginPathEnv is the environment variable of PJRT plugin directories
// (':'-separated) that go-xla also reads.
const PluginPathEnv = "PJRT_PLUGIN_LIBRARY_PATH"

// PluginSearch says where FindPlugin looks for a PJRT plugin, in its
// order: LibraryPath, InstallDirs, then the JAX plugin folders of the
// Python site-packages directories (Python's own answer first, then
// SitePackages).
type PluginSearch struct {
	// LibraryPath is PJRT_PLUGIN_LIBRARY_PATH: directories separated by
	// ':'.
	LibraryPath string
	// InstallDirs are go-xla's install folders (~/.local/lib/go-xla and
	// its nvidia/ subfolder, /usr/local/lib/go-xla, ...).
	InstallDirs []string
	// Python, if set, asks a Python interpreter for its site-packages
	// directories (DefaultPluginSearch runs python3 -c).
	Python func() ([]string, error)
	// SitePackages are further site-packages directories, scanned in
	// order.
	SitePackages []string
}

// PluginNotFoundError reports a plugin that is nowhere FindPlugin looked.
type PluginNotFoundError struct {
	// Name is the plugin asked for ("cuda", "cpu", or a path).
	Name string
	// Looked lists every file or directory examined, in order.
	Looked []string
}

func (e *PluginNotFoundError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "no PJRT plugin %q found; looked in (in this order):", e.Name)
	for _, l := range e.Looked {
		b.WriteString("\n  ")
		b.WriteString(l)
	}
	if len(e.Looked) == 0 {
		b.WriteString(" nowhere")
	}
	b.WriteString("\ngive its path (--backend xla:/path/to/plugin.so), set " + PluginPathEnv +
		", install JAX's CUDA plugin (pip install jax-cuda13-pjrt) or pass --allow-download")
	return b.String()
}

// DefaultPluginSearch returns the search of this machine: the environment's
// PJRT_PLUGIN_LIBRARY_PATH, go-xla's install folders under the home
// directory and /usr/local/lib, python3's site-packages, and the usual
// site-packages locations (virtual environments, conda, ~/.local, /usr,
// /usr/local, /opt/*).
func DefaultPluginSearch() *PluginSearch {
	home, _ := os.UserHomeDir()
	return defaultPluginSearch(home, "/", os.Getenv, pythonSitePackages)
}

// defaultPluginSearch builds the default search with system paths under
// root ("/" normally; a test directory in tests).
func defaultPluginSearch(home, root string, getenv func(string) string, python func() ([]string, error)) *PluginSearch {
	sys := func(p string) string { return filepath.Join(root, p) }
	s := &PluginSearch{LibraryPath: getenv(PluginPathEnv), Python: python}
	var homes []string
	if home != "" {
		homes = append(homes, filepath.Join(home, ".local", "lib"))
	}
	homes = append(homes, sys("/usr/local/lib"))
	for _, lib := range homes {
		s.InstallDirs = append(s.InstallDirs,
			filepath.Join(lib, "go-xla"), filepath.Join(lib, "go-xla", "nvidia"), filepath.Join(lib, "gomlx", "pjrt"))
	}
	var patterns []string
	for _, env := range []string{"VIRTUAL_ENV", "CONDA_PREFIX"} {
		if p := getenv(env); p != "" {
			patterns = append(patterns, filepath.Join(p, "lib", "python3*", "site-packages"))
		}
	}
	if home != "" {
		patterns = append(patterns, filepath.Join(home, ".local", "lib", "python3*", "site-packages"))
	}
	patterns = append(patterns,
		sys("/usr/local/lib/python3*/site-packages"), sys("/usr/local/lib/python3*/dist-packages"),
		sys("/usr/lib/python3/dist-packages"), sys("/usr/lib/python3*/site-packages"), sys("/usr/lib/python3*/dist-packages"),
		sys("/opt/*/lib/python3*/site-packages"), sys("/opt/*/.venv/lib/python3*/site-packages"),
		sys("/opt/*/venv/lib/python3*/site-packages"))
	for _, p := range patterns {
		m, _ := filepath.Glob(p)
		slices.Sort(m)
		s.SitePackages = append(s.SitePackages, m...)
	}
	return s
}

// pythonSitePackages asks python3 (else python) for its site-packages
// directories; it gives up after 10 seconds.
func pythonSitePackages() ([]string, error) {
	exe, err := exec.LookPath("python3")
	if err != nil {
		if exe, err = exec.LookPath("python"); err != nil {
			return nil, fmt.Errorf("no python3 on PATH")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const prog = "import site, sys\n" +
		"p = list(getattr(site, 'getsitepackages', lambda: [])())\n" +
		"u = getattr(site, 'getusersitepackages', lambda: '')()\n" +
		"print('\\n'.join(p + [u] + sys.path))"
	out, err := exec.CommandContext(ctx, exe, "-c", prog).Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", exe, err)
	}
	var dirs []string
	for _, l := range strings.Split(string(out), "\n") {
		l = strings.TrimSpace(l)
		if l != "" && filepath.IsAbs(l) && (strings.HasSuffix(l, "-packages")) {
			dirs = append(dirs, l)
		}
	}
	return dirs, nil
}

// pluginFileNames returns the file-name patterns of plugin name in a
// library directory (go-xla's naming; versioned CPU plugins included).
func pluginFileNames(name string) []string {
	pats := []string{
		"pjrt_c_api_" + name + "_plugin.so",
		"pjrt_c_api_" + name + "_*_plugin.so",
		"pjrt-plugin-" + name + ".so",
		"pjrt_plugin_" + name + ".so",
	}
	if name == "cuda" {
		pats = append(pats, "xla_cuda_plugin.so") // a JAX plugin folder on the library path
	}
	return pats
}

// jaxPluginDirs are the folders, relative to site-packages, of JAX's PJRT
// plugin packages for plugin name, newest first.
func jaxPluginDirs(name string) []string {
	switch name {
	case "cuda":
		return []string{filepath.Join("jax_plugins", "xla_cuda13"), filepath.Join("jax_plugins", "xla_cuda12")}
	case "rocm":
		return []string{filepath.Join("jax_plugins", "xla_rocm7"), filepath.Join("jax_plugins", "xla_rocm6")}
	}
	return nil // JAX's CPU backend is inside jaxlib, not a PJRT plugin file
}

// jaxPluginFile is the plugin file inside a JAX plugin folder.
func jaxPluginFile(name string) string {
	return "xla_" + name + "_plugin.so"
}

// isFile reports a regular file (or a link to one).
func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// FindPlugin returns the absolute path of PJRT plugin name: an absolute
// path is checked and returned; "cuda", "cpu" or another name is looked up
// in s (nil: DefaultPluginSearch()) in order — PJRT_PLUGIN_LIBRARY_PATH,
// go-xla's install folders, then jax_plugins/xla_cuda13 and xla_cuda12 of
// each site-packages directory. Nothing is downloaded. When nothing is
// found the error is a *PluginNotFoundError naming every place examined.
func FindPlugin(name string, s *PluginSearch) (string, error) {
	if name == "" {
		return "", fmt.Errorf("train: empty PJRT plugin name")
	}
	if filepath.IsAbs(name) {
		if isFile(name) {
			return name, nil
		}
		return "", &PluginNotFoundError{Name: name, Looked: []string{name + " (the --backend path: no such file)"}}
	}
	if strings.ContainsAny(name, "/\\*?[") {
		return "", fmt.Errorf("train: PJRT plugin %q: a name (cuda, cpu) or an absolute path", name)
	}
	if s == nil {
		s = DefaultPluginSearch()
	}
	var looked []string
	seen := map[string]bool{}
	inDir := func(dir, origin string) string {
		if dir == "" || seen[dir] {
			return ""
		}
		seen[dir] = true
		looked = append(looked, dir+" ("+origin+")")
		for _, pat := range pluginFileNames(name) {
			m, _ := filepath.Glob(filepath.Join(dir, pat))
			slices.Sort(m)
			for i := len(m) - 1; i >= 0; i-- { // the newest version first
				if isFile(m[i]) {
					return m[i]
				}
			}
		}
		return ""
	}
	for _, d := range strings.Split(s.LibraryPath, ":") {
		if p := inDir(d, PluginPathEnv); p != "" {
			return abs(p), nil
		}
	}
	for _, d := range s.InstallDirs {
		if p := inDir(d, "go-xla install folder"); p != "" {
			return abs(p), nil
		}
	}
	jax := jaxPluginDirs(name)
	if len(jax) == 0 {
		return "", &PluginNotFoundError{Name: name, Looked: looked}
	}
	var sites []string
	if s.Python != nil {
		if py, err := s.Python(); err != nil {
			looked = append(looked, "python site-packages: "+err.Error())
		} else {
			sites = append(sites, py...)
		}
	}
	sites = append(sites, s.SitePackages...)
	for _, site := range sites {
		for _, rel := range jax {
			d := filepath.Join(site, rel)
			if seen[d] {
				continue
			}
			seen[d] = true
			f := filepath.Join(d, jaxPluginFile(name))
			looked = append(looked, f+" (JAX plugin)")
			if isFile(f) {
				return abs(f), nil
			}
		}
	}
	return "", &PluginNotFoundError{Name: name, Looked: looked}
}

// abs makes p absolute (it already is unless a relative directory was on
// the library path).
func abs(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// isJAXPlugin reports a plugin file inside a JAX plugin package.
func isJAXPlugin(path string) bool {
	return strings.Contains(filepath.ToSlash(path), "/jax_plugins/")
}
