package data_test

import (
	"context"
	"fmt"
	"io"
	"log"

	"github.com/tinyclip-go/tinyclip/internal/data"
)

// Read the CIFAR-10 test images straight from their tar and process them on
// several goroutines, in dataset order, eight at a time.
func ExampleNewPipeline() {
	ds, err := data.Open("../../../shared/data/train/cifar10-test.tar", data.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer ds.Close()
	fmt.Println(ds.Len(), "images,", len(ds.Classes()), "classes:", ds.Classes()[:3])

	size := func(s data.Sample, b []byte) (int, error) { return len(b), nil } // decode here
	p := data.NewPipeline(context.Background(), ds, size, data.PipelineOptions{BatchSize: 8, Workers: 4})
	defer p.Close()
	batches, bytes := 0, 0
	for {
		batch, err := p.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		if batches == 0 {
			fmt.Println("first:", batch[0].Sample.Name, "label", batch[0].Sample.Label)
		}
		batches++
		for _, it := range batch {
			if it.Err != nil {
				log.Printf("%s: %v", it.Sample.Name, it.Err)
				continue
			}
			bytes += it.Value
		}
	}
	fmt.Println(batches, "batches,", bytes > 0)
	// Output:
	// 1000 images, 10 classes: [airplane automobile bird]
	// first: airplane/0000.png label 0
	// 125 batches, true
}
