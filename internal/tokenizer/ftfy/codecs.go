package ftfy

import "unicode/utf8"

// charmap is one of the single-byte encodings ftfy tries: Python's codec, or
// for the "sloppy-" ones ftfy's variant that decodes the bytes the codec
// leaves undefined as Latin-1 and byte 0x1A as U+FFFD.
type charmap struct {
	name   string
	sloppy bool
	decode [256]rune
	enc    map[rune]byte // inverse of decode
}

func init() {
	for i := range charmapEncodings {
		cm := &charmapEncodings[i]
		cm.enc = make(map[rune]byte, 256)
		for b, r := range cm.decode {
			cm.enc[r] = byte(b)
		}
	}
}

// possible is chardata.possible_encoding: whether every code point of text
// can be encoded.
func (cm *charmap) possible(text []rune) bool {
	for _, r := range text {
		if r < 0x80 && r != 0x1A {
			continue // bytes 0x00-0x7F but 0x1A stand for themselves in every table
		}
		if _, ok := cm.enc[r]; !ok {
			return false
		}
	}
	return true
}

// encode is text.encode(name); text must be possible.
func (cm *charmap) encode(text []rune) []byte {
	out := make([]byte, len(text))
	for i, r := range text {
		out[i] = cm.enc[r]
	}
	return out
}

// decodeUTF8 is bytes.decode("utf-8") (strict).
func decodeUTF8(b []byte) ([]rune, bool) {
	if !utf8.Valid(b) {
		return nil, false
	}
	return []rune(string(b)), true
}

// decodeUTF8Variants is bytes.decode("utf-8-variants") (strict), ftfy's codec
// that also accepts CESU-8 surrogate pairs and Java's C0 80 for U+0000. It
// follows the codec's incremental decoder, including the way its regular
// expressions let "$" match before a final newline.
func decodeUTF8Variants(b []byte) ([]rune, bool) {
	out := make([]rune, 0, len(b))
	for len(b) > 0 {
		cut := specialBytesIndex(b)
		if cut < 0 {
			r, ok := decodeUTF8(b)
			return append(out, r...), ok
		}
		if cut > 0 {
			r, ok := decodeUTF8(b[:cut])
			if !ok {
				return nil, false
			}
			out = append(out, r...)
			b = b[cut:]
			continue
		}
		if b[0] == 0xC0 {
			if len(b) > 1 {
				out = append(out, 0)
				b = b[2:]
				continue
			}
			return nil, false // a lone C0 at the end
		}
		// b[0] == 0xED: a CESU-8 pair, or else an encoded surrogate or a
		// truncated sequence, which strict UTF-8 rejects.
		if len(b) < 6 || !cesu8Match(b) {
			return nil, false
		}
		cp := rune(b[1]&0x0F)<<16 + rune(b[2]&0x3F)<<10 + rune(b[4]&0x0F)<<6 + rune(b[5]&0x3F) + 0x10000
		out = append(out, cp)
		b = b[6:]
	}
	return out, true
}

// atEnd is Python's "$" at position p of b (end, or before a final "\n").
func atEnd(b []byte, p int) bool {
	return p == len(b) || p == len(b)-1 && b[p] == '\n'
}

// groupsMatch matches a sequence of "(class|$)" groups at position p.
func groupsMatch(b []byte, p int, groups ...[2]byte) bool {
	for _, g := range groups {
		switch {
		case p < len(b) && b[p] >= g[0] && b[p] <= g[1]:
			p++
		case atEnd(b, p):
		default:
			return false
		}
	}
	return true
}

// cesu8Match is CESU8_RE.match(b).
func cesu8Match(b []byte) bool {
	return len(b) > 0 && b[0] == 0xED &&
		groupsMatch(b, 1, [2]byte{0xA0, 0xAF}, [2]byte{0x80, 0xBF}, [2]byte{0xED, 0xED}, [2]byte{0xB0, 0xBF}, [2]byte{0x80, 0xBF})
}

// specialBytesIndex is SPECIAL_BYTES_RE.search(b).start(), or -1.
func specialBytesIndex(b []byte) int {
	for i, c := range b {
		switch c {
		case 0xC0:
			if groupsMatch(b, i+1, [2]byte{0x80, 0x80}) {
				return i
			}
		case 0xED:
			if cesu8Match(b[i:]) || groupsMatch(b, i+1, [2]byte{0xA0, 0xBF}, [2]byte{0x80, 0xBF}) {
				return i
			}
		}
	}
	return -1
}
