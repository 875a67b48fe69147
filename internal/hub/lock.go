package hub

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// lockPoll is how often a waiting downloader retries a held lock.
const lockPoll = 50 * time.Millisecond

// Exclusive-create locks: the holder refreshes the lock file's modification
// time every lockRefresh; a lock file untouched for lockStale belongs to a
// process that died and is taken over.
const (
	lockRefresh = 10 * time.Second
	lockStale   = 60 * time.Second
)

// lockExclusive is the fallback lock for systems or file systems without
// flock: whoever creates path with O_EXCL holds the lock, and removes the
// file to release it.
func lockExclusive(ctx context.Context, path string) (unlock func(), err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("hub: lock: %w", err)
	}
	for {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			fmt.Fprintf(f, "%d\n", os.Getpid())
			f.Close()
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() { // keep the lock fresh while held
				defer close(done)
				t := time.NewTicker(lockRefresh)
				defer t.Stop()
				for {
					select {
					case <-stop:
						return
					case now := <-t.C:
						os.Chtimes(path, now, now)
					}
				}
			}()
			return func() {
				close(stop)
				<-done
				os.Remove(path)
			}, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("hub: lock %s: %w", path, err)
		}
		if st, err := os.Stat(path); err == nil && time.Since(st.ModTime()) > lockStale {
			// Take over a dead holder's lock: rename it away first, so two
			// waiters cannot both remove a fresh lock.
			stale := fmt.Sprintf("%s.stale%d", path, os.Getpid())
			if os.Rename(path, stale) == nil {
				os.Remove(stale)
			}
			continue
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("hub: waiting for the lock %s: %w", path, ctx.Err())
		case <-time.After(lockPoll):
		}
	}
}
