package ftfy

import "unicode"

// atomKind is the kind of one single-character element of BADNESS_RE.
type atomKind uint8

const (
	atomClass          atomKind = iota // a character class: badnessClasses[class]
	atomSpace                          // \s
	atomOptSpace                       // \s?
	atomWord                           // \w
	atomStart                          // ^ (start of the text)
	atomAnyButNewline                  // .
	atomNotASCIILetter                 // [^A-Za-z]
)

type atom struct {
	kind  atomKind
	class int
}

// classSet is a set of indexes into badnessClasses.
type classSet [2]uint64

func (c classSet) has(i int) bool { return c[i>>6]&(1<<(i&63)) != 0 }

// Membership of code points in badnessClasses, computed once: asciiClasses
// for ASCII, runeClasses for the (few hundred) other members.
var (
	asciiClasses [128]classSet
	runeClasses  = map[rune]classSet{}
)

func init() {
	if len(badnessClasses) > len(classSet{})*64 {
		panic("ftfy: too many badness classes for classSet")
	}
	for i, t := range badnessClasses {
		for _, r16 := range t.R16 {
			for r := rune(r16.Lo); r <= rune(r16.Hi); r += rune(r16.Stride) {
				if r < 128 {
					asciiClasses[r][i>>6] |= 1 << (i & 63)
				} else {
					c := runeClasses[r]
					c[i>>6] |= 1 << (i & 63)
					runeClasses[r] = c
				}
			}
		}
		if len(t.R32) > 0 {
			panic("ftfy: badness classes are within the BMP")
		}
	}
}

func classesOf(r rune) classSet {
	if r >= 0 && r < 128 {
		return asciiClasses[r]
	}
	return runeClasses[r]
}

// isBad is ftfy.badness.is_bad: whether BADNESS_RE matches anywhere in text.
func isBad(text []rune) bool {
	sets := make([]classSet, len(text))
	for i, r := range text {
		sets[i] = classesOf(r)
	}
	for p := range text {
		for _, alt := range badnessAlternatives {
			if first := alt[0]; first.kind == atomClass && !sets[p].has(first.class) {
				continue // the common case, decided without a call
			}
			if matchAtoms(text, sets, p, alt) {
				return true
			}
		}
	}
	return false
}

// matchAtoms reports whether the sequence of atoms matches text at p; sets
// holds the classes of each code point of text.
func matchAtoms(text []rune, sets []classSet, p int, atoms []atom) bool {
	for i, a := range atoms {
		switch a.kind {
		case atomStart:
			if p != 0 {
				return false
			}
			continue
		case atomOptSpace:
			if p < len(text) && unicode.Is(pySpace, text[p]) && matchAtoms(text, sets, p+1, atoms[i+1:]) {
				return true
			}
			continue
		}
		if p >= len(text) {
			return false
		}
		r := text[p]
		var ok bool
		switch a.kind {
		case atomClass:
			ok = sets[p].has(a.class)
		case atomSpace:
			ok = unicode.Is(pySpace, r)
		case atomWord:
			ok = unicode.Is(pyWord, r)
		case atomAnyButNewline:
			ok = r != '\n'
		case atomNotASCIILetter:
			ok = !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z')
		}
		if !ok {
			return false
		}
		p++
	}
	return true
}

// utf8Sequence returns the length of one iteration of UTF8_DETECTOR_RE's
// group at p (a lead character and its continuation characters), or 0.
func utf8Sequence(text []rune, p int) int {
	if p >= len(text) {
		return 0
	}
	var n int
	switch r := text[p]; {
	case unicode.Is(utf8FirstOf2, r):
		n = 2
	case unicode.Is(utf8FirstOf3, r):
		n = 3
	case unicode.Is(utf8FirstOf4, r):
		n = 4
	default:
		return 0
	}
	if p+n > len(text) {
		return 0
	}
	for _, r := range text[p+1 : p+n] {
		if !unicode.Is(utf8Continuation, r) {
			return 0
		}
	}
	return n
}

// utf8DetectorMatch returns the length of UTF8_DETECTOR_RE's match at p, or
// 0: not after a strict continuation character, then one or more sequences.
// (The lead-character classes are disjoint, so the alternation needs no
// backtracking.)
func utf8DetectorMatch(text []rune, p int) int {
	if p > 0 && unicode.Is(utf8ContinuationStrict, text[p-1]) {
		return 0
	}
	q := p
	for {
		n := utf8Sequence(text, q)
		if n == 0 {
			break
		}
		q += n
	}
	return q - p
}

// utf8DetectorSearch is bool(UTF8_DETECTOR_RE.search(text)).
func utf8DetectorSearch(text []rune) bool {
	for p := range text {
		if utf8DetectorMatch(text, p) > 0 {
			return true
		}
	}
	return false
}
