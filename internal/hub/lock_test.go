package hub

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testMutualExclusion runs goroutines that each hold the lock while
// checking that nobody else does.
func testMutualExclusion(t *testing.T, lock func(context.Context, string) (func(), error), path string) {
	t.Helper()
	var inside, overlaps atomic.Int32
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				unlock, err := lock(context.Background(), path)
				if err != nil {
					t.Error(err)
					return
				}
				if inside.Add(1) != 1 {
					overlaps.Add(1)
				}
				time.Sleep(2 * time.Millisecond)
				inside.Add(-1)
				unlock()
			}
		}()
	}
	wg.Wait()
	if overlaps.Load() != 0 {
		t.Errorf("%d overlapping holders", overlaps.Load())
	}
	// A waiter gives up when its context ends.
	unlock, err := lock(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := lock(ctx, path); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiting on a held lock: %v", err)
	}
}

func TestLockFile(t *testing.T) {
	testMutualExclusion(t, lockFile, filepath.Join(t.TempDir(), "sub", "x.lock"))
}

func TestLockExclusive(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock.excl")
	testMutualExclusion(t, lockExclusive, path)
	// A lock left by a dead process is taken over once stale.
	if err := os.WriteFile(path, []byte("123\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * lockStale)
	os.Chtimes(path, old, old)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	unlock, err := lockExclusive(ctx, path)
	if err != nil {
		t.Fatalf("stale lock: %v", err)
	}
	unlock()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lock file left after unlock: %v", err)
	}
}
