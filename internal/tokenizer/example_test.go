package tokenizer_test

import (
	"fmt"

	"github.com/tinyclip-go/tinyclip/internal/tokenizer"
)

func ExampleTokenizer_Tokenize() {
	tok, err := tokenizer.Default()
	if err != nil {
		panic(err)
	}
	ids := tok.Tokenize("a photo of a cat.")
	fmt.Println(ids)
	fmt.Println(tokenizer.Pad(ids, 10))
	// Output:
	// [49406 320 1125 539 320 2368 269 49407]
	// [49406 320 1125 539 320 2368 269 49407 0 0]
}
