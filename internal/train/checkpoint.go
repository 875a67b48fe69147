package train

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/cpu"

	"github.com/tinyclip-go/tinyclip/internal/checkpoint/safetensors"
	"github.com/tinyclip-go/tinyclip/internal/config"
	"github.com/tinyclip-go/tinyclip/internal/data"
	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

// Checkpoint layout: DIR/ckpt-<step>/ holds these files; DIR/latest names
// the newest complete one. A checkpoint is written into
// DIR/ckpt-<step>.tmp/, each file synced, the directory synced and renamed,
// the parent synced, and latest replaced by a rename, so a crash at any
// point leaves either the previous checkpoint or the new one. Readers
// ignore *.tmp.
const (
	CheckpointModel = "model.safetensors" // student tensors (open_clip names; loadable as a model)
	CheckpointOptim = "optim.safetensors" // AdamW moments (exp_avg.<name>, exp_avg_sq.<name>)
	CheckpointState = "state.json"        // everything else (CheckpointInfo)
	LatestFile      = "latest"            // the name of the newest checkpoint directory
	checkpointFmt   = "tinyclip-train-checkpoint/1"
)

// Kernel identifies the arithmetic a run's results depend on: the GoMLX
// matrix kernels (SIMD build and CPU path) and the teacher's engine kernel.
// Runs agree bit for bit only with the same Kernel.
type Kernel struct {
	// GoMLX is the path of GoMLX's pure-Go matrix multiplication:
	// "avx512", "avx2" (GOEXPERIMENT=simd builds on such CPUs, unless
	// GOMLX_SIMD_AVX512 / GOMLX_SIMD_AVX2 turn them off) or "scalar".
	GoMLX string `json:"gomlx"`
	// SIMD reports a GOEXPERIMENT=simd build (the SIMD constant).
	SIMD bool `json:"simd"`
	// Engine is the teacher's engine micro-kernel ("avx512", "avx2",
	// "generic"), empty without an engine teacher.
	Engine string `json:"engine,omitempty"`
	// GOARCH is the architecture the binary was built for.
	GOARCH string `json:"goarch"`
	// Backend names a GoMLX backend other than the Go backend (and the
	// device count of a data-parallel run); "" for the Go backend.
	Backend string `json:"backend,omitempty"`
}

// CurrentKernel describes this process; engine is the teacher's kernel
// name (see EngineTeacher.Kernel), or "".
func CurrentKernel(engine string) Kernel {
	k := Kernel{GoMLX: "scalar", SIMD: SIMD, Engine: engine, GOARCH: runtime.GOARCH}
	if SIMD {
		on := func(env string) bool {
			v := strings.ToLower(os.Getenv(env))
			return v != "0" && v != "false" && v != "f" && v != "no" && v != "off" && v != "disabled"
		}
		x := cpu.X86
		switch {
		case x.HasAVX512F && x.HasAVX512BW && x.HasAVX512VL && x.HasAVX512DQ && x.HasAVX512CD && on("GOMLX_SIMD_AVX512"):
			k.GoMLX = "avx512"
		case x.HasAVX2 && x.HasFMA && on("GOMLX_SIMD_AVX2"):
			k.GoMLX = "avx2"
		}
	}
	return k
}

// Kernel returns the name of the engine micro-kernel the teacher runs on.
func (t *EngineTeacher) Kernel() string { return t.m.Kernel() }

// CheckpointInfo is the content of a checkpoint's state.json.
type CheckpointInfo struct {
	// Format names the layout version.
	Format string `json:"format"`
	// Step is the number of training iterations done (the position in
	// the learning-rate schedule); OptimizerStep the AdamW step count
	// (smaller when non-finite steps were skipped).
	Step          int   `json:"step"`
	OptimizerStep int64 `json:"optimizer_step"`
	// TotalSteps is the length of the schedule.
	TotalSteps int `json:"total_steps"`
	// LR is the learning rate of the last step.
	LR float64 `json:"lr"`
	// Cursor is the data position of the next batch.
	Cursor data.Cursor `json:"cursor"`
	// OrderRNG is the state of the data-order generator of the cursor's
	// epoch after shuffling (rand.PCG.MarshalBinary; base64 in JSON):
	// a resume compares it with the one it draws again.
	OrderRNG []byte `json:"order_rng,omitempty"`
	// SkippedSamples counts corrupt samples passed over so far; NonFinite
	// the consecutive non-finite steps just before the checkpoint.
	SkippedSamples int `json:"skipped_samples"`
	NonFinite      int `json:"non_finite"`
	// Run is the run description (RunOptions.Identity) and ConfigHash
	// its SHA-256; a resume must present the same.
	Run        json.RawMessage `json:"run"`
	ConfigHash string          `json:"config_hash"`
	// Kernel is the arithmetic path the run used.
	Kernel Kernel `json:"kernel"`
	// Go is the toolchain that built the binary; Time when the
	// checkpoint was written (RFC 3339).
	Go   string `json:"go"`
	Time string `json:"time"`
}

// Checkpoint is a checkpoint read back.
type Checkpoint struct {
	// Dir is the checkpoint directory.
	Dir string
	// Info is its state.json.
	Info CheckpointInfo
	// State holds the weights, AdamW moments and step count.
	State *State
	// Arch is the architecture in the model file's metadata (of the
	// tensors in State.Weights).
	Arch *config.Arch
}

// checkpointName is the directory name of the checkpoint after step
// iterations.
func checkpointName(step int) string { return "ckpt-" + strconv.Itoa(step) }

// parseCheckpointName returns the step of a checkpoint directory name.
func parseCheckpointName(name string) (int, bool) {
	s, ok := strings.CutPrefix(name, "ckpt-")
	if !ok || s == "" || strings.HasSuffix(name, ".tmp") {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || strconv.Itoa(n) != s {
		return 0, false
	}
	return n, true
}

// hashRun returns the SHA-256 of a run description (JSON, compacted
// first, so that indentation does not matter).
func hashRun(run []byte) string {
	var c bytes.Buffer
	if json.Compact(&c, run) == nil {
		run = c.Bytes()
	}
	h := sha256.Sum256(run)
	return "sha256:" + hex.EncodeToString(h[:])
}

// WriteCheckpoint writes st with info as DIR/ckpt-<info.Step> atomically,
// points DIR/latest at it and removes all but the newest keep complete
// checkpoints (keep <= 0 keeps all). It returns the checkpoint directory.
func WriteCheckpoint(dir string, arch *config.Arch, st *State, info CheckpointInfo, keep int) (string, error) {
	if st == nil || arch == nil {
		return "", fmt.Errorf("train: checkpoint: nothing to write")
	}
	info.Format = checkpointFmt
	info.OptimizerStep = st.Step
	if info.Time == "" {
		info.Time = time.Now().UTC().Format(time.RFC3339)
	}
	info.Go = runtime.Version()
	name := checkpointName(info.Step)
	final := filepath.Join(dir, name)
	tmp := final + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return "", fmt.Errorf("train: checkpoint: %w", err)
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return "", fmt.Errorf("train: checkpoint: %w", err)
	}
	cfg, err := json.Marshal(arch.Config())
	if err != nil {
		return "", fmt.Errorf("train: checkpoint: %w", err)
	}
	stateJSON, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return "", fmt.Errorf("train: checkpoint: %w", err)
	}
	files := []struct {
		name  string
		write func(f *os.File) error
	}{
		{CheckpointModel, func(f *os.File) error {
			return writeTensors(f, st.Weights, map[string]string{"format": "pt", "config": string(cfg)})
		}},
		{CheckpointOptim, func(f *os.File) error {
			return writeTensors(f, st.Moments, map[string]string{"optimizer_step": strconv.FormatInt(st.Step, 10)})
		}},
		{CheckpointState, func(f *os.File) error {
			_, err := f.Write(append(stateJSON, '\n'))
			return err
		}},
	}
	for _, fl := range files {
		if err := writeSynced(filepath.Join(tmp, fl.name), fl.write); err != nil {
			return "", fmt.Errorf("train: checkpoint %s: %w", fl.name, err)
		}
	}
	if err := syncDir(tmp); err != nil {
		return "", err
	}
	// A directory of this name exists only when an earlier run died after
	// writing it but before pointing latest at it; it is complete, but
	// this one replaces it.
	if err := os.RemoveAll(final); err != nil {
		return "", fmt.Errorf("train: checkpoint: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return "", fmt.Errorf("train: checkpoint: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return "", err
	}
	latest := filepath.Join(dir, LatestFile)
	if err := writeSynced(latest+".tmp", func(f *os.File) error {
		_, err := f.WriteString(name + "\n")
		return err
	}); err != nil {
		return "", fmt.Errorf("train: checkpoint: %w", err)
	}
	if err := os.Rename(latest+".tmp", latest); err != nil {
		return "", fmt.Errorf("train: checkpoint: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return "", err
	}
	if keep > 0 {
		steps, err := listCheckpoints(dir)
		if err != nil {
			return "", err
		}
		for _, s := range steps {
			if len(steps) <= keep || s == info.Step {
				break
			}
			if err := os.RemoveAll(filepath.Join(dir, checkpointName(s))); err != nil {
				return "", fmt.Errorf("train: removing an old checkpoint: %w", err)
			}
			steps = steps[1:]
		}
	}
	return final, nil
}

// writeTensors writes a tensor map as safetensors to f.
func writeTensors(f *os.File, ts map[string]*tensor.Tensor, meta map[string]string) error {
	names := make([]string, 0, len(ts))
	for n := range ts {
		names = append(names, n)
	}
	sort.Strings(names)
	list := make([]*tensor.Tensor, len(names))
	for i, n := range names {
		t := *ts[n]
		t.Name = n
		list[i] = &t
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	if err := safetensors.Write(bw, list, meta); err != nil {
		return err
	}
	return bw.Flush()
}

// writeSynced creates path, fills it with write and syncs it to disk.
func writeSynced(path string, write func(*os.File) error) (err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	if err := write(f); err != nil {
		return err
	}
	return f.Sync()
}

// syncDir flushes a directory's entries to disk.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("train: sync %s: %w", dir, err)
	}
	return nil
}

// listCheckpoints returns the steps of the complete checkpoints in dir,
// ascending (directories named ckpt-<step>; *.tmp are ignored).
func listCheckpoints(dir string) ([]int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("train: %w", err)
	}
	var steps []int
	for _, e := range ents {
		if s, ok := parseCheckpointName(e.Name()); ok && e.IsDir() {
			steps = append(steps, s)
		}
	}
	sort.Ints(steps)
	return steps, nil
}

// LatestCheckpoint returns the directory of the newest complete checkpoint
// in dir — the one DIR/latest names, or, when latest is missing, the
// highest-numbered ckpt-<step> — or "" when there is none.
func LatestCheckpoint(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, LatestFile))
	if err == nil {
		name := strings.TrimSpace(string(b))
		if _, ok := parseCheckpointName(name); !ok {
			return "", fmt.Errorf("train: %s: %q does not name a checkpoint", filepath.Join(dir, LatestFile), truncate(name, 40))
		}
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err != nil || !st.IsDir() {
			return "", fmt.Errorf("train: %s names %s, which is missing", filepath.Join(dir, LatestFile), name)
		}
		return p, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("train: %w", err)
	}
	steps, err := listCheckpoints(dir)
	if err != nil || len(steps) == 0 {
		return "", err
	}
	return filepath.Join(dir, checkpointName(steps[len(steps)-1])), nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// ReadCheckpoint reads a checkpoint directory written by WriteCheckpoint.
func ReadCheckpoint(dir string) (*Checkpoint, error) {
	raw, err := os.ReadFile(filepath.Join(dir, CheckpointState))
	if err != nil {
		return nil, fmt.Errorf("train: checkpoint: %w", err)
	}
	info, err := parseCheckpointInfo(raw)
	if err != nil {
		return nil, fmt.Errorf("train: checkpoint %s: %w", filepath.Join(dir, CheckpointState), err)
	}
	weights, meta, err := readTensors(filepath.Join(dir, CheckpointModel))
	if err != nil {
		return nil, err
	}
	moments, _, err := readTensors(filepath.Join(dir, CheckpointOptim))
	if err != nil {
		return nil, err
	}
	cfg, err := config.Parse([]byte(meta["config"]))
	if err != nil {
		return nil, fmt.Errorf("train: checkpoint %s: config metadata: %w", filepath.Join(dir, CheckpointModel), err)
	}
	arch, err := config.FromConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("train: checkpoint %s: %w", filepath.Join(dir, CheckpointModel), err)
	}
	return &Checkpoint{
		Dir:   dir,
		Info:  info,
		State: &State{Step: info.OptimizerStep, Weights: weights, Moments: moments},
		Arch:  arch,
	}, nil
}

// parseCheckpointInfo decodes and checks a state.json body.
func parseCheckpointInfo(raw []byte) (CheckpointInfo, error) {
	var info CheckpointInfo
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&info); err != nil {
		return info, err
	}
	switch {
	case info.Format != checkpointFmt:
		return info, fmt.Errorf("format %q, want %q", truncate(info.Format, 40), checkpointFmt)
	case info.Step < 0 || info.OptimizerStep < 0 || int64(info.Step) < info.OptimizerStep || info.TotalSteps < info.Step:
		return info, fmt.Errorf("inconsistent steps: %d iterations, %d optimizer steps, %d in all", info.Step, info.OptimizerStep, info.TotalSteps)
	case info.Cursor.Epoch < 0 || info.Cursor.Index < 0:
		return info, fmt.Errorf("negative data cursor %+v", info.Cursor)
	case info.SkippedSamples < 0 || info.NonFinite < 0:
		return info, fmt.Errorf("negative counters")
	case info.ConfigHash != hashRun(info.Run):
		return info, fmt.Errorf("config hash %q does not match the run description", truncate(info.ConfigHash, 80))
	}
	return info, nil
}

// readTensors reads a safetensors file into memory.
func readTensors(path string) (map[string]*tensor.Tensor, map[string]string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("train: checkpoint: %w", err)
	}
	f, err := safetensors.Parse(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("train: checkpoint %s: %w", path, err)
	}
	return f.Tensors, f.Metadata, nil
}

// cleanTemporary removes the *.tmp entries a killed run left in dir.
func cleanTemporary(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".tmp") && (strings.HasPrefix(e.Name(), "ckpt-") || e.Name() == LatestFile+".tmp") {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return fmt.Errorf("train: %w", err)
			}
		}
	}
	return nil
}
