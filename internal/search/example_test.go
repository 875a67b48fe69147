package search_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"

	"github.com/tinyclip-go/tinyclip"
	"github.com/tinyclip-go/tinyclip/internal/search"
)

// fixtureDir returns the shared fixture models folder ($TINYCLIP_SHARED or
// ../shared next to the module root).
func fixtureDir() string {
	if d := os.Getenv("TINYCLIP_SHARED"); d != "" {
		return filepath.Join(d, "fixtures", "models")
	}
	return filepath.Join("..", "..", "..", "shared", "fixtures", "models")
}

// Index a folder of images, then find the best match of a text.
func Example() {
	ctx := context.Background()
	models := fixtureDir()
	// A tiny random-weight test model; any TinyCLIP or CLIP checkpoint works.
	model, err := tinyclip.Load(ctx, filepath.Join(models, "resnet", "tinyclip_bf16.pt"),
		tinyclip.WithConfig(filepath.Join(models, "resnet", "config.json")))
	if err != nil {
		log.Fatal(err)
	}
	dir, _ := os.MkdirTemp("", "index-example")
	defer os.RemoveAll(dir)

	db, err := search.OpenOrCreate(filepath.Join(dir, "photos.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	stats, err := db.Index(ctx, model, filepath.Join(models, "inputs"), search.IndexOptions{Model: "resnet fixture"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("added", stats.Added)

	res, err := db.Find(ctx, model, search.Query{Text: "a dog"}, 2)
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range res {
		fmt.Printf("%.3f %s\n", r.Score, filepath.Base(r.Path))
	}
	// Output:
	// added 4
	// 0.232 a_square.png
	// 0.218 c_tall.jpg
}

// Serve the search API and page next to other routes.
func ExampleNewHandler() {
	ctx := context.Background()
	models := fixtureDir()
	model, err := tinyclip.Load(ctx, filepath.Join(models, "resnet", "tinyclip_bf16.pt"),
		tinyclip.WithConfig(filepath.Join(models, "resnet", "config.json")))
	if err != nil {
		log.Fatal(err)
	}
	dir, _ := os.MkdirTemp("", "handler-example")
	defer os.RemoveAll(dir)
	db, err := search.OpenOrCreate(filepath.Join(dir, "photos.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Index(ctx, model, filepath.Join(models, "inputs"), search.IndexOptions{}); err != nil {
		log.Fatal(err)
	}

	h, err := search.NewHandler(ctx, db, model, search.HandlerOptions{})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.Handle("/", h) // the page, /v1/search, /v1/index, /v1/thumbnail, /v1/image
	srv := httptest.NewServer(mux)
	defer srv.Close()

	resp, err := http.Post(srv.URL+"/v1/search", "application/json", strings.NewReader(`{"text": "a dog", "k": 1}`))
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	fmt.Println(resp.Status)
	// Output: 200 OK
}
