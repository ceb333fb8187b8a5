package hasher

import (
	"context"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestHashFileFIFO: a FIFO is refused at once, not waited on for a
// writer that never comes.
func TestHashFileFIFO(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := HashFile(context.Background(), fifo, SHA256)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("HashFile of a FIFO: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("HashFile of a FIFO still waits after 10 s")
	}
}
