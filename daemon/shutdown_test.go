//go:build linux

package daemon

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/narhash/narhash/api"
)

// TestShutdownWithSubscriber: a daemon with a subscriber attached stops
// within a second or two, and the subscriber is told why, not cut off.
func TestShutdownWithSubscriber(t *testing.T) {
	root := newTree(t)
	r := start(t, Config{Watch: []string{root}})
	first := make(chan struct{})
	ended := make(chan error, 1)
	go func() {
		once := false
		ended <- r.c.Subscribe(context.Background(), root, "", func(api.HashResult) error {
			if !once {
				once = true
				close(first)
			}
			return nil
		})
	}()
	select {
	case <-first:
	case <-time.After(10 * time.Second):
		t.Fatal("no first line")
	}
	begin := time.Now()
	r.stop(t)
	if d := time.Since(begin); d > 2*time.Second {
		t.Errorf("stopping took %v with a subscriber attached", d)
	}
	select {
	case err := <-ended:
		if err == nil || !strings.Contains(err.Error(), "shutting down") {
			t.Errorf("subscriber ended with %v, want a message that narhashd is shutting down", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("subscriber still attached after the daemon stopped")
	}
}
