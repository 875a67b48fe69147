package train_test

import (
	"fmt"
	"log"
	"strings"

	"github.com/tinyclip-go/tinyclip/internal/train"
)

// The released three-stage auto-inheritance recipe in one file: every
// stage distils from the same teacher; stages 2 and 3 start from the
// previous stage's pruned model (Distill sets their inherit_from).
func ExampleRecipe_Expand() {
	recipe, err := train.ParseRecipe(strings.NewReader(`
teacher: vit-b-32-laion2b_e16.pt
inherit: auto
data: "laion400m/{00000..41455}.tar"
batch: 1024
epochs: 6
out: runs/auto
stages:
  - {name: 63m, start_sparsity: 0,    target_sparsity: 0.25, prune_step: 3000}
  - {name: 45m, start_sparsity: 0.25, target_sparsity: 0.5,  prune_step: 5000}
  - {name: 22m, start_sparsity: 0.5,  target_sparsity: 0.75, prune_step: 8000}
`))
	if err != nil {
		log.Fatal(err)
	}
	runs, err := recipe.Expand(nil)
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range runs {
		fmt.Printf("%s: sparsity %.2f → %.2f over %d steps, fused at step %d, L0 lrs %g / %g, valid: %v\n",
			r.Name, r.StartSparsity, r.TargetSparsity, r.SparsityWarmup, r.PruneStep, r.L0LR, r.LambdaLR, r.Validate() == nil)
	}
	// Output:
	// 63m: sparsity 0.00 → 0.25 over 1000 steps, fused at step 3000, L0 lrs 0.02 / -0.02, valid: true
	// 45m: sparsity 0.25 → 0.50 over 1000 steps, fused at step 5000, L0 lrs 0.02 / -0.02, valid: true
	// 22m: sparsity 0.50 → 0.75 over 1000 steps, fused at step 8000, L0 lrs 0.02 / -0.02, valid: true
}
