package train

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/tinyclip-go/tinyclip/internal/config"
	"github.com/tinyclip-go/tinyclip/internal/engine"
	"github.com/tinyclip-go/tinyclip/internal/tensor"
)

// familyImages is the step batch of each inheritance family.
var familyImages = map[string]string{"vit": "images_32.npy", "rn": "images_64.npy"}

// TestInheritFixtures rebuilds the four students of fixtures/distill/inherit
// from their teachers and compares them with the official code's students
// tensor for tensor, bit for bit (README §4), then checks the embeddings of
// teacher and students through the engine and through the GoMLX graphs.
func TestInheritFixtures(t *testing.T) {
	ctx := context.Background()
	texts := tokenRows(readNpy(t, distillPath(t, "step", "batch", "texts.npy")))
	for _, fam := range []string{"vit", "rn"} {
		teacher, _ := readSafetensors(t, distillPath(t, "inherit", fam, "teacher.safetensors.gz"))
		tArch := readConfigArch(t, distillPath(t, "inherit", fam, "teacher.config.json"))
		emb, _ := readSafetensors(t, distillPath(t, "inherit", fam, "embeddings.safetensors"))
		images := readNpy(t, distillPath(t, "step", "batch", familyImages[fam]))
		n := images.Shape[0]
		check := func(t *testing.T, who string, arch *config.Arch, w map[string]*tensor.Tensor) {
			m, err := engine.Build(arch, w, engine.Options{})
			if err != nil {
				t.Fatal(err)
			}
			st, err := NewStudent(arch, w)
			if err != nil {
				t.Fatal(err)
			}
			for _, kind := range []string{"image", "text"} {
				want := f32(t, emb[who+"."+kind])
				var got, gotGraph []float32
				if kind == "image" {
					got, err = m.EncodeImages(ctx, images.F32, n)
					if err == nil {
						gotGraph, err = st.EncodeImages(ctx, images.F32, n)
					}
				} else {
					got, err = m.EncodeTexts(ctx, texts)
					if err == nil {
						gotGraph, err = st.EncodeTexts(ctx, texts)
					}
				}
				if err != nil {
					t.Fatal(err)
				}
				for _, c := range []struct {
					path string
					got  []float32
				}{{"engine", got}, {"graph", gotGraph}} {
					if r := tensorRel(c.got, want); !(r <= 1e-5) {
						t.Errorf("%s %s embeddings (%s): max|go-ref|/max|ref| = %.3g > 1e-5", who, kind, c.path, r)
					} else {
						t.Logf("%s %s embeddings (%s): %.2g", who, kind, c.path, r)
					}
				}
			}
		}
		t.Run(fam+"/teacher", func(t *testing.T) { check(t, "teacher", tArch, teacher) })
		for _, s := range []string{"student-a", "student-b"} {
			t.Run(fam+"/"+s, func(t *testing.T) {
				sArch := readConfigArch(t, distillPath(t, "inherit", fam, s+".config.json"))
				want, _ := readSafetensors(t, distillPath(t, "inherit", fam, s+".safetensors.gz"))
				got, err := Inherit(teacher, tArch, sArch)
				if err != nil {
					t.Fatal(err)
				}
				for name, w := range want {
					g, ok := got[name]
					switch {
					case !ok:
						t.Errorf("%s: missing from the inherited student", name)
					case g.DType != w.DType || !slices.Equal(g.Shape, w.Shape):
						t.Errorf("%s: %s %v, want %s %v", name, g.DType, g.Shape, w.DType, w.Shape)
					case !bytes.Equal(g.Data, w.Data):
						t.Errorf("%s: values differ from the official student", name)
					}
				}
				for name := range got {
					if _, ok := want[name]; !ok {
						t.Errorf("%s: not in the official student", name)
					}
				}
				check(t, s, sArch, got)
			})
		}
	}
}

// TestInheritErrors checks that incompatible pairs are refused with an
// error naming the problem.
func TestInheritErrors(t *testing.T) {
	teacher, _ := readSafetensors(t, distillPath(t, "inherit", "vit", "teacher.safetensors.gz"))
	tArch := readConfigArch(t, distillPath(t, "inherit", "vit", "teacher.config.json"))
	sArch := readConfigArch(t, distillPath(t, "inherit", "vit", "student-a.config.json"))
	rnArch := readConfigArch(t, distillPath(t, "inherit", "rn", "student-b.config.json"))

	wider := cloneArch(sArch)
	wider.Vision.Transformer.Width = 80
	for i := range wider.Vision.Transformer.Blocks {
		wider.Vision.Transformer.Blocks[i].Heads = 5
	}
	headDim := cloneArch(sArch)
	headDim.Text.Transformer.HeadDim = 8
	for i := range headDim.Text.Transformer.Blocks {
		headDim.Text.Transformer.Blocks[i].Heads = 6
	}
	missing := map[string]*tensor.Tensor{}
	for k, v := range teacher {
		if k != "visual.proj" {
			missing[k] = v
		}
	}
	for _, c := range []struct {
		name    string
		teacher map[string]*tensor.Tensor
		s       *config.Arch
		want    string
	}{
		{"wider student", teacher, &wider, "exceeds the teacher's"},
		{"head width", teacher, &headDim, "head width 8 differs from the teacher's 16"},
		{"tower kind", teacher, rnArch, "is a resnet, the teacher's a vit"},
		{"missing teacher tensor", missing, sArch, "visual.proj"},
		{"nil arch", teacher, nil, "nil architecture"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Inherit(c.teacher, tArch, c.s)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}
