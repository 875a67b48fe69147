package checkpoint

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/tinyclip-go/tinyclip/internal/checkpoint/hf"
	"github.com/tinyclip-go/tinyclip/internal/checkpoint/pickle"
	"github.com/tinyclip-go/tinyclip/internal/checkpoint/safetensors"
	"github.com/tinyclip-go/tinyclip/internal/config"
	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

// Weight file formats, as Checkpoint.Format reports them.
const (
	FormatTorchZip    = pickle.FormatZip    // "torch-zip"
	FormatTorchLegacy = pickle.FormatLegacy // "torch-legacy"
	FormatSafetensors = "safetensors"
)

var (
	// ErrUnsupportedFormat is wrapped when a path is no checkpoint this
	// package reads (unknown content, TorchScript archives, directories
	// without weights, auto-pruning snapshots with mask parameters).
	ErrUnsupportedFormat = errors.New("checkpoint: unsupported checkpoint format")
	// ErrForbiddenGlobal is wrapped when a pickle names a global outside the
	// allow-list (e.g. a training snapshot's argparse.Namespace); it is
	// pickle.ErrForbiddenGlobal.
	ErrForbiddenGlobal = pickle.ErrForbiddenGlobal
	// ErrConflict is wrapped when several stored names map to one open_clip
	// name but hold different tensors.
	ErrConflict = errors.New("checkpoint: conflicting tensors")
)

// Checkpoint is a model's weights under open_clip names, with the configs
// found next to them.
type Checkpoint struct {
	// Path is the file or directory Open was given.
	Path string
	// Format is the weight files' format: FormatTorchZip,
	// FormatTorchLegacy or FormatSafetensors.
	Format string
	// Files lists the weight files read (several for sharded weights).
	Files []string
	// Tensors maps open_clip names to tensors; their data may alias the
	// files until Close.
	Tensors map[string]*tensor.Tensor
	// Config is the model config of the directory (official config.json,
	// open_clip_config.json's model_cfg or a Hugging Face CLIPConfig); nil
	// when there is none.
	Config *config.Config
	// Preprocess is the image transform the directory declares; nil if none.
	Preprocess *PreprocessConfig
	// TokenizerPath is the tokenizer.json (preferred) or vocab.json of the
	// directory; "" if none.
	TokenizerPath string
	closers       []func() error
}

// Close releases the file mappings. The tensors must not be used after.
func (c *Checkpoint) Close() error {
	var errs []error
	for _, cl := range c.closers {
		errs = append(errs, cl())
	}
	c.closers = nil
	return errors.Join(errs...)
}

// Open reads the checkpoint at path: a weight file recognised by its content
// (torch zip "PK\x03\x04", legacy torch pickle "\x80", safetensors 8-byte
// length + "{"), or a model directory: an open_clip directory
// (open_clip_config.json), a Hugging Face CLIPModel directory (config.json
// with model_type "clip"), or a directory with an official config.json (or
// none) and one weight file (*.safetensors preferred over *.pt, *.pth,
// *.bin). Tensors are normalised to open_clip names (Normalize). Errors name
// the file.
func Open(path string) (*Checkpoint, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	c := &Checkpoint{Path: path}
	if st.IsDir() {
		err = c.openDir(path)
	} else {
		err = c.openWeights(path)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// ParseConfig decodes a model config file of any supported form: the
// official config.json, open_clip_config.json (its model_cfg), or a Hugging
// Face CLIPConfig config.json (converted as hf.ParseConfig does).
func ParseConfig(data []byte) (*config.Config, error) {
	if hf.IsCLIPConfig(data) {
		return hf.ParseConfig(data)
	}
	c, err := config.Parse(data)
	if err != nil {
		return nil, err
	}
	if c.EmbedDim == 0 && c.VisionCfg.Width == 0 && c.TextCfg.Width == 0 {
		return nil, fmt.Errorf("%w: neither a TinyCLIP/open_clip model config nor a Hugging Face CLIPConfig", ErrUnsupportedFormat)
	}
	return c, nil
}

// readFile reads a small file (configs).
func readFile(path string) ([]byte, error) {
	const maxConfig = 16 << 20
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfig+1))
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %s: %w", path, err)
	}
	if len(b) > maxConfig {
		return nil, fmt.Errorf("checkpoint: %s: larger than %d bytes, not a config file", path, maxConfig)
	}
	return b, nil
}

// sniff names the format of a weight file from its first bytes.
func sniff(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	defer f.Close()
	var head [9]byte
	n, err := io.ReadFull(f, head[:])
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return "", fmt.Errorf("checkpoint: %s: %w", path, err)
	}
	h := head[:n]
	switch {
	case bytes.HasPrefix(h, []byte("PK\x03\x04")):
		return FormatTorchZip, nil
	case n > 0 && h[0] == 0x80:
		return FormatTorchLegacy, nil
	case n == 9 && h[8] == '{' && binary.LittleEndian.Uint64(h) >= 2:
		return FormatSafetensors, nil
	case n > 0 && (h[0] == '{' || h[0] == '['):
		return "", fmt.Errorf("%w: %s is a JSON file, not weights (pass the model directory)", ErrUnsupportedFormat, path)
	case n == 0:
		return "", fmt.Errorf("%w: %s is empty", ErrUnsupportedFormat, path)
	}
	return "", fmt.Errorf("%w: %s is neither a PyTorch checkpoint (zip or legacy pickle) nor safetensors", ErrUnsupportedFormat, path)
}

// readWeights reads one weight file with its stored names.
func (c *Checkpoint) readWeights(path string) (map[string]*tensor.Tensor, string, error) {
	format, err := sniff(path)
	if err != nil {
		return nil, "", err
	}
	var ts map[string]*tensor.Tensor
	switch format {
	case FormatSafetensors:
		f, err := safetensors.Open(path)
		if err != nil {
			return nil, "", fmt.Errorf("checkpoint: %w", err)
		}
		c.closers = append(c.closers, f.Close)
		ts = f.Tensors
	default:
		f, err := pickle.Open(path)
		if err != nil {
			if errors.Is(err, pickle.ErrTorchScript) {
				return nil, "", fmt.Errorf("checkpoint: %w: %w", ErrUnsupportedFormat, err)
			}
			return nil, "", fmt.Errorf("checkpoint: %w", err)
		}
		c.closers = append(c.closers, f.Close)
		ts, format = f.Tensors, f.Format
	}
	c.Files = append(c.Files, path)
	return ts, format, nil
}

// openWeights reads a weight file (or a sharded index) into c.
func (c *Checkpoint) openWeights(path string) error {
	var ts map[string]*tensor.Tensor
	var err error
	if strings.HasSuffix(path, ".index.json") {
		ts, err = c.readSharded(path)
	} else {
		ts, c.Format, err = c.readWeights(path)
	}
	if err != nil {
		return err
	}
	if c.Tensors, err = Normalize(ts); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// readSharded reads the shards a *.index.json names.
func (c *Checkpoint) readSharded(index string) (map[string]*tensor.Tensor, error) {
	b, err := readFile(index)
	if err != nil {
		return nil, err
	}
	wm, err := hf.ParseIndex(b)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %s: %w", index, err)
	}
	byShard := map[string][]string{}
	for name, shard := range wm {
		byShard[shard] = append(byShard[shard], name)
	}
	shards := make([]string, 0, len(byShard))
	for s := range byShard {
		shards = append(shards, s)
	}
	sort.Strings(shards)
	all := map[string]*tensor.Tensor{}
	for _, s := range shards {
		p := filepath.Join(filepath.Dir(index), s)
		ts, format, err := c.readWeights(p)
		if err != nil {
			return nil, err
		}
		if c.Format == "" {
			c.Format = format
		} else if c.Format != format {
			c.Format += "+" + format
		}
		for _, name := range byShard[s] {
			if ts[name] == nil {
				return nil, fmt.Errorf("checkpoint: %s: tensor %q listed in %s is missing", p, name, filepath.Base(index))
			}
		}
		for name, t := range ts {
			if _, dup := all[name]; dup {
				return nil, fmt.Errorf("checkpoint: %s: tensor %q is in several shards", p, name)
			}
			all[name] = t
		}
	}
	return all, nil
}

// exists reports whether dir/name is a regular file.
func exists(dir, name string) (string, bool) {
	p := filepath.Join(dir, name)
	st, err := os.Stat(p)
	return p, err == nil && st.Mode().IsRegular()
}

// firstOf returns the first of names present in dir.
func firstOf(dir string, names ...string) (string, bool) {
	for _, n := range names {
		if p, ok := exists(dir, n); ok {
			return p, true
		}
	}
	return "", false
}

func (c *Checkpoint) openDir(dir string) error {
	if p, ok := firstOf(dir, "tokenizer.json", "vocab.json"); ok {
		c.TokenizerPath = p
	}
	// open_clip hub directory.
	if cfgPath, ok := exists(dir, "open_clip_config.json"); ok {
		b, err := readFile(cfgPath)
		if err != nil {
			return err
		}
		if c.Config, err = config.Parse(b); err != nil {
			return fmt.Errorf("checkpoint: %s: %w", cfgPath, err)
		}
		if c.Preprocess, err = parseOpenCLIPPreprocess(b); err != nil {
			return fmt.Errorf("checkpoint: %s: %w", cfgPath, err)
		}
		w, ok := firstOf(dir, "open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
			"model.safetensors", "open_clip_pytorch_model.bin", "pytorch_model.bin")
		if !ok {
			return fmt.Errorf("%w: %s: open_clip directory without open_clip_model.safetensors or open_clip_pytorch_model.bin", ErrUnsupportedFormat, dir)
		}
		return c.openWeights(w)
	}
	if cfgPath, ok := exists(dir, "config.json"); ok {
		b, err := readFile(cfgPath)
		if err != nil {
			return err
		}
		if c.Config, err = ParseConfig(b); err != nil {
			return fmt.Errorf("checkpoint: %s: %w", cfgPath, err)
		}
		if hf.IsCLIPConfig(b) {
			// Hugging Face transformers directory.
			if pp, ok := exists(dir, "preprocessor_config.json"); ok {
				pb, err := readFile(pp)
				if err != nil {
					return err
				}
				if c.Preprocess, err = parseHFPreprocess(pb); err != nil {
					return fmt.Errorf("checkpoint: %s: %w", pp, err)
				}
			}
			w, ok := firstOf(dir, "model.safetensors", "model.safetensors.index.json",
				"pytorch_model.bin", "pytorch_model.bin.index.json")
			if !ok {
				return fmt.Errorf("%w: %s: Hugging Face directory without model.safetensors or pytorch_model.bin", ErrUnsupportedFormat, dir)
			}
			return c.openWeights(w)
		}
	}
	// Official layout: config.json (optional) and one weight file.
	w, err := weightFile(dir)
	if err != nil {
		return err
	}
	return c.openWeights(w)
}

// weightFile picks the one weight file of a directory: *.safetensors if
// there is one, else *.pt, *.pth or *.bin. Several candidates of the chosen
// kind are an error (the caller must name the file).
func weightFile(dir string) (string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	var st, pt []string
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, ".") || !e.Type().IsRegular() && e.Type()&fs.ModeSymlink == 0 {
			continue
		}
		switch strings.ToLower(filepath.Ext(n)) {
		case ".safetensors":
			st = append(st, n)
		case ".pt", ".pth", ".bin":
			pt = append(pt, n)
		}
	}
	for _, c := range [][]string{st, pt} {
		switch len(c) {
		case 0:
			continue
		case 1:
			return filepath.Join(dir, c[0]), nil
		}
		return "", fmt.Errorf("%w: %s holds several weight files (%s); open one of them", ErrUnsupportedFormat, dir, strings.Join(c, ", "))
	}
	return "", fmt.Errorf("%w: %s holds no weight file (*.safetensors, *.pt, *.pth, *.bin)", ErrUnsupportedFormat, dir)
}
