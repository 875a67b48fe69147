//go:build !unix

package engine

import "time"

// processCPU returns 0 where getrusage is not available; the benchmarks'
// cpu-ms metrics then read 0.
func processCPU() time.Duration { return 0 }
