//go:build linux

package daemon

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/narhash/narhash/nar/nartest"
)

// TestListingOffLoop: a new root of 20,000 directories is watched and
// listed off the loop. While its listing is held at its big directory, a
// query of another root answers (the listing ran on the loop, and the
// query waited behind it), and a query of the new root, which waits for
// the listing, sees an edit made in a directory not yet watched; while
// the rest is listed, queries of the other root keep answering; once it
// is listed, an edit deep in it is seen by its events.
func TestListingOffLoop(t *testing.T) {
	const dirs = 20000 // 100,000 would take half the machine's inotify watches, shared by every test running
	small := newTree(t)
	big := filepath.Join(nartest.TempDir(t), "big")
	many := filepath.Join(big, "many")
	for i := range dirs {
		if err := os.MkdirAll(filepath.Join(many, fmt.Sprint(i)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	deep := filepath.Join(many, "12345")
	write(t, filepath.Join(deep, "f"), "0")
	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	r := start(t, Config{Watch: []string{small}}, func(d *Daemon) {
		d.testHookAdd = func(p string) error {
			if p == many {
				once.Do(func() { close(held); <-release })
			}
			return nil
		}
	})
	fresh(t, r.c, small, "before")
	added := make(chan error, 1)
	go func() {
		_, err := r.c.AddRoot(context.Background(), big)
		added <- err
	}()
	select {
	case <-held:
	case <-time.After(time.Minute):
		t.Fatal("the listing of the new root never reached its big directory")
	}
	ask := func(path, what string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		got, err := r.c.Hash(ctx, path, "", false)
		if err != nil {
			close(release)
			t.Fatalf("%s: %v", what, err)
		}
		if want := offline(t, path); got.Hash != want {
			t.Errorf("%s: %s (%s), want %s", what, got.Hash, got.Source, want)
		}
	}
	write(t, filepath.Join(small, "f"), "changed")
	ask(small, "another root, while the listing is held")
	// A query of the new root waits for its listing, and sees an edit
	// made where no watch is yet.
	write(t, filepath.Join(deep, "f"), "1")
	want := offline(t, big)
	bigAnswer := make(chan string, 1)
	go func() {
		got, err := r.c.Hash(context.Background(), big, "", false)
		if err != nil {
			bigAnswer <- err.Error()
			return
		}
		bigAnswer <- got.Hash
	}()
	close(release)
	for i := 0; ; i++ {
		select {
		case err := <-added:
			if err != nil {
				t.Fatal(err)
			}
			if got := <-bigAnswer; got != want {
				t.Errorf("the new root, edited where no watch was yet: %s, want %s", got, want)
			}
			var watches int
			r.d.call(context.Background(), func() { watches = r.d.watchCount(big) })
			if watches != dirs+2 {
				t.Errorf("%d watches in the new root, want %d", watches, dirs+2)
			}
			ask(big, "the new root, listed")
			write(t, filepath.Join(deep, "f"), "2")
			ask(big, "the new root, edited deep inside once listed")
			t.Logf("%d queries of the other root answered while the rest was listed", i)
			return
		default:
		}
		write(t, filepath.Join(small, "f"), fmt.Sprint(i))
		ask(small, "another root, while the new one is listed")
	}
}

// TestListingRaces: directories made in bulk and at once moved within,
// out of and back into the root, renamed over one another or removed,
// while they are being listed (the lister yields at every watch to widen
// the window). After each operation, once every listing is done, a file
// is written in a random directory of the root and the root queried: the
// answer must come from events that the watches recorded, and match an
// offline hash.
func TestListingRaces(t *testing.T) {
	base := nartest.TempDir(t)
	root, away := filepath.Join(base, "root"), filepath.Join(base, "away")
	os.MkdirAll(root, 0o755)
	r := start(t, Config{Watch: []string{root}}, func(d *Daemon) {
		d.testHookAdd = func(string) error { runtime.Gosched(); return nil }
	})
	rng := rand.New(rand.NewPCG(7, 8))
	mkTree := func(p string, n int) {
		for i := range n {
			os.MkdirAll(filepath.Join(p, fmt.Sprint(i%7), fmt.Sprint(i)), 0o755)
		}
	}
	dirsOf := func() []string {
		var dirs []string
		filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		return dirs
	}
	trials := 120
	if testing.Short() {
		trials = 30
	}
	for i := range trials {
		a := filepath.Join(root, fmt.Sprint("t", i%5))
		b := filepath.Join(root, fmt.Sprint("t", (i+1)%5))
		var what string
		switch rng.IntN(5) {
		case 0:
			os.RemoveAll(a)
			mkTree(a, 200)
			what = "mkdir -p 200 " + a
		case 1:
			os.RemoveAll(a)
			mkTree(a, 200)
			os.RemoveAll(b)
			os.Rename(a, b)
			what = "made and moved at once to " + b
		case 2:
			os.RemoveAll(away)
			mkTree(away, 200)
			os.RemoveAll(a)
			os.Rename(away, a)
			mkTree(filepath.Join(a, "more"), 50)
			what = "moved in and grown " + a
		case 3:
			os.RemoveAll(a)
			mkTree(a, 200)
			os.RemoveAll(away)
			os.Rename(a, away)
			os.Rename(away, a)
			what = "made, moved out and back " + a
		case 4:
			os.RemoveAll(a)
			mkTree(a, 200)
			os.RemoveAll(a)
			what = "made and removed " + a
		}
		fresh(t, r.c, root, fmt.Sprintf("trial %d (%s), at once", i, what))
		var listed chan struct{}
		r.d.call(context.Background(), func() { listed = r.d.listedCh(nil) })
		select {
		case <-listed:
		case <-time.After(time.Minute):
			t.Fatalf("trial %d (%s): the listings did not end", i, what)
		}
		dirs := dirsOf()
		p := dirs[rng.IntN(len(dirs))]
		write(t, filepath.Join(p, "f"), fmt.Sprint(i))
		fresh(t, r.c, root, fmt.Sprintf("trial %d (%s), then a write in %s", i, what, p))
	}
}

// TestReadyBeforeListed: Config.Ready (READY=1 under systemd) is called
// once the daemon answers, not once its roots are listed, which for a
// large tree on a cold disk outlasts systemd's start timeout; a change
// made while the listing is under way is seen.
func TestReadyBeforeListed(t *testing.T) {
	root := newTree(t)
	list := newGate()
	ready := make(chan struct{})
	r := start(t, Config{Watch: []string{root}, Ready: func() { close(ready) }}, func(d *Daemon) {
		d.testHookAdd = func(p string) error {
			if p == root {
				list.hold()
			}
			return nil
		}
	})
	list.releaseFirst(t)
	list.wait(t, "the listing of the root")
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("not ready within 10 s while the root's listing was under way")
	}
	write(t, filepath.Join(root, "f"), "while listed")
	list.release()
	fresh(t, r.c, root, "a change made while the root was listed")
}
