package tinyclip_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/tinyclip-go/tinyclip"
)

// The examples use the small random-weight test model of ../shared; a real
// TinyCLIP checkpoint is loaded the same way.
const exampleModel = "../shared/fixtures/models/vit-p16"

func Example() {
	ctx := context.Background()
	m, err := tinyclip.Load(ctx, exampleModel)
	if err != nil {
		log.Fatal(err)
	}
	photo, err := os.ReadFile("../shared/fixtures/models/inputs/a_square.png")
	if err != nil {
		log.Fatal(err)
	}
	images, err := m.EncodeImageBytes(ctx, [][]byte{photo})
	if err != nil {
		log.Fatal(err)
	}
	labels := []string{"a photo of a cat", "a dog"}
	probs, err := m.Classify(ctx, images, labels)
	if err != nil {
		log.Fatal(err)
	}
	for i, l := range labels {
		fmt.Printf("%-16s %.3f\n", l, probs[0][i])
	}
	// Output:
	// a photo of a cat 0.997
	// a dog            0.003
}

func ExampleModel_EncodeTexts() {
	ctx := context.Background()
	m, err := tinyclip.Load(ctx, exampleModel)
	if err != nil {
		log.Fatal(err)
	}
	emb, err := m.EncodeTexts(ctx, []string{"a photo of a cat", "a photo of a cat."})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(emb), "embeddings of", m.EmbedDim(), "values")
	fmt.Printf("cosine %.4f\n", tinyclip.Cosine(emb[0], emb[1]))
	ids, _ := m.Tokenize("a photo of a cat.")
	fmt.Println(ids)
	// Output:
	// 2 embeddings of 16 values
	// cosine 0.7437
	// [49406 320 1125 539 320 2368 269 49407]
}

func ExampleModel_ZeroShot() {
	ctx := context.Background()
	m, err := tinyclip.Load(ctx, exampleModel)
	if err != nil {
		log.Fatal(err)
	}
	classes := []string{"cat", "dog", "diagram"}
	templates := []string{"a photo of a {}.", "a drawing of a {}."}
	zs, err := m.ZeroShot(ctx, classes, templates)
	if err != nil {
		log.Fatal(err)
	}
	photo, _ := os.ReadFile("../shared/fixtures/models/inputs/b_wide.png")
	img, err := m.EncodeImageBytes(ctx, [][]byte{photo})
	if err != nil {
		log.Fatal(err)
	}
	logits, _ := zs.Logits(img[0]) // 100 · cosine, as the official zero-shot evaluation
	fmt.Println(len(logits), "classes")
	// Output:
	// 3 classes
}

// A service that encodes one request at a time on several threads can let
// the engine's idle threads poll briefly for the next parallel step instead
// of sleeping at once (process-wide; the default is 0).
func ExampleSetSpinWait() {
	prev := tinyclip.SetSpinWait(50 * time.Microsecond)
	defer tinyclip.SetSpinWait(prev)
	fmt.Println("previous setting:", prev)
	// Output: previous setting: 0s
}
