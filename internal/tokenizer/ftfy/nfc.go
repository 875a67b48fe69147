package ftfy

import "sort"

// NFC as Python's unicodedata.normalize("NFC") computes it (UAX #15:
// canonical decomposition, canonical ordering, canonical composition), from
// tables generated with Python. golang.org/x/text/unicode/norm is not used:
// it inserts U+034F after 30 consecutive non-starters (the Stream-Safe Text
// Format), which Python does not.

// cccRange gives the canonical combining class of the code points lo..hi.
type cccRange struct {
	lo, hi rune
	ccc    uint8
}

// Hangul syllable composition constants (Unicode §3.12).
const (
	hangulSBase  = 0xAC00
	hangulLBase  = 0x1100
	hangulVBase  = 0x1161
	hangulTBase  = 0x11A7
	hangulLCount = 19
	hangulVCount = 21
	hangulTCount = 28
	hangulNCount = hangulVCount * hangulTCount
	hangulSCount = hangulLCount * hangulNCount
)

func combiningClass(r rune) uint8 {
	if r < 0x300 {
		return 0
	}
	i := sort.Search(len(nfcCombiningClass), func(i int) bool { return nfcCombiningClass[i].hi >= r })
	if i < len(nfcCombiningClass) && nfcCombiningClass[i].lo <= r {
		return nfcCombiningClass[i].ccc
	}
	return 0
}

// nfcStable reports whether r is left alone by NFC whatever surrounds it: a
// starter without decomposition that never composes with what precedes it.
func nfcStable(r rune) bool {
	if r < 0x300 {
		return true
	}
	if r >= hangulVBase && r < hangulVBase+hangulVCount || r > hangulTBase && r < hangulTBase+hangulTCount {
		return false // Hangul vowels and trailing consonants compose
	}
	if r >= hangulSBase && r < hangulSBase+hangulSCount {
		return true
	}
	if _, ok := nfcDecomposition[r]; ok {
		return false
	}
	return combiningClass(r) == 0 && !composesAsSecond(r)
}

// composeSecond holds the code points that are the second half of a
// composition pair.
var composeSecond = func() map[rune]bool {
	m := make(map[rune]bool)
	for k := range nfcComposition {
		m[rune(k&(1<<21-1))] = true
	}
	return m
}()

func composesAsSecond(r rune) bool { return composeSecond[r] }

// nfc is unicodedata.normalize("NFC", text).
func nfc(text []rune) []rune {
	stable := true
	for _, r := range text {
		if !nfcStable(r) {
			stable = false
			break
		}
	}
	if stable {
		return text
	}
	// Canonical decomposition.
	d := make([]rune, 0, len(text)+8)
	for _, r := range text {
		switch {
		case r >= hangulSBase && r < hangulSBase+hangulSCount:
			s := r - hangulSBase
			d = append(d, hangulLBase+s/hangulNCount, hangulVBase+(s%hangulNCount)/hangulTCount)
			if t := s % hangulTCount; t != 0 {
				d = append(d, hangulTBase+t)
			}
		default:
			if dec, ok := nfcDecomposition[r]; ok {
				for _, c := range dec {
					d = append(d, c)
				}
			} else {
				d = append(d, r)
			}
		}
	}
	// Canonical ordering: stable sort of every run of non-starters by class.
	ccc := make([]uint8, len(d))
	for i, r := range d {
		ccc[i] = combiningClass(r)
	}
	for i := 0; i < len(d); {
		if ccc[i] == 0 {
			i++
			continue
		}
		j := i
		for j < len(d) && ccc[j] != 0 {
			j++
		}
		run := d[i:j]
		cls := ccc[i:j]
		sort.Stable(byClass{run, cls})
		i = j
	}
	// Canonical composition.
	out := d[:0]
	outCCC := ccc[:0]
	starter := -1 // index in out of the last starter
	for i, r := range d {
		c := ccc[i]
		if starter >= 0 {
			// r is blocked from the starter if a code point between them has
			// class 0 or a class >= r's.
			blocked := false
			if len(out)-1 > starter {
				last := outCCC[len(out)-1]
				blocked = last == 0 || last >= c
			}
			if !blocked {
				if p, ok := compose(out[starter], r); ok {
					out[starter] = p
					continue
				}
			}
		}
		if c == 0 {
			starter = len(out)
		}
		out = append(out, r)
		outCCC = append(outCCC, c)
	}
	return out
}

// compose returns the primary composite of the pair, if there is one.
func compose(a, b rune) (rune, bool) {
	if a >= hangulLBase && a < hangulLBase+hangulLCount && b >= hangulVBase && b < hangulVBase+hangulVCount {
		return hangulSBase + ((a-hangulLBase)*hangulVCount+(b-hangulVBase))*hangulTCount, true
	}
	if a >= hangulSBase && a < hangulSBase+hangulSCount && (a-hangulSBase)%hangulTCount == 0 &&
		b > hangulTBase && b < hangulTBase+hangulTCount {
		return a + (b - hangulTBase), true
	}
	p, ok := nfcComposition[uint64(a)<<21|uint64(b)]
	return p, ok
}

// byClass sorts a run of non-starters by canonical combining class.
type byClass struct {
	r   []rune
	ccc []uint8
}

func (b byClass) Len() int           { return len(b.r) }
func (b byClass) Less(i, j int) bool { return b.ccc[i] < b.ccc[j] }
func (b byClass) Swap(i, j int) {
	b.r[i], b.r[j] = b.r[j], b.r[i]
	b.ccc[i], b.ccc[j] = b.ccc[j], b.ccc[i]
}
