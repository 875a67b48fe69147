package train_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/tinyclip-go/tinyclip/internal/config"
	"github.com/tinyclip-go/tinyclip/internal/engine"
	"github.com/tinyclip-go/tinyclip/internal/train"
)

// The released recipe's learning rate: warm-up for 2000 steps to 1e-4, then
// a cosine to zero at the last step.
func ExampleCosineLR() {
	for _, step := range []int{0, 999, 1999, 2000, 7000, 12000} {
		fmt.Printf("step %5d: %.3g\n", step, train.CosineLR(1e-4, 2000, 12000, step))
	}
	// Output:
	// step     0: 5e-08
	// step   999: 5e-05
	// step  1999: 0.0001
	// step  2000: 0.0001
	// step  7000: 5e-05
	// step 12000: 0
}

// The official parameter groups: weight decay only for matrices that are
// not norms, biases or the logit scale.
func ExampleDecayed() {
	for _, p := range []struct {
		name string
		ndim int
	}{
		{"visual.transformer.resblocks.0.attn.in_proj_weight", 2},
		{"visual.transformer.resblocks.0.ln_1.weight", 1},
		{"visual.class_embedding", 1},
		{"visual.layer1.0.bn1.weight", 1},
		{"token_embedding.weight", 2},
		{"logit_scale", 0},
	} {
		fmt.Println(p.name, train.Decayed(p.name, p.ndim))
	}
	// Output:
	// visual.transformer.resblocks.0.attn.in_proj_weight true
	// visual.transformer.resblocks.0.ln_1.weight false
	// visual.class_embedding false
	// visual.layer1.0.bn1.weight false
	// token_embedding.weight true
	// logit_scale false
}

// Distilling a student from a teacher: inheritance, steps, export.
func Example() {
	ctx := context.Background()
	parse := func(js string) *config.Arch {
		cfg, err := config.Parse([]byte(js))
		if err != nil {
			log.Fatal(err)
		}
		a, err := config.FromConfig(cfg)
		if err != nil {
			log.Fatal(err)
		}
		return a
	}
	teacherArch := parse(`{"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 4, "width": 64, "head_width": 16, "patch_size": 8},
		"text_cfg": {"width": 32, "heads": 2, "layers": 4}}`)
	studentArch := parse(`{"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
		"text_cfg": {"width": 32, "heads": 2, "layers": 2}}`)

	// A teacher (here freshly initialised; normally a loaded checkpoint).
	tw, err := train.Init(teacherArch, 1)
	if err != nil {
		log.Fatal(err)
	}
	tm, err := engine.Build(teacherArch, tw, engine.Options{})
	if err != nil {
		log.Fatal(err)
	}
	// The student inherits every other teacher layer and the leading widths.
	sw, err := train.Inherit(tw, teacherArch, studentArch)
	if err != nil {
		log.Fatal(err)
	}
	student, err := train.NewStudent(studentArch, sw)
	if err != nil {
		log.Fatal(err)
	}
	const batch = 4
	step, err := train.NewStep(student, train.NewEngineTeacher(tm), batch, train.DefaultHyper(studentArch))
	if err != nil {
		log.Fatal(err)
	}
	images := make([]float32, batch*3*32*32) // preprocessed images
	for i := range images {
		images[i] = float32(i%97)/48 - 1
	}
	tokens := [][]int{{49406, 320, 1125, 49407}, {49406, 320, 2368, 49407}, {49406, 539, 49407}, {49406, 1929, 320, 49407}}
	for k := range 3 {
		m, err := step.Run(ctx, images, tokens, train.CosineLR(1e-4, 2, 10, k))
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("step %d, scale used %.2f\n", m.Step, m.StudentScale)
	}
	state, err := step.State() // what a checkpoint stores
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("AdamW step count:", state.Step)
	dir, err := os.MkdirTemp("", "student")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := student.Export(dir); err != nil { // loadable by tinyclip.Load
		log.Fatal(err)
	}
	// Output:
	// step 1, scale used 14.29
	// step 2, scale used 50.00
	// step 3, scale used 50.00
	// AdamW step count: 3
}
