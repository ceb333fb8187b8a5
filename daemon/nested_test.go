//go:build linux

package daemon

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Nested roots: an outer root and an inner one whose directories the
// lister watches for the inner root.

// gate holds a test hook until it is opened; release may be called more
// than once. A test that made a daemon whose hooks hold at a gate calls
// releaseFirst, so that, failing, it does not leave the daemon stuck.
type gate struct {
	reached chan struct{}
	open    chan struct{}
	once    sync.Once
	opened  sync.Once
}

func newGate() *gate {
	return &gate{reached: make(chan struct{}), open: make(chan struct{})}
}

// hold, in a hook, says the gate is reached (the first time only) and
// waits until it is opened.
func (g *gate) hold() {
	g.once.Do(func() { close(g.reached) })
	<-g.open
}

func (g *gate) release() { g.opened.Do(func() { close(g.open) }) }

// releaseFirst releases the gate when the test ends, before the daemons
// started earlier stop.
func (g *gate) releaseFirst(t *testing.T) { t.Cleanup(g.release) }

func (g *gate) wait(t *testing.T, what string) {
	t.Helper()
	select {
	case <-g.reached:
	case <-time.After(time.Minute):
		t.Fatalf("%s: not within a minute", what)
	}
}

// TestNestedRootListing: a directory made in the inner root is listed
// for the inner root, and a file written in it before the listing has
// recorded its watch has an event that waits aside (d.early). A hash of
// the outer root that a job computed before the file was written must not
// answer a query then: the outer root counts the inner root's listing.
func TestNestedRootListing(t *testing.T) {
	outer := newTree(t)
	inner := filepath.Join(outer, "sub")
	a := filepath.Join(inner, "new", "a")
	deeper := filepath.Join(a, "deeper")
	if err := os.Mkdir(inner, 0o755); err != nil {
		t.Fatal(err)
	}
	list, job := newGate(), newGate()
	var armed atomic.Bool
	r := start(t, Config{Watch: []string{outer, inner}}, func(d *Daemon) {
		d.testHookAdd = func(p string) error {
			if p == deeper {
				list.hold()
			}
			return nil
		}
		d.testHookDone = func(p string) {
			if p == outer && armed.Load() {
				job.hold()
			}
		}
	})
	list.releaseFirst(t)
	job.releaseFirst(t)
	fresh(t, r.c, outer, "outer")
	fresh(t, r.c, inner, "inner")
	armed.Store(true)
	if err := os.MkdirAll(deeper, 0o755); err != nil {
		t.Fatal(err)
	}
	// The lister holds at deeper, with the watches of new and a added
	// and not yet recorded; the outer root's job, begun after the mkdir's
	// event, has hashed the tree without f.
	list.wait(t, "the listing of the new directories reaching "+deeper)
	job.wait(t, "a job of the outer root after the mkdir")
	write(t, filepath.Join(a, "f"), "x")
	want := offline(t, outer)
	job.release()
	answer := make(chan string, 1)
	go func() {
		got, err := r.c.Hash(context.Background(), outer, "", false)
		if err != nil {
			answer <- err.Error()
			return
		}
		answer <- got.Hash
	}()
	deadline := time.Now().Add(time.Minute)
	for waits := false; !waits; {
		select {
		case got := <-answer:
			list.release()
			t.Fatalf("the outer root, queried while the inner root's listing was under way, answered %s before the listing ended; want it to wait for it, and %s", got, want)
		case <-time.After(2 * time.Millisecond):
		}
		r.d.call(context.Background(), func() { waits = len(r.d.listWaiters) > 0 })
		if time.Now().After(deadline) {
			t.Fatal("the query of the outer root neither answered nor waited for the listing")
		}
	}
	list.release()
	if got := <-answer; got != want {
		t.Errorf("the outer root after a write in a directory being listed for the inner root: %s, want %s", got, want)
	}
	fresh(t, r.c, outer, "outer, once listed")
	write(t, filepath.Join(a, "f"), "y")
	fresh(t, r.c, outer, "outer, a write once listed")
}

// TestNestedRootRemovedWhileListing: the inner root is removed while the
// lister lists a directory made in it. The watches of that listing are
// still the outer root's, and its events must reach it.
func TestNestedRootRemovedWhileListing(t *testing.T) {
	outer := newTree(t)
	inner := filepath.Join(outer, "inner")
	x := filepath.Join(inner, "new", "x")
	deeper := filepath.Join(x, "deeper")
	if err := os.Mkdir(inner, 0o755); err != nil {
		t.Fatal(err)
	}
	list := newGate()
	r := start(t, Config{Watch: []string{outer, inner}}, func(d *Daemon) {
		d.testHookAdd = func(p string) error {
			if p == deeper {
				list.hold()
			}
			return nil
		}
	})
	list.releaseFirst(t)
	fresh(t, r.c, outer, "outer")
	fresh(t, r.c, inner, "inner")
	if err := os.MkdirAll(deeper, 0o755); err != nil {
		t.Fatal(err)
	}
	list.wait(t, "the listing of the new directories reaching "+deeper)
	if err := r.c.RemoveRoot(context.Background(), inner); err != nil {
		t.Fatal(err)
	}
	list.release()
	var listed chan struct{}
	r.d.call(context.Background(), func() { listed = r.d.listedCh(nil) })
	select {
	case <-listed:
	case <-time.After(time.Minute):
		t.Fatal("the listing did not end")
	}
	fresh(t, r.c, outer, "outer, the inner root removed")
	write(t, filepath.Join(x, "f"), "1")
	fresh(t, r.c, outer, "a file in a directory listed while the inner root was removed")
	write(t, filepath.Join(deeper, "f"), "2")
	fresh(t, r.c, outer, "a file in the directory the listing was held at")
}
