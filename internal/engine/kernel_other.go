//go:build !amd64 || noasm

package engine

// asmKernels lists the assembly kernels this CPU can run: none in this build.
func asmKernels() []*microKernel { return nil }

// defaultKernel returns the micro-kernel new models are built with.
func defaultKernel() *microKernel { return genericKernel }
