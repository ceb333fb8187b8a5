//go:build linux

package daemon

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

func TestAggregator(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	a := aggregator{quiet: 20 * time.Millisecond, maxDelay: 200 * time.Millisecond}
	if _, ok := a.due(); ok {
		t.Fatal("a clean path is due")
	}
	a.touch(ms(0))
	if at, _ := a.due(); !at.Equal(ms(20)) {
		t.Errorf("one event: due at %v, want +20ms", at.Sub(t0))
	}
	// A burst of events every 10 ms keeps pushing the quiet period, up to
	// the maximum delay.
	for n := 10; n <= 300; n += 10 {
		a.touch(ms(n))
		at, _ := a.due()
		want := ms(n + 20)
		if n+20 > 200 {
			want = ms(200)
		}
		if !at.Equal(want) {
			t.Fatalf("event at +%dms: due at %v, want %v", n, at.Sub(t0), want.Sub(t0))
		}
	}
	a.reset()
	if a.dirty() {
		t.Error("dirty after reset")
	}
}

// TestDebounce: a burst of events within Config.Quiet of each other
// starts one rehash of the root, once the root has been quiet for Quiet,
// or once it has been dirty for Config.MaxDelay while events continue.
// The daemon's clock is the test's: it stands still unless the test moves
// it, so no window of wall-clock time is assumed.
func TestDebounce(t *testing.T) {
	const quiet, maxDelay = 50 * time.Millisecond, 200 * time.Millisecond
	root := newTree(t)
	var clock atomic.Int64
	t0 := time.Now()
	clock.Store(t0.UnixNano())
	var jobs atomic.Int32
	r := start(t, Config{Watch: []string{root}, Quiet: quiet, MaxDelay: maxDelay}, func(d *Daemon) {
		d.now = func() time.Time { return time.Unix(0, clock.Load()) }
		d.testHookDone = func(p string) {
			if p == root {
				jobs.Add(1)
			}
		}
	})
	fresh(t, r.c, root, "settled")
	before := jobs.Load()
	burst := func(at time.Duration) {
		t.Helper()
		clock.Store(t0.Add(at).UnixNano())
		for i := range 10 {
			write(t, filepath.Join(root, "burst"), fmt.Sprint(at, i))
		}
		if err := r.d.cookies.wait(context.Background(), 10*time.Second); err != nil {
			t.Fatalf("events of the burst at +%v not applied: %v", at, err)
		}
	}
	due := func(at, want time.Duration) {
		t.Helper()
		var job, queued, ok bool
		var when time.Time
		r.d.call(context.Background(), func() {
			tr := r.d.tracked[root]
			job, queued = tr.job != nil, tr.queued
			when, ok = tr.agg.due()
		})
		if job || queued || !ok || !when.Equal(t0.Add(want)) || jobs.Load() != before {
			t.Fatalf("after events until +%v: job %v, queued %v, %d jobs; rehash due %v at +%v, want no job yet and due at +%v", at, job, queued, jobs.Load()-before, ok, when.Sub(t0), want)
		}
	}
	// Bursts closer together than Quiet: each moves the rehash to Quiet
	// after it, until MaxDelay after the first bounds it. (The clock
	// never jumps past a rehash already due: the loop may look at it
	// before the burst's events arrive, and start the rehash then.)
	step := quiet * 4 / 5
	for at := time.Duration(0); at < maxDelay; at += step {
		burst(at)
		due(at, min(at+quiet, maxDelay))
	}
	clock.Store(t0.Add(maxDelay).UnixNano())
	r.d.call(context.Background(), func() {}) // the loop looks at the clock again
	deadline := time.Now().Add(10 * time.Second)
	for jobs.Load() == before {
		if time.Now().After(deadline) {
			t.Fatal("no rehash once due")
		}
		time.Sleep(time.Millisecond)
	}
	fresh(t, r.c, root, "after the bursts")
	if n := jobs.Load() - before; n != 1 {
		t.Errorf("%d jobs for the bursts, want 1", n)
	}
}
