package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"

	"github.com/tinyclip-go/tinyclip/internal/tokenizer"
)

func init() {
	register(command{"tokenize", "token ids of JSON-string lines read from stdin", runTokenize, 10})
}

// maxLine caps one input line of tokenize (64 MiB).
const maxLine = 64 << 20

func runTokenize(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "tokenize", "[--vocab PATH] [--context N] < strings.jsonl")
	vocab := fs.String("vocab", "", "vocabulary: tokenizer.json, vocab.json (+ merges.txt) or bpe_simple_vocab_16e6.txt.gz (default: built in)")
	ctxLen := fs.Int("context", tokenizer.ContextLength, "context length: ids are truncated to it with EOT last")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected arguments %q: texts are read from stdin, one JSON string per line", pos)
	}
	if *ctxLen < 2 {
		return usagef("--context must be at least 2, got %d", *ctxLen)
	}
	tok, err := loadTokenizer(*vocab)
	if err != nil {
		return err
	}
	r := bufio.NewReaderSize(e.stdin, 1<<16)
	w := bufio.NewWriter(e.stdout)
	defer w.Flush()
	for line := 1; ; line++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		b, err := readLine(r)
		if err == io.EOF {
			return w.Flush()
		}
		if err != nil {
			return fmt.Errorf("stdin line %d: %w", line, err)
		}
		var text string
		if err := json.Unmarshal(b, &text); err != nil {
			return fmt.Errorf("stdin line %d: want a JSON string: %v", line, err)
		}
		ids, err := tok.TokenizeN(text, *ctxLen)
		if err != nil {
			return err
		}
		buf := make([]byte, 0, 8*len(ids)+2)
		buf = append(buf, '[')
		for i, id := range ids {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = strconv.AppendInt(buf, int64(id), 10)
		}
		buf = append(buf, ']', '\n')
		if _, err := w.Write(buf); err != nil {
			return err
		}
	}
}

// readLine returns the next line without its line ending; io.EOF at the end.
func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, isPrefix, err := r.ReadLine()
		if err != nil {
			if err == io.EOF && line != nil {
				return line, nil
			}
			return nil, err
		}
		line = append(line, chunk...)
		if len(line) > maxLine {
			return nil, fmt.Errorf("line longer than %d bytes", maxLine)
		}
		if !isPrefix {
			if line == nil {
				line = []byte{}
			}
			return line, nil
		}
	}
}

func loadTokenizer(path string) (*tokenizer.Tokenizer, error) {
	if path == "" {
		return tokenizer.Default()
	}
	return tokenizer.Load(path)
}
