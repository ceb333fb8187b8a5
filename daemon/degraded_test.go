//go:build linux

package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Degraded roots: parts the daemon cannot watch, so that every query is
// checked by a stat walk begun after it.

// TestWatchLimit: past the inotify watch limit the root is degraded and
// still answered correctly, by stat walks, and status says what to do.
func TestWatchLimit(t *testing.T) {
	root := newTree(t)
	os.MkdirAll(filepath.Join(root, "over/limit"), 0o755)
	r := start(t, Config{Watch: []string{root}}, func(d *Daemon) {
		d.testHookAdd = func(p string) error {
			if strings.Contains(p, "over") {
				return fmt.Errorf("add %s: %w", p, syscall.ENOSPC)
			}
			return nil
		}
	})
	for i := range 5 {
		os.WriteFile(filepath.Join(root, "over/limit/f"), []byte(fmt.Sprint(i)), 0o644)
		if got, want := query(t, r.c, root), offline(t, root); got.Hash != want || !got.Degraded {
			t.Fatalf("degraded root, change %d: %s degraded=%v, want %s", i, got.Hash, got.Degraded, want)
		}
	}
	st, _ := r.c.Status(context.Background())
	if len(st.Warnings) == 0 || !strings.Contains(strings.Join(st.Warnings, " "), "max_user_watches") {
		t.Errorf("status warnings %q", st.Warnings)
	}
}

// TestDegradedQueryDuringJob: a query of a degraded root that comes while
// a job hashes it, after a change the job did not see and no event
// reports, waits for a job begun after it. With the one worker busy with
// that job, the job's stale hash answered the query (TestWatchLimit failed
// 12 times in 20 on one CPU).
func TestDegradedQueryDuringJob(t *testing.T) {
	root := newTree(t)
	h := startHeld(t, root)
	h.change(t, root)
	// A change no event reports, then a query: it waits, and the held
	// job reports (testHookWaits).
	if err := os.WriteFile(filepath.Join(root, "over/limit/f"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	want := offline(t, root)
	if got := query(t, h.r.c, root); got.Hash != want || !got.Degraded {
		t.Errorf("query during a job that began before it: %s degraded=%v (%s at %v), want %s (the tree after the change)", got.Hash, got.Degraded, got.Source, got.Computed, want)
	}
}

// TestDegradedQueryDuringFailedJob: the same with a job that fails, on a
// FIFO no event told of: a query that came after the job began, once the
// FIFO is gone (no event either), gets the tree's hash, not the job's
// failure (every waiter got it before).
func TestDegradedQueryDuringFailedJob(t *testing.T) {
	root := newTree(t)
	h := startHeld(t, root)
	fifo := filepath.Join(root, "over/limit/fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	h.change(t, root) // its job fails on the FIFO
	if err := os.Remove(fifo); err != nil {
		t.Fatal(err)
	}
	want := offline(t, root)
	got, err := h.r.c.Hash(context.Background(), root, "", false)
	if err != nil || got.Hash != want {
		t.Errorf("query during a failed job that began before it: %s, %v; want %s (the tree without the FIFO)", got.Hash, err, want)
	}
}

// heldJob is a daemon with one worker watching a tree whose over/ is
// beyond the watch limit (a degraded root), and whose next job, once
// hold is set, stops after it has hashed until a query waits: a query
// then comes while a job begun before it runs.
type heldJob struct {
	r      *running
	hold   atomic.Bool
	hashed chan struct{}
}

func startHeld(t *testing.T, root string) *heldJob {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(root, "over/limit"), 0o755); err != nil {
		t.Fatal(err)
	}
	h := &heldJob{hashed: make(chan struct{})}
	release := make(chan struct{}) // closed once a query waits
	var held, waits sync.Once
	h.r = start(t, Config{Watch: []string{root}, Workers: 1}, func(d *Daemon) {
		d.testHookAdd = func(p string) error {
			if strings.Contains(p, "over") {
				return fmt.Errorf("add %s: %w", p, syscall.ENOSPC)
			}
			return nil
		}
		d.testHookWaits = func(string) {
			if h.hold.Load() {
				waits.Do(func() { close(release) })
			}
		}
		d.testHookDone = func(string) {
			if !h.hold.Load() {
				return
			}
			held.Do(func() {
				close(h.hashed)
				select {
				case <-release:
				case <-time.After(10 * time.Second):
				}
			})
		}
	})
	query(t, h.r.c, root) // the root listed and hashed: settled
	return h
}

// change makes a change an event reports, which starts a job (the root
// is rehashed unasked), and returns once that job has hashed the tree
// and is held.
func (h *heldJob) change(t *testing.T, root string) {
	t.Helper()
	h.hold.Store(true)
	if err := os.WriteFile(filepath.Join(root, "watched"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.hashed:
	case <-time.After(10 * time.Second):
		t.Fatal("no job hashed the root within 10 s of a change")
	}
}
