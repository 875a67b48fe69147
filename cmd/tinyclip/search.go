package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/tinyclip-go/tinyclip/internal/search"
)

func init() {
	register(command{"search", "find the indexed images nearest to a text and/or an image", runSearch, 61})
}

func runSearch(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "search", `--db FILE [--model M] [--image FILE] [-k 20] [--json] ["a dog on a beach"]`)
	mf := addModelFlags(fs)
	dbPath := fs.String("db", "", "index file written by 'tinyclip index'")
	imagePath := fs.String("image", "", "search by this image (with the text, if any: both must match)")
	k := fs.Int("k", 20, "number of results")
	asJSON := fs.Bool("json", false, "print a JSON object {model, results: [{path, score}]}")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *dbPath == "" {
		return usagef("--db FILE is required")
	}
	text := strings.TrimSpace(strings.Join(pos, " "))
	if text == "" && *imagePath == "" {
		return usagef(`nothing to search for: give a text ("a dog on a beach") and/or --image FILE`)
	}
	if *k < 1 {
		return usagef("-k must be at least 1")
	}
	var q search.Query
	q.Text = text
	if *imagePath != "" {
		if q.Image, err = os.ReadFile(*imagePath); err != nil {
			return err
		}
	}

	db, err := search.Open(*dbPath)
	if err != nil {
		return err
	}
	defer db.Close()
	info, ok := db.Model()
	if !ok {
		return fmt.Errorf("%s is empty: run 'tinyclip index DIR --db %s' first", *dbPath, *dbPath)
	}
	if *mf.model == "" {
		*mf.model = info.Name // the model that built the index
	}
	m, err := mf.load(ctx, e, "")
	if err != nil {
		return err
	}
	if q.Image != nil {
		if _, err := m.Preprocess(q.Image); err != nil {
			return fmt.Errorf("%s: %w", *imagePath, err)
		}
	}
	res, err := db.Find(ctx, m, q, *k)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(e.stdout)
	if *asJSON {
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(struct {
			Model   string          `json:"model"`
			Results []search.Result `json:"results"`
		}{info.Name, res}); err != nil {
			return err
		}
		return w.Flush()
	}
	for _, r := range res {
		fmt.Fprintf(w, "%.4f  %s\n", r.Score, r.Path)
	}
	return w.Flush()
}
