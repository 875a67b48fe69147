package train_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/tinyclip-go/tinyclip/internal/train"
)

// A recipe run from YAML: a tiny student trained from its official
// initialisation with the CLIP loss on synthetic data (with a teacher it
// would inherit from it and mimic its affinities), with checkpoints and a
// zero-shot evaluation on held-out synthetic images.
func ExampleDistill() {
	dir, err := os.MkdirTemp("", "distill")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	student := filepath.Join(dir, "student.json")
	os.WriteFile(student, []byte(`{"embed_dim": 32,
		"vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
		"text_cfg": {"width": 32, "heads": 2, "layers": 2}}`), 0o644)
	recipe, err := train.ParseRecipe(strings.NewReader(`
student: ` + student + `
inherit: none
data: synthetic:64
batch: 16
steps: 4
lr: 0.001
checkpoint_every: 2
eval_data: synthetic:32
out: ` + filepath.Join(dir, "run") + "\n"))
	if err != nil {
		log.Fatal(err)
	}
	res, err := train.Distill(context.Background(), recipe, train.DistillOptions{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("steps:", res[0].Steps)
	fmt.Println("final:", filepath.Base(res[0].Final), filepath.Base(res[0].FinalHF))
	latest, _ := train.LatestCheckpoint(filepath.Join(dir, "run"))
	fmt.Println("latest checkpoint:", filepath.Base(latest))
	_, ok := res[0].Eval["zeroshot/top1"]
	fmt.Println("zero-shot accuracy measured:", ok)
	// Output:
	// steps: 4
	// final: final final-hf
	// latest checkpoint: ckpt-4
	// zero-shot accuracy measured: true
}
