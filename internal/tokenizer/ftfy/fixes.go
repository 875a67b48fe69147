package ftfy

import (
	"slices"
	"strings"
	"unicode"

	"github.com/tinyclip-go/tinyclip/internal/tokenizer/pyhtml"
)

// unescapeHTML is ftfy.fixes.unescape_html: every match of
// &#?[0-9A-Za-z]{1,24}; that is a known entity (HTML_ENTITIES, with the
// semicolon) or a numeric reference html.unescape decodes completely.
func unescapeHTML(text []rune) []rune {
	if !slices.Contains(text, '&') {
		return text
	}
	var out []rune
	changed := false
	last := 0
	for p := 0; p < len(text); p++ {
		if text[p] != '&' {
			continue
		}
		q := p + 1
		if q < len(text) && text[q] == '#' {
			q++
		}
		n := 0
		for q+n < len(text) && isASCIIAlnum(text[q+n]) {
			n++
		}
		if n < 1 || n > 24 || q+n >= len(text) || text[q+n] != ';' {
			continue
		}
		end := q + n + 1
		match := string(text[p:end])
		repl, ok := htmlEntities[match]
		if !ok && strings.HasPrefix(match, "&#") {
			if u := pyhtml.Unescape(match); !strings.Contains(u, ";") {
				repl, ok = u, true
			}
		}
		if ok {
			out = append(out, text[last:p]...)
			out = append(out, []rune(repl)...)
			last = end
			changed = true
		}
		p = end - 1
	}
	if !changed {
		return text
	}
	return append(out, text[last:]...)
}

func isASCIIAlnum(r rune) bool {
	return r >= '0' && r <= '9' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z'
}

// removeTerminalEscapes is ftfy.fixes.remove_terminal_escapes: deletes
// ESC [ (\d|;)* [a-zA-Z].
func removeTerminalEscapes(text []rune) []rune {
	if !slices.Contains(text, 0x1B) {
		return text
	}
	out := make([]rune, 0, len(text))
	for p := 0; p < len(text); p++ {
		if text[p] == 0x1B && p+1 < len(text) && text[p+1] == '[' {
			q := p + 2
			for q < len(text) && (text[q] == ';' || unicode.Is(pyDigit, text[q])) {
				q++
			}
			if q < len(text) && (text[q] >= 'a' && text[q] <= 'z' || text[q] >= 'A' && text[q] <= 'Z') {
				p = q
				continue
			}
		}
		out = append(out, text[p])
	}
	return out
}

// mapRunes applies a per-code-point translation (str.translate); f returns
// the replacement and whether there is one.
func mapRunes(text []rune, f func(rune) (string, bool)) []rune {
	var out []rune
	for i, r := range text {
		repl, ok := f(r)
		if !ok {
			if out != nil {
				out = append(out, r)
			}
			continue
		}
		if out == nil {
			out = make([]rune, i, len(text)+8)
			copy(out, text[:i])
		}
		for _, c := range repl {
			out = append(out, c)
		}
	}
	if out == nil {
		return text
	}
	return out
}

// uncurlQuotes is ftfy.fixes.uncurl_quotes.
func uncurlQuotes(text []rune) []rune {
	return mapRunes(text, func(r rune) (string, bool) {
		switch {
		case r == 0x02BC || r >= 0x2018 && r <= 0x201B:
			return "'", true
		case r >= 0x201C && r <= 0x201F:
			return `"`, true
		}
		return "", false
	})
}

// ligatures is ftfy's LIGATURES table.
var ligatures = map[rune]string{
	'Ĳ': "IJ", 'ĳ': "ij", 'ŉ': "ʼn", 'Ǳ': "DZ", 'ǲ': "Dz", 'ǳ': "dz",
	'Ǆ': "DŽ", 'ǅ': "Dž", 'ǆ': "dž", 'Ǉ': "LJ", 'ǈ': "Lj", 'ǉ': "lj",
	'Ǌ': "NJ", 'ǋ': "Nj", 'ǌ': "nj", 'ﬀ': "ff", 'ﬁ': "fi", 'ﬂ': "fl",
	'ﬃ': "ffi", 'ﬄ': "ffl", 'ﬅ': "ſt", 'ﬆ': "st",
}

// fixLatinLigatures is ftfy.fixes.fix_latin_ligatures.
func fixLatinLigatures(text []rune) []rune {
	return mapRunes(text, func(r rune) (string, bool) {
		if r < 0x132 {
			return "", false
		}
		s, ok := ligatures[r]
		return s, ok
	})
}

// fixCharacterWidth is ftfy.fixes.fix_character_width.
func fixCharacterWidth(text []rune) []rune {
	return mapRunes(text, func(r rune) (string, bool) {
		if r < 0x3000 {
			return "", false
		}
		s, ok := widthMap[r]
		return s, ok
	})
}

// fixLineBreaks is ftfy.fixes.fix_line_breaks: CRLF, CR, U+2028, U+2029
// and U+0085 become LF.
func fixLineBreaks(text []rune) []rune {
	changed := false
	for _, r := range text {
		if r == '\r' || r == 0x2028 || r == 0x2029 || r == 0x85 {
			changed = true
			break
		}
	}
	if !changed {
		return text
	}
	out := make([]rune, 0, len(text))
	for p := 0; p < len(text); p++ {
		switch r := text[p]; r {
		case '\r':
			if p+1 < len(text) && text[p+1] == '\n' {
				p++
			}
			out = append(out, '\n')
		case 0x2028, 0x2029, 0x85:
			out = append(out, '\n')
		default:
			out = append(out, r)
		}
	}
	return out
}

func isSurrogate(r rune) bool { return r >= 0xD800 && r <= 0xDFFF }

// fixSurrogates is ftfy.fixes.fix_surrogates: surrogate pairs become the
// code point they encode, lone surrogates U+FFFD.
func fixSurrogates(text []rune) []rune {
	if !slices.ContainsFunc(text, isSurrogate) {
		return text
	}
	out := make([]rune, 0, len(text))
	for p := 0; p < len(text); p++ {
		r := text[p]
		switch {
		case r >= 0xD800 && r <= 0xDBFF && p+1 < len(text) && text[p+1] >= 0xDC00 && text[p+1] <= 0xDFFF:
			out = append(out, 0x10000+(r-0xD800)*0x400+(text[p+1]-0xDC00))
			p++
		case isSurrogate(r):
			out = append(out, 0xFFFD)
		default:
			out = append(out, r)
		}
	}
	return out
}

// isControl is ftfy's CONTROL_CHARS: the code points remove_control_chars
// deletes.
func isControl(r rune) bool {
	switch {
	case r <= 0x08, r == 0x0B, r >= 0x0E && r <= 0x1F, r == 0x7F:
		return r >= 0
	case r < 0x206A:
		return false
	}
	return r <= 0x206F || r == 0xFEFF || r >= 0xFFF9 && r <= 0xFFFC
}

// removeControlChars is ftfy.fixes.remove_control_chars.
func removeControlChars(text []rune) []rune {
	if !slices.ContainsFunc(text, isControl) {
		return text
	}
	out := make([]rune, 0, len(text))
	for _, r := range text {
		if !isControl(r) {
			out = append(out, r)
		}
	}
	return out
}

// fixC1Controls is ftfy.fixes.fix_c1_controls: C1 controls are read as
// sloppy-windows-1252 bytes.
func fixC1Controls(text []rune) []rune {
	sloppy1252 := &charmapEncodings[1].decode
	return mapRunes(text, func(r rune) (string, bool) {
		if r < 0x80 || r > 0x9F {
			return "", false
		}
		return string(sloppy1252[r]), true
	})
}

// decodeInconsistentUTF8 is ftfy.fixes.decode_inconsistent_utf8: each match
// of UTF8_DETECTOR_RE that is shorter than the text and looks bad is fixed on
// its own.
func decodeInconsistentUTF8(text []rune) []rune {
	var out []rune
	changed := false
	last := 0
	for p := 0; p < len(text); p++ {
		n := utf8DetectorMatch(text, p)
		if n == 0 {
			continue
		}
		sub := text[p : p+n]
		if len(sub) < len(text) && isBad(sub) {
			fixed := fixEncoding(slices.Clone(sub), nil)
			out = append(out, text[last:p]...)
			out = append(out, fixed...)
			last = p + n
			changed = true
		}
		p += n - 1
	}
	if !changed {
		return text
	}
	return append(out, text[last:]...)
}

// byteClass is a set of bytes.
type byteClass [256]bool

// bc builds a class from the bytes of s.
func bc(s string) *byteClass {
	var c byteClass
	for i := 0; i < len(s); i++ {
		c[s[i]] = true
	}
	return &c
}

// bcr builds a class from inclusive (lo, hi) byte ranges.
func bcr(ranges ...byte) *byteClass {
	var c byteClass
	for i := 0; i+1 < len(ranges); i += 2 {
		for b := int(ranges[i]); b <= int(ranges[i+1]); b++ {
			c[b] = true
		}
	}
	return &c
}

// union is the union of classes.
func union(cs ...*byteClass) *byteClass {
	var c byteClass
	for _, x := range cs {
		for i, ok := range x {
			c[i] = c[i] || ok
		}
	}
	return &c
}

// matchBytes returns the length of the first alternative (sequence of byte
// classes) that matches b at p, or 0: leftmost-first alternation.
func matchBytes(b []byte, p int, alts [][]*byteClass) int {
next:
	for _, alt := range alts {
		if p+len(alt) > len(b) {
			continue
		}
		for i, c := range alt {
			if !c[b[p+i]] {
				continue next
			}
		}
		return len(alt)
	}
	return 0
}

var (
	space    = bc(" ")
	cont     = bcr(0x80, 0xBF)
	contNoA0 = bcr(0x80, 0x84, 0x86, 0x9F, 0xA1, 0xBF) // [\x80-\x84\x86-\x9f\xa1-\xbf]
	f0       = bc("\xf0")

	// alteredUTF8 is chardata.ALTERED_UTF8_RE.
	alteredUTF8 = [][]*byteClass{
		{bc("\xc2\xc3\xc5\xce\xd0\xd9"), space},
		{bc("\xe2\xe3"), space, contNoA0},
		{bcr(0xE0, 0xE3), contNoA0, space},
		{f0, space, cont, cont},
		{f0, cont, space, cont},
		{f0, cont, cont, space},
	}

	sub    = bc("\x1a")
	subQ   = bc("\x1a?")
	subC   = union(sub, cont)
	subQC  = union(subQ, cont)
	ed     = bc("\xed")
	lead3  = bcr(0xE0, 0xEF)
	lead4  = bcr(0xF0, 0xF4)
	edHigh = bcr(0xA0, 0xAF)
	edLow  = bcr(0xB0, 0xBF)

	// lossyUTF8 is chardata.LOSSY_UTF8_RE.
	lossyUTF8 = [][]*byteClass{
		{bcr(0xC2, 0xDF), sub},
		{bcr(0xC2, 0xC3), bc("?")},
		{ed, edHigh, subQ, ed, edLow, subQC},
		{ed, edHigh, subQC, ed, edLow, subQ},
		{lead3, subQ, subC},
		{lead3, subC, subQ},
		{lead4, subQ, subC, subC},
		{lead4, subC, subQ, subC},
		{lead4, subC, subC, subQ},
		{sub},
	}
)

// alteredUTF8Search is bool(ALTERED_UTF8_RE.search(b)).
func alteredUTF8Search(b []byte) bool {
	for p := range b {
		if matchBytes(b, p, alteredUTF8) > 0 {
			return true
		}
	}
	return false
}

// aGraveWordException is the negative lookahead of A_GRAVE_WORD_RE.
var aGraveWordException = []string{" ", "quele", "quela", "quilo", "s "}

// restoreByteA0 is ftfy.fixes.restore_byte_a0: "\xc3 " before a word
// becomes "\xc3\xa0 ", then the spaces inside ALTERED_UTF8_RE matches
// become 0xA0.
func restoreByteA0(b []byte) []byte {
	out := make([]byte, 0, len(b)+8)
	for p := 0; p < len(b); p++ {
		if b[p] == 0xC3 && p+1 < len(b) && b[p+1] == ' ' && !hasAnyPrefix(b[p+2:], aGraveWordException) {
			out = append(out, 0xC3, 0xA0, ' ')
			p++
			continue
		}
		out = append(out, b[p])
	}
	b = out
	out = make([]byte, 0, len(b))
	for p := 0; p < len(b); {
		n := matchBytes(b, p, alteredUTF8)
		if n == 0 {
			out = append(out, b[p])
			p++
			continue
		}
		for _, c := range b[p : p+n] {
			if c == ' ' {
				c = 0xA0
			}
			out = append(out, c)
		}
		p += n
	}
	return out
}

func hasAnyPrefix(b []byte, prefixes []string) bool {
	for _, pre := range prefixes {
		if len(b) >= len(pre) && string(b[:len(pre)]) == pre {
			return true
		}
	}
	return false
}

// replaceLossySequences is ftfy.fixes.replace_lossy_sequences: each
// LOSSY_UTF8_RE match becomes the UTF-8 encoding of U+FFFD.
func replaceLossySequences(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for p := 0; p < len(b); {
		n := matchBytes(b, p, lossyUTF8)
		if n == 0 {
			out = append(out, b[p])
			p++
			continue
		}
		out = append(out, "\ufffd"...)
		p += n
	}
	return out
}
