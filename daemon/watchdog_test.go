//go:build linux

package daemon

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestWatchdog: a request the loop does not take in time fails, saying
// the loop is stuck, instead of hanging.
func TestWatchdog(t *testing.T) {
	defer func(d time.Duration) { callTimeout = d }(callTimeout)
	callTimeout = 200 * time.Millisecond
	r := start(t, Config{})
	held, release := make(chan struct{}), make(chan struct{})
	go r.d.call(context.Background(), func() { close(held); <-release })
	<-held
	_, err := r.c.Status(context.Background())
	close(release)
	if err == nil || !strings.Contains(err.Error(), "event loop did not answer") {
		t.Fatalf("status while the loop is held: %v", err)
	}
}
