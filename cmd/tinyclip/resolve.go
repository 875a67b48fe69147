package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/tinyclip-go/tinyclip/internal/config"
	"github.com/tinyclip-go/tinyclip/internal/hub"
)

// resolveModel turns a --model value into a local path: the path itself if
// it exists, else a zoo name or Hugging Face repo id found in the local
// Hugging Face cache.
func resolveModel(name string) (string, error) {
	if _, err := os.Stat(name); err == nil {
		return name, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	repo, rev := hub.SplitRevision(name)
	if info, rel, ok := config.LookupRelease(repo); ok {
		if rel == nil || rel.HFRepo == "" {
			for i := range info.Releases {
				if info.Releases[i].HFRepo != "" {
					rel = &info.Releases[i]
					break
				}
			}
		}
		if rel == nil || rel.HFRepo == "" {
			url := ""
			if len(info.Releases) > 0 && info.Releases[0].URL != "" {
				url = "; download " + info.Releases[0].URL + " and pass the file with --model"
			}
			return "", fmt.Errorf("model %q: not a local path, and %s has no Hugging Face repository%s", name, info.Name, url)
		}
		repo = rel.HFRepo
	} else if !hub.IsRepoID(repo) {
		return "", fmt.Errorf("model %q: no such file or directory, and not a zoo model name (see 'tinyclip models') or Hugging Face repo id", name)
	}
	snap, err := hub.CachedSnapshot("", repo, rev)
	if err != nil {
		if errors.Is(err, hub.ErrNotCached) {
			return "", fmt.Errorf("model %q: %w.\nDownloading from the hub is not implemented yet: fetch it with `huggingface-cli download %s` "+
				"(tinyclip then finds it in the cache) or pass a local checkpoint with --model PATH", name, err, repo)
		}
		return "", err
	}
	return snap, nil
}
