//go:build xla && cgo

package train

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/gomlx/go-xla/compute/xla"
	"github.com/gomlx/go-xla/installer"
)

// This file adds GoMLX's XLA backend (go-xla, PJRT plugins loaded with
// dlopen) to binaries built with the xla tag and cgo.

func init() {
	xlaBackend = newXLABackend
	// Plugins are found by FindPlugin and given by absolute path; go-xla
	// never downloads on its own.
	xla.EnableAutoInstall(false)
}

// newXLABackend finds the plugin of s (downloading it with go-xla's
// installer only when o.AllowDownload) and creates the backend, with
// tf32=false unless the spec sets tf32.
func newXLABackend(s BackendSpec, o BackendOptions) (*Backend, error) {
	search := o.Search
	if search == nil {
		search = DefaultPluginSearch()
	}
	path, err := FindPlugin(s.Plugin, search)
	if err != nil {
		var nf *PluginNotFoundError
		if !errors.As(err, &nf) || !o.AllowDownload || strings.HasPrefix(s.Plugin, "/") {
			return nil, fmt.Errorf("train: backend %s: %w", s, err)
		}
		if ierr := installer.AutoInstallPlugin(s.Plugin, "", true, installer.Normal); ierr != nil {
			return nil, fmt.Errorf("train: backend %s: %v\ndownload (--allow-download) failed: %w", s, err, ierr)
		}
		if path, err = FindPlugin(s.Plugin, search); err != nil {
			return nil, fmt.Errorf("train: backend %s: after the download: %w", s, err)
		}
	}
	if isJAXPlugin(path) && os.Getenv("GOPJRT_CUDA_CHECKS") == "" {
		// JAX's plugin finds its CUDA libraries itself; go-xla's check
		// for an nvidia/ folder next to it would only warn.
		os.Setenv("GOPJRT_CUDA_CHECKS", "0")
	}
	opts := s.Options
	if !hasOption(opts, "tf32") {
		opts = joinOptions(opts, "tf32=false")
	}
	b, err := xla.New(path + "," + opts)
	if err != nil {
		return nil, fmt.Errorf("train: backend %s: plugin %s: %w", s, path, err)
	}
	return &Backend{Backend: b, Spec: s, PluginPath: path}, nil
}

// hasOption reports whether a comma-separated option list sets key (as
// key, key=value or nokey).
func hasOption(opts, key string) bool {
	for _, o := range strings.Split(opts, ",") {
		k, _, _ := strings.Cut(o, "=")
		if k == key || k == "no"+key {
			return true
		}
	}
	return false
}

// joinOptions appends an option to a comma-separated list.
func joinOptions(opts, o string) string {
	if opts == "" {
		return o
	}
	return opts + "," + o
}
