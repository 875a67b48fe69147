//go:build unix

package hub

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// lockFile takes an exclusive flock(2) on path (created if needed), the lock
// huggingface_hub's filelock takes on the same path, waiting until it is free
// or ctx is done. On file systems without flock it falls back to an
// exclusive-create lock file. The lock file itself is left in place, as
// filelock leaves it.
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("hub: lock: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("hub: lock: %w", err)
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		switch {
		case err == nil:
			return func() {
				unix.Flock(int(f.Fd()), unix.LOCK_UN)
				f.Close()
			}, nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EWOULDBLOCK):
			select {
			case <-ctx.Done():
				f.Close()
				return nil, fmt.Errorf("hub: waiting for the lock %s: %w", path, ctx.Err())
			case <-time.After(lockPoll):
			}
		case errors.Is(err, unix.ENOLCK), errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EINVAL):
			f.Close()
			return lockExclusive(ctx, path+".excl")
		default:
			f.Close()
			return nil, fmt.Errorf("hub: lock %s: %w", path, err)
		}
	}
}
