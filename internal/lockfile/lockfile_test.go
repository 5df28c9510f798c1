package lockfile

import (
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestLockExcludes: a second Lock of the same file, even from the same
// process, waits until the first is released.
func TestLockExcludes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "x.lock")
	unlock, err := Lock(path)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	released := false
	done := make(chan struct{})
	go func() {
		defer close(done)
		u, err := Lock(path)
		if err != nil {
			t.Error(err)
			return
		}
		mu.Lock()
		if !released {
			t.Error("the second lock was granted while the first was held")
		}
		mu.Unlock()
		u()
	}()
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	released = true
	mu.Unlock()
	unlock()
	<-done
	if _, err := Lock(filepath.Join(t.TempDir(), "missing", "\x00")); err == nil {
		t.Error("an impossible path: no error")
	}
}
