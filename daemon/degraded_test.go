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

	"github.com/narhash/narhash/nar/nartest"
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

// TestDegradedRepeatedQueries: queries of a degraded root that keep
// coming, each while the job begun for the one before runs (slow: held
// until the next query waits), are all answered. Each query once made
// the running job too old to answer it and had it cancelled, so that
// while they kept coming none was answered: now the running job answers
// the queries that came before it began, and one job begun after the
// others answers them.
func TestDegradedRepeatedQueries(t *testing.T) {
	root := newTree(t)
	if err := os.MkdirAll(filepath.Join(root, "over/limit"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Entries of a tree this old are not racy: each query's job is a
	// stat walk that validates the entry, and answers.
	nartest.WaitOlderThan(t, 2100*time.Millisecond, root) // nar's racy margin is 2 s
	var armed atomic.Bool
	waits := make(chan struct{}, 100)
	held, proceed, stop := make(chan struct{}), make(chan struct{}), make(chan struct{})
	r := start(t, Config{Watch: []string{root}, Workers: 2}, func(d *Daemon) {
		d.testHookAdd = func(p string) error {
			if strings.Contains(p, "over") {
				return fmt.Errorf("add %s: %w", p, syscall.ENOSPC)
			}
			return nil
		}
		d.testHookWaits = func(string) {
			if armed.Load() {
				waits <- struct{}{}
			}
		}
		d.testHookDone = func(p string) {
			if p != root || !armed.Load() {
				return
			}
			select {
			case held <- struct{}{}:
			case <-stop:
				return
			}
			select {
			case <-proceed:
			case <-stop:
			}
		}
	})
	t.Cleanup(func() { close(stop) }) // before the daemon stops
	query(t, r.c, root)               // settled
	want := offline(t, root)
	armed.Store(true)
	recv := func(ch chan struct{}, what string) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: not within 10 s", what)
		}
	}
	const n = 6
	answers := make([]chan string, n)
	ask := func(i int) {
		answers[i] = make(chan string, 1)
		go func() {
			got, err := r.c.Hash(context.Background(), root, "", false)
			if err != nil {
				answers[i] <- err.Error()
				return
			}
			answers[i] <- got.Hash
		}()
		recv(waits, fmt.Sprintf("query %d waiting", i))
	}
	ask(0)
	recv(held, "the job of query 0")
	for i := 1; i < n; i++ {
		ask(i) // while the job begun for query i-1 is held
		proceed <- struct{}{}
		recv(held, fmt.Sprintf("the job after query %d", i))
		var waiting int
		r.d.call(context.Background(), func() { waiting = len(r.d.tracked[root].waiters) })
		if waiting != 1 {
			t.Fatalf("query %d came while the job begun for query %d ran; once that job ended, %d queries wait, want 1 (query %d answered by it)", i, i-1, waiting, i-1)
		}
		select {
		case got := <-answers[i-1]:
			if got != want {
				t.Errorf("query %d: %s, want %s", i-1, got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("query %d not answered within 10 s", i-1)
		}
	}
	proceed <- struct{}{}
	if got := <-answers[n-1]; got != want {
		t.Errorf("query %d: %s, want %s", n-1, got, want)
	}
	armed.Store(false)
	if err := os.WriteFile(filepath.Join(root, "over/limit/f"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, want := query(t, r.c, root), offline(t, root); got.Hash != want {
		t.Errorf("after an unseen change: %s, want %s", got.Hash, want)
	}
}
