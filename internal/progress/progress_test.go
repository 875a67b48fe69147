package progress

import (
	"bytes"
	"strings"
	"testing"
)

func TestQuietWhenNotATerminal(t *testing.T) {
	var buf bytes.Buffer
	b := New(&buf, 10, "x", Options{})
	if b != nil {
		t.Fatal("bar created for a non-terminal writer")
	}
	b.Add(3) // nil bar: no-op
	b.Describe("y")
	b.Finish()
	if buf.Len() != 0 {
		t.Errorf("wrote %q", buf.String())
	}
}

func TestForced(t *testing.T) {
	var buf bytes.Buffer
	b := New(&buf, 4, "work", Options{Force: true, Unit: "img"})
	for i := 0; i < 4; i++ {
		b.Add(1)
	}
	b.Finish()
	if !strings.Contains(buf.String(), "work") {
		t.Errorf("forced bar output %q lacks the description", buf.String())
	}
}
