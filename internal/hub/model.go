package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
)

// Files a model snapshot may need, in order of preference.
var (
	hfWeights       = []string{"model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json"}
	openCLIPWeights = []string{"open_clip_model.safetensors", "open_clip_pytorch_model.safetensors", "open_clip_pytorch_model.bin"}
)

// DownloadModel fetches what loading a CLIP model from repo at revision
// needs and returns the snapshot directory: config.json (else
// open_clip_config.json), the weights (model.safetensors, else its sharded
// index and shards, else pytorch_model.bin or its shards; for open_clip
// repositories open_clip_model.safetensors, else open_clip_pytorch_model.bin),
// the tokenizer (tokenizer.json, else vocab.json and merges.txt, if present)
// and preprocessor_config.json (if present). The revision is resolved to a
// commit by the first file, and every other file is fetched at that commit.
func (c *Client) DownloadModel(ctx context.Context, repo, revision string) (string, error) {
	if revision == "" {
		revision = "main"
	}
	// get fetches an optional file: "" when the repository has none, or
	// when it is not cached and the hub may not be asked (notCached is set).
	var notCached error
	get := func(name string) (string, error) {
		p, err := c.Download(ctx, repo, revision, name)
		switch {
		case errors.Is(err, ErrEntryNotFound):
			return "", nil
		case errors.Is(err, ErrNotCached):
			if notCached == nil {
				notCached = err
			}
			return "", nil
		}
		return p, err
	}
	cfg, err := get("config.json")
	if err != nil {
		return "", err
	}
	weights := hfWeights
	if cfg == "" {
		if cfg, err = get("open_clip_config.json"); err != nil {
			return "", err
		}
		if cfg == "" {
			if notCached != nil {
				return "", notCached
			}
			return "", fmt.Errorf("%w: %s@%s has neither config.json nor open_clip_config.json", ErrNotFound, repo, revision)
		}
		weights = openCLIPWeights
	}
	snap := filepath.Dir(cfg)
	// Pin the commit the first file resolved to.
	revision = filepath.Base(snap)

	var found string
	for _, w := range weights {
		p, err := get(w)
		if err != nil {
			return "", err
		}
		if p == "" {
			continue
		}
		found = w
		if path.Ext(w) == ".json" { // a sharded checkpoint: fetch the shards
			shards, err := readShardIndex(p)
			if err != nil {
				return "", err
			}
			for _, s := range shards {
				if _, err := c.Download(ctx, repo, revision, path.Join(path.Dir(w), s)); err != nil {
					return "", err
				}
			}
		}
		break
	}
	if found == "" {
		if notCached != nil {
			return "", notCached
		}
		return "", fmt.Errorf("%w: %s@%s has none of the weight files %v", ErrNotFound, repo, revision, weights)
	}
	tok, err := get("tokenizer.json")
	if err != nil {
		return "", err
	}
	if tok == "" {
		vocab, err := get("vocab.json")
		if err != nil {
			return "", err
		}
		if vocab != "" {
			if _, err := get("merges.txt"); err != nil {
				return "", err
			}
		}
	}
	if filepath.Base(cfg) == "config.json" {
		if _, err := get("preprocessor_config.json"); err != nil {
			return "", err
		}
	}
	return snap, nil
}

// readShardIndex returns the shard files a *.index.json names, sorted.
func readShardIndex(p string) ([]string, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("hub: %s: %w", p, err)
	}
	if len(idx.WeightMap) == 0 {
		return nil, fmt.Errorf("hub: %s: empty weight_map", p)
	}
	set := map[string]bool{}
	for _, s := range idx.WeightMap {
		if err := checkFilename(s); err != nil {
			return nil, fmt.Errorf("hub: %s: shard %q: %w", p, s, err)
		}
		set[s] = true
	}
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	sort.Strings(out)
	return out, nil
}
