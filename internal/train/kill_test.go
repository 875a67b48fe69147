package train

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// childEnv makes the test binary run a training job instead of the tests
// (see TestMain): the value is the output directory; childModeEnv "auto"
// makes it the auto-inheritance run (newAutoKillStepper) instead of the
// manual one.
const (
	childEnv     = "TINYCLIP_TRAIN_KILL_CHILD"
	childModeEnv = "TINYCLIP_TRAIN_KILL_MODE"
)

// killSteps is the length of the run the SIGKILL test interrupts.
const killSteps = 12

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		os.Exit(killChild(dir))
	}
	os.Exit(m.Run())
}

// killChild trains the tiny run into dir, resuming whatever is there,
// slowly enough for the parent to kill it between checkpoints.
func killChild(dir string) int {
	s, err := buildTinySetup()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var step Stepper
	o := s.options(dir, killSteps)
	if os.Getenv(childModeEnv) == "auto" {
		step, err = s.newAutoKillStepper()
		o = s.autoKillOptions(dir)
	} else {
		step, err = s.newStep()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	o.Resume = true
	o.Hook = func(LogRecord) { time.Sleep(40 * time.Millisecond) }
	if _, err := Run(context.Background(), step, s.open(), o); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// TestResumeAfterSIGKILL runs training in a child process, kills it with
// SIGKILL after its second checkpoint, resumes it in this process, and
// compares the final weights and optimizer state with an uninterrupted
// run's, byte for byte. It also checks that the killed run left no
// half-written checkpoint that a reader would take.
func TestResumeAfterSIGKILL(t *testing.T) {
	dir := t.TempDir()
	killChildAfter(t, dir, "", "ckpt-4")

	s := newTinySetup(t)
	o := s.options(dir, killSteps)
	o.Resume = true
	res, err := Run(context.Background(), s.step(t), s.open(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Resumed == 0 {
		t.Fatal("the resumed run started from scratch")
	}
	ref := t.TempDir()
	if _, err := Run(context.Background(), s.step(t), s.open(), s.options(ref, killSteps)); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{filepath.Join(FinalDir, ModelFile), filepath.Join("ckpt-12", CheckpointModel), filepath.Join("ckpt-12", CheckpointOptim)} {
		if !bytes.Equal(readBytes(t, filepath.Join(ref, f)), readBytes(t, filepath.Join(dir, f))) {
			t.Errorf("%s differs from the uninterrupted run's", f)
		}
	}
	if a, b := stepLosses(t, ref), stepLosses(t, dir); strings.Join(a, ",") != strings.Join(b, ",") {
		t.Errorf("log losses differ:\n%v\n%v", a, b)
	}
}

// killChildAfter runs the training job of mode ("" or "auto") in a child
// process on dir (resuming what is there), kills it with SIGKILL a little
// after DIR/latest names checkpoint after (somewhere in the next steps or
// in the writing of the next checkpoint), and returns the newest complete
// checkpoint the kill left.
func killChildAfter(t *testing.T, dir, mode, after string) *Checkpoint {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"="+dir, childModeEnv+"="+mode)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.After(2 * time.Minute)
poll:
	for {
		select {
		case err := <-done:
			t.Fatalf("the child ended before it was killed (%v): %s", err, stderr.String())
		case <-deadline:
			cmd.Process.Kill()
			t.Fatalf("no %s after 2 minutes: %s", after, stderr.String())
		case <-time.After(5 * time.Millisecond):
			b, err := os.ReadFile(filepath.Join(dir, LatestFile))
			if err == nil && strings.TrimSpace(string(b)) == after {
				time.Sleep(60 * time.Millisecond)
				if err := cmd.Process.Kill(); err != nil {
					t.Fatal(err)
				}
				break poll
			}
		}
	}
	<-done
	if _, err := os.Stat(filepath.Join(dir, FinalDir)); err == nil {
		t.Fatal("the child finished before the kill")
	}
	latest, err := LatestCheckpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	ck, err := ReadCheckpoint(latest) // whatever the kill interrupted, latest is complete
	if err != nil {
		t.Fatalf("after the kill: %v", err)
	}
	t.Logf("killed after %s; latest is %s (step %d)", after, filepath.Base(latest), ck.Info.Step)
	if ck.Info.Step >= killSteps {
		t.Fatalf("latest checkpoint at step %d: the run was not interrupted", ck.Info.Step)
	}
	return ck
}

// TestCheckpointLeftovers checks what a reader makes of the debris of a
// killed writer: a ckpt-N.tmp directory and a latest.tmp are ignored (and
// removed by the next run), a missing latest falls back to the highest
// complete checkpoint, and damaged files are reported by name.
func TestCheckpointLeftovers(t *testing.T) {
	s := newTinySetup(t)
	dir := t.TempDir()
	if _, err := Run(context.Background(), s.step(t), s.open(), s.options(dir, 4)); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "ckpt-6.tmp"), 0o755)
	os.WriteFile(filepath.Join(dir, "ckpt-6.tmp", CheckpointState), []byte("{"), 0o644)
	os.WriteFile(filepath.Join(dir, LatestFile+".tmp"), []byte("ckpt-6\n"), 0o644)
	if p, err := LatestCheckpoint(dir); err != nil || filepath.Base(p) != "ckpt-4" {
		t.Errorf("latest with leftovers: %q, %v", p, err)
	}
	os.Remove(filepath.Join(dir, LatestFile))
	if p, err := LatestCheckpoint(dir); err != nil || filepath.Base(p) != "ckpt-4" {
		t.Errorf("latest without the latest file: %q, %v", p, err)
	}
	// A resumed run (already complete) removes the leftovers.
	o := s.options(dir, 4)
	o.Resume = true
	if _, err := Run(context.Background(), s.step(t), s.open(), o); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"ckpt-6.tmp", LatestFile + ".tmp"} {
		if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
			t.Errorf("%s left in place", n)
		}
	}
	// Damage.
	os.WriteFile(filepath.Join(dir, LatestFile), []byte("../etc\n"), 0o644)
	if _, err := LatestCheckpoint(dir); err == nil {
		t.Error("latest naming ../etc: no error")
	}
	state := filepath.Join(dir, "ckpt-4", CheckpointState)
	raw := readBytes(t, state)
	os.WriteFile(state, bytes.Replace(raw, []byte(`"step": 4`), []byte(`"step": 3`), 1), 0o644)
	if _, err := ReadCheckpoint(filepath.Join(dir, "ckpt-4")); err == nil {
		t.Error("state.json with inconsistent steps: no error")
	}
	os.WriteFile(state, raw, 0o644)
	model := filepath.Join(dir, "ckpt-4", CheckpointModel)
	mb := readBytes(t, model)
	os.WriteFile(model, mb[:len(mb)/2], 0o644)
	if _, err := ReadCheckpoint(filepath.Join(dir, "ckpt-4")); err == nil || !strings.Contains(err.Error(), CheckpointModel) {
		t.Errorf("truncated model file: %v", err)
	}
}

func FuzzCheckpointInfo(f *testing.F) {
	good := CheckpointInfo{Format: checkpointFmt, Step: 4, OptimizerStep: 4, TotalSteps: 10, Run: []byte(`{"a":1}`)}
	good.ConfigHash = hashRun(good.Run)
	b, _ := json.MarshalIndent(good, "", "  ")
	f.Add(b)
	f.Add([]byte(`{"format": "x"}`))
	f.Add([]byte(`{"format": "tinyclip-train-checkpoint/1", "step": -1}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		info, err := parseCheckpointInfo(raw)
		if err != nil {
			return
		}
		if info.Step < 0 || info.OptimizerStep > int64(info.Step) || info.TotalSteps < info.Step || info.ConfigHash != hashRun(info.Run) {
			t.Fatalf("accepted %+v", info)
		}
	})
}
