package hub

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/tinyclip-go/tinyclip/internal/config"
)

// Resolve turns a model reference into a local path that tinyclip.Load
// opens, fetching it when needed. ref is, in order of precedence:
//
//   - an existing file or directory: returned as it is;
//   - an http(s) URL: fetched with DownloadURL (the zoo's release files);
//   - a name from the model zoo (spec §10), optionally with "@revision": a
//     config name ("TinyCLIP-ViT-8M-16-Text-3M"), release name
//     ("TinyCLIP-ViT-8M-16-Text-3M-YFCC15M") or Hugging Face repository id
//     of the zoo is fetched from its Hugging Face repository with
//     DownloadModel; a release without one, or a release file name
//     ("TinyCLIP-ViT-40M-32-Text-19M-LAION400M.pt"), from its release URL;
//   - a Hugging Face repository id "org/name[@revision]": DownloadModel.
func (c *Client) Resolve(ctx context.Context, ref string) (string, error) {
	if ref == "" {
		return "", errors.New("hub: empty model reference")
	}
	if _, err := os.Stat(ref); err == nil {
		return ref, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	if strings.HasPrefix(ref, "https://") || strings.HasPrefix(ref, "http://") {
		return c.DownloadURL(ctx, ref)
	}
	repo, rev := ref, ""
	if i := strings.LastIndexByte(ref, '@'); i > 0 {
		repo, rev = ref[:i], ref[i+1:]
		if rev == "" {
			return "", fmt.Errorf("hub: %q: empty revision after @", ref)
		}
	}
	if info, rel, ok := config.LookupRelease(repo); ok {
		isFile := rel != nil && strings.EqualFold(repo, rel.File)
		if rel == nil {
			rel = preferredRelease(info)
		}
		switch {
		case rel == nil:
			return "", fmt.Errorf("hub: %s has no published checkpoint to download: pass a local checkpoint", info.Name)
		case rel.HFRepo != "" && !isFile:
			return c.DownloadModel(ctx, rel.HFRepo, rev)
		case rel.URL != "":
			if rev != "" {
				return "", fmt.Errorf("hub: %q: release files have no revisions", ref)
			}
			return c.DownloadURL(ctx, rel.URL)
		}
		return "", fmt.Errorf("hub: %s (%s) has no download location: pass a local checkpoint", info.Name, rel.Tag)
	}
	if !IsRepoID(repo) {
		return "", fmt.Errorf("hub: model %q: no such file or directory, and not a zoo model name (see 'tinyclip models'), Hugging Face repository id (org/name) or URL", ref)
	}
	return c.DownloadModel(ctx, repo, rev)
}

// preferredRelease picks the release a bare model name means: the first
// with a Hugging Face repository, else the first with a URL.
func preferredRelease(info *config.ModelInfo) *config.Release {
	for i := range info.Releases {
		if info.Releases[i].HFRepo != "" {
			return &info.Releases[i]
		}
	}
	for i := range info.Releases {
		if info.Releases[i].URL != "" {
			return &info.Releases[i]
		}
	}
	return nil
}
