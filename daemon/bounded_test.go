//go:build linux

package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestTrackedBounded: sub-paths asked for are tracked up to a bound; the
// least recently used are then forgotten with their cache entries, and
// still answered right when asked again.
func TestTrackedBounded(t *testing.T) {
	root := newTree(t)
	const n, bound = 120, 40
	for i := range n {
		os.MkdirAll(filepath.Join(root, "many", fmt.Sprint(i)), 0o755)
		write(t, filepath.Join(root, "many", fmt.Sprint(i), "f"), fmt.Sprint(i))
	}
	r := start(t, Config{Watch: []string{root}}, func(d *Daemon) { d.maxTracked = bound })
	first := filepath.Join(root, "many", "0")
	for i := range n {
		fresh(t, r.c, filepath.Join(root, "many", fmt.Sprint(i)), "sub-path")
	}
	var tracked int
	r.d.call(context.Background(), func() { tracked = len(r.d.tracked) - len(r.d.roots) })
	if tracked > bound {
		t.Errorf("%d sub-paths tracked, bound %d", tracked, bound)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok, _ := r.d.store.Get(first); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the cache entry of an evicted sub-path is still there")
		}
		time.Sleep(5 * time.Millisecond)
	}
	write(t, filepath.Join(first, "f"), "changed")
	fresh(t, r.c, first, "an evicted sub-path asked again")
}

// TestTrackedCost measures the memory of a tracked sub-path, and what
// many tracked sub-paths cost a root query and an edit (run with
// NARHASH_MEASURE=1; the numbers are logged, for 0 and for 40,000).
func TestTrackedCost(t *testing.T) {
	if os.Getenv("NARHASH_MEASURE") == "" {
		t.Skip("a measurement: set NARHASH_MEASURE=1")
	}
	for _, n := range []int{0, 40000} {
		root := filepath.Join(t.TempDir(), "tree")
		os.MkdirAll(filepath.Join(root, "small"), 0o755)
		write(t, filepath.Join(root, "small", "f"), "0")
		r := start(t, Config{Watch: []string{root}}, func(d *Daemon) { d.maxTracked = 1 << 30 })
		query(t, r.c, root)
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		r.d.call(context.Background(), func() {
			for i := range n {
				r.d.track(filepath.Join(root, "m", fmt.Sprint(i%100), fmt.Sprint(i)), r.d.roots[root])
			}
		})
		runtime.GC()
		runtime.ReadMemStats(&after)
		if n > 0 {
			t.Logf("%d tracked sub-paths: %.0f bytes each", n, (float64(after.HeapAlloc)-float64(before.HeapAlloc))/float64(n))
		}
		lat := make([]time.Duration, 0, 500)
		for range 500 {
			begin := time.Now()
			query(t, r.c, root)
			lat = append(lat, time.Since(begin))
		}
		slices.Sort(lat)
		var ru0, ru1 unix.Rusage
		unix.Getrusage(unix.RUSAGE_SELF, &ru0)
		small := filepath.Join(root, "small")
		for i := range 1000 {
			write(t, filepath.Join(small, "f"), fmt.Sprint(i))
			query(t, r.c, small)
		}
		unix.Getrusage(unix.RUSAGE_SELF, &ru1)
		cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
		t.Logf("%d tracked: root query median %v; 1000 edits, each with a query of a sub-path: %v CPU (test and daemon)", n, lat[len(lat)/2], cpu)
		r.stop(t)
	}
}

// TestIdleForgotten: a sub-path nobody asked for in idleAfter is
// forgotten, with its cache entry, the next time the daemon is asked for
// a path; a subscribed one stays, and so does the root. The daemon's clock
// is moved by the test: nothing waits for idleAfter to pass.
func TestIdleForgotten(t *testing.T) {
	root := newTree(t)
	for _, name := range []string{"idle", "subscribed", "asked"} {
		os.MkdirAll(filepath.Join(root, name), 0o755)
		write(t, filepath.Join(root, name, "f"), name)
	}
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	r := start(t, Config{Watch: []string{root}}, func(d *Daemon) {
		d.now = func() time.Time { return time.Unix(0, clock.Load()) }
	})
	idle, subscribed, asked := filepath.Join(root, "idle"), filepath.Join(root, "subscribed"), filepath.Join(root, "asked")
	fresh(t, r.c, idle, "sub-path")
	subscribe(t, r, subscribed).next()
	waitEntry := func(path string, want bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, ok, _ := r.d.store.Get(path); ok == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("cache entry of %s: there %v, want %v", path, !want, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitEntry(idle, true)

	clock.Add(int64(idleAfter + sweepEvery))
	fresh(t, r.c, asked, "sub-path asked after the others were idle")
	var tracked []string
	r.d.call(context.Background(), func() {
		for p := range r.d.tracked {
			tracked = append(tracked, p)
		}
	})
	slices.Sort(tracked)
	if want := []string{root, asked, subscribed}; !slices.Equal(tracked, want) {
		t.Errorf("tracked after idleAfter: %q, want %q", tracked, want)
	}
	waitEntry(idle, false)
	write(t, filepath.Join(idle, "f"), "changed while forgotten")
	fresh(t, r.c, idle, "a forgotten sub-path asked again")

	st, err := r.c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Tracked != 4 || st.TrackingBytes <= 0 {
		t.Errorf("status: tracked %d, %d bytes; want 4 (root, three sub-paths) and some bytes", st.Tracked, st.TrackingBytes)
	}
}
