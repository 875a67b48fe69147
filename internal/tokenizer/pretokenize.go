package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// Special-token texts of the TinyCLIP tokenizer (the Hugging Face spellings
// <|startoftext|> and <|endoftext|> are ordinary text in it).
const (
	sotText = "<start_of_text>"
	eotText = "<end_of_text>"
)

// contractions are the contraction alternatives of the pattern, in order.
var contractions = [...]string{"s", "t", "re", "ve", "m", "ll", "d"}

// preTokens calls yield with each match, left to right, of the pattern
//
//	<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
//
// compiled case-insensitive by the regex module (findall semantics: text no
// alternative matches, whitespace, is skipped). It stops when yield returns
// false.
//
// \p{L}, \p{N} and \s are unicode.IsLetter, unicode.IsNumber and
// unicode.IsSpace. Case-insensitivity matters in two places: ſ (U+017F)
// matches s, so "'ſ" is a contraction and "<ſtart_of_text>" a (non-special)
// match; and U+0345 COMBINING GREEK YPOGEGRAMMENI, which case-folds to a
// letter, belongs to no alternative and is skipped like whitespace.
func preTokens(s string, yield func(string) bool) {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		n := 0
		switch {
		case r == '<':
			if n = foldPrefix(s[i:], sotText); n == 0 {
				n = foldPrefix(s[i:], eotText)
			}
		case r == '\'':
			for _, c := range contractions {
				if n = foldPrefix(s[i+1:], c); n > 0 {
					n++
					break
				}
			}
		}
		if n == 0 {
			switch {
			case unicode.IsLetter(r):
				n = runLength(s[i:], unicode.IsLetter)
			case unicode.IsNumber(r):
				n = size
			case isOther(r):
				n = runLength(s[i:], isOther)
			default: // whitespace, U+0345
				i += size
				continue
			}
		}
		if !yield(s[i : i+n]) {
			return
		}
		i += n
	}
}

// isOther is [^\s\p{L}\p{N}] under IGNORECASE.
func isOther(r rune) bool {
	return !unicode.IsSpace(r) && !unicode.IsLetter(r) && !unicode.IsNumber(r) && r != 0x345
}

// runLength returns the byte length of the longest prefix of s whose code
// points satisfy f.
func runLength(s string, f func(rune) bool) int {
	n := 0
	for n < len(s) {
		r, size := utf8.DecodeRuneInString(s[n:])
		if !f(r) {
			break
		}
		n += size
	}
	return n
}

// foldPrefix returns the byte length of the prefix of s that matches the
// ASCII pattern lit case-insensitively (as the regex module's simple case
// folding does: ASCII letters in either case, and ſ for s), or 0.
func foldPrefix(s, lit string) int {
	n := 0
	for k := 0; k < len(lit); k++ {
		if n >= len(s) {
			return 0
		}
		c := lit[k]
		b := s[n]
		switch {
		case b == c || 'a' <= c && c <= 'z' && b == c-'a'+'A':
			n++
		case c == 's' && b == 0xC5 && n+1 < len(s) && s[n+1] == 0xBF: // ſ
			n += 2
		default:
			return 0
		}
	}
	return n
}
