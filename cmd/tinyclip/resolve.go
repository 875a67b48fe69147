package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/tinyclip-go/tinyclip/internal/hub"
)

// resolveModelCtx turns a --model value into a local path: the path itself
// if it exists, else a zoo name, Hugging Face repository id (org/name[@rev])
// or release URL, fetched into the Hugging Face cache when not there yet
// (see hub.Client.Resolve). Progress bars and notes go to stderr.
func resolveModelCtx(ctx context.Context, stderr io.Writer, name string) (string, error) {
	c := hub.NewClient()
	c.Progress = stderr
	c.Logf = func(format string, args ...any) { fmt.Fprintf(stderr, "tinyclip: "+format+"\n", args...) }
	p, err := c.Resolve(ctx, name)
	if err != nil {
		if errors.Is(err, hub.ErrNotCached) && c.Offline {
			return "", fmt.Errorf("model %q: %w (HF_HUB_OFFLINE is set: unset it to download, or pass a local checkpoint with --model PATH)", name, err)
		}
		return "", fmt.Errorf("model %q: %w", name, err)
	}
	return p, nil
}

// resolveModel is resolveModelCtx without cancellation, with progress on
// the process's stderr.
func resolveModel(name string) (string, error) {
	return resolveModelCtx(context.Background(), os.Stderr, name)
}
