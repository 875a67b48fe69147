// Package engine runs TinyCLIP / CLIP inference in pure Go: the ViT and
// ModifiedResNet image towers and the causal text tower (spec §1.1),
// including the irregular towers of auto-pruned models (spec §1.3).
//
// Build turns a resolved architecture and its tensors (open_clip names) into
// an immutable Model: weights are converted once, BatchNorm is folded into
// the convolutions, and every matrix is packed into the panel layout of the
// GEMM micro-kernel (in BF16 pairs for Options.Precision = BF16). A Model is
// safe for concurrent use; scratch memory comes from size-classed pools and
// work is split over a process-wide pool of worker goroutines that sleep
// (on futexes on Linux) when idle: nothing spins or polls, unless
// SetSpinWait asks idle threads to poll briefly first.
//
// All matrix products go through one blocked GEMM (sgemm.go) whose
// micro-kernel is pluggable: a portable pure-Go kernel, and on amd64 an
// AVX2+FMA kernel (6×16 tiles) and an AVX-512 kernel (12×32 tiles in 24 zmm
// registers, A read in place through EVEX embedded broadcasts, 4- and 8-row
// variants for the last rows, masked partial columns, bias and ReLU fused
// into the stores, a BF16 variant with VDPBF16PS, and a variant that walks
// the taps of an implicit-GEMM 3×3 convolution). With the AVX-512 kernel the
// element-wise work (softmax, GELU, QuickGELU, LayerNorm, BF16 rounding) also
// runs in AVX-512 assembly (vec_amd64.s); with the others it runs in Go. The
// kernel is chosen at Build from the CPU's features; the environment
// variable TINYCLIP_KERNEL ("generic", "avx2", "avx512") forces one the CPU
// supports, and the build tag noasm leaves the assembly out.
//
// Threads: a batch whose size suits the thread count is split into whole
// images (or texts) per thread; otherwise each matrix product is split into
// (row block, column panels) tasks, and attention into (sequence, head)
// tasks.
package engine
