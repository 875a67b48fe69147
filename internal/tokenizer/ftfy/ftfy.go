// Package ftfy is a port of ftfy 6.3.1's fix_text with its default
// configuration ("fixes text for you": mojibake repair, HTML entities outside
// HTML, C1 controls, ligatures, character width, curly quotes, line breaks,
// surrogates, terminal escapes, control characters, NFC), as the CLIP
// tokenizer applies it to every input text.
//
// The port follows ftfy's Python source step by step (ftfy/__init__.py,
// fixes.py, chardata.py, badness.py and the sloppy / utf-8-variants codecs);
// its regular expressions are hand-written matchers over code points and
// bytes. Its tables, NFC's included, are generated from CPython 3.11
// (Unicode 14.0, as the official tokenizer ran) by ../gen/mktables.py (go
// generate in package tokenizer). Text is handled as a sequence of code
// points, as Python's str is: lengths compared by ftfy are code point counts.
package ftfy

import (
	"slices"
	"unicode/utf8"
)

// maxDecodeLength is TextFixerConfig.max_decode_length: the longest segment,
// in code points, fixed at once.
const maxDecodeLength = 1000000

// FixText returns ftfy.fix_text(s) under ftfy's default configuration.
//
// Go strings may hold bytes that are not UTF-8: each such byte reads as
// U+FFFD, except that three-byte encodings of UTF-16 surrogates (as in
// CESU-8 or WTF-8) read as those surrogates, which ftfy then pairs into one
// code point or replaces by U+FFFD, as it does for a Python string holding
// surrogates. The result is always valid UTF-8.
func FixText(s string) string {
	return fixText(s, nil)
}

// steps records the names of the fixes that changed the text, as ftfy's
// explanations name them ("apply:uncurl_quotes", "encode:latin-1"...). A nil
// *steps records nothing.
type steps map[string]bool

func (st steps) add(action, parameter string) {
	if st != nil {
		st[action+":"+parameter] = true
	}
}

func fixText(s string, st steps) string {
	text := decodeInput(s)
	unescape := true // unescape_html="auto": on until a segment holds '<'
	out := make([]rune, 0, len(text))
	for pos := 0; pos < len(text); {
		end := len(text)
		if i := slices.Index(text[pos:], '\n'); i >= 0 {
			end = pos + i + 1
		}
		if end-pos > maxDecodeLength {
			end = pos + maxDecodeLength
		}
		segment := text[pos:end]
		if unescape && slices.Contains(segment, '<') {
			unescape = false
		}
		out = append(out, fixAndExplain(segment, unescape, st)...)
		pos = end
	}
	return string(out)
}

// decodeInput reads s as code points: UTF-8, with encoded surrogates
// (ED A0..BF 80..BF) read as surrogate code points and any other invalid
// byte as U+FFFD.
func decodeInput(s string) []rune {
	text := make([]rune, 0, len(s))
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			text = append(text, rune(c))
			i++
			continue
		}
		if c == 0xED && i+2 < len(s) && s[i+1] >= 0xA0 && s[i+1] <= 0xBF && s[i+2] >= 0x80 && s[i+2] <= 0xBF {
			text = append(text, 0xD000|rune(s[i+1]&0x3F)<<6|rune(s[i+2]&0x3F))
			i += 3
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		text = append(text, r)
		i += size
	}
	return text
}

// fixer is one of ftfy's str -> str fixes.
type fixer struct {
	name string
	fix  func([]rune) []rune
}

// fixers are the fixes fix_and_explain applies after fix_encoding, in order.
var fixers = [...]fixer{
	{"fix_c1_controls", fixC1Controls},
	{"fix_latin_ligatures", fixLatinLigatures},
	{"fix_character_width", fixCharacterWidth},
	{"uncurl_quotes", uncurlQuotes},
	{"fix_line_breaks", fixLineBreaks},
	{"fix_surrogates", fixSurrogates},
	{"remove_terminal_escapes", removeTerminalEscapes},
	{"remove_control_chars", removeControlChars},
}

// fixAndExplain is ftfy.fix_and_explain for one segment: the fixes are
// applied in rounds until a round changes nothing.
func fixAndExplain(text []rune, unescape bool, st steps) []rune {
	if unescape && slices.Contains(text, '<') {
		unescape = false
	}
	for {
		orig := text
		if unescape {
			text = tryFix("unescape_html", unescapeHTML, text, st)
		}
		text = fixEncoding(text, st)
		for _, f := range fixers {
			text = tryFix(f.name, f.fix, text, st)
		}
		if fixed := nfc(text); !slices.Equal(fixed, text) {
			st.add("normalize", "NFC")
			text = fixed
		}
		if slices.Equal(text, orig) {
			return text
		}
	}
}

func tryFix(name string, fix func([]rune) []rune, text []rune, st steps) []rune {
	fixed := fix(text)
	if !slices.Equal(fixed, text) {
		st.add("apply", name)
	}
	return fixed
}

// fixEncoding is ftfy.fix_encoding (fix_encoding_and_explain): one-step
// repairs until the text stops changing.
func fixEncoding(text []rune, st steps) []rune {
	for {
		prev := text
		text = fixEncodingOneStep(text, st)
		if slices.Equal(text, prev) {
			return text
		}
	}
}

// fixEncodingOneStep is ftfy._fix_encoding_one_step_and_explain.
func fixEncodingOneStep(text []rune, st steps) []rune {
	if len(text) == 0 || isASCII(text) || !isBad(text) {
		return text
	}
	latin1Possible := false
	for i := range charmapEncodings {
		cm := &charmapEncodings[i]
		if !cm.possible(text) {
			continue
		}
		if i == 0 {
			latin1Possible = true
		}
		encoded := cm.encode(text)
		var transcodes []string
		if cm.name != "macroman" && alteredUTF8Search(encoded) {
			if replaced := restoreByteA0(encoded); string(replaced) != string(encoded) {
				transcodes = append(transcodes, "restore_byte_a0")
				encoded = replaced
			}
		}
		if cm.sloppy {
			if replaced := replaceLossySequences(encoded); string(replaced) != string(encoded) {
				transcodes = append(transcodes, "replace_lossy_sequences")
				encoded = replaced
			}
		}
		decoding := "utf-8"
		decode := decodeUTF8
		for _, b := range encoded {
			if b == 0xED || b == 0xC0 {
				decoding = "utf-8-variants"
				decode = decodeUTF8Variants
				break
			}
		}
		if fixed, ok := decode(encoded); ok {
			st.add("encode", cm.name)
			for _, t := range transcodes {
				st.add("transcode", t)
			}
			st.add("decode", decoding)
			return fixed
		}
	}

	// Mojibake embedded in otherwise consistent text.
	if utf8DetectorSearch(text) {
		if fixed := decodeInconsistentUTF8(text); !slices.Equal(fixed, text) {
			st.add("apply", "decode_inconsistent_utf8")
			return fixed
		}
	}

	// Latin-1 meant as Windows-1252. (ftfy also returns early when
	// "windows-1252" is a possible encoding, which never happens: only the
	// sloppy variant is tried.)
	if latin1Possible {
		if fixed, ok := latin1AsWindows1252(text); ok && !slices.Equal(fixed, text) {
			st.add("encode", "latin-1")
			st.add("decode", "windows-1252")
			return fixed
		}
	}

	if hasC1(text) {
		st.add("transcode", "fix_c1_controls")
		return fixC1Controls(text)
	}
	return text
}

func isASCII(text []rune) bool {
	for _, r := range text {
		if r >= 0x80 || r < 0 {
			return false
		}
	}
	return true
}

func hasC1(text []rune) bool {
	for _, r := range text {
		if r >= 0x80 && r <= 0x9F {
			return true
		}
	}
	return false
}

// latin1AsWindows1252 is text.encode("latin-1").decode("windows-1252"); ok
// is false where that raises (a code point above U+00FF, or one of the five
// bytes Windows-1252 leaves undefined).
func latin1AsWindows1252(text []rune) ([]rune, bool) {
	out := make([]rune, len(text))
	for i, r := range text {
		if r < 0 || r > 0xFF || windows1252[r] < 0 {
			return nil, false
		}
		out[i] = windows1252[r]
	}
	return out, true
}
