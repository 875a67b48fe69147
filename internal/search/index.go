package search

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/tinyclip-go/tinyclip"
	"github.com/tinyclip-go/tinyclip/internal/progress"
)

// extensions lists the file name extensions Index picks up (the match
// ignores case).
var extensions = []string{".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp"}

// MaxFileBytes is the largest file Index reads; bigger files are skipped.
const MaxFileBytes = 512 << 20

// IndexOptions configures Index. The zero value is ready to use.
type IndexOptions struct {
	// Model names the model in a new index (a zoo name, repo id or path),
	// so that later runs can load it again. It is ignored for an index that
	// already has a model.
	Model string
	// Workers is the number of goroutines reading, hashing and decoding
	// files (default GOMAXPROCS).
	Workers int
	// Batch is the number of images per encoder call (default 16).
	Batch int
	// Progress, when a terminal, shows a progress bar.
	Progress io.Writer
	// OnSkip, if set, is called for each file or folder that cannot be
	// read or decoded; such files are recorded and retried only once they
	// change. It may be called from several goroutines, never at once.
	OnSkip func(path string, err error)
}

// IndexStats counts what Index did.
type IndexStats struct {
	Files     int // image files found under the folder
	Added     int // new files embedded
	Updated   int // changed files re-embedded
	Reused    int // new or changed files whose content was already indexed (moved or copied files): embedding copied
	Touched   int // files whose size or time changed but not their content
	Unchanged int // files left alone
	Removed   int // entries of files that no longer exist
	Skipped   int // files that could not be read or decoded
}

// Embedded returns the number of images that went through the model.
func (s IndexStats) Embedded() int { return s.Added + s.Updated }

// stored is what the index knows about one file.
type stored struct {
	size, mtime int64
	hash        [sha256.Size]byte
}

// job is a file to (re)consider.
type job struct {
	path        string
	size, mtime int64
	old         *stored // nil for a new file
}

type resultKind int

const (
	kindEmbed resultKind = iota // new embedding
	kindReuse                   // embedding copied from identical content
	kindTouch                   // same content: update size and time only
	kindSkip                    // unreadable or undecodable
)

// result is a job's outcome, written by the writer goroutine.
type result struct {
	job
	kind   resultKind
	hash   [sha256.Size]byte
	vec    []float32 // kindEmbed
	blob   []byte    // kindReuse: the stored embedding
	err    error     // kindSkip
	pixels []float32 // between decoding and encoding (pixel path)
	data   []byte    // between reading and encoding (bytes path)
}

// Index walks root recursively and brings the index up to date with the
// image files found there (.jpg, .jpeg, .png, .webp, .gif and .bmp in any
// case; hidden files and folders, whose names start with ".", are left out): new and changed files are embedded
// with enc, files whose content is already indexed under another path reuse
// that embedding, and entries of files under root that no longer exist are
// removed. Entries outside root are kept, so one index can hold several
// folders. A new index records enc's model; an existing one refuses any
// other model with an error wrapping ErrModelMismatch.
//
// Work is committed in batches: a cancelled or failed Index keeps what it
// finished, and the next run continues from there. Files that cannot be
// decoded are reported through opts.OnSkip and counted, not fatal.
func (db *DB) Index(ctx context.Context, enc Encoder, root string, opts IndexOptions) (IndexStats, error) {
	db.writeMu.Lock()
	defer db.writeMu.Unlock()
	var st IndexStats
	root, err := cleanRoot(root)
	if err != nil {
		return st, err
	}
	if err := db.bindModel(ctx, enc, opts.Model); err != nil {
		return st, err
	}
	snap, skipped, hashes, err := db.snapshot(ctx)
	if err != nil {
		return st, err
	}
	var skipMu sync.Mutex
	onSkip := func(path string, err error) {
		if opts.OnSkip != nil {
			skipMu.Lock()
			defer skipMu.Unlock()
			opts.OnSkip(path, err)
		}
	}

	// Walk: find the files to (re)consider.
	seen := map[string]bool{}
	var failedDirs []string
	var jobs []job
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == root {
				return fmt.Errorf("search: %w", err)
			}
			onSkip(path, err)
			failedDirs = append(failedDirs, path)
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		name := d.Name()
		if path != root && strings.HasPrefix(name, ".") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() || !hasImageExt(name) {
			return nil
		}
		info, err := os.Stat(path) // follows a symlink to a file
		if err != nil {
			onSkip(path, err)
			failedDirs = append(failedDirs, path) // keep any entry: it may come back
			return nil
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		seen[path] = true
		st.Files++
		j := job{path: path, size: info.Size(), mtime: info.ModTime().UnixNano()}
		if old, ok := snap[path]; ok {
			if old.size == j.size && old.mtime == j.mtime {
				st.Unchanged++
				return nil
			}
			j.old = &old
		} else if s, ok := skipped[path]; ok && s.size == j.size && s.mtime == j.mtime {
			st.Skipped++ // failed before, unchanged since
			return nil
		}
		jobs = append(jobs, j)
		return nil
	})
	if err != nil {
		return st, err
	}

	if err := db.process(ctx, enc, jobs, hashes, opts, onSkip, &st); err != nil {
		return st, err
	}

	// Forget files that are gone, except under folders that could not be
	// read this time.
	var gone []string
	for p := range snap {
		if !seen[p] && under(p, root) && !underAny(p, failedDirs) {
			gone = append(gone, p)
		}
	}
	var goneSkipped []string
	for p := range skipped {
		if !seen[p] && under(p, root) && !underAny(p, failedDirs) {
			goneSkipped = append(goneSkipped, p)
		}
	}
	if len(gone)+len(goneSkipped) > 0 {
		err := db.tx(ctx, func(tx *sql.Tx) error {
			for _, p := range gone {
				if _, err := tx.ExecContext(ctx, `DELETE FROM images WHERE path = ?`, p); err != nil {
					return err
				}
			}
			for _, p := range goneSkipped {
				if _, err := tx.ExecContext(ctx, `DELETE FROM skipped WHERE path = ?`, p); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return st, fmt.Errorf("search: %s: removing deleted files: %w", db.path, err)
		}
		st.Removed = len(gone)
	}
	return st, nil
}

// cleanRoot returns root as an absolute path with symbolic links resolved,
// and checks that it is a folder.
func cleanRoot(root string) (string, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return "", fmt.Errorf("search: %s: %w", root, err)
	}
	if abs, err = filepath.EvalSymlinks(abs); err != nil {
		return "", fmt.Errorf("search: %w", err)
	}
	info, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("search: %w", err)
	}
	if !info.IsDir() {
		return "", fmt.Errorf("search: %s is not a folder", root)
	}
	return abs, nil
}

func hasImageExt(name string) bool {
	ext := strings.ToLower(filepath.Ext(name))
	for _, e := range extensions {
		if ext == e {
			return true
		}
	}
	return false
}

// under reports whether path lies inside the folder dir (or is dir).
func under(path, dir string) bool {
	if path == dir {
		return true
	}
	if !strings.HasSuffix(dir, string(filepath.Separator)) {
		dir += string(filepath.Separator)
	}
	return strings.HasPrefix(path, dir)
}

func underAny(path string, dirs []string) bool {
	for _, d := range dirs {
		if under(path, d) {
			return true
		}
	}
	return false
}

// bindModel records enc's model in a new index, or checks it against an
// existing index's.
func (db *DB) bindModel(ctx context.Context, enc Encoder, name string) error {
	db.mu.Lock()
	has := db.model != nil
	db.mu.Unlock()
	if has {
		return db.CheckModel(ctx, enc)
	}
	probe, err := fingerprint(ctx, enc)
	if err != nil {
		return err
	}
	var info *ModelInfo
	var recorded []float32
	err = db.tx(ctx, func(tx *sql.Tx) error {
		// Another process may have recorded a model since this DB was opened.
		var v []byte
		switch err := tx.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'model'`).Scan(&v); {
		case errors.Is(err, sql.ErrNoRows):
			info = &ModelInfo{Name: name, Dim: len(probe) / 2}
			recorded = probe
			return db.setModel(ctx, tx, name, probe)
		case err != nil:
			return err
		}
		meta := map[string][]byte{}
		for _, k := range []string{"model", "dim", "probe"} {
			var b []byte
			if err := tx.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, k).Scan(&b); err != nil {
				return err
			}
			meta[k] = b
		}
		var err error
		info, recorded, err = parseModelMeta(db.path, meta)
		return err
	})
	if err != nil {
		return fmt.Errorf("search: %s: %w", db.path, err)
	}
	if err := compareFingerprints(db.path, info, recorded, probe); err != nil {
		return err
	}
	db.mu.Lock()
	db.model, db.probe = info, recorded
	if comparableEncoder(enc) {
		db.checked[enc] = true
	}
	db.mu.Unlock()
	return nil
}

// snapshot reads what the index holds: every entry, every skipped file and
// the set of content hashes.
func (db *DB) snapshot(ctx context.Context) (map[string]stored, map[string]stored, map[[sha256.Size]byte]bool, error) {
	snap := map[string]stored{}
	hashes := map[[sha256.Size]byte]bool{}
	rows, err := db.sql.QueryContext(ctx, `SELECT path, size, mtime, hash FROM images`)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("search: %s: %w", db.path, err)
	}
	for rows.Next() {
		var p string
		var s stored
		var h []byte
		if err := rows.Scan(&p, &s.size, &s.mtime, &h); err != nil {
			rows.Close()
			return nil, nil, nil, fmt.Errorf("search: %s: %w", db.path, err)
		}
		copy(s.hash[:], h)
		snap[p] = s
		hashes[s.hash] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, nil, fmt.Errorf("search: %s: %w", db.path, err)
	}
	skipped := map[string]stored{}
	rows, err = db.sql.QueryContext(ctx, `SELECT path, size, mtime FROM skipped`)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("search: %s: %w", db.path, err)
	}
	defer rows.Close()
	for rows.Next() {
		var p string
		var s stored
		if err := rows.Scan(&p, &s.size, &s.mtime); err != nil {
			return nil, nil, nil, fmt.Errorf("search: %s: %w", db.path, err)
		}
		skipped[p] = s
	}
	if err := rows.Err(); err != nil {
		return nil, nil, nil, fmt.Errorf("search: %s: %w", db.path, err)
	}
	return snap, skipped, hashes, nil
}

// process runs the pipeline: workers read, hash and decode files; one
// goroutine encodes batches; one writes results to the file in
// transactions.
func (db *DB) process(ctx context.Context, enc Encoder, jobs []job, hashes map[[sha256.Size]byte]bool,
	opts IndexOptions, onSkip func(string, error), st *IndexStats) error {
	if len(jobs) == 0 {
		return nil
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	batch := opts.Batch
	if batch <= 0 {
		batch = 16
	}
	pix, _ := enc.(pixelEncoder)
	bar := progress.New(opts.Progress, int64(len(jobs)), "indexing", progress.Options{Unit: "img"})
	defer bar.Finish()

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	jobc := make(chan job)
	encc := make(chan *result, batch)
	outc := make(chan *result, 2*batch)

	// Feed jobs.
	go func() {
		defer close(jobc)
		for _, j := range jobs {
			select {
			case jobc <- j:
			case <-ctx.Done():
				return
			}
		}
	}()

	// Workers.
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobc {
				r := db.prepare(ctx, j, hashes, pix)
				dst := outc
				if r.kind == kindEmbed {
					dst = encc
				}
				select {
				case dst <- r:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	go func() {
		wg.Wait()
		close(encc)
	}()

	// Encoder.
	encDone := make(chan struct{})
	go func() {
		defer close(encDone)
		var pending []*result
		flush := func() bool {
			if len(pending) == 0 {
				return true
			}
			out, err := encodeBatch(ctx, enc, pix, pending)
			if err != nil {
				cancel(err)
				return false
			}
			for _, r := range out {
				select {
				case outc <- r:
				case <-ctx.Done():
					return false
				}
			}
			pending = pending[:0]
			return true
		}
		for r := range encc {
			pending = append(pending, r)
			if len(pending) >= batch && !flush() {
				return
			}
		}
		flush()
	}()
	go func() {
		<-encDone
		// Workers may still be blocked sending to outc after a failure;
		// they return once ctx is done.
		wg.Wait()
		close(outc)
	}()

	// Writer: commit whatever is ready, never holding a transaction while
	// waiting (workers may need the connection to look up a reused
	// embedding). Finished work is written even after cancellation, so the
	// next run resumes after it.
	wctx := context.WithoutCancel(ctx)
	var werr error
	for r := range outc {
		group := []*result{r}
	drain:
		for len(group) < 4*batch {
			select {
			case r, ok := <-outc:
				if !ok {
					break drain
				}
				group = append(group, r)
			default:
				break drain
			}
		}
		if werr != nil {
			continue
		}
		if err := db.write(wctx, group, onSkip, st); err != nil {
			werr = err
			cancel(err)
			continue
		}
		bar.Add(int64(len(group)))
	}
	if werr != nil {
		return werr
	}
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return nil
}

// prepare reads, hashes and (on the pixel path) decodes one file.
func (db *DB) prepare(ctx context.Context, j job, hashes map[[sha256.Size]byte]bool, pix pixelEncoder) *result {
	r := &result{job: j}
	skip := func(err error) *result {
		r.kind, r.err = kindSkip, err
		return r
	}
	if strings.ContainsAny(j.path, "\n\r") {
		return skip(errors.New("file name contains a line break, which the line-based outputs (paths.txt, search results) cannot carry"))
	}
	if j.size > MaxFileBytes {
		return skip(fmt.Errorf("file of %d bytes is larger than the limit of %d", j.size, MaxFileBytes))
	}
	data, err := os.ReadFile(j.path)
	if err != nil {
		return skip(err)
	}
	r.hash = sha256.Sum256(data)
	if j.old != nil && j.old.hash == r.hash {
		r.kind = kindTouch
		return r
	}
	if hashes[r.hash] {
		var blob []byte
		err := db.sql.QueryRowContext(ctx, `SELECT embedding FROM images WHERE hash = ? LIMIT 1`, r.hash[:]).Scan(&blob)
		if err == nil {
			r.kind, r.blob = kindReuse, blob
			return r
		}
		// Gone meanwhile (that file changed too): embed it.
	}
	r.kind = kindEmbed
	if pix != nil {
		p, err := pix.Preprocess(data)
		if err != nil {
			return skip(err)
		}
		r.pixels = p
	} else {
		r.data = data
	}
	return r
}

// encodeBatch embeds a batch. On the bytes path a failing batch is retried
// image by image, so that one bad file only skips itself.
func encodeBatch(ctx context.Context, enc Encoder, pix pixelEncoder, rs []*result) ([]*result, error) {
	out := make([]*result, len(rs))
	copy(out, rs)
	if pix != nil {
		var pixels []float32
		for _, r := range rs {
			pixels = append(pixels, r.pixels...)
			r.pixels = nil
		}
		vecs, err := pix.EncodePixels(ctx, pixels, len(rs))
		if err != nil {
			return nil, fmt.Errorf("search: encoding images: %w", err)
		}
		if len(vecs) != len(rs) {
			return nil, fmt.Errorf("search: encoder returned %d embeddings for %d images", len(vecs), len(rs))
		}
		for i, r := range rs {
			r.vec = vecs[i]
		}
		return out, nil
	}
	data := make([][]byte, len(rs))
	for i, r := range rs {
		data[i] = r.data
	}
	vecs, err := enc.EncodeImageBytes(ctx, data)
	if err == nil && len(vecs) == len(rs) {
		for i, r := range rs {
			r.vec, r.data = vecs[i], nil
		}
		return out, nil
	}
	if cerr := ctx.Err(); cerr != nil {
		return nil, cerr
	}
	for _, r := range rs {
		v, err := enc.EncodeImageBytes(ctx, [][]byte{r.data})
		r.data = nil
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case err != nil:
			r.kind, r.err = kindSkip, err
		case len(v) != 1:
			return nil, fmt.Errorf("search: encoder returned %d embeddings for 1 image", len(v))
		default:
			r.vec = v[0]
		}
	}
	return out, nil
}

// write stores a group of results in one transaction.
func (db *DB) write(ctx context.Context, group []*result, onSkip func(string, error), st *IndexStats) error {
	dim := 0
	db.mu.Lock()
	if db.model != nil {
		dim = db.model.Dim
	}
	db.mu.Unlock()
	var c IndexStats
	err := db.tx(ctx, func(tx *sql.Tx) error {
		for _, r := range group {
			switch r.kind {
			case kindEmbed, kindReuse:
				blob := r.blob
				if r.kind == kindEmbed {
					if len(r.vec) != dim {
						return fmt.Errorf("%s: encoder returned a %d-dimensional embedding, the index holds %d", r.path, len(r.vec), dim)
					}
					blob = encodeVec(tinyclip.Normalize(r.vec))
				}
				if _, err := tx.ExecContext(ctx, `INSERT INTO images(path, size, mtime, hash, embedding) VALUES(?, ?, ?, ?, ?)
					ON CONFLICT(path) DO UPDATE SET size = excluded.size, mtime = excluded.mtime, hash = excluded.hash, embedding = excluded.embedding`,
					r.path, r.size, r.mtime, r.hash[:], blob); err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, `DELETE FROM skipped WHERE path = ?`, r.path); err != nil {
					return err
				}
				switch {
				case r.kind == kindReuse:
					c.Reused++
				case r.old != nil:
					c.Updated++
				default:
					c.Added++
				}
			case kindTouch:
				if _, err := tx.ExecContext(ctx, `UPDATE images SET size = ?, mtime = ? WHERE path = ?`, r.size, r.mtime, r.path); err != nil {
					return err
				}
				c.Touched++
			case kindSkip:
				// A file that changed into something unreadable loses its
				// old, stale entry.
				if _, err := tx.ExecContext(ctx, `DELETE FROM images WHERE path = ?`, r.path); err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO skipped(path, size, mtime, error) VALUES(?, ?, ?, ?)`,
					r.path, r.size, r.mtime, r.err.Error()); err != nil {
					return err
				}
				c.Skipped++
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("search: %s: writing: %w", db.path, err)
	}
	for _, r := range group {
		if r.kind == kindSkip {
			onSkip(r.path, r.err)
		}
	}
	st.Added += c.Added
	st.Updated += c.Updated
	st.Reused += c.Reused
	st.Touched += c.Touched
	st.Skipped += c.Skipped
	return nil
}

// tx runs f in a transaction and marks the cached vectors stale.
func (db *DB) tx(ctx context.Context, f func(*sql.Tx) error) error {
	tx, err := db.sql.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		tx.Rollback()
		return err
	}
	err = tx.Commit()
	db.mu.Lock()
	db.ownGen++
	db.mu.Unlock()
	return err
}
