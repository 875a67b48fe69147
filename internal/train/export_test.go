package train

import (
	"bytes"
	"context"
	"reflect"
	"slices"
	"testing"

	"github.com/tinyclip-go/tinyclip/internal/checkpoint"
	"github.com/tinyclip-go/tinyclip/internal/config"
	"github.com/tinyclip-go/tinyclip/internal/engine"
	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

// TestExportRoundTrip writes a trained ResNet student and the irregular
// auto-pruned model with Export and reads them back with checkpoint.Open:
// the same tensors bit for bit, the same architecture from the written
// config, and engine features equal to the graph's.
func TestExportRoundTrip(t *testing.T) {
	ctx := context.Background()
	rc, rhp := loadStepCase(t, "rn")
	rs := rc.newStep(t, rhp)
	runSteps(t, rs, rc, 0, 1)
	autoArch, autoW := loadModelDir(t, modelsPath(t, "auto-pruned", "open_clip"))
	auto, err := NewStudent(autoArch, autoW)
	if err != nil {
		t.Fatal(err)
	}
	pixels := readNpy(t, modelsPath(t, "inputs", "pixels.npy"))
	for _, c := range []struct {
		name   string
		st     *Student
		images []float32
		n      int
	}{
		{"resnet-trained", rs.st, rc.images, len(rc.tokens)},
		{"auto-pruned", auto, pixels.F32, pixels.Shape[0]},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := c.st.Export(dir); err != nil {
				t.Fatal(err)
			}
			want, err := c.st.Weights()
			if err != nil {
				t.Fatal(err)
			}
			ck, err := checkpoint.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer ck.Close()
			for name, w := range want {
				g, ok := ck.Tensors[name]
				if !ok || g.DType != w.DType || !slices.Equal(g.Shape, w.Shape) || !bytes.Equal(g.Data, w.Data) {
					t.Errorf("%s: read back differs (present %v)", name, ok)
				}
			}
			if len(ck.Tensors) != len(want) {
				t.Errorf("%d tensors read back, %d written", len(ck.Tensors), len(want))
			}
			shapes := map[string][]int{}
			for n, x := range ck.Tensors {
				shapes[n] = x.Shape
			}
			arch, err := config.Resolve(ck.Config, shapes)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(arch, c.st.Arch()) {
				t.Errorf("architecture read back %+v, want %+v", arch, c.st.Arch())
			}
			m, err := engine.Build(arch, ck.Tensors, engine.Options{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := m.EncodeImages(ctx, c.images, c.n)
			if err != nil {
				t.Fatal(err)
			}
			ref, err := c.st.EncodeImages(ctx, c.images, c.n)
			if err != nil {
				t.Fatal(err)
			}
			if r := tensorRel(got, ref); !(r <= 1e-5) {
				t.Errorf("engine vs graph image features of the exported model: %.3g > 1e-5", r)
			}
		})
	}
}

// TestWriteModelRejectsMismatch checks that weights not matching the
// architecture are refused before anything is written.
func TestWriteModelRejectsMismatch(t *testing.T) {
	c, _ := loadStepCase(t, "vit")
	w := map[string]*tensor.Tensor{}
	for k, v := range c.initial {
		if k != "visual.proj" {
			w[k] = v
		}
	}
	dir := t.TempDir() + "/out"
	if err := WriteModel(dir, c.arch, w); err == nil {
		t.Fatal("WriteModel accepted weights without visual.proj")
	}
	if _, err := checkpoint.Open(dir); err == nil {
		t.Error("a model directory was written")
	}
}
