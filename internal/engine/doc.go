// Package engine runs TinyCLIP / CLIP inference in pure Go, in float32: the
// ViT and ModifiedResNet image towers and the causal text tower (spec §1.1),
// including the irregular towers of auto-pruned models (spec §1.3).
//
// Build turns a resolved architecture and its tensors (open_clip names) into
// an immutable Model: weights are converted to float32 once, BatchNorm is
// folded into the convolutions, and every matrix is packed into the panel
// layout of the GEMM micro-kernel. A Model is safe for concurrent use;
// scratch memory comes from size-classed pools and work is split over a
// process-wide pool of worker goroutines (no spinning).
//
// All matrix products go through one blocked GEMM (sgemm) whose inner
// micro-kernel is pluggable: a portable pure-Go kernel, and on amd64 AVX2+FMA
// and AVX-512 assembly kernels chosen at Build from the CPU's features. The
// environment variable TINYCLIP_KERNEL ("generic", "avx2", "avx512") forces
// a kernel the CPU supports; the build tag noasm leaves the assembly out.
package engine
