// Package search indexes a folder of images into a SQLite file and finds the
// images nearest to a text or image query: the image search behind
// "tinyclip index", "tinyclip search" and the /v1/search endpoint and web
// page of "tinyclip serve --db".
//
// An index file holds one model's embeddings (L2-normalised float32
// vectors) of the images under one or more folders, each with the file's
// path, size, modification time and SHA-256, so that re-indexing embeds only
// new or changed files and forgets deleted ones. Queries are exact: the query
// embedding is scored against every stored vector (the engine's dot-product
// kernel over one contiguous matrix) and the k best are returned. Export
// writes the vectors as embeddings.npy and paths.txt for FAISS, pgvector and
// other engines.
//
// The store uses modernc.org/sqlite, a pure-Go SQLite, so programs using it
// still build with CGO_ENABLED=0. A DB is safe for concurrent use.
package search

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// schemaVersion is stored in the meta table; files of another version are
// refused.
const schemaVersion = "1"

const schema = `
CREATE TABLE IF NOT EXISTS meta (
	key   TEXT PRIMARY KEY,
	value BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS images (
	id        INTEGER PRIMARY KEY,
	path      TEXT    NOT NULL UNIQUE,
	size      INTEGER NOT NULL,
	mtime     INTEGER NOT NULL,
	hash      BLOB    NOT NULL,
	embedding BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS images_hash ON images(hash);
CREATE TABLE IF NOT EXISTS skipped (
	path  TEXT PRIMARY KEY,
	size  INTEGER NOT NULL,
	mtime INTEGER NOT NULL,
	error TEXT    NOT NULL
);
`

// ErrModelMismatch is returned when an index is used with a model other than
// the one that built it.
var ErrModelMismatch = errors.New("search: index was built with a different model")

// ErrNoModel is returned by operations that need a model on an index that
// has none yet (nothing was ever indexed into it).
var ErrNoModel = errors.New("search: index is empty (no model recorded yet)")

// DB is an image index stored in a SQLite file.
type DB struct {
	path string
	sql  *sql.DB

	// writeMu serialises Index calls.
	writeMu sync.Mutex

	mu      sync.Mutex // guards the fields below
	model   *ModelInfo // nil until a model is recorded
	probe   []float32  // the recorded model's fingerprint (see fingerprint)
	checked map[Encoder]bool
	cache   *flat // vectors loaded for Search; nil until needed
	dataVer int64 // PRAGMA data_version when cache was loaded
	ownGen  int64 // bumped by this DB's own writes
	cacheGn int64 // ownGen when cache was loaded
}

// ModelInfo describes the model an index was built with.
type ModelInfo struct {
	// Name is the model as given when the index was created (a zoo name,
	// a Hugging Face repo id or a file path).
	Name string
	// Dim is the embedding width.
	Dim int
}

// Open opens an existing index file for searching and updating.
func Open(path string) (*DB, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("search: opening index: %w", err)
	}
	return open(path, false)
}

// OpenOrCreate opens the index file at path, creating an empty one if it
// does not exist.
func OpenOrCreate(path string) (*DB, error) {
	return open(path, true)
}

func open(path string, create bool) (*DB, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("search: %s: %w", path, err)
	}
	mode := "rw"
	if create {
		mode = "rwc"
	}
	// A URI filename: escape the characters SQLite's URI parser treats
	// specially.
	esc := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(filepath.ToSlash(abs))
	dsn := "file:" + esc + "?mode=" + mode +
		"&_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)&_pragma=cache_size(-65536)"
	sdb, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("search: %s: %w", path, err)
	}
	// One connection: SQLite serialises writers anyway, and PRAGMA
	// data_version then tells changes made by other processes apart from
	// this DB's own.
	sdb.SetMaxOpenConns(1)
	sdb.SetConnMaxIdleTime(0)
	sdb.SetConnMaxLifetime(0)
	db := &DB{path: path, sql: sdb, checked: map[Encoder]bool{}}
	if err := db.init(create); err != nil {
		sdb.Close()
		return nil, err
	}
	return db, nil
}

// init checks (and, for a new file, creates) the schema and reads the model.
func (db *DB) init(create bool) error {
	ctx := context.Background()
	var n int
	err := db.sql.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type='table' AND name='meta'`).Scan(&n)
	if err != nil {
		return fmt.Errorf("search: %s: not an index (%w)", db.path, err)
	}
	if n == 0 {
		var tables int
		if err := db.sql.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master`).Scan(&tables); err != nil {
			return fmt.Errorf("search: %s: %w", db.path, err)
		}
		if tables > 0 || !create {
			return fmt.Errorf("search: %s: not a tinyclip index (a SQLite file without its tables)", db.path)
		}
		// 64 KiB pages hold ~30 rows of 512-d embeddings each, where 4 KiB
		// pages hold one (half empty); loading all vectors is then ~2x
		// faster. The page size must be set before the first write, and
		// WAL lets searches read while an index run writes.
		for _, p := range []string{"PRAGMA page_size = 65536", "PRAGMA journal_mode = WAL"} {
			if _, err := db.sql.ExecContext(ctx, p); err != nil {
				return fmt.Errorf("search: %s: %s: %w", db.path, p, err)
			}
		}
		tx, err := db.sql.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("search: %s: %w", db.path, err)
		}
		defer tx.Rollback()
		if _, err := tx.ExecContext(ctx, schema); err != nil {
			return fmt.Errorf("search: %s: creating tables: %w", db.path, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO meta(key, value) VALUES('schema', ?)`, schemaVersion); err != nil {
			return fmt.Errorf("search: %s: %w", db.path, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("search: %s: %w", db.path, err)
		}
		return nil
	}
	meta, err := db.readMeta(ctx)
	if err != nil {
		return err
	}
	if v := string(meta["schema"]); v != schemaVersion {
		return fmt.Errorf("search: %s: index format version %q, this program reads version %s", db.path, v, schemaVersion)
	}
	if _, ok := meta["model"]; ok {
		if db.model, db.probe, err = parseModelMeta(db.path, meta); err != nil {
			return err
		}
	}
	return nil
}

// parseModelMeta reads the model's name, width and fingerprint.
func parseModelMeta(path string, meta map[string][]byte) (*ModelInfo, []float32, error) {
	dim, err := strconv.Atoi(string(meta["dim"]))
	if err != nil || dim <= 0 {
		return nil, nil, fmt.Errorf("search: %s: bad embedding width %q in meta table", path, meta["dim"])
	}
	probe, err := decodeVec(meta["probe"])
	if err != nil || len(probe) != 2*dim {
		return nil, nil, fmt.Errorf("search: %s: bad model fingerprint in meta table", path)
	}
	return &ModelInfo{Name: string(meta["model"]), Dim: dim}, probe, nil
}

func (db *DB) readMeta(ctx context.Context) (map[string][]byte, error) {
	rows, err := db.sql.QueryContext(ctx, `SELECT key, value FROM meta`)
	if err != nil {
		return nil, fmt.Errorf("search: %s: reading meta table: %w", db.path, err)
	}
	defer rows.Close()
	meta := map[string][]byte{}
	for rows.Next() {
		var k string
		var v []byte
		if err := rows.Scan(&k, &v); err != nil {
			return nil, fmt.Errorf("search: %s: reading meta table: %w", db.path, err)
		}
		meta[k] = v
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("search: %s: reading meta table: %w", db.path, err)
	}
	return meta, nil
}

// Close closes the index file.
func (db *DB) Close() error {
	return db.sql.Close()
}

// Path returns the index file's path as given to Open.
func (db *DB) Path() string { return db.path }

// Model returns the model the index was built with; ok is false for an index
// that holds no model yet.
func (db *DB) Model() (info ModelInfo, ok bool) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.model == nil {
		return ModelInfo{}, false
	}
	return *db.model, true
}

// Len returns the number of indexed images.
func (db *DB) Len(ctx context.Context) (int, error) {
	var n int
	if err := db.sql.QueryRowContext(ctx, `SELECT count(*) FROM images`).Scan(&n); err != nil {
		return 0, fmt.Errorf("search: %s: %w", db.path, err)
	}
	return n, nil
}

// CheckModel reports whether enc is the model the index was built with,
// returning an error wrapping ErrModelMismatch if it is not and ErrNoModel
// if the index has no model yet. The comparison embeds a fixed text and a
// fixed image and compares them with the embeddings recorded at indexing
// time, so the same weights in another file format or precision pass and
// any other model fails. The result is remembered per encoder.
func (db *DB) CheckModel(ctx context.Context, enc Encoder) error {
	db.mu.Lock()
	model, probe := db.model, db.probe
	ok := comparableEncoder(enc) && db.checked[enc]
	db.mu.Unlock()
	if model == nil {
		return ErrNoModel
	}
	if ok {
		return nil
	}
	got, err := fingerprint(ctx, enc)
	if err != nil {
		return err
	}
	if err := compareFingerprints(db.path, model, probe, got); err != nil {
		return err
	}
	if comparableEncoder(enc) {
		db.mu.Lock()
		db.checked[enc] = true
		db.mu.Unlock()
	}
	return nil
}

// compareFingerprints checks a model's fingerprint against the recorded one.
func compareFingerprints(path string, model *ModelInfo, want, got []float32) error {
	if len(got) != len(want) {
		return fmt.Errorf("%w: %s holds %d-dimensional embeddings of model %q, the model given embeds into %d dimensions; "+
			"search it with that model, or index into a new file",
			ErrModelMismatch, path, model.Dim, model.Name, len(got)/2)
	}
	d := len(want) / 2
	for i, what := range []string{"text", "image"} {
		if c := cosine(want[i*d:(i+1)*d], got[i*d:(i+1)*d]); c < fingerprintMinCosine {
			return fmt.Errorf("%w: %s was built with model %q, and the model given embeds differently "+
				"(cosine %.3f between the two models' embeddings of a reference %s); "+
				"search it with that model, or index into a new file",
				ErrModelMismatch, path, model.Name, c, what)
		}
	}
	return nil
}

// setModel records the model of a new index.
func (db *DB) setModel(ctx context.Context, tx *sql.Tx, name string, probe []float32) error {
	dim := len(probe) / 2
	for _, kv := range [][2]any{{"model", name}, {"dim", strconv.Itoa(dim)}, {"probe", encodeVec(probe)}} {
		if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)`, kv[0], kv[1]); err != nil {
			return fmt.Errorf("search: %s: recording the model: %w", db.path, err)
		}
	}
	return nil
}

// encodeVec stores a vector as little-endian float32 bytes.
func encodeVec(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

// decodeVec reads a vector written by encodeVec.
func decodeVec(b []byte) ([]float32, error) {
	if len(b)%4 != 0 {
		return nil, fmt.Errorf("vector blob of %d bytes is not a multiple of 4", len(b))
	}
	v := make([]float32, len(b)/4)
	decodeVecInto(v, b)
	return v, nil
}

func decodeVecInto(dst []float32, b []byte) {
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
}

func cosine(a, b []float32) float64 {
	var ab, aa, bb float64
	for i := range a {
		ab += float64(a[i]) * float64(b[i])
		aa += float64(a[i]) * float64(a[i])
		bb += float64(b[i]) * float64(b[i])
	}
	if aa == 0 || bb == 0 {
		return 0
	}
	return ab / math.Sqrt(aa*bb)
}
