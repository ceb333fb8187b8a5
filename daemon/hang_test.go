//go:build linux

package daemon

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestNoHangOnMovedDirectory repeats the sequence that deadlocked
// narhashd with fsnotify (mkdir -p a/s; mv a b; rm -rf b, then a query):
// every query must be answered, correctly, within a deadline.
func TestNoHangOnMovedDirectory(t *testing.T) {
	root := newTree(t)
	r := start(t, Config{Watch: []string{root}})
	n := 400
	if testing.Short() {
		n = 100
	}
	for i := range n {
		a, b := filepath.Join(root, "a"), filepath.Join(root, "b")
		if err := os.MkdirAll(filepath.Join(a, "s"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(a, b); err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(b); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		got, err := r.c.Hash(ctx, root, "", false)
		cancel()
		if err != nil {
			t.Fatalf("iteration %d: %v (the daemon hangs?)", i, err)
		}
		if want := offline(t, root); got.Hash != want {
			t.Fatalf("iteration %d: %s, want %s", i, got.Hash, want)
		}
	}
	stopped := make(chan struct{})
	go func() { r.stop(t); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("the daemon did not stop within 5 s")
	}
}
