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
	os.MkdirAll(filepath.Join(root, "over/limit"), 0o755)
	var hold atomic.Bool // hold the next job, once it has hashed
	hashed := make(chan struct{})
	release := make(chan struct{}) // closed once a query waits
	var held, waits sync.Once
	r := start(t, Config{Watch: []string{root}, Workers: 1}, func(d *Daemon) {
		d.testHookAdd = func(p string) error {
			if strings.Contains(p, "over") {
				return fmt.Errorf("add %s: %w", p, syscall.ENOSPC)
			}
			return nil
		}
		d.testHookWaits = func(string) {
			if hold.Load() {
				waits.Do(func() { close(release) })
			}
		}
		d.testHookDone = func(string) {
			if !hold.Load() {
				return
			}
			held.Do(func() {
				close(hashed)
				select {
				case <-release:
				case <-time.After(10 * time.Second):
				}
			})
		}
	})
	query(t, r.c, root) // the root listed and hashed: settled
	hold.Store(true)
	// A change an event reports starts a job (the root is rehashed
	// unasked); it hashes the tree and is held.
	if err := os.WriteFile(filepath.Join(root, "watched"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case <-hashed:
	case <-time.After(10 * time.Second):
		t.Fatal("no job hashed the root within 10 s of a change")
	}
	// A change no event reports, then a query: it waits, and the held
	// job reports (testHookWaits).
	if err := os.WriteFile(filepath.Join(root, "over/limit/f"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	want := offline(t, root)
	if h := query(t, r.c, root); h.Hash != want || !h.Degraded {
		t.Errorf("query during a job that began before it: %s degraded=%v (%s at %v), want %s (the tree after the change)", h.Hash, h.Degraded, h.Source, h.Computed, want)
	}
}
