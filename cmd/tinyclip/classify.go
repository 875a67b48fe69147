package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

func init() { register(command{"classify", "classify images against text labels", runClassify, 40}) }

// defaultModel is what classify uses without --model.
const defaultModel = "TinyCLIP-ViT-8M-16-Text-3M"

func runClassify(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "classify", `[--model PATH] --labels "a photo of a cat,a photo of a dog" [--json] IMAGE...`)
	mf := addModelFlags(fs)
	labelsCSV := fs.String("labels", "", "comma-separated labels")
	var labelList stringList
	fs.Var(&labelList, "label", "one label (repeatable; may contain commas)")
	asJSON := fs.Bool("json", false, "print one JSON object per image")
	images, err := parse(fs, args)
	if err != nil {
		return err
	}
	var labels []string
	if *labelsCSV != "" {
		for _, l := range strings.Split(*labelsCSV, ",") {
			l = strings.TrimSpace(l)
			if l == "" {
				return usagef("--labels %q has an empty label", *labelsCSV)
			}
			labels = append(labels, l)
		}
	}
	labels = append(labels, labelList...)
	if len(labels) == 0 {
		return usagef(`no labels: give --labels "label one,label two" or --label repeatedly`)
	}
	if len(images) == 0 {
		return usagef("no images given")
	}
	m, err := mf.load(ctx, e, defaultModel)
	if err != nil {
		return err
	}
	emb, err := encodeImageFiles(ctx, m, images, nil)
	if err != nil {
		return err
	}
	probs, err := m.Classify(ctx, emb, labels)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(e.stdout)
	defer w.Flush()
	for i, p := range probs {
		best := 0
		for j := range p {
			if p[j] > p[best] {
				best = j
			}
		}
		if *asJSON {
			b, err := json.Marshal(struct {
				Image  string    `json:"image"`
				Labels []string  `json:"labels"`
				Probs  []float32 `json:"probs"`
				Best   string    `json:"best"`
			}{images[i], labels, p, labels[best]})
			if err != nil {
				return err
			}
			w.Write(append(b, '\n'))
			continue
		}
		fmt.Fprintf(w, "%s\n", images[i])
		order := make([]int, len(p))
		for j := range order {
			order[j] = j
		}
		sort.SliceStable(order, func(a, b int) bool { return p[order[a]] > p[order[b]] })
		for _, j := range order {
			fmt.Fprintf(w, "  %6.2f%%  %s\n", 100*p[j], labels[j])
		}
	}
	return w.Flush()
}
