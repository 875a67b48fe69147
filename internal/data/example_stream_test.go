package data_test

import (
	"context"
	"fmt"
	"log"

	"github.com/tinyclip-go/tinyclip/internal/data"
	"github.com/tinyclip-go/tinyclip/internal/imageproc"
)

// A synthetic image–caption dataset: coloured shapes with compositional
// captions, labelled by colour and shape.
func ExampleNewSynthetic() {
	ds, err := data.NewSynthetic(data.SyntheticOptions{N: 1000, Seed: 0, Size: 64})
	if err != nil {
		log.Fatal(err)
	}
	for i := range 3 {
		s := ds.Sample(i)
		fmt.Printf("%q (class %s)\n", s.Captions[0], ds.Classes()[s.Label])
	}
	// Output:
	// "a gray image with three green circles at the bottom." (class green circle)
	// "two red circles at the bottom." (class red circle)
	// "two green circles in the center." (class green circle)
}

// A training stream: fixed-size batches of augmented images and token
// rows, with the cursor to resume after each batch.
func ExampleNewStream() {
	ds, err := data.NewSynthetic(data.SyntheticOptions{N: 20, Seed: 1})
	if err != nil {
		log.Fatal(err)
	}
	tr := imageproc.DefaultOptions()
	tr.Size = 32
	s, err := data.NewStream(context.Background(), ds, data.StreamOptions{
		BatchSize: 8, Seed: 7, Transform: tr,
		Tokenize: func(text string) ([]int, error) { return []int{49406, len(text), 49407}, nil }, // a stand-in
	})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	for range 3 {
		b, err := s.Next()
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("epoch %d: %d images (%d values), %d token rows, next %+v, dropped %d\n",
			b.Epoch, len(b.Tokens), len(b.Images), len(b.Tokens), b.Next, b.Dropped)
	}
	// Output:
	// epoch 0: 8 images (24576 values), 8 token rows, next {Epoch:0 Index:8}, dropped 0
	// epoch 0: 8 images (24576 values), 8 token rows, next {Epoch:0 Index:16}, dropped 0
	// epoch 1: 8 images (24576 values), 8 token rows, next {Epoch:1 Index:8}, dropped 4
}
