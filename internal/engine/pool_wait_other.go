//go:build !linux || poolcond

package engine

import (
	"sync"
	"sync/atomic"
)

// Without futexes (or with -tags poolcond, to test this version on Linux),
// the wait words share one condition variable: a wake-up wakes every
// sleeper, which rechecks its word.
var (
	wordMu   sync.Mutex
	wordCond = sync.NewCond(&wordMu)
)

// waitWord sleeps while *addr == val (or until a wakeWord; callers
// recheck).
func waitWord(addr *uint32, val uint32) {
	wordMu.Lock()
	for atomic.LoadUint32(addr) == val {
		wordCond.Wait()
	}
	wordMu.Unlock()
}

// wakeWord wakes the goroutines sleeping in waitWord on addr (and, here,
// all others, which go back to sleep).
func wakeWord(addr *uint32, n int) {
	wordMu.Lock()
	wordCond.Broadcast()
	wordMu.Unlock()
}
