//go:build !poolcond

package engine

import (
	"syscall"
	"unsafe"
)

const (
	futexWaitPrivate = 0 | 128
	futexWakePrivate = 1 | 128
)

// waitWord sleeps while *addr == val (or until a wakeWord on addr, or a
// signal; callers recheck): a FUTEX_WAIT, which blocks this goroutine's
// thread in the kernel, so that wakeWord reaches it without going through
// the Go scheduler. The scheduler treats the sleep as a blocking system
// call: the thread's P is handed to other goroutines when they need it, as
// for any blocking read. (Keeping the P for a first part of the sleep, with
// a raw system call, was tried: no faster.)
func waitWord(addr *uint32, val uint32) {
	syscall.Syscall6(syscall.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWaitPrivate, uintptr(val), 0, 0, 0)
}

// wakeWord wakes up to n goroutines sleeping in waitWord(addr, …).
func wakeWord(addr *uint32, n int) {
	// FUTEX_WAKE never blocks: no need to tell the scheduler.
	syscall.RawSyscall6(syscall.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWakePrivate, uintptr(n), 0, 0, 0)
}
