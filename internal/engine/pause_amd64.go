//go:build amd64 && !noasm

package engine

// spinPause executes PAUSE: a hint, inside a polling loop, that lets the
// core save power and the other hyperthread run.
//
//go:noescape
func spinPause()
