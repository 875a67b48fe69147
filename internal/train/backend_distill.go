package train

import (
	"fmt"
	"log/slog"

	"github.com/gomlx/compute"

	"github.com/tinyclip-go/tinyclip/internal/config"
	"github.com/tinyclip-go/tinyclip/internal/engine"
	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

// This file holds what Distill needs to run on a chosen backend
// (DistillOptions.Backend, Devices, Precision).

// runBackend creates the backend of a run and returns it with the name
// stored in checkpoints ("" for the default Go backend, so that earlier
// checkpoints compare equal).
func (o *DistillOptions) runBackend(r *Recipe, lg *slog.Logger) (compute.Backend, string, error) {
	if !o.Precision.valid() {
		return nil, "", fmt.Errorf("train: precision %q: want fp32 or bf16", string(o.Precision))
	}
	if o.Devices < 0 {
		return nil, "", fmt.Errorf("train: %d devices", o.Devices)
	}
	if o.Backend == "" {
		b, err := defaultBackend()
		if err != nil {
			return nil, "", fmt.Errorf("train: GoMLX backend: %w", err)
		}
		return b, o.deviceNote(backendName(b)), o.checkModes(r, b)
	}
	b, err := NewBackend(o.Backend, BackendOptions{AllowDownload: o.AllowDownload})
	if err != nil {
		return nil, "", err
	}
	if lg != nil {
		lg.Info("backend", "name", b.Name(), "devices", b.NumDevices(), "precision", o.Precision.String())
	}
	return b, o.deviceNote(backendName(b)), o.checkModes(r, b)
}

// backendName is "" for the Go backend, else the backend's description.
func backendName(b compute.Backend) string {
	if isGoBackend(b) {
		return ""
	}
	if w, ok := b.(*Backend); ok {
		return w.Name()
	}
	return b.Name()
}

// deviceNote adds the device count of a data-parallel run to a backend
// name.
func (o *DistillOptions) deviceNote(name string) string {
	if o.Devices > 1 {
		if name == "" {
			name = "go"
		}
		return fmt.Sprintf("%s (%d devices)", name, o.Devices)
	}
	return name
}

// checkModes refuses combinations that are not implemented.
func (o *DistillOptions) checkModes(r *Recipe, b compute.Backend) error {
	if r.Inherit == InheritAuto && !isGoBackend(b) {
		return fmt.Errorf("train: inherit auto runs on the Go backend only; leave --backend out")
	}
	if o.Precision != FP32 && (r.Inherit == InheritAuto || r.Accum > 1) {
		return fmt.Errorf("train: precision %s needs plain steps (no accum, no inherit auto)", o.Precision)
	}
	if o.Devices > 0 && r.Accum > 1 {
		return fmt.Errorf("train: --devices and gradient accumulation do not combine")
	}
	return nil
}

// kernel is the Kernel of a run: CurrentKernel with the backend name.
func (o *DistillOptions) kernel(engineKernel, backend string) Kernel {
	k := CurrentKernel(engineKernel)
	k.Backend = backend
	return k
}

// runTeacher builds a run's teacher for backend b: on the Go backend the
// CPU engine (its kernels beat GoMLX's pure-Go ones), elsewhere a
// GraphTeacher on the same device as the student, in precision p. The
// string is the engine kernel ("" for a GraphTeacher).
func runTeacher(b compute.Backend, arch *config.Arch, weights map[string]*tensor.Tensor, p Precision) (Teacher, string, error) {
	if isGoBackend(b) {
		m, err := engine.Build(arch, weights, engine.Options{})
		if err != nil {
			return nil, "", err
		}
		t := NewEngineTeacher(m)
		return t, t.Kernel(), nil
	}
	t, err := NewGraphTeacher(b, arch, weights, p)
	return t, "", err
}

// plainStep is the step of a run without accumulation: a DataParallelStep
// over devices (> 0), else a Step.
func plainStep(student *Student, teacher Teacher, b, devices int, h Hyper) (Stepper, error) {
	if devices > 0 {
		return NewDataParallelStep(student, teacher, b, devices, h)
	}
	return NewStep(student, teacher, b, h)
}
