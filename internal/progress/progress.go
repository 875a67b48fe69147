// Package progress draws progress bars for long jobs (downloads, indexing,
// evaluation, training) on stderr when it is a terminal, and stays silent
// when output is piped or redirected, so logs and JSON output stay clean.
package progress

import (
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Bar is a progress bar; the zero of Bar methods on a nil *Bar are no-ops,
// so callers need not check whether a bar is shown.
type Bar struct {
	b *progressbar.ProgressBar
}

// Options configures New.
type Options struct {
	// Bytes formats the counts as byte sizes (downloads).
	Bytes bool
	// Unit names the counted things in the rate ("img", "it").
	Unit string
	// Force draws the bar even when w is not a terminal (tests).
	Force bool
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// New returns a bar counting to total (-1 for unknown) with a description,
// drawn on w; it returns nil when w is not a terminal and opts.Force is not
// set.
func New(w io.Writer, total int64, desc string, opts Options) *Bar {
	if w == nil || (!opts.Force && !IsTerminal(w)) {
		return nil
	}
	po := []progressbar.Option{
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowCount(),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100 * time.Millisecond),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionClearOnFinish(),
	}
	if opts.Bytes {
		po = append(po, progressbar.OptionShowBytes(true))
	} else {
		po = append(po, progressbar.OptionShowIts())
		if opts.Unit != "" {
			po = append(po, progressbar.OptionSetItsString(opts.Unit))
		}
	}
	return &Bar{b: progressbar.NewOptions64(total, po...)}
}

// Add advances the bar by n.
func (b *Bar) Add(n int64) {
	if b != nil {
		_ = b.b.Add64(n)
	}
}

// Describe changes the description (e.g. to show a running loss).
func (b *Bar) Describe(desc string) {
	if b != nil {
		b.b.Describe(desc)
	}
}

// Write makes the bar an io.Writer counting bytes (for io.Copy).
func (b *Bar) Write(p []byte) (int, error) {
	b.Add(int64(len(p)))
	return len(p), nil
}

// Finish completes and clears the bar.
func (b *Bar) Finish() {
	if b != nil {
		_ = b.b.Finish()
	}
}
