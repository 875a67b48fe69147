package data

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/tinyclip-go/tinyclip/internal/imageproc"
)

// byteTokens is a reversible stand-in tokenizer: SOT, the bytes, EOT.
func byteTokens(s string) ([]int, error) {
	ids := []int{49406}
	for _, b := range []byte(s) {
		ids = append(ids, int(b))
	}
	return append(ids, 49407), nil
}

func tokensText(ids []int) string {
	var b []byte
	for _, id := range ids[1 : len(ids)-1] {
		b = append(b, byte(id))
	}
	return string(b)
}

func streamOpts(b, size int) StreamOptions {
	tr := imageproc.DefaultOptions()
	tr.Size = size
	return StreamOptions{BatchSize: b, Seed: 3, Transform: tr, Tokenize: byteTokens}
}

// collect reads n batches.
func collect(t *testing.T, ds Dataset, opts StreamOptions, n int) []*Batch {
	t.Helper()
	s, err := NewStream(context.Background(), ds, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out []*Batch
	for range n {
		b, err := s.Next()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func sameBatch(a, b *Batch) bool {
	return slices.Equal(a.Images, b.Images) && reflect.DeepEqual(a.Tokens, b.Tokens) &&
		slices.Equal(a.Indices, b.Indices) && a.Next == b.Next && a.Epoch == b.Epoch && a.Dropped == b.Dropped
}

// TestStreamOrderAndResume checks the epoch structure (shuffled
// permutations, incomplete batch dropped), determinism whatever the number
// of workers, and that a stream started at any batch's Next cursor goes on
// with exactly the batches that followed it.
func TestStreamOrderAndResume(t *testing.T) {
	ds, err := NewSynthetic(SyntheticOptions{N: 50, Seed: 2, Size: 24})
	if err != nil {
		t.Fatal(err)
	}
	opts := streamOpts(8, 16)
	opts.Workers = 1
	ref := collect(t, ds, opts, 14) // 6 batches per epoch: epochs 0, 1 and two of epoch 2
	opts.Workers = 5
	opts.Prefetch = 1
	again := collect(t, ds, opts, 14)
	for i := range ref {
		if !sameBatch(ref[i], again[i]) {
			t.Fatalf("batch %d differs between 1 and 5 workers", i)
		}
	}
	for e := 0; e < 2; e++ {
		seen := map[int]bool{}
		for _, b := range ref[6*e : 6*e+6] {
			if b.Epoch != e || len(b.Tokens) != 8 || len(b.Images) != 8*3*16*16 {
				t.Fatalf("epoch %d: batch epoch %d, %d rows", e, b.Epoch, len(b.Tokens))
			}
			for k, i := range b.Indices {
				if seen[i] {
					t.Fatalf("epoch %d: sample %d twice", e, i)
				}
				seen[i] = true
				if got, want := tokensText(b.Tokens[k]), ds.Sample(i).Captions[0]; got != want {
					t.Fatalf("sample %d: caption %q, want %q", i, got, want)
				}
			}
		}
		order, _ := EpochOrder(3, e, 50, false)
		if want := order[:48]; !reflect.DeepEqual(slices.Concat(indices(ref[6*e:6*e+6])...), want) {
			t.Fatalf("epoch %d: samples not in EpochOrder", e)
		}
	}
	if ref[6].Dropped != 2 || ref[12].Dropped != 2 || ref[5].Dropped != 0 {
		t.Errorf("dropped %d, %d, %d; want 2, 2, 0", ref[6].Dropped, ref[12].Dropped, ref[5].Dropped)
	}
	if ref[5].Next != (Cursor{0, 48}) {
		t.Errorf("cursor after epoch 0's last batch %+v", ref[5].Next)
	}
	o0, _ := EpochOrder(3, 0, 50, false)
	o1, _ := EpochOrder(3, 1, 50, false)
	if reflect.DeepEqual(o0, o1) {
		t.Error("epochs 0 and 1 have the same order")
	}
	// Resume from every cursor.
	for k := 0; k+1 < len(ref); k++ {
		o := streamOpts(8, 16)
		o.Start = ref[k].Next
		got := collect(t, ds, o, 2)
		for j, b := range got {
			if k+1+j < len(ref) && !sameBatch(b, ref[k+1+j]) {
				t.Fatalf("started at %+v (after batch %d): batch %d differs", o.Start, k, k+1+j)
			}
		}
	}
	// The same sample is cropped differently in two epochs.
	first := map[int][]float32{}
	plane := 3 * 16 * 16
	changed, same := 0, 0
	for _, b := range ref[:12] {
		for k, i := range b.Indices {
			px := b.Images[k*plane : (k+1)*plane]
			if b.Epoch == 0 {
				first[i] = px
			} else if p0, ok := first[i]; ok {
				if slices.Equal(p0, px) {
					same++
				} else {
					changed++
				}
			}
		}
	}
	if changed == 0 || same > changed/4 {
		t.Errorf("epoch 1 crops: %d changed, %d identical to epoch 0", changed, same)
	}
}

func indices(bs []*Batch) [][]int {
	var out [][]int
	for _, b := range bs {
		out = append(out, b.Indices)
	}
	return out
}

// writePNGFolder writes an ImageFolder of synthetic PNGs with classes a and
// b; files named in corrupt get garbage bytes.
func writePNGFolder(t *testing.T, root string, n int, corrupt map[int]bool) {
	t.Helper()
	syn, _ := NewSynthetic(SyntheticOptions{N: n, Seed: 4, Size: 20})
	for i := 0; i < n; i++ {
		class := []string{"apple", "bear"}[i%2]
		dir := filepath.Join(root, class)
		os.MkdirAll(dir, 0o755)
		b, err := syn.Read(i)
		if err != nil {
			t.Fatal(err)
		}
		if corrupt[i] {
			b = b[:len(b)/2]
		}
		if err := os.WriteFile(filepath.Join(dir, strings.Repeat("x", i%3)+string(rune('a'+i))+".png"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestStreamImageFolderTemplates checks captions made from templates, and
// that corrupt images are skipped, reported and replaced so that batches
// stay full.
func TestStreamImageFolderTemplates(t *testing.T) {
	root := t.TempDir()
	writePNGFolder(t, root, 20, map[int]bool{3: true, 11: true})
	ds, err := OpenImageFolder(root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	opts := streamOpts(4, 16)
	opts.Templates = []string{"a photo of a {class}.", "a {} again."}
	bs := collect(t, ds, opts, 8) // 18 good samples: 4 batches per epoch
	skipped := map[string]int{}
	forms := map[bool]bool{}
	for _, b := range bs {
		for _, s := range b.Skipped {
			skipped[s.Name]++
			if !errors.Is(s.Err, imageproc.ErrCorrupt) && !strings.Contains(s.Err.Error(), "EOF") {
				t.Errorf("%s: %v", s.Name, s.Err)
			}
		}
		for k, i := range b.Indices {
			class := ds.Classes()[ds.Sample(i).Label]
			text := tokensText(b.Tokens[k])
			if text != "a photo of a "+class+"." && text != "a "+class+" again." {
				t.Fatalf("caption %q for class %s", text, class)
			}
			forms[strings.HasPrefix(text, "a photo")] = true
		}
	}
	if len(skipped) != 2 {
		t.Errorf("skipped %v, want the two corrupt files", skipped)
	}
	for name, n := range skipped {
		if n != 2 { // once per epoch
			t.Errorf("%s skipped %d times in two epochs", name, n)
		}
	}
	if len(forms) != 2 {
		t.Errorf("templates used: %v", forms)
	}
	if bs[4].Dropped != 2 || bs[4].Epoch != 1 {
		t.Errorf("first batch of epoch 1: epoch %d, dropped %d; want 1, 2", bs[4].Epoch, bs[4].Dropped)
	}
}

// TestStreamWebDataset reads captions from webdataset shards given as a
// brace pattern, and reports a truncated shard and a missing one clearly.
func TestStreamWebDataset(t *testing.T) {
	dir := t.TempDir()
	syn, _ := NewSynthetic(SyntheticOptions{N: 12, Seed: 5, Size: 20})
	for s := 0; s < 2; s++ {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for i := 6 * s; i < 6*s+6; i++ {
			img, _ := syn.Read(i)
			key := filepath.Base(syn.Sample(i).Name)
			key = strings.TrimSuffix(key, ".png")
			for _, m := range []struct {
				name string
				data []byte
			}{{key + ".png", img}, {key + ".txt", []byte(syn.Sample(i).Captions[0] + "\n")}} {
				tw.WriteHeader(&tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.data)), Typeflag: tar.TypeReg})
				tw.Write(m.data)
			}
		}
		tw.Close()
		os.WriteFile(filepath.Join(dir, "shard-0"+string(rune('0'+s))+".tar"), buf.Bytes(), 0o644)
	}
	ds, err := OpenTraining([]string{filepath.Join(dir, "shard-{00..01}.tar")}, 0, 16, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ds.Close()
	if ds.Len() != 12 {
		t.Fatalf("%d samples, want 12", ds.Len())
	}
	opts := streamOpts(4, 16)
	opts.Sequential = true
	bs := collect(t, ds, opts, 3)
	for _, b := range bs {
		for k, i := range b.Indices {
			if got, want := tokensText(b.Tokens[k]), syn.Sample(i).Captions[0]; got != want {
				t.Fatalf("sample %d: %q, want %q", i, got, want)
			}
		}
	}

	// A shard cut in the middle of a header, and a missing shard.
	raw, _ := os.ReadFile(filepath.Join(dir, "shard-01.tar"))
	os.WriteFile(filepath.Join(dir, "shard-02.tar"), raw[:700], 0o644)
	_, err = OpenTraining([]string{filepath.Join(dir, "shard-{00..02}.tar")}, 0, 16, Options{})
	if err == nil || !strings.Contains(err.Error(), "shard-02.tar") || !errors.Is(err, ErrFormat) {
		t.Errorf("truncated shard: %v", err)
	}
	_, err = OpenTraining([]string{filepath.Join(dir, "shard-{00..01}.tar"), filepath.Join(dir, "shard-03.tar")}, 0, 16, Options{})
	if err == nil || !strings.Contains(err.Error(), "shard-03.tar") || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing shard: %v", err)
	}
}

func TestStreamErrors(t *testing.T) {
	ds := &memDataset{n: 10, bad: map[int]bool{}}
	for i := 0; i < 10; i++ {
		ds.bad[i] = true
	}
	s, err := NewStream(context.Background(), ds, streamOpts(2, 8))
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Next()
	s.Close()
	if !errors.Is(err, ErrNoBatch) {
		t.Errorf("all samples corrupt: %v", err)
	}
	if _, err := NewStream(context.Background(), ds, streamOpts(11, 8)); err == nil {
		t.Error("batch larger than the dataset: no error")
	}
	o := streamOpts(2, 8)
	o.Templates = []string{"no placeholder"}
	if _, err := NewStream(context.Background(), ds, o); err == nil {
		t.Error("template without placeholder: no error")
	}

	// Cancelling the context ends the stream.
	syn, _ := NewSynthetic(SyntheticOptions{N: 64, Seed: 1, Size: 16})
	ctx, cancel := context.WithCancel(context.Background())
	s, err = NewStream(ctx, syn, streamOpts(4, 16))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Next(); err != nil {
		t.Fatal(err)
	}
	cancel()
	for range 100 { // batches already decoded may still come out
		if _, err = s.Next(); err != nil {
			break
		}
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("after cancel: %v", err)
	}
	s.Close()
}
