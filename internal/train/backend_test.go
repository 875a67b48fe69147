package train

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseBackend(t *testing.T) {
	for _, c := range []struct {
		in   string
		want BackendSpec
		err  string
	}{
		{"", BackendSpec{Kind: "go"}, ""},
		{"go", BackendSpec{Kind: "go"}, ""},
		{" go ", BackendSpec{Kind: "go"}, ""},
		{"xla:cuda", BackendSpec{Kind: "xla", Plugin: "cuda"}, ""},
		{"xla:cpu", BackendSpec{Kind: "xla", Plugin: "cpu"}, ""},
		{"xla:/opt/p/xla_cuda_plugin.so", BackendSpec{Kind: "xla", Plugin: "/opt/p/xla_cuda_plugin.so"}, ""},
		{"xla:cuda,tf32=true,memory_fraction=0.9", BackendSpec{Kind: "xla", Plugin: "cuda", Options: "tf32=true,memory_fraction=0.9"}, ""},
		{"xla", BackendSpec{}, "name the plugin"},
		{"xla:", BackendSpec{}, "no plugin"},
		{"xla:lib/p.so", BackendSpec{}, "absolute"},
		{"xla:cuda,a b", BackendSpec{}, "malformed"},
		{"gpu", BackendSpec{}, "want go, xla:cuda"},
		{"onnx", BackendSpec{}, "want go"},
	} {
		got, err := ParseBackend(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseBackend(%q) error %v, want one containing %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseBackend(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
			continue
		}
		// String gives back a spec that parses to the same value.
		again, err := ParseBackend(got.String())
		if err != nil || again != got {
			t.Errorf("ParseBackend(%q).String() = %q does not round-trip: %+v, %v", c.in, got.String(), again, err)
		}
	}
}

// TestNewBackendWithoutXLA checks the fail-fast error of an XLA spec: in a
// build without the xla tag it wraps ErrNoXLA and says how to rebuild; in
// an xla build with nowhere to look it names the plugin it did not find.
func TestNewBackendWithoutXLA(t *testing.T) {
	for _, spec := range []string{"xla:cuda", "xla:cpu", "xla:/nonexistent/xla_cuda_plugin.so"} {
		b, err := NewBackend(spec, BackendOptions{Search: &PluginSearch{}})
		if err == nil {
			t.Errorf("NewBackend(%q) = %v, want an error", spec, b.Name())
			continue
		}
		if !XLA() {
			if !errors.Is(err, ErrNoXLA) || !strings.Contains(err.Error(), "-tags xla") {
				t.Errorf("NewBackend(%q) error %q: want ErrNoXLA with the build command", spec, err)
			}
			continue
		}
		var nf *PluginNotFoundError
		if !errors.As(err, &nf) {
			t.Errorf("NewBackend(%q) error %q: want a PluginNotFoundError", spec, err)
		}
	}
	b, err := NewBackend("go", BackendOptions{})
	if err != nil || b.Name() != "go" || b.Backend == nil {
		t.Fatalf("NewBackend(go) = %v, %v", b, err)
	}
	if _, err := NewBackend("tpu", BackendOptions{}); err == nil {
		t.Error("NewBackend(tpu) succeeded")
	}
}

// touch creates an empty file and its directories.
func touch(t *testing.T, elem ...string) string {
	t.Helper()
	p := filepath.Join(elem...)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestFindPluginOrder builds a fake tree with a CUDA plugin in every kind
// of place and removes them one by one: the flag's path, then
// PJRT_PLUGIN_LIBRARY_PATH, go-xla's install folder, the site-packages
// python reports, the scanned site-packages (xla_cuda13 before
// xla_cuda12), and finally nothing, with every place named in the error.
func TestFindPluginOrder(t *testing.T) {
	root := t.TempDir()
	flag := touch(t, root, "flag", "my_plugin.so")
	lib := touch(t, root, "lib", "pjrt_c_api_cuda_plugin.so")
	install := touch(t, root, "home", ".local", "lib", "go-xla", "nvidia", "pjrt_c_api_cuda_plugin.so")
	pySite := filepath.Join(root, "py", "site-packages")
	py13 := touch(t, pySite, "jax_plugins", "xla_cuda13", "xla_cuda_plugin.so")
	scanSite := filepath.Join(root, "opt", "torch", ".venv", "lib", "python3.12", "site-packages")
	scan12 := touch(t, scanSite, "jax_plugins", "xla_cuda12", "xla_cuda_plugin.so")
	scan13 := touch(t, scanSite, "jax_plugins", "xla_cuda13", "xla_cuda_plugin.so")
	// A directory with a plugin's name is not a plugin.
	if err := os.MkdirAll(filepath.Join(root, "decoy", "pjrt_c_api_cuda_plugin.so"), 0o755); err != nil {
		t.Fatal(err)
	}

	s := &PluginSearch{
		LibraryPath:  filepath.Join(root, "decoy") + ":" + filepath.Join(root, "empty") + ":" + filepath.Dir(lib),
		InstallDirs:  []string{filepath.Join(root, "home", ".local", "lib", "go-xla"), filepath.Dir(install)},
		Python:       func() ([]string, error) { return []string{pySite}, nil },
		SitePackages: []string{pySite, scanSite},
	}
	if got, err := FindPlugin(flag, s); err != nil || got != flag {
		t.Errorf("flag path: %q, %v; want %q", got, err, flag)
	}
	steps := []struct {
		want   string
		remove string
	}{
		{lib, lib}, {install, install}, {py13, py13}, {scan13, scan13}, {scan12, scan12},
	}
	for _, st := range steps {
		got, err := FindPlugin("cuda", s)
		if err != nil || got != st.want {
			t.Fatalf("FindPlugin(cuda) = %q, %v; want %q", got, err, st.want)
		}
		if err := os.Remove(st.remove); err != nil {
			t.Fatal(err)
		}
	}
	_, err := FindPlugin("cuda", s)
	var nf *PluginNotFoundError
	if !errors.As(err, &nf) {
		t.Fatalf("nothing left: error %v, want a PluginNotFoundError", err)
	}
	msg := err.Error()
	// Every place, in the search order.
	places := []string{
		filepath.Join(root, "decoy"), filepath.Join(root, "empty"), filepath.Dir(lib),
		filepath.Join(root, "home", ".local", "lib", "go-xla"), filepath.Dir(install),
		filepath.Join(pySite, "jax_plugins", "xla_cuda13", "xla_cuda_plugin.so"),
		filepath.Join(pySite, "jax_plugins", "xla_cuda12", "xla_cuda_plugin.so"),
		filepath.Join(scanSite, "jax_plugins", "xla_cuda13", "xla_cuda_plugin.so"),
		filepath.Join(scanSite, "jax_plugins", "xla_cuda12", "xla_cuda_plugin.so"),
	}
	last := -1
	for _, p := range places {
		i := strings.Index(msg, p+" (")
		if i < 0 {
			t.Errorf("error does not name %s:\n%s", p, msg)
			continue
		}
		if i < last {
			t.Errorf("error names %s out of order:\n%s", p, msg)
		}
		last = i
	}
	if strings.Count(msg, filepath.Join(pySite, "jax_plugins", "xla_cuda13")) != 1 {
		t.Errorf("a site-packages directory was searched twice:\n%s", msg)
	}
	for _, hint := range []string{"--backend xla:/path", PluginPathEnv, "--allow-download"} {
		if !strings.Contains(msg, hint) {
			t.Errorf("error lacks the hint %q:\n%s", hint, msg)
		}
	}

	// A missing flag path is named as such.
	_, err = FindPlugin(filepath.Join(root, "nope.so"), s)
	if !errors.As(err, &nf) || !strings.Contains(err.Error(), filepath.Join(root, "nope.so")) {
		t.Errorf("missing flag path: %v", err)
	}
	if _, err := FindPlugin("../cuda", s); err == nil {
		t.Error("a relative path was accepted as a plugin name")
	}
}

// TestFindPluginCPU: versioned CPU plugins (go-xla's installer naming) are
// found, the newest version first; JAX folders are not searched for CPU.
func TestFindPluginCPU(t *testing.T) {
	root := t.TempDir()
	touch(t, root, "go-xla", "pjrt_c_api_cpu_v0.83.1_plugin.so")
	newest := touch(t, root, "go-xla", "pjrt_c_api_cpu_v0.114.0_plugin.so")
	touch(t, root, "site", "jax_plugins", "xla_cuda13", "xla_cuda_plugin.so")
	s := &PluginSearch{InstallDirs: []string{filepath.Join(root, "go-xla")}, SitePackages: []string{filepath.Join(root, "site")}}
	// Lexical order puts v0.83.1 after v0.114.0; both are acceptable
	// plugins, and the exact one is the last in sort order.
	got, err := FindPlugin("cpu", s)
	if err != nil || filepath.Dir(got) != filepath.Dir(newest) || !strings.HasPrefix(filepath.Base(got), "pjrt_c_api_cpu_v0.") {
		t.Fatalf("FindPlugin(cpu) = %q, %v", got, err)
	}
	plain := touch(t, root, "go-xla", "pjrt_c_api_cpu_plugin.so")
	if got, err := FindPlugin("cpu", s); err != nil || got != plain {
		t.Errorf("FindPlugin(cpu) = %q, %v; want the unversioned link %q", got, err, plain)
	}
	os.RemoveAll(filepath.Join(root, "go-xla"))
	_, err = FindPlugin("cpu", s)
	if err == nil || strings.Contains(err.Error(), "jax_plugins") {
		t.Errorf("cpu without plugin: %v (JAX folders hold no CPU plugin)", err)
	}
}

// TestDefaultPluginSearch checks the default places on a fake system root:
// go-xla's folders under the home directory and /usr/local/lib, the
// site-packages globs (/opt/*/.venv as on the GPU machines, ~/.local,
// virtual environments), and that a failing python is reported.
func TestDefaultPluginSearch(t *testing.T) {
	root := t.TempDir()
	home := filepath.Join(root, "home", "u")
	env := map[string]string{"VIRTUAL_ENV": filepath.Join(root, "venv"), PluginPathEnv: "/x:/y"}
	optSite := filepath.Join(root, "opt", "torch", ".venv", "lib", "python3.12", "site-packages")
	venvSite := filepath.Join(root, "venv", "lib", "python3.11", "site-packages")
	userSite := filepath.Join(home, ".local", "lib", "python3.12", "site-packages")
	for _, d := range []string{optSite, venvSite, userSite, filepath.Join(root, "usr", "lib", "python3", "dist-packages")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	pyErr := errors.New("python exploded")
	s := defaultPluginSearch(home, root, func(k string) string { return env[k] }, func() ([]string, error) { return nil, pyErr })
	if s.LibraryPath != "/x:/y" {
		t.Errorf("LibraryPath %q", s.LibraryPath)
	}
	wantInstall := []string{
		filepath.Join(home, ".local", "lib", "go-xla"), filepath.Join(home, ".local", "lib", "go-xla", "nvidia"),
		filepath.Join(home, ".local", "lib", "gomlx", "pjrt"),
		filepath.Join(root, "usr", "local", "lib", "go-xla"), filepath.Join(root, "usr", "local", "lib", "go-xla", "nvidia"),
		filepath.Join(root, "usr", "local", "lib", "gomlx", "pjrt"),
	}
	if strings.Join(s.InstallDirs, "\n") != strings.Join(wantInstall, "\n") {
		t.Errorf("InstallDirs\n%s\nwant\n%s", strings.Join(s.InstallDirs, "\n"), strings.Join(wantInstall, "\n"))
	}
	idx := func(d string) int {
		for i, x := range s.SitePackages {
			if x == d {
				return i
			}
		}
		return -1
	}
	iv, iu, io, id := idx(venvSite), idx(userSite), idx(optSite), idx(filepath.Join(root, "usr", "lib", "python3", "dist-packages"))
	if iv < 0 || iu < 0 || io < 0 || id < 0 || !(iv < iu && iu < id && id < io) {
		t.Errorf("site-packages %q: want venv, ~/.local, /usr, /opt in that order", s.SitePackages)
	}
	plugin := touch(t, optSite, "jax_plugins", "xla_cuda13", "xla_cuda_plugin.so")
	got, err := FindPlugin("cuda", s)
	if err != nil || got != plugin {
		t.Errorf("FindPlugin(cuda) on the fake root = %q, %v; want %q", got, err, plugin)
	}
	os.Remove(plugin)
	_, err = FindPlugin("cuda", s)
	if err == nil || !strings.Contains(err.Error(), "python exploded") {
		t.Errorf("python failure not reported: %v", err)
	}
}
