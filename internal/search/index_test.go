package search

import (
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinyclip-go/tinyclip"
)

func touch(t *testing.T, path string, when time.Time) {
	t.Helper()
	if err := os.Chtimes(path, when, when); err != nil {
		t.Fatal(err)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func hashesOf(t *testing.T, paths ...string) map[[sha256.Size]byte]bool {
	t.Helper()
	out := map[[sha256.Size]byte]bool{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[sha256.Sum256(b)] = true
	}
	return out
}

// checkIndex compares the index with the files: the same set of paths, and
// each vector equal to the encoder's embedding of the file's current bytes.
func checkIndex(t *testing.T, db *DB, enc *fakeEncoder, want ...string) {
	t.Helper()
	got := storedVectors(t, db)
	sort.Strings(want)
	if g := sortedKeys(got); strings.Join(g, "\n") != strings.Join(want, "\n") {
		t.Fatalf("indexed paths\n%s\nwant\n%s", strings.Join(g, "\n"), strings.Join(want, "\n"))
	}
	for _, p := range want {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if d := maxAbsDiff(got[p], enc.vec(b)); d > 1e-7 {
			t.Errorf("%s: stored vector differs from the file's embedding by %g", p, d)
		}
	}
}

func TestIndexIncremental(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	base := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	p := func(name string) string { return filepath.Join(dir, filepath.FromSlash(name)) }
	files := map[string][]byte{
		"a.png":          testPNG(t, 1, 16, 16),
		"b.PNG":          testPNG(t, 2, 16, 16),
		"sub/c.png":      testPNG(t, 3, 20, 12),
		"sub/deep/f.png": testPNG(t, 6, 9, 9),
		"bad.png":        []byte("not an image at all"),
		".hidden/x.png":  testPNG(t, 4, 8, 8),
		".y.png":         testPNG(t, 5, 8, 8),
		"notes.txt":      []byte("not an image either"),
	}
	for name, b := range files {
		writeFile(t, p(name), b)
		touch(t, p(name), base)
	}
	enc := &fakeEncoder{dim: 8}
	db, err := OpenOrCreate(filepath.Join(t.TempDir(), "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var skippedMu sync.Mutex
	var skipped []string
	opts := IndexOptions{Model: "fake", Batch: 2, Workers: 3, OnSkip: func(path string, err error) {
		skippedMu.Lock()
		defer skippedMu.Unlock()
		skipped = append(skipped, filepath.Base(path))
	}}

	// First run: everything but the hidden files, the text file and the
	// undecodable file.
	st, err := db.Index(ctx, enc, dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	want := IndexStats{Files: 5, Added: 4, Skipped: 1}
	if st != want {
		t.Errorf("first run: %+v, want %+v", st, want)
	}
	if got, w := hashesOf(t, p("a.png"), p("b.PNG"), p("sub/c.png"), p("sub/deep/f.png")), enc.takeEmbedded(); len(w) != 4 || !sameHashes(got, w) {
		t.Errorf("first run embedded %d images, want the 4 decodable ones", len(w))
	}
	if strings.Join(skipped, ",") != "bad.png" {
		t.Errorf("skipped %v, want [bad.png]", skipped)
	}
	checkIndex(t, db, enc, p("a.png"), p("b.PNG"), p("sub/c.png"), p("sub/deep/f.png"))
	if m, ok := db.Model(); !ok || m.Name != "fake" || m.Dim != 8 {
		t.Errorf("model %+v %v", m, ok)
	}

	// Second run: nothing changed, nothing embedded; the bad file is not
	// retried (nor reported again).
	skipped = nil
	st, err = db.Index(ctx, enc, dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if want := (IndexStats{Files: 5, Unchanged: 4, Skipped: 1}); st != want {
		t.Errorf("second run: %+v, want %+v", st, want)
	}
	if e := enc.takeEmbedded(); len(e) != 0 || len(skipped) != 0 {
		t.Errorf("second run embedded %d images and reported %v", len(e), skipped)
	}

	// Changes: b changes content, a is only touched, c is deleted, d is
	// new, e is a copy of c's content under a new name (a move), the bad
	// file is fixed, and the deep folder is removed.
	later := base.Add(time.Hour)
	writeFile(t, p("b.PNG"), testPNG(t, 22, 17, 16))
	touch(t, p("b.PNG"), later)
	touch(t, p("a.png"), later)
	cBytes := files["sub/c.png"]
	if err := os.Remove(p("sub/c.png")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, p("sub/e.png"), cBytes)
	writeFile(t, p("d.png"), testPNG(t, 7, 16, 16))
	writeFile(t, p("bad.png"), testPNG(t, 8, 10, 10))
	if err := os.RemoveAll(p("sub/deep")); err != nil {
		t.Fatal(err)
	}
	st, err = db.Index(ctx, enc, dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	want = IndexStats{Files: 5, Added: 2, Updated: 1, Reused: 1, Touched: 1, Removed: 2}
	if st != want {
		t.Errorf("third run: %+v, want %+v", st, want)
	}
	if got, w := hashesOf(t, p("b.PNG"), p("d.png"), p("bad.png")), enc.takeEmbedded(); len(w) != 3 || !sameHashes(got, w) {
		t.Errorf("third run embedded %d images, want b, d and the fixed bad.png", len(w))
	}
	all := []string{p("a.png"), p("b.PNG"), p("bad.png"), p("d.png"), p("sub/e.png")}
	checkIndex(t, db, enc, all...)
	if n, err := db.Len(ctx); err != nil || n != 5 {
		t.Errorf("Len = %d, %v", n, err)
	}
	var nskipped int
	if err := db.sql.QueryRow(`SELECT count(*) FROM skipped`).Scan(&nskipped); err != nil || nskipped != 0 {
		t.Errorf("%d files still recorded as skipped (%v)", nskipped, err)
	}

	// The touched file's new time was stored: a fourth run does nothing.
	st, err = db.Index(ctx, enc, dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if want := (IndexStats{Files: 5, Unchanged: 5}); st != want {
		t.Errorf("fourth run: %+v, want %+v", st, want)
	}

	// Searching with a file's own embedding finds it first, with score 1.
	d, _ := os.ReadFile(p("d.png"))
	res, err := db.Search(ctx, enc.vec(d), 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 3 || res[0].Path != p("d.png") || res[0].Score < 0.99999 {
		t.Errorf("search by d's embedding: %+v", res)
	}

	// A file that turns undecodable loses its entry.
	writeFile(t, p("d.png"), []byte("broken now"))
	touch(t, p("d.png"), later.Add(time.Hour))
	if _, err := db.Index(ctx, enc, dir, opts); err != nil {
		t.Fatal(err)
	}
	checkIndex(t, db, enc, p("a.png"), p("b.PNG"), p("bad.png"), p("sub/e.png"))
	if res, err := db.Search(ctx, enc.vec(d), 10); err != nil || len(res) != 4 {
		t.Errorf("search after d broke: %d results, %v", len(res), err)
	}
}

func sameHashes(want map[[sha256.Size]byte]bool, got [][sha256.Size]byte) bool {
	seen := map[[sha256.Size]byte]bool{}
	for _, h := range got {
		if !want[h] || seen[h] {
			return false
		}
		seen[h] = true
	}
	return len(seen) == len(want)
}

// Two folders in one index: indexing one never removes the other's entries.
func TestIndexTwoRoots(t *testing.T) {
	ctx := context.Background()
	d1, d2 := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(d1, "a.png"), testPNG(t, 1, 8, 8))
	writeFile(t, filepath.Join(d2, "b.png"), testPNG(t, 2, 8, 8))
	enc := &fakeEncoder{dim: 8}
	db, err := OpenOrCreate(filepath.Join(t.TempDir(), "i.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, d := range []string{d1, d2, d1} {
		if _, err := db.Index(ctx, enc, d, IndexOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	r1, _ := filepath.EvalSymlinks(d1)
	r2, _ := filepath.EvalSymlinks(d2)
	checkIndex(t, db, enc, filepath.Join(r1, "a.png"), filepath.Join(r2, "b.png"))
}

func TestIndexModelMismatch(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.png"), testPNG(t, 1, 8, 8))
	path := filepath.Join(t.TempDir(), "i.db")
	db, err := OpenOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Index(ctx, &fakeEncoder{dim: 8}, dir, IndexOptions{Model: "model-one"}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	db, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, c := range []struct {
		name string
		enc  *fakeEncoder
		msg  string
	}{
		{"same width", &fakeEncoder{dim: 8, seed: 1}, "embeds differently"},
		{"other width", &fakeEncoder{dim: 12}, "12 dimensions"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := db.Index(ctx, c.enc, dir, IndexOptions{Model: "model-two"})
			if !errors.Is(err, ErrModelMismatch) || !strings.Contains(err.Error(), c.msg) || !strings.Contains(err.Error(), `"model-one"`) {
				t.Errorf("Index with another model: %v", err)
			}
			if _, err := db.Find(ctx, c.enc, Query{Text: "x"}, 1); !errors.Is(err, ErrModelMismatch) {
				t.Errorf("Find with another model: %v", err)
			}
			if _, err := NewHandler(ctx, db, c.enc, HandlerOptions{}); !errors.Is(err, ErrModelMismatch) {
				t.Errorf("NewHandler with another model: %v", err)
			}
		})
	}
	// The original model is still accepted.
	if _, err := db.Find(ctx, &fakeEncoder{dim: 8}, Query{Text: "x"}, 1); err != nil {
		t.Errorf("Find with the index's model: %v", err)
	}
}

// A cancelled run keeps the batches it finished; the next run embeds only
// the rest.
func TestIndexCancelResume(t *testing.T) {
	dir := t.TempDir()
	const n = 12
	var paths []string
	for i := 0; i < n; i++ {
		p := filepath.Join(dir, "img"+string(rune('a'+i))+".png")
		writeFile(t, p, testPNG(t, uint64(100+i), 8, 8))
		paths = append(paths, p)
	}
	db, err := OpenOrCreate(filepath.Join(t.TempDir(), "i.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithCancel(context.Background())
	enc := &fakeEncoder{dim: 8}
	// Call 1 is the model fingerprint; cancel after two batches of images.
	enc.afterCalls = func(c int) {
		if c == 3 {
			cancel()
		}
	}
	st, err := db.Index(ctx, enc, dir, IndexOptions{Batch: 2, Workers: 1})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Index returned %v (%+v)", err, st)
	}
	done, err := db.Len(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if done < 2 || done >= n {
		t.Fatalf("after cancellation %d of %d images are stored, want at least one batch and not all", done, n)
	}
	enc.takeEmbedded()
	enc.afterCalls = nil
	st, err = db.Index(context.Background(), enc, dir, IndexOptions{Batch: 2})
	if err != nil {
		t.Fatal(err)
	}
	if st.Added != n-done || st.Unchanged != done {
		t.Errorf("resumed run: %+v, want %d added and %d unchanged", st, n-done, done)
	}
	if e := enc.takeEmbedded(); len(e) != n-done {
		t.Errorf("resumed run embedded %d images, want %d", len(e), n-done)
	}
	checkIndex(t, db, enc, paths...)
}

// An encoder failure (not a bad file) fails the run with the cause.
type failingEncoder struct{ fakeEncoder }

func (f *failingEncoder) EncodeImageBytes(ctx context.Context, data [][]byte, _ ...tinyclip.EncodeOption) ([][]float32, error) {
	if len(data) == 1 && string(data[0]) == string(probeImage()) {
		return f.fakeEncoder.EncodeImageBytes(ctx, data)
	}
	return nil, errInjected
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "missing.db")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open of a missing file: %v", err)
	}
	junk := filepath.Join(dir, "junk.db")
	writeFile(t, junk, []byte("this is not a database file, just text that is long enough to look like one........"))
	for _, open := range []func(string) (*DB, error){Open, OpenOrCreate} {
		if db, err := open(junk); err == nil {
			db.Close()
			t.Errorf("opening a text file as an index succeeded")
		}
	}
	other := filepath.Join(dir, "other.db")
	db, err := OpenOrCreate(other)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.sql.Exec(`DROP TABLE meta`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if db, err := Open(other); err == nil || !strings.Contains(err.Error(), "not a tinyclip index") {
		if db != nil {
			db.Close()
		}
		t.Errorf("opening a SQLite file without the index tables: %v", err)
	}
	// An empty index answers searches with nothing, and model checks with
	// ErrNoModel.
	db, err = OpenOrCreate(filepath.Join(dir, "empty.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if res, err := db.Search(context.Background(), []float32{1, 0}, 5); err != nil || len(res) != 0 {
		t.Errorf("search of an empty index: %v, %v", res, err)
	}
	if err := db.CheckModel(context.Background(), &fakeEncoder{dim: 8}); !errors.Is(err, ErrNoModel) {
		t.Errorf("CheckModel on an empty index: %v", err)
	}
	if _, err := db.Index(context.Background(), &fakeEncoder{dim: 8}, filepath.Join(dir, "no-such-dir"), IndexOptions{}); err == nil {
		t.Error("indexing a missing folder succeeded")
	}
}

func TestIndexEncoderFailure(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.png"), testPNG(t, 1, 8, 8))
	db, err := OpenOrCreate(filepath.Join(t.TempDir(), "i.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, err = db.Index(context.Background(), &failingEncoder{fakeEncoder{dim: 8}}, dir, IndexOptions{})
	// On the bytes path a failing batch is retried per image, and a
	// per-image failure is a skip, not a fatal error.
	if err != nil {
		t.Fatalf("Index: %v", err)
	}
	var msg string
	if err := db.sql.QueryRow(`SELECT error FROM skipped`).Scan(&msg); err != nil || !strings.Contains(msg, "injected") {
		t.Errorf("skipped error %q (%v)", msg, err)
	}
}

// On the pixel path an encoder failure is the engine's, and fatal.
type failingPixelEncoder struct{ fakeEncoder }

func (f *failingPixelEncoder) Preprocess(data []byte) ([]float32, error) {
	return make([]float32, 3), nil
}
func (f *failingPixelEncoder) EncodePixels(ctx context.Context, pixels []float32, n int, _ ...tinyclip.EncodeOption) ([][]float32, error) {
	return nil, errInjected
}

func TestIndexEngineFailure(t *testing.T) {
	dir := t.TempDir()
	for i := 0; i < 5; i++ {
		writeFile(t, filepath.Join(dir, string(rune('a'+i))+".png"), testPNG(t, uint64(i), 8, 8))
	}
	db, err := OpenOrCreate(filepath.Join(t.TempDir(), "i.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, err = db.Index(context.Background(), &failingPixelEncoder{fakeEncoder{dim: 8}}, dir, IndexOptions{Batch: 2})
	if !errors.Is(err, errInjected) {
		t.Fatalf("Index with a failing engine: %v", err)
	}
}
