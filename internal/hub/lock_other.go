//go:build !unix

package hub

import "context"

// lockFile takes an exclusive-create lock next to path (no flock here).
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	return lockExclusive(ctx, path+".excl")
}
