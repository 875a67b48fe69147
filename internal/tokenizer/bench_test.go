package tokenizer

import "testing"

func BenchmarkTokenize(b *testing.B) {
	strs, _ := fixtureStrings(b)
	tok := mustDefault(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tok.Tokenize(strs[i%len(strs)])
	}
}

func BenchmarkTokenizeNoCache(b *testing.B) {
	strs, _ := fixtureStrings(b)
	tok := mustDefault(b).With(WithCacheSize(0))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tok.Tokenize(strs[i%len(strs)])
	}
}

func BenchmarkParseEmbedded(b *testing.B) {
	for i := 0; i < b.N; i++ {
		if _, err := parseGz(defaultVocab, gzName); err != nil {
			b.Fatal(err)
		}
	}
}
