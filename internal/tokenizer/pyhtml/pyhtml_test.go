package pyhtml

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

// The cases below are CPython 3.11's Lib/test/test_html.py, test_unescape.

func check(t *testing.T, in, want string) {
	t.Helper()
	if got := Unescape(in); got != want {
		t.Errorf("Unescape(%+q) = %+q, want %+q", in, got, want)
	}
}

func checkNum(t *testing.T, num uint64, want string) {
	t.Helper()
	for _, format := range []string{"&#%d", "&#%d;", "&#x%x", "&#x%x;"} {
		check(t, fmt.Sprintf(format, num), want)
	}
}

func TestUnescapeCPython(t *testing.T) {
	check(t, "no character references", "no character references")
	check(t, "&\n&\t& &&", "&\n&\t& &&")
	check(t, "&0 &9 &a &0; &9; &a;", "&0 &9 &a &0; &9; &a;")
	for _, x := range []string{"&", "&#", "&#x", "&#X", "&#y", "&#xy", "&#Xy"} {
		check(t, x, x)
		check(t, x+";", x+";")
	}
	formats := []string{"&#%d", "&#%07d", "&#%d;", "&#%07d;",
		"&#x%x", "&#x%06x", "&#x%x;", "&#x%06x;",
		"&#x%X", "&#x%06X", "&#X%x;", "&#X%06x;"}
	nums := []int{65, 97, 34, 38, 0x2603, 0x101234}
	chars := []string{"A", "a", `"`, "&", "\u2603", "\U00101234"}
	for i, num := range nums {
		for _, s := range formats {
			check(t, fmt.Sprintf(s, num), chars[i])
			for _, end := range []string{" ", "X"} {
				check(t, fmt.Sprintf(s+end, num), chars[i]+end)
			}
		}
	}
	for _, cp := range []uint64{0xD800, 0xDB00, 0xDC00, 0xDFFF, 0x110000} {
		checkNum(t, cp, "\uFFFD")
	}
	for _, cp := range []uint64{0x1, 0xb, 0xe, 0x7f, 0xfffe, 0xffff, 0x10fffe, 0x10ffff} {
		checkNum(t, cp, "")
	}
	for i, num := range []uint64{0x0d, 0x80, 0x95, 0x9d} {
		checkNum(t, num, []string{"\r", "\u20ac", "\u2022", "\u009d"}[i])
	}
	checkNum(t, 0, "\uFFFD")
	checkNum(t, 9, "\t")
	checkNum(t, 1000000000000000000, "\uFFFD")
	for _, e := range []string{"&quot;;", "&#34;;", "&#x22;;", "&#X22;;"} {
		check(t, e, `";`)
	}
	for _, e := range []string{"&quot;quot;", "&#34;quot;", "&#x22;quot;", "&#X22;quot;"} {
		check(t, e, `"quot;`)
	}
	for _, e := range []string{"&quot", "&#34", "&#x22", "&#X22"} {
		check(t, strings.Repeat(e, 3), `"""`)
		check(t, strings.Repeat(e+";", 3), `"""`)
	}
	for _, e := range []string{"&amp", "&amp;", "&AMP", "&AMP;"} {
		check(t, e, "&")
	}
	for _, e := range []string{"&Amp", "&Amp;"} {
		check(t, e, e)
	}
	check(t, "&svadilfari;", "&svadilfari;")
	check(t, "&notit", "¬it")
	check(t, "&notit;", "¬it;")
	check(t, "&notin", "¬in")
	check(t, "&notin;", "∉")
	check(t, "&notReallyAnExistingNamedCharacterReference;", "¬ReallyAnExistingNamedCharacterReference;")
	check(t, "&CounterClockwiseContourIntegral;", "∳")
	check(t, "&acE;", "\u223E\u0333")
	check(t, "&acE", "&acE")
	check(t, strings.Repeat("&#123; ", 1050), strings.Repeat("{ ", 1050))
	check(t, "&Eacuteric&Eacute;ric&alphacentauri&alpha;centauri", "ÉricÉric&alphacentauriαcentauri")
	check(t, "&co;", "&co;")
}

// TestUnescapeSpec checks the examples of spec §3.3.
func TestUnescapeSpec(t *testing.T) {
	check(t, Unescape("&amp;lt;"), "<")
	check(t, "&notit;", "¬it;")
	check(t, "&#x80;&#128;", "€€")
	check(t, "&#xFDD0;x&#x1FFFF;", "x")
}

func TestEntityTable(t *testing.T) {
	if len(html5) != 2231 {
		t.Errorf("html5 has %d entries, want 2231 (html.entities.html5)", len(html5))
	}
	for _, tt := range []struct{ name, want string }{{"amp;", "&"}, {"amp", "&"}, {"eacute;", "é"}, {"Jscr;", "𝒥"}} {
		if got, ok := Entity(tt.name); !ok || got != tt.want {
			t.Errorf("Entity(%q) = %q, %v; want %q", tt.name, got, ok, tt.want)
		}
	}
	if _, ok := Entity("notanentity;"); ok {
		t.Error(`Entity("notanentity;") found`)
	}
}

func FuzzUnescape(f *testing.F) {
	for _, s := range []string{"&amp;", "&#x1F600;", "&#99999999999999999999;", "&notit;", "&\xff;", "&" + strings.Repeat("a", 40) + ";", "&#xD800"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := Unescape(s)
		if utf8.ValidString(s) && !utf8.ValidString(out) {
			t.Fatalf("Unescape(%+q) = %+q: not UTF-8", s, out)
		}
		if !strings.Contains(s, "&") && out != s {
			t.Fatalf("Unescape(%+q) = %+q: changed text without '&'", s, out)
		}
	})
}
