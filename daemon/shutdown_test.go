//go:build linux

package daemon

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
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

// TestSubscribeClientLeaves: a subscriber whose client leaves right as
// the loop registers it (its context ends while the call runs) is not
// left subscribed: its channel, kept, would keep the path from ever being
// forgotten. Whether the call then reports success or the context's end
// is up to a select, so the test tries often.
func TestSubscribeClientLeaves(t *testing.T) {
	root := newTree(t)
	sub := filepath.Join(root, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	var leave atomic.Pointer[context.CancelFunc]
	r := start(t, Config{Watch: []string{root}}, func(d *Daemon) {
		d.now = func() time.Time { // called on the loop as it registers the subscriber
			if cancel := leave.Load(); cancel != nil {
				(*cancel)()
			}
			return time.Now()
		}
	})
	fresh(t, r.c, sub, "the sub-path")
	for i := range 40 {
		ctx, cancel := context.WithCancel(context.Background())
		leave.Store(&cancel)
		err := r.d.Subscribe(ctx, sub, api.ViewTree, func(api.Hash) error { return nil })
		leave.Store(nil)
		cancel()
		if err == nil {
			t.Fatal("Subscribe returned nil for a client that left")
		}
		var subs int
		r.d.call(context.Background(), func() { subs = len(r.d.tracked[sub].subs) })
		if subs != 0 {
			t.Fatalf("try %d: %d subscribers left after the client left (Subscribe: %v)", i, subs, err)
		}
	}
}

// TestShutdownWithGitQuery: a query of a git view waiting for its job
// when the daemon stops is told so, as one of a plain view is.
func TestShutdownWithGitQuery(t *testing.T) {
	repo := newGitRepo(t)
	var armed atomic.Bool
	waits := make(chan struct{}, 1)
	r := start(t, Config{Watch: []string{repo.Dir}}, func(d *Daemon) {
		d.testHookWaits = func(string) {
			if armed.Load() {
				waits <- struct{}{}
			}
		}
		d.testHookDone = func(p string) {
			if armed.Load() {
				<-d.stopped // the job ends with the daemon
			}
		}
	})
	fresh(t, r.c, repo.Dir, "the root") // settled
	armed.Store(true)
	answer := make(chan error, 1)
	go func() {
		_, err := r.d.Hash(context.Background(), repo.Dir, api.ViewGit, false)
		answer <- err
	}()
	select {
	case <-waits:
	case <-time.After(10 * time.Second):
		t.Fatal("the query of the git view did not wait for a job")
	}
	r.stop(t)
	select {
	case err := <-answer:
		if err == nil || !strings.Contains(err.Error(), "shutting down") {
			t.Errorf("the query of a git view ended with %v, want a message that narhashd is shutting down", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the query of a git view still waits after the daemon stopped")
	}
}
