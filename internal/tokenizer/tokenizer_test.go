package tokenizer

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/tinyclip-go/tinyclip/internal/fixtures"
	"github.com/tinyclip-go/tinyclip/internal/npy"
)

// readJSONL decodes every line of a JSON-lines fixture into a new T.
func readJSONL[T any](t testing.TB, path string) []T {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []T
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("%s:%d: %v", path, len(out)+1, err)
		}
		out = append(out, v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// fixtureStrings returns fixtures/tokenizer/strings.jsonl and ids.jsonl.
func fixtureStrings(t testing.TB) ([]string, [][]int) {
	t.Helper()
	strs := readJSONL[string](t, fixtures.Path(t, "fixtures", "tokenizer", "strings.jsonl"))
	ids := readJSONL[[]int](t, fixtures.Path(t, "fixtures", "tokenizer", "ids.jsonl"))
	if len(strs) != 909 || len(ids) != 909 {
		t.Fatalf("fixtures: %d strings and %d id rows, want 909", len(strs), len(ids))
	}
	return strs, ids
}

func mustDefault(t testing.TB) *Tokenizer {
	t.Helper()
	tok, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// checkAll tokenizes every fixture string and reports the mismatches.
func checkAll(t *testing.T, tok *Tokenizer, strs []string, want [][]int) {
	t.Helper()
	bad := 0
	for i, s := range strs {
		if got := tok.Tokenize(s); !slices.Equal(got, want[i]) {
			bad++
			if bad <= 20 {
				t.Errorf("string %d %+q:\n got %v\nwant %v", i, s, got, want[i])
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d strings differ", bad, len(strs))
	}
}

// TestFixtureIDs checks all 909 strings of fixtures/tokenizer against
// ids.jsonl, the official tokenizer's output.
func TestFixtureIDs(t *testing.T) {
	strs, ids := fixtureStrings(t)
	checkAll(t, mustDefault(t), strs, ids)
}

// TestPadded checks the 50 rows of padded.npy (official tokenize() of
// strings 0..49, zero-padded to 77).
func TestPadded(t *testing.T) {
	strs, _ := fixtureStrings(t)
	a, err := npy.ReadFile(fixtures.Path(t, "fixtures", "tokenizer", "padded.npy"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.Shape, []int{50, ContextLength}) || a.I64 == nil {
		t.Fatalf("padded.npy: %s %v, want <i8 [50 77]", a.Descr, a.Shape)
	}
	tok := mustDefault(t)
	for i := 0; i < 50; i++ {
		got := Pad(tok.Tokenize(strs[i]), ContextLength)
		for j, v := range a.I64[i*ContextLength : (i+1)*ContextLength] {
			if int64(got[j]) != v {
				t.Errorf("row %d: %v, want %v", i, got, a.I64[i*ContextLength:(i+1)*ContextLength])
				break
			}
		}
	}
}

// TestNoFTFY checks ids_without_ftfy of no_ftfy.jsonl (the 123 strings
// whose ids ftfy changes), which tests HTML unescaping, whitespace cleanup
// and lowercasing on their own, and the remaining strings, whose ids do not
// depend on ftfy.
func TestNoFTFY(t *testing.T) {
	strs, ids := fixtureStrings(t)
	rows := readJSONL[struct {
		Index int   `json:"index"`
		IDs   []int `json:"ids_without_ftfy"`
	}](t, fixtures.Path(t, "fixtures", "tokenizer", "no_ftfy.jsonl"))
	if len(rows) != 123 {
		t.Fatalf("no_ftfy.jsonl: %d rows, want 123", len(rows))
	}
	want := slices.Clone(ids)
	for _, r := range rows {
		want[r.Index] = r.IDs
	}
	checkAll(t, mustDefault(t).With(WithoutFTFY()), strs, want)
}

// TestSpecExamples checks the worked examples of spec §3.11.
func TestSpecExamples(t *testing.T) {
	word := make([]int, 77)
	word[0], word[76] = SOT, EOT
	for i := 1; i < 76; i++ {
		word[i] = 2653
	}
	tests := []struct {
		text string
		want []int
	}{
		{"a photo of a cat.", []int{49406, 320, 1125, 539, 320, 2368, 269, 49407}},
		{"a diagram", []int{49406, 320, 22697, 49407}},
		{"A  Photo\tof   a DOG!!", []int{49406, 320, 1125, 539, 320, 1929, 748, 49407}},
		{"it's 2023", []int{49406, 585, 568, 273, 271, 273, 274, 49407}},
		{"<start_of_text>hello", []int{49406, 49406, 3306, 49407}},
		{"naïve café", []int{49406, 1097, 35689, 563, 15304, 49407}},
		{"", []int{49406, 49407}},
		{strings.TrimSpace(strings.Repeat("word ", 100)), word},
	}
	tok := mustDefault(t)
	for _, tt := range tests {
		if got := tok.Tokenize(tt.text); !slices.Equal(got, tt.want) {
			t.Errorf("Tokenize(%q) = %v, want %v", tt.text, got, tt.want)
		}
	}
}

// TestModelTexts checks the 8 texts of fixtures/models/inputs against
// tokens.npy, the padded official tokens the model fixtures use.
func TestModelTexts(t *testing.T) {
	data, err := os.ReadFile(fixtures.Path(t, "fixtures", "models", "inputs", "texts.json"))
	if err != nil {
		t.Fatal(err)
	}
	var texts []string
	if err := json.Unmarshal(data, &texts); err != nil {
		t.Fatal(err)
	}
	a, err := npy.ReadFile(fixtures.Path(t, "fixtures", "models", "inputs", "tokens.npy"))
	if err != nil {
		t.Fatal(err)
	}
	if len(texts) != 8 || !slices.Equal(a.Shape, []int{8, ContextLength}) || a.I64 == nil {
		t.Fatalf("texts.json has %d texts, tokens.npy is %s %v; want 8 and <i8 [8 77]", len(texts), a.Descr, a.Shape)
	}
	tok := mustDefault(t)
	for i, text := range texts {
		got := Pad(tok.Tokenize(text), ContextLength)
		want := make([]int, ContextLength)
		for j, v := range a.I64[i*ContextLength : (i+1)*ContextLength] {
			want[j] = int(v)
		}
		if !slices.Equal(got, want) {
			t.Errorf("text %d %q:\n got %v\nwant %v", i, text, got, want)
		}
	}
}

// TestDecodeRoundTrip checks, as the fixture README does, that the tokens
// of every untruncated string spell the cleaned text (spaces aside).
func TestDecodeRoundTrip(t *testing.T) {
	strs, ids := fixtureStrings(t)
	tok := mustDefault(t)
	var inv [256 * 2]byte
	for b, s := range byteSymbols {
		r := []rune(s)[0]
		inv[r] = byte(b)
	}
	for i, s := range strs {
		if len(ids[i]) == ContextLength {
			continue
		}
		var raw []byte
		for _, id := range ids[i][1 : len(ids[i])-1] {
			sym := tok.v.symbols[id]
			if id == SOT || id == EOT {
				raw = append(raw, sym...)
				continue
			}
			for _, r := range strings.TrimSuffix(sym, endOfWord) {
				raw = append(raw, inv[r])
			}
		}
		want := strings.ReplaceAll(tok.Clean(s), " ", "")
		if got := strings.ReplaceAll(string(raw), " ", ""); got != want {
			t.Errorf("string %d: tokens spell %+q, Clean gives %+q", i, got, want)
		}
	}
}

// TestClean checks the cleaning steps on cases the spec names.
func TestClean(t *testing.T) {
	tests := []struct{ in, want string }{
		{"  A  Photo\tof   a DOG!!  ", "a photo of a dog!!"},
		{"İstanbul", "i\u0307stanbul"},
		{"ΟΔΥΣΣΕΥΣ", "οδυσσευς"},
		{"Σ", "σ"},
		{"AΣ'", "aς'"},
		{"AΣ'B", "aσ'b"},
		{"&amp;lt;", "<"},
		{"&notit;", "¬it;"},
		{"\u00a0x\u2003y\u3000", "x y"},
		{"\u200bx\u200b", "\u200bx\u200b"},
		{"it\u2019s", "it's"},
		{"ﬁ", "fi"},
	}
	tok := mustDefault(t)
	for _, tt := range tests {
		if got := tok.Clean(tt.in); got != tt.want {
			t.Errorf("Clean(%+q) = %+q, want %+q", tt.in, got, tt.want)
		}
	}
}

// TestTokenizeN checks other context lengths against the official framing
// rule applied to the full id list.
func TestTokenizeN(t *testing.T) {
	strs, _ := fixtureStrings(t)
	tok := mustDefault(t)
	for _, n := range []int{1, 2, 3, 10, 77, 200} {
		for _, i := range []int{0, 2, 34, 858, 908} {
			full := append(append([]int{SOT}, tok.Encode(strs[i])...), EOT)
			want := full
			if len(full) > n {
				want = slices.Clone(full[:n])
				want[n-1] = EOT
			}
			got, err := tok.TokenizeN(strs[i], n)
			if err != nil || !slices.Equal(got, want) {
				t.Errorf("TokenizeN(string %d, %d) = %v, %v; want %v", i, n, got, err, want)
			}
		}
	}
	if _, err := tok.TokenizeN("x", 0); err == nil {
		t.Error("TokenizeN(x, 0): no error")
	}
	if got := Pad([]int{1, 2, 3}, 2); !slices.Equal(got, []int{1, 2, 3}) {
		t.Errorf("Pad([1 2 3], 2) = %v", got)
	}
	if got := Pad([]int{SOT, EOT}, 4); !slices.Equal(got, []int{SOT, EOT, 0, 0}) {
		t.Errorf("Pad([SOT EOT], 4) = %v", got)
	}
}

// TestLoaders loads every vocabulary form and checks that each gives the
// same vocabulary and merge ranks as the embedded file, and the fixture ids.
func TestLoaders(t *testing.T) {
	strs, ids := fixtureStrings(t)
	ref := mustDefault(t)
	dir := fixtures.Path(t, "vocab")
	// A directory holding only the Hugging Face pair.
	pairDir := t.TempDir()
	for _, name := range []string{vocabJSONName, mergesTxtName} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(pairDir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	paths := []string{
		filepath.Join(dir, gzName),
		filepath.Join(dir, tokenizerJSON),
		filepath.Join(dir, vocabJSONName),
		filepath.Join(dir, mergesTxtName),
		dir,
		pairDir,
	}
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			tok, err := Load(p)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(tok.v.symbols, ref.v.symbols) {
				t.Error("vocabulary differs from the embedded one")
			}
			if tok.v.byteID != ref.v.byteID || tok.v.byteEndID != ref.v.byteEndID {
				t.Error("byte symbol ids differ")
			}
			if !slices.Equal(tok.v.merges, ref.v.merges) {
				t.Error("merges differ")
			}
			checkAll(t, tok, strs, ids)
		})
	}
}

// TestVocabLayout checks the embedded vocabulary against spec §3.7.
func TestVocabLayout(t *testing.T) {
	v := mustDefault(t).v
	for _, tt := range []struct {
		id   int
		want string
	}{{0, "!"}, {93, "~"}, {94, "¡"}, {188, "Ā"}, {220, "Ġ"}, {255, "Ń"}, {256, "!</w>"}, {511, "Ń</w>"},
		{512, "in"}, {49405, "jekyll</w>"}, {SOT, "<start_of_text>"}, {EOT, "<end_of_text>"}} {
		if v.symbols[tt.id] != tt.want {
			t.Errorf("token %d = %q, want %q", tt.id, v.symbols[tt.id], tt.want)
		}
	}
	if v.byteID[' '] != 220 || v.byteEndID[' '] != 476 || v.byteID[0] != 188 || v.byteID[173] != 255 {
		t.Errorf("byte ids: space %d/%d, 0x00 %d, 0xAD %d", v.byteID[' '], v.byteEndID[' '], v.byteID[0], v.byteID[173])
	}
}

// TestConcurrent tokenizes the fixtures from many goroutines with a small
// cache (so that it is emptied often); run with -race.
func TestConcurrent(t *testing.T) {
	strs, ids := fixtureStrings(t)
	tok := mustDefault(t).With(WithCacheSize(64))
	var wg sync.WaitGroup
	errs := make(chan string, 16)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for k := 0; k < 200; k++ {
				i := (g*131 + k*17) % len(strs)
				if got := tok.Tokenize(strs[i]); !slices.Equal(got, ids[i]) {
					errs <- fmt.Sprintf("goroutine %d, string %d: %v, want %v", g, i, got, ids[i])
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if n := tok.cache.len(); n > 64 {
		t.Errorf("cache holds %d entries, limit 64", n)
	}
	noCache := mustDefault(t).With(WithCacheSize(0))
	if got := noCache.Tokenize(strs[0]); !slices.Equal(got, ids[0]) {
		t.Errorf("without cache: %v, want %v", got, ids[0])
	}
}

func FuzzTokenize(f *testing.F) {
	for _, s := range []string{
		"a photo of a cat.", "", "  ", "<start_of_text>hello<end_of_text>", "<ſtart_of_text>", "it'ſ 'LL",
		"ΑΣ Σ İ", "a\u0345b", "&amp;lt;b&gt; &notit; &#x1F600;", "CafÃ© â€œ", "\xff\xfe\xed\xa0\x80",
		strings.Repeat("word ", 100), strings.Repeat("x", 500), "東京タワー 🐱🚀 Ünïcödé",
	} {
		f.Add(s)
	}
	tok := mustDefault(f)
	f.Fuzz(func(t *testing.T, s string) {
		ids := tok.Tokenize(s)
		if len(ids) < 2 || len(ids) > ContextLength || ids[0] != SOT || ids[len(ids)-1] != EOT {
			t.Fatalf("Tokenize(%+q) = %v: bad framing", s, ids)
		}
		for _, id := range ids {
			if id < 0 || id >= VocabSize {
				t.Fatalf("Tokenize(%+q): id %d out of range", s, id)
			}
		}
		enc := tok.Encode(s)
		n := min(len(enc), ContextLength-2)
		if !slices.Equal(ids[1:len(ids)-1], enc[:n]) {
			t.Fatalf("Tokenize(%+q) = %v, Encode = %v", s, ids, enc)
		}
	})
}
