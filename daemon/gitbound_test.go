//go:build linux

package daemon

import (
	"context"
	"maps"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/narhash/narhash/api"
)

// TestGitViewsBoundedAndDropped: git views are tracked up to a bound, the
// least recently used forgotten with their cache entries; when their root
// is removed, the others are forgotten with their entries too (the
// entries stayed in the database).
func TestGitViewsBoundedAndDropped(t *testing.T) {
	repo := newGitRepo(t)
	const bound = 2
	r := start(t, Config{Watch: []string{repo.Dir}}, func(d *Daemon) { d.maxGit = bound })
	// A query that never answers fails the test within a minute.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	views := []string{repo.Dir}
	for i := range 3 {
		views = append(views, filepath.Join(repo.Dir, "dir"+string(rune('0'+i))))
	}
	for _, v := range views {
		got, err := r.c.HashView(ctx, v, api.ViewGit, "", false)
		if err != nil {
			t.Fatal(err)
		}
		if want := offlineGit(t, v); got.Hash != want {
			t.Errorf("git view of %s: %s, want %s", v, got.Hash, want)
		}
	}
	// A sub-path's plain view, forgotten with the root too.
	sub := views[1]
	if _, err := r.c.Hash(ctx, sub, "", false); err != nil {
		t.Fatal(err)
	}
	var kept []string
	r.d.call(ctx, func() {
		for p := range r.d.gitTracked {
			kept = append(kept, p)
		}
	})
	if len(kept) > bound || len(kept) == 0 {
		t.Fatalf("%d git views tracked (%q), bound %d", len(kept), kept, bound)
	}
	// waitEntries waits until the saved entry of each view in paths is
	// there (want) or gone.
	waitEntries := func(paths []string, want bool, what string) {
		t.Helper()
		for _, p := range paths {
			t.Logf("%s: git view of %s", what, p)
			waitKey(t, r, gitKey(p), want)
		}
	}
	var evicted []string
	for _, v := range views {
		if !slices.Contains(kept, v) {
			evicted = append(evicted, v)
		}
	}
	waitEntries(kept, true, "tracked")
	waitKey(t, r, sub, true)
	waitEntries(evicted, false, "evicted")

	if err := r.c.RemoveRoot(ctx, repo.Dir); err != nil {
		t.Fatal(err)
	}
	var n int
	r.d.call(ctx, func() { n = len(r.d.gitTracked) })
	if n != 0 {
		t.Errorf("%d git views still tracked after their root was removed", n)
	}
	waitEntries(kept, false, "root removed")
	waitKey(t, r, sub, false)
}

// waitKey waits until the cache entry under key is there (want) or gone.
func waitKey(t *testing.T, r *running, key string, want bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok, _ := r.d.store.Get(key); ok == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cache entry of %s: there %v, want %v", key, !want, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestGitViewForgottenDuringJob: a git view forgotten (its root removed)
// while its job runs, and the job ends before it sees the cancel: its
// result is not applied, so the view's git directory is not watched again
// (d.gitWatches would keep it forever) and its entry not saved again.
func TestGitViewForgottenDuringJob(t *testing.T) {
	repo := newGitRepo(t)
	job := newGate()
	var armed atomic.Bool
	r := start(t, Config{Watch: []string{repo.Dir}}, func(d *Daemon) {
		d.testHookDone = func(p string) {
			if p == repo.Dir && armed.Load() {
				job.hold()
			}
		}
	})
	job.releaseFirst(t)
	fresh(t, r.c, repo.Dir, "the root") // settled
	armed.Store(true)
	asked := make(chan error, 1)
	go func() {
		_, err := r.c.HashView(context.Background(), repo.Dir, api.ViewGit, "", false)
		asked <- err
	}()
	job.wait(t, "the git view's job")
	if err := r.c.RemoveRoot(context.Background(), repo.Dir); err != nil {
		t.Fatal(err)
	}
	if err := <-asked; err == nil {
		t.Error("the query of a git view whose root was removed answered")
	}
	job.release()
	deadline := time.Now().Add(10 * time.Second)
	for running := 1; running > 0; {
		r.d.call(context.Background(), func() { running = r.d.running })
		if time.Now().After(deadline) {
			t.Fatal("the job did not end")
		}
		time.Sleep(time.Millisecond)
	}
	var watches map[string]int
	var watched bool
	r.d.call(context.Background(), func() {
		watches = maps.Clone(r.d.gitWatches)
		_, watched = r.d.watchPaths.get(filepath.Join(repo.Dir, ".git"))
	})
	if len(watches) > 0 || watched {
		t.Errorf("after the job of a forgotten git view: git directories %v, .git watched %v; want none", watches, watched)
	}
	if _, ok, _ := r.d.store.Get(gitKey(repo.Dir)); ok {
		t.Errorf("the entry of the forgotten git view was saved")
	}
}
