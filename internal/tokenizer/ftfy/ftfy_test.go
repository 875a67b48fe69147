package ftfy

import (
	"bufio"
	"encoding/json"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tinyclip-go/tinyclip/internal/fixtures"
)

// readJSONL decodes every line of a JSON-lines fixture into a new T.
func readJSONL[T any](t *testing.T, elem ...string) []T {
	t.Helper()
	path := fixtures.Path(t, elem...)
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

type noFTFY struct {
	Index      int      `json:"index"`
	FTFYSteps  []string `json:"ftfy_steps"`
	FTFYOutput string   `json:"ftfy_output"`
}

// TestFixtureOutputs checks ftfy_output and ftfy_steps of every string of
// fixtures/tokenizer/no_ftfy.jsonl (the strings ftfy changes in a way that
// changes their tokens).
func TestFixtureOutputs(t *testing.T) {
	strs := readJSONL[string](t, "fixtures", "tokenizer", "strings.jsonl")
	rows := readJSONL[noFTFY](t, "fixtures", "tokenizer", "no_ftfy.jsonl")
	if len(rows) != 123 {
		t.Fatalf("no_ftfy.jsonl: %d rows, want 123", len(rows))
	}
	for _, row := range rows {
		in := strs[row.Index]
		st := steps{}
		got := fixText(in, st)
		if got != row.FTFYOutput {
			t.Errorf("string %d %+q: FixText = %+q, want %+q", row.Index, in, got, row.FTFYOutput)
		}
		var names []string
		for k := range st {
			names = append(names, k)
		}
		sort.Strings(names)
		want := slices.Clone(row.FTFYSteps)
		sort.Strings(want)
		if !slices.Equal(names, want) {
			t.Errorf("string %d %+q: steps %q, want %q", row.Index, in, names, want)
		}
	}
}

// TestDocExamples checks the examples of ftfy's documentation and
// docstrings (ftfy 6.3.1: README, fix_text, fixes.py).
func TestDocExamples(t *testing.T) {
	tests := []struct{ in, want string }{
		{"âœ” No problems", "✔ No problems"},
		{"&macr;\\_(ã\u0083\u0084)_/&macr;", "¯\\_(ツ)_/¯"},
		{"Broken text&hellip; it&#x2019;s ﬂubberiﬁc!", "Broken text… it's flubberific!"},
		{"ＬＯＵＤ　ＮＯＩＳＥＳ", "LOUD NOISES"},
		{"sÃ³", "só"},
		{"voilÃ le travail", "voilà le travail"},
		{"schÃ¶n", "schön"},
		{"&lt;tag&gt;", "<tag>"},
		{"&Jscr;ohn &HilbertSpace;ancock", "𝒥ohn ℋancock"},
		{"&checkmark;", "✓"},
		{"P&eacute;rez", "Pérez"},
		{"P&EACUTE;REZ", "PÉREZ"},
		{"BUNDESSTRA&SZLIG;E", "BUNDESSTRASSE"},
		{"&ntilde; &Ntilde; &NTILDE; &nTILDE;", "ñ Ñ Ñ &nTILDE;"},
		{"<em>HTML entities &lt;3</em>", "<em>HTML entities &lt;3</em>"},
		{"\x1b[36;44mI'm blue, da ba dee da ba doo...\x1b[0m", "I'm blue, da ba dee da ba doo..."},
		{"\u201chere\u2019s a test\u201d", "\"here's a test\""},
		{"ﬂuﬃeﬆ", "fluffiest"},
		{"Ｕﾀｰﾝ", "Uターン"},
		{"This string is made of two things:\u20291. Unicode\u20282. Spite", "This string is made of two things:\n1. Unicode\n2. Spite"},
		{"Content-type: text/plain\r\n\r\nHi.", "Content-type: text/plain\n\nHi."},
		{"This is how Microsoft \r trolls Mac users", "This is how Microsoft \n trolls Mac users"},
		{"What is this \u0085 I don't even", "What is this … I don't even"},
		{"\ufeffWhere do you want to go today?", "Where do you want to go today?"},
		{"\xed\xa0\xbd\xed\xb2\xa9", "💩"}, // a surrogate pair, as WTF-8
		{"\xed\xb2\xa9\xed\xa0\xbd", "\ufffd\ufffd"},
		{"", ""},
		{"plain ASCII", "plain ASCII"},
		// Numeric references html.unescape deletes (CPython's test_html:
		// check_num(0x1, '')) leave no ";", so unescape_html takes the
		// empty result.
		{"&#1;x", "x"},
		{"&#x7f;x&#xFDD0;", "x"},
		{"&#128;", "€"},
	}
	for _, tt := range tests {
		if got := FixText(tt.in); got != tt.want {
			t.Errorf("FixText(%+q) = %+q, want %+q", tt.in, got, tt.want)
		}
	}
}

// TestIdempotentOnFixtures checks that FixText is stable on its own output
// (ftfy's fixes are meant to be idempotent) and always returns UTF-8.
func TestIdempotentOnFixtures(t *testing.T) {
	for i, s := range readJSONL[string](t, "fixtures", "tokenizer", "strings.jsonl") {
		once := FixText(s)
		if !utf8.ValidString(once) {
			t.Errorf("string %d: output is not UTF-8", i)
		}
		if strings.Contains(s, "<") || strings.Contains(s, "&") {
			continue // entity decoding depends on the '<' rule, not idempotent
		}
		if twice := FixText(once); twice != once {
			t.Errorf("string %d: FixText not stable: %+q then %+q", i, once, twice)
		}
	}
}

// TestNFCLongRuns checks NFC on a run of 40 combining marks: canonical
// ordering puts the 20 U+0316 (class 220) before the U+0301 (class 230), the
// first U+0301 composes with "e", and, unlike golang.org/x/text's Stream-Safe
// normalization, no U+034F is inserted.
func TestNFCLongRuns(t *testing.T) {
	in := "e" + strings.Repeat("\u0301\u0316", 20)
	want := "\u00e9" + strings.Repeat("\u0316", 20) + strings.Repeat("\u0301", 19)
	if got := FixText(in); got != want {
		t.Errorf("FixText(%+q) = %+q, want %+q", in, got, want)
	}
	// Hangul: conjoining jamo compose to syllables, L V T and LV T alike.
	if got, want := FixText("\u1100\u1161\u11a8 \uac00\u11a8 \u1100\u0301\u1161"), "\uac01 \uac01 \u1100\u0301\u1161"; got != want {
		t.Errorf("Hangul: %+q, want %+q", got, want)
	}
}

func FuzzFixText(f *testing.F) {
	for _, s := range []string{
		"CafÃ© au lait", "â€œquotedâ€", "ÐŸÑ€Ð¸Ð²ÐµÑ‚", "ðŸ˜€ emoji", "voilÃ  le travail",
		"Ã¢â‚¬â„¢ double", "&macr;\\_(ã)_/&macr;", "<b>&amp;</b>\n&lt;", "c1\u0080\u0085\u008d\u009f end", "c1\x80 raw bytes",
		"\x1b[1;31mred\x1b[0m", "ﬁ ＡＢＣ ｶ", "a\r\nb\rc\u2028d", "\xed\xa0\xbd\xed\xb2\xa9", "\xc0\x80\xff",
		"Ã\n", "í\u00a0\u0080í°\n", "Ã© Ã ", "sÃ³ â€", "&#x1F600; &#0; &#128; &#xD800;",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := FixText(s)
		if !utf8.ValidString(out) {
			t.Fatalf("FixText(%+q) = %+q: not UTF-8", s, out)
		}
	})
}
