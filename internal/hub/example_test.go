package hub_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tinyclip-go/tinyclip/internal/hub"
	"github.com/tinyclip-go/tinyclip/internal/hub/hubtest"
)

// A model repository is fetched into the huggingface_hub cache layout; the
// snapshot folder is what tinyclip.Load opens.
func ExampleClient_DownloadModel() {
	srv := hubtest.New(hubtest.Repo{ID: "acme/tiny-clip", Files: map[string][]byte{
		"config.json":       []byte(`{"architectures": ["CLIPModel"]}`),
		"model.safetensors": []byte("weights"),
		"README.md":         []byte("not needed to load"),
	}})
	defer srv.Close()
	cache, _ := os.MkdirTemp("", "hub")
	defer os.RemoveAll(cache)

	c := hub.NewClient()
	c.Endpoint, c.CacheDir, c.Offline = srv.URL, cache, false
	snap, err := c.DownloadModel(context.Background(), "acme/tiny-clip", "main")
	if err != nil {
		fmt.Println(err)
		return
	}
	rel, _ := filepath.Rel(cache, snap)
	fmt.Println(filepath.Dir(filepath.Dir(rel)))
	entries, _ := os.ReadDir(snap)
	for _, e := range entries {
		target, _ := os.Readlink(filepath.Join(snap, e.Name()))
		fmt.Println(e.Name(), "->", filepath.Dir(target))
	}
	// Output:
	// models--acme--tiny-clip
	// config.json -> ../../blobs
	// model.safetensors -> ../../blobs
}
