package tokenizer

import (
	"math"
	"sync"
)

// vocab is a parsed BPE vocabulary, whatever file it came from.
type vocab struct {
	// symbols[id] is the token text (Hugging Face spellings of the
	// special tokens replaced by TinyCLIP's).
	symbols []string
	// byteID[b] and byteEndID[b] are the ids of byte b's stand-in, without
	// and with "</w>".
	byteID, byteEndID [256]int32
	// ranks maps a pair of ids to its merge rank; merges[rank] is the pair
	// and its result.
	ranks  map[uint64]int32
	merges []merge
}

type merge struct {
	left, right, result int32
}

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// bpe appends to dst the ids of one pre-token (its UTF-8 bytes) after
// byte-pair encoding, as open_clip's SimpleTokenizer.bpe does: the last
// symbol carries "</w>"; repeatedly the adjacent pair of lowest merge rank is
// merged at all its non-overlapping occurrences, left to right.
func (v *vocab) bpe(dst []int, tok string) []int {
	n := len(tok)
	if n == 0 {
		return dst
	}
	word := make([]int32, n)
	for i := 0; i < n-1; i++ {
		word[i] = v.byteID[tok[i]]
	}
	word[n-1] = v.byteEndID[tok[n-1]]
	// rank[i] is the merge rank of (word[i], word[i+1]), or noRank.
	const noRank = math.MaxInt32
	rank := make([]int32, n)
	for i := 0; i+1 < len(word); i++ {
		rank[i] = v.rank(word[i], word[i+1])
	}
	for len(word) > 1 {
		best := int32(noRank)
		for _, r := range rank[:len(word)-1] {
			if r < best {
				best = r
			}
		}
		if best == noRank {
			break
		}
		m := v.merges[best]
		out := 0
		for i := 0; i < len(word); {
			if i+1 < len(word) && word[i] == m.left && word[i+1] == m.right {
				word[out] = m.result
				i += 2
			} else {
				word[out] = word[i]
				i++
			}
			out++
		}
		word = word[:out]
		for i := 0; i+1 < len(word); i++ {
			rank[i] = v.rank(word[i], word[i+1])
		}
	}
	for _, id := range word {
		dst = append(dst, int(id))
	}
	return dst
}

func (v *vocab) rank(a, b int32) int32 {
	if r, ok := v.ranks[pairKey(a, b)]; ok {
		return r
	}
	return math.MaxInt32
}

// Cache limits: pre-tokens longer than maxCachedToken bytes are not cached;
// the cache is emptied when it reaches its size.
const (
	defaultCacheSize = 1 << 14
	maxCachedToken   = 64
)

// bpeCache is a bounded, mutex-protected map from pre-token to ids.
type bpeCache struct {
	mu   sync.Mutex
	max  int
	data map[string][]int32
}

func newBPECache(max int) *bpeCache {
	return &bpeCache{max: max, data: make(map[string][]int32)}
}

func (c *bpeCache) get(tok string) ([]int32, bool) {
	if c == nil || len(tok) > maxCachedToken {
		return nil, false
	}
	c.mu.Lock()
	ids, ok := c.data[tok]
	c.mu.Unlock()
	return ids, ok
}

func (c *bpeCache) put(tok string, ids []int) {
	if c == nil || len(tok) > maxCachedToken || c.max <= 0 {
		return
	}
	v := make([]int32, len(ids))
	for i, id := range ids {
		v[i] = int32(id)
	}
	c.mu.Lock()
	if len(c.data) >= c.max {
		clear(c.data)
	}
	c.data[tok] = v
	c.mu.Unlock()
}

func (c *bpeCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.data)
}
