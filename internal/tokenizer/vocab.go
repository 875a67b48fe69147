package tokenizer

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// File names the loaders look for.
const (
	gzName        = "bpe_simple_vocab_16e6.txt.gz"
	tokenizerJSON = "tokenizer.json"
	vocabJSONName = "vocab.json"
	mergesTxtName = "merges.txt"
)

const (
	maxFileSize    = 64 << 20              // vocabulary files are a few MB
	numMerges      = VocabSize - 256*2 - 2 // 48894 merges are used
	endOfWord      = "</w>"
	mergesVersion  = "#version"
	jsonObjectByte = '{'
	// Hugging Face spellings of the special tokens.
	hfSOT, hfEOT = "<|startoftext|>", "<|endoftext|>"
)

// byteSymbols[b] is the printable stand-in of byte b (open_clip's
// bytes_to_unicode), and byteOrder the order of the first 256 ids.
var byteSymbols, byteOrder = func() ([256]string, [256]byte) {
	var sym [256]string
	var order [256]byte
	k := 0
	for b := 0; b < 256; b++ {
		if b >= 33 && b <= 126 || b >= 161 && b <= 172 || b >= 174 {
			sym[b] = string(rune(b))
			order[k] = byte(b)
			k++
		}
	}
	n := 0
	for b := 0; b < 256; b++ {
		if sym[b] == "" {
			sym[b] = string(rune(256 + n))
			n++
			order[k] = byte(b)
			k++
		}
	}
	return sym, order
}()

// Load reads a vocabulary: a Hugging Face tokenizer.json, vocab.json or
// merges.txt (the other of the pair is taken from the same directory),
// open_clip's bpe_simple_vocab_16e6.txt.gz, or a directory holding one of
// them. All forms give the same ids.
func Load(path string, opts ...Option) (*Tokenizer, error) {
	v, err := loadVocab(path)
	if err != nil {
		return nil, err
	}
	return newTokenizer(v, opts), nil
}

func loadVocab(path string) (*vocab, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	if fi.IsDir() {
		for _, name := range []string{gzName, tokenizerJSON, vocabJSONName} {
			p := filepath.Join(path, name)
			if _, err := os.Stat(p); err == nil {
				return loadVocab(p)
			}
		}
		return nil, fmt.Errorf("tokenizer: %s: no vocabulary file (%s, %s, or %s and %s)",
			path, gzName, tokenizerJSON, vocabJSONName, mergesTxtName)
	}
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	base := filepath.Base(path)
	switch {
	case len(data) >= 2 && data[0] == 0x1f && data[1] == 0x8b: // gzip
		return parseGz(data, path)
	case base == tokenizerJSON:
		return parseTokenizerJSON(data, path)
	case base == mergesTxtName || base != vocabJSONName && bytes.HasPrefix(data, []byte(mergesVersion)):
		vocabPath := filepath.Join(filepath.Dir(path), vocabJSONName)
		vocabData, err := readFile(vocabPath)
		if err != nil {
			return nil, err
		}
		return parseVocabMerges(vocabData, vocabPath, data, path)
	case base == vocabJSONName || firstNonSpace(data) == jsonObjectByte:
		var top map[string]json.RawMessage
		if err := json.Unmarshal(data, &top); err != nil {
			return nil, fmt.Errorf("tokenizer: %s: %w", path, err)
		}
		if m, ok := top["model"]; ok && firstNonSpace(m) == jsonObjectByte {
			return parseTokenizerJSON(data, path) // vocab.json maps "model" to a number
		}
		mergesPath := filepath.Join(filepath.Dir(path), mergesTxtName)
		merges, err := readFile(mergesPath)
		if err != nil {
			return nil, err
		}
		return parseVocabMerges(data, path, merges, mergesPath)
	}
	return nil, fmt.Errorf("tokenizer: %s: not a vocabulary file (gzip, JSON or merges.txt)", path)
}

// readFile reads a file of at most maxFileSize bytes.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("tokenizer: %s: larger than %d bytes", path, maxFileSize)
	}
	return data, nil
}

func firstNonSpace(data []byte) byte {
	for _, c := range data {
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			return c
		}
	}
	return 0
}

// parseGz builds the vocabulary of open_clip's bpe_simple_vocab_16e6.txt.gz
// (spec §3.7): the 256 byte symbols, the same with "</w>", one token per
// merge of lines 1..48894 (line 0 is a header, later lines are unused), and
// the two special tokens.
func parseGz(data []byte, name string) (*vocab, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %s: truncated or corrupt gzip: %w", name, err)
	}
	text, err := io.ReadAll(io.LimitReader(zr, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %s: truncated or corrupt gzip: %w", name, err)
	}
	if len(text) > maxFileSize {
		return nil, fmt.Errorf("tokenizer: %s: decompresses to more than %d bytes", name, maxFileSize)
	}
	if !utf8.Valid(text) {
		return nil, fmt.Errorf("tokenizer: %s: not UTF-8", name)
	}
	lines := strings.SplitN(string(text), "\n", numMerges+2)
	if len(lines) < numMerges+1 {
		return nil, fmt.Errorf("tokenizer: %s: %d merge lines, want at least %d", name, len(lines)-1, numMerges)
	}
	merges := make([][2]string, numMerges)
	for i := range merges {
		line := lines[i+1]
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("tokenizer: %s: line %d: %q is not a merge of two symbols", name, i+2, line)
		}
		merges[i] = [2]string{f[0], f[1]}
	}
	ids := make(map[string]int, VocabSize)
	add := func(s string) error {
		if _, dup := ids[s]; dup {
			return fmt.Errorf("tokenizer: %s: token %q occurs twice", name, s)
		}
		ids[s] = len(ids)
		return nil
	}
	for _, b := range byteOrder {
		add(byteSymbols[b])
	}
	for _, b := range byteOrder {
		add(byteSymbols[b] + endOfWord)
	}
	for _, m := range merges {
		if err := add(m[0] + m[1]); err != nil {
			return nil, err
		}
	}
	if err := add(sotText); err != nil {
		return nil, err
	}
	if err := add(eotText); err != nil {
		return nil, err
	}
	return buildVocab(ids, name, merges, name)
}

// parseTokenizerJSON reads model.vocab, model.merges ("a b" strings or
// [a, b] pairs) and added_tokens of a Hugging Face tokenizer.json.
func parseTokenizerJSON(data []byte, name string) (*vocab, error) {
	var f struct {
		AddedTokens []struct {
			ID      int    `json:"id"`
			Content string `json:"content"`
		} `json:"added_tokens"`
		Model struct {
			Type   string          `json:"type"`
			Vocab  map[string]int  `json:"vocab"`
			Merges json.RawMessage `json:"merges"`
		} `json:"model"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", name, err)
	}
	if f.Model.Type != "" && f.Model.Type != "BPE" {
		return nil, fmt.Errorf("tokenizer: %s: model type %q, want BPE", name, f.Model.Type)
	}
	if f.Model.Vocab == nil {
		return nil, fmt.Errorf("tokenizer: %s: no model.vocab", name)
	}
	for _, t := range f.AddedTokens {
		if id, ok := f.Model.Vocab[t.Content]; ok && id != t.ID {
			return nil, fmt.Errorf("tokenizer: %s: added token %q has id %d, model.vocab says %d", name, t.Content, t.ID, id)
		}
		f.Model.Vocab[t.Content] = t.ID
	}
	var merges [][2]string
	var asStrings []string
	if err := json.Unmarshal(f.Model.Merges, &asStrings); err == nil {
		merges = make([][2]string, len(asStrings))
		for i, m := range asStrings {
			p := strings.Fields(m)
			if len(p) != 2 {
				return nil, fmt.Errorf("tokenizer: %s: merge %d: %q is not a merge of two symbols", name, i, m)
			}
			merges[i] = [2]string{p[0], p[1]}
		}
	} else if err := json.Unmarshal(f.Model.Merges, &merges); err != nil {
		return nil, fmt.Errorf("tokenizer: %s: model.merges: want strings or pairs of strings: %w", name, err)
	}
	return buildVocab(f.Model.Vocab, name, merges, name)
}

// parseVocabMerges reads a vocab.json (token -> id) and a merges.txt
// ("#version" header, then "a b" lines in rank order).
func parseVocabMerges(vocabData []byte, vocabName string, mergesData []byte, mergesName string) (*vocab, error) {
	var ids map[string]int
	if err := json.Unmarshal(vocabData, &ids); err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", vocabName, err)
	}
	var merges [][2]string
	sc := bufio.NewScanner(bytes.NewReader(mergesData))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSuffix(sc.Text(), "\r")
		if line == 1 && strings.HasPrefix(text, mergesVersion) || strings.TrimSpace(text) == "" {
			continue
		}
		p := strings.Fields(text)
		if len(p) != 2 {
			return nil, fmt.Errorf("tokenizer: %s: line %d: %q is not a merge of two symbols", mergesName, line, text)
		}
		merges = append(merges, [2]string{p[0], p[1]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", mergesName, err)
	}
	if !utf8.Valid(mergesData) {
		return nil, fmt.Errorf("tokenizer: %s: not UTF-8", mergesName)
	}
	return buildVocab(ids, vocabName, merges, mergesName)
}

// buildVocab checks a token -> id map and the ranked merges against the
// CLIP layout (49408 distinct ids, specials at 49406 and 49407, every byte
// symbol present, every merge made of known symbols into a known token) and
// indexes them.
func buildVocab(ids map[string]int, name string, merges [][2]string, mergesName string) (*vocab, error) {
	if len(ids) != VocabSize {
		return nil, fmt.Errorf("tokenizer: %s: %d tokens, want %d", name, len(ids), VocabSize)
	}
	if len(merges) != numMerges {
		return nil, fmt.Errorf("tokenizer: %s: %d merges, want %d", mergesName, len(merges), numMerges)
	}
	v := &vocab{symbols: make([]string, VocabSize), ranks: make(map[uint64]int32, numMerges), merges: make([]merge, numMerges)}
	for s, id := range ids {
		if id < 0 || id >= VocabSize {
			return nil, fmt.Errorf("tokenizer: %s: token %q has id %d, outside [0, %d)", name, s, id, VocabSize)
		}
		if v.symbols[id] != "" {
			return nil, fmt.Errorf("tokenizer: %s: tokens %q and %q share id %d", name, v.symbols[id], s, id)
		}
		if s == "" {
			return nil, fmt.Errorf("tokenizer: %s: empty token (id %d)", name, id)
		}
		v.symbols[id] = s
	}
	for _, sp := range []struct {
		id          int
		text, hfTxt string
	}{{SOT, sotText, hfSOT}, {EOT, eotText, hfEOT}} {
		switch v.symbols[sp.id] {
		case sp.text, sp.hfTxt:
			v.symbols[sp.id] = sp.text
		default:
			return nil, fmt.Errorf("tokenizer: %s: id %d is %q, want %q or %q", name, sp.id, v.symbols[sp.id], sp.text, sp.hfTxt)
		}
	}
	lookup := func(s string) (int32, bool) {
		id, ok := ids[s]
		if !ok || id == SOT || id == EOT {
			return 0, false
		}
		return int32(id), true
	}
	for b := 0; b < 256; b++ {
		var ok1, ok2 bool
		v.byteID[b], ok1 = lookup(byteSymbols[b])
		v.byteEndID[b], ok2 = lookup(byteSymbols[b] + endOfWord)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("tokenizer: %s: byte symbol %q (byte %#02x) or %q missing", name, byteSymbols[b], b, byteSymbols[b]+endOfWord)
		}
	}
	for r, m := range merges {
		left, ok1 := lookup(m[0])
		right, ok2 := lookup(m[1])
		result, ok3 := lookup(m[0] + m[1])
		if !ok1 || !ok2 || !ok3 {
			return nil, fmt.Errorf("tokenizer: %s: merge %d (%q %q): unknown symbol", mergesName, r, m[0], m[1])
		}
		k := pairKey(left, right)
		if _, dup := v.ranks[k]; dup {
			return nil, fmt.Errorf("tokenizer: %s: merge %d (%q %q) occurs twice", mergesName, r, m[0], m[1])
		}
		v.ranks[k] = int32(r)
		v.merges[r] = merge{left, right, result}
	}
	return v, nil
}
