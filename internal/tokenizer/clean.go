package tokenizer

import (
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tinyclip-go/tinyclip/internal/tokenizer/ftfy"
	"github.com/tinyclip-go/tinyclip/internal/tokenizer/pyhtml"
)

// clean is open_clip's whitespace_clean(basic_clean(text)).lower():
// ftfy.fix_text (unless disabled), html.unescape twice, strip, whitespace
// runs to one space, strip, Python's str.lower.
func clean(text string, useFTFY bool) string {
	if useFTFY {
		text = ftfy.FixText(text)
	} else if !utf8.ValidString(text) {
		text = string([]rune(text)) // each invalid byte reads as U+FFFD
	}
	text = pyhtml.Unescape(pyhtml.Unescape(text))
	text = pyStrip(text)
	text = collapseWhitespace(text)
	text = pyStrip(text)
	return pyLowerString(text)
}

// pyStrip is Python's str.strip(): removes leading and trailing code points
// for which str.isspace() is true (this includes U+001C..U+001F).
func pyStrip(s string) string {
	return strings.TrimFunc(s, func(r rune) bool { return unicode.Is(pySpace, r) })
}

// collapseWhitespace replaces every run of regex \s (Unicode White_Space,
// which is unicode.IsSpace) by one space.
func collapseWhitespace(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	inSpace := false
	for _, r := range s {
		if unicode.IsSpace(r) {
			if !inSpace {
				b.WriteByte(' ')
			}
			inSpace = true
			continue
		}
		inSpace = false
		b.WriteRune(r)
	}
	return b.String()
}

// lowerEntry is one row of pyLower: code point r lowercases to l0 (and l1
// when it is not 0).
type lowerEntry struct {
	r, l0, l1 rune
}

// pyLowerString is Python's str.lower(): the full lowercase mapping
// (U+0130 becomes "i\u0307") with the Final_Sigma rule for U+03A3.
func pyLowerString(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return strings.ToLower(s)
	}
	rs := []rune(s)
	out := make([]rune, 0, len(rs))
	for i, r := range rs {
		switch {
		case r < utf8.RuneSelf:
			if 'A' <= r && r <= 'Z' {
				r += 'a' - 'A'
			}
			out = append(out, r)
		case r == 'Σ':
			if finalSigma(rs, i) {
				out = append(out, 'ς')
			} else {
				out = append(out, 'σ')
			}
		default:
			k := sort.Search(len(pyLower), func(k int) bool { return pyLower[k].r >= r })
			if k < len(pyLower) && pyLower[k].r == r {
				out = append(out, pyLower[k].l0)
				if pyLower[k].l1 != 0 {
					out = append(out, pyLower[k].l1)
				}
			} else {
				out = append(out, r)
			}
		}
	}
	return string(out)
}

// finalSigma is CPython's handle_capital_sigma: whether the capital sigma at
// rs[i] follows a cased letter and precedes none, skipping case-ignorable
// code points on both sides.
func finalSigma(rs []rune, i int) bool {
	j := i - 1
	for j >= 0 && unicode.Is(caseIgnorable, rs[j]) {
		j--
	}
	if j < 0 || !unicode.Is(casedNotIgnorable, rs[j]) {
		return false
	}
	j = i + 1
	for j < len(rs) && unicode.Is(caseIgnorable, rs[j]) {
		j++
	}
	return j == len(rs) || !unicode.Is(casedNotIgnorable, rs[j])
}
