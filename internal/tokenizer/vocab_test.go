package tokenizer

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tinyclip-go/tinyclip/internal/fixtures"
)

func gzipBytes(t testing.TB, text string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write([]byte(text)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// vocabFiles returns the fixture vocabulary files' contents.
func vocabFiles(t testing.TB) (gz []byte, mergesLines []string, vocabMap map[string]int, tokJSON map[string]any) {
	t.Helper()
	dir := fixtures.Path(t, "vocab")
	read := func(name string) []byte {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	gz = read(gzName)
	mergesLines = strings.Split(strings.TrimSuffix(string(read(mergesTxtName)), "\n"), "\n")
	if err := json.Unmarshal(read(vocabJSONName), &vocabMap); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(read(tokenizerJSON), &tokJSON); err != nil {
		t.Fatal(err)
	}
	return gz, mergesLines, vocabMap, tokJSON
}

func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestTokenizerJSONPairs loads a tokenizer.json whose merges are [a, b]
// pairs (the newer tokenizers format).
func TestTokenizerJSONPairs(t *testing.T) {
	_, _, _, tj := vocabFiles(t)
	model := tj["model"].(map[string]any)
	var pairs [][2]string
	for _, m := range model["merges"].([]any) {
		p := strings.Split(m.(string), " ")
		pairs = append(pairs, [2]string{p[0], p[1]})
	}
	model["merges"] = pairs
	p := writeFile(t, t.TempDir(), tokenizerJSON, mustJSON(t, tj))
	tok, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	ref := mustDefault(t)
	if !slices.Equal(tok.v.merges, ref.v.merges) || !slices.Equal(tok.v.symbols, ref.v.symbols) {
		t.Error("vocabulary differs from the embedded one")
	}
	if got, want := tok.Tokenize("a photo of a cat."), ref.Tokenize("a photo of a cat."); !slices.Equal(got, want) {
		t.Errorf("Tokenize = %v, want %v", got, want)
	}
}

// TestMalformedVocab checks that broken vocabulary files give errors that
// name the file and the problem.
func TestMalformedVocab(t *testing.T) {
	gz, merges, vocabMap, _ := vocabFiles(t)
	mergesTxt := strings.Join(merges, "\n") + "\n"
	vocabJSON := mustJSON(t, vocabMap)
	text, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	var plain bytes.Buffer
	if _, err := plain.ReadFrom(text); err != nil {
		t.Fatal(err)
	}
	gzLines := strings.Split(plain.String(), "\n")
	withLine := func(lines []string, i int, s string) string {
		l := slices.Clone(lines)
		l[i] = s
		return strings.Join(l, "\n")
	}
	vocabWith := func(edit func(map[string]int)) []byte {
		m := make(map[string]int, len(vocabMap))
		for k, v := range vocabMap {
			m[k] = v
		}
		edit(m)
		return mustJSON(t, m)
	}

	tests := []struct {
		name  string
		files map[string][]byte // written into a fresh directory
		load  string            // file to load ("" = the directory)
		want  string            // substring of the error
	}{
		{"missing file", nil, "nothere.json", "no such file"},
		{"empty directory", nil, "", "no vocabulary file"},
		{"not a vocabulary", map[string][]byte{"x.txt": []byte("hello")}, "x.txt", "not a vocabulary file"},
		{"truncated gzip", map[string][]byte{gzName: gz[:len(gz)/2]}, gzName, "truncated"},
		{"gzip header only", map[string][]byte{gzName: gz[:5]}, gzName, "corrupt gzip"},
		{"too few merges", map[string][]byte{gzName: gzipBytes(t, "header\ni n\nt h\n")}, gzName, "merge lines"},
		{"bad merge line", map[string][]byte{gzName: gzipBytes(t, withLine(gzLines, 5, "a b c"))}, gzName, "line 6"},
		{"unknown symbol", map[string][]byte{gzName: gzipBytes(t, withLine(gzLines, 1, "i \u2603"))}, gzName, "unknown symbol"},
		{"duplicate merge", map[string][]byte{gzName: gzipBytes(t, withLine(gzLines, 2, gzLines[1]))}, gzName, "occurs twice"},
		{"vocab size", map[string][]byte{
			vocabJSONName: vocabWith(func(m map[string]int) { delete(m, "jekyll</w>") }),
			mergesTxtName: []byte(mergesTxt)}, vocabJSONName, "49407 tokens, want 49408"},
		{"shared id", map[string][]byte{
			vocabJSONName: vocabWith(func(m map[string]int) { m["in"] = 513 }),
			mergesTxtName: []byte(mergesTxt)}, vocabJSONName, "share id 513"},
		{"id out of range", map[string][]byte{
			vocabJSONName: vocabWith(func(m map[string]int) { m["in"] = 60000 }),
			mergesTxtName: []byte(mergesTxt)}, vocabJSONName, "outside"},
		{"special id", map[string][]byte{
			vocabJSONName: vocabWith(func(m map[string]int) { m[hfSOT], m["in"] = 512, 49406 }),
			mergesTxtName: []byte(mergesTxt)}, vocabJSONName, "id 49406"},
		{"vocab not JSON", map[string][]byte{vocabJSONName: []byte("{\"a\": "), mergesTxtName: []byte(mergesTxt)}, vocabJSONName, "vocab.json: unexpected end"},
		{"merges missing", map[string][]byte{vocabJSONName: vocabJSON}, vocabJSONName, "merges.txt: no such file"},
		{"vocab missing", map[string][]byte{mergesTxtName: []byte(mergesTxt)}, mergesTxtName, "vocab.json: no such file"},
		{"merges line", map[string][]byte{vocabJSONName: vocabJSON, mergesTxtName: []byte(withLine(merges, 3, "abc"))}, mergesTxtName, "line 4"},
		{"merges short", map[string][]byte{vocabJSONName: vocabJSON, mergesTxtName: []byte(strings.Join(merges[:100], "\n"))}, mergesTxtName, "merges.txt: 99 merges"},
		{"tokenizer.json type", map[string][]byte{tokenizerJSON: []byte(`{"model": {"type": "WordPiece", "vocab": {}}}`)}, tokenizerJSON, "WordPiece"},
		{"tokenizer.json merges", map[string][]byte{tokenizerJSON: []byte(`{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": 3}}`)}, tokenizerJSON, "model.merges"},
		{"tokenizer.json no vocab", map[string][]byte{tokenizerJSON: []byte(`{"model": {"type": "BPE"}}`)}, tokenizerJSON, "no model.vocab"},
		{"tokenizer.json truncated", map[string][]byte{tokenizerJSON: []byte(`{"model": {"type": "BPE", "vocab": {`)}, tokenizerJSON, "unexpected end of JSON input"},
		{"JSON sniffed", map[string][]byte{"v.json": []byte(`{"model": 1, "a": [`)}, "v.json", "unexpected end of JSON input"},
		{"merges unknown symbol", map[string][]byte{mergesTxtName: []byte(withLine(merges, 1, "i \u2603")), vocabJSONName: vocabJSON}, mergesTxtName, "merges.txt: merge 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, data := range tt.files {
				writeFile(t, dir, name, data)
			}
			path := dir
			if tt.load != "" {
				path = filepath.Join(dir, tt.load)
			}
			tok, err := Load(path)
			if err == nil {
				t.Fatalf("Load: no error (tokenizer %v)", tok != nil)
			}
			t.Log(err)
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load: %v; want it to mention %q", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "tokenizer: ") {
				t.Errorf("Load: %v; want the package prefix", err)
			}
		})
	}
}

func FuzzLoad(f *testing.F) {
	_, merges, vocabMap, _ := vocabFiles(f)
	small := map[string]int{"a": 0, "b": 1, "ab": 2, hfSOT: 49406, hfEOT: 49407}
	f.Add(uint8(0), gzipBytes(f, "header\ni n\nt h\n"), []byte(nil))
	f.Add(uint8(0), []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0}, []byte(nil))
	f.Add(uint8(1), []byte(`{"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a b",["a","b"]]},"added_tokens":[{"id":49406,"content":"<|startoftext|>"}]}`), []byte(nil))
	f.Add(uint8(1), []byte(`{"model":{"vocab":{"a":0},"merges":[["a","b"]]}}`), []byte(nil))
	f.Add(uint8(2), mustJSON(f, small), []byte("#version: 0.2\na b\n"))
	f.Add(uint8(2), mustJSON(f, vocabMap), []byte(strings.Join(merges[:200], "\n")))
	f.Add(uint8(2), []byte(`{"a":-1}`), []byte("a b c\r\n"))
	f.Fuzz(func(t *testing.T, kind uint8, a, b []byte) {
		var v *vocab
		var err error
		switch kind % 3 {
		case 0:
			v, err = parseGz(a, "fuzz.gz")
		case 1:
			v, err = parseTokenizerJSON(a, "fuzz.json")
		default:
			v, err = parseVocabMerges(a, "vocab.json", b, "merges.txt")
		}
		if err != nil {
			if !strings.HasPrefix(err.Error(), "tokenizer: ") {
				t.Fatalf("error without the package prefix: %v", err)
			}
			return
		}
		if len(v.symbols) != VocabSize || len(v.merges) != numMerges {
			t.Fatalf("accepted a vocabulary of %d tokens and %d merges", len(v.symbols), len(v.merges))
		}
		tok := newTokenizer(v, nil)
		for _, id := range tok.Tokenize("a photo of a cat, \u00e9\U0001F600!") {
			if id < 0 || id >= VocabSize {
				t.Fatalf("id %d out of range", id)
			}
		}
	})
}
