//go:build !amd64 || noasm

package engine

// spinPause is a no-op where there is no PAUSE instruction in Go assembly.
func spinPause() {}
