//go:build linux

package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/narhash/narhash/api"
	"github.com/narhash/narhash/nar/nartest"
	"golang.org/x/sys/unix"
)

// fresh queries path and checks the answer against an offline hash.
func fresh(t *testing.T, c *api.Client, path, what string) {
	t.Helper()
	if got, want := query(t, c, path), offline(t, path); got.Hash != want {
		t.Fatalf("%s: daemon says %s (%s), the path hashes to %s", what, got.Hash, got.Source, want)
	}
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRootReplaced: a root replaced by a file, then by a symlink, each
// edited afterwards, is answered as it is.
func TestRootReplaced(t *testing.T) {
	root := newTree(t)
	r := start(t, Config{Watch: []string{root}})
	fresh(t, r.c, root, "directory root")
	os.RemoveAll(root)
	write(t, root, "a file now")
	fresh(t, r.c, root, "root replaced by a file")
	write(t, root, "the file edited")
	fresh(t, r.c, root, "file root edited")
	os.Remove(root)
	os.Symlink("somewhere", root)
	fresh(t, r.c, root, "root replaced by a symlink")
	os.Remove(root)
	os.Symlink("elsewhere", root)
	fresh(t, r.c, root, "symlink root retargeted")
	os.Remove(root)
	os.MkdirAll(filepath.Join(root, "d"), 0o755)
	fresh(t, r.c, root, "a directory again")
	write(t, filepath.Join(root, "d", "f"), "x")
	fresh(t, r.c, root, "the new directory edited")
}

// TestSymlinkOutOfRoot: a path reached through a symlink inside a root
// that points outside it is answered as the kernel reads it, and ".."
// after the symlink goes up from its target, as in Nix.
func TestSymlinkOutOfRoot(t *testing.T) {
	root := newTree(t)
	outside := filepath.Join(nartest.TempDir(t), "out")
	os.MkdirAll(filepath.Join(outside, "dir"), 0o755)
	write(t, filepath.Join(outside, "dir", "f"), "1")
	os.Symlink(filepath.Join(outside, "dir"), filepath.Join(root, "link"))
	write(t, filepath.Join(root, "g"), "g")
	r := start(t, Config{Watch: []string{root}})
	through := filepath.Join(root, "link", "f")
	fresh(t, r.c, through, "through the symlink")
	for i := range 3 {
		write(t, filepath.Join(outside, "dir", "f"), fmt.Sprint("edit ", i))
		fresh(t, r.c, through, "edited outside the root")
	}
	dotdot := root + "/link/../g"
	if _, err := r.c.Hash(context.Background(), dotdot, "", false); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("%s: %v, want no such file (its .. is the target's parent, where there is no g)", dotdot, err)
	}
	write(t, filepath.Join(outside, "g"), "outside g")
	if got, want := query(t, r.c, dotdot), offline(t, filepath.Join(outside, "g")); got.Hash != want {
		t.Errorf("%s: %s, want the hash of %s/g, %s", dotdot, got.Hash, outside, want)
	}
}

// TestRootThroughRetargetedSymlink: a root whose path goes through a
// symlink that is retargeted is answered for what the path names now.
func TestRootThroughRetargetedSymlink(t *testing.T) {
	base := nartest.TempDir(t)
	for _, v := range []string{"v1", "v2"} {
		os.MkdirAll(filepath.Join(base, v, "proj", "sub"), 0o755)
		write(t, filepath.Join(base, v, "proj", "sub", "f"), v)
	}
	os.Symlink("v1", filepath.Join(base, "cur"))
	root := filepath.Join(base, "cur", "proj")
	r := start(t, Config{Watch: []string{root}})
	fresh(t, r.c, root, "through v1")
	// A subscriber hears of the retargeting with no query.
	s := subscribe(t, r, root)
	s.next()
	os.Remove(filepath.Join(base, "cur"))
	os.Symlink("v2", filepath.Join(base, "cur"))
	s.until(offline(t, root), "the retargeting")
	s.stop()
	fresh(t, r.c, root, "retargeted to v2")
	write(t, filepath.Join(base, "v2", "proj", "sub", "f"), "v2 edited")
	fresh(t, r.c, root, "v2 edited")
}

// TestNestedRoots: removing an inner root keeps the outer root's
// watches, also of directories made while both were roots, and a
// directory made where the inner root was is watched.
func TestNestedRoots(t *testing.T) {
	outer := newTree(t)
	inner := filepath.Join(outer, "inner")
	os.Mkdir(inner, 0o755)
	r := start(t, Config{Watch: []string{outer, inner}})
	fresh(t, r.c, outer, "outer")
	fresh(t, r.c, inner, "inner")
	os.Mkdir(filepath.Join(inner, "made"), 0o755) // while both are roots
	fresh(t, r.c, outer, "directory made in the inner root")
	if err := r.c.RemoveRoot(context.Background(), inner); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(inner, "f"), "1")
	fresh(t, r.c, outer, "file in the former inner root")
	write(t, filepath.Join(inner, "made", "f"), "1")
	fresh(t, r.c, outer, "file in the directory made while both were roots")
	os.MkdirAll(filepath.Join(inner, "new", "deeper"), 0o755)
	fresh(t, r.c, outer, "directories made there")
	write(t, filepath.Join(inner, "new", "deeper", "f"), "2")
	fresh(t, r.c, outer, "a file in a directory made there")
}

// TestUnwatchableDirectory: a directory that cannot be watched makes its
// root degraded, checked by stat walk and said so in status; once it can
// be watched, a chmod of it has it watched and the root clean again.
func TestUnwatchableDirectory(t *testing.T) {
	root := newTree(t)
	locked := filepath.Join(root, "locked")
	os.MkdirAll(filepath.Join(locked, "in"), 0o755)
	deny := make(chan bool, 1)
	deny <- true
	r := start(t, Config{Watch: []string{root}}, func(d *Daemon) {
		d.testHookAdd = func(p string) error {
			if within(p, locked) {
				v := <-deny
				deny <- v
				if v {
					return fmt.Errorf("open %s: %w", p, unix.EACCES)
				}
			}
			return nil
		}
	})
	write(t, filepath.Join(locked, "in", "f"), "1")
	if got := query(t, r.c, root); !got.Degraded || got.Hash != offline(t, root) {
		t.Fatalf("root with an unwatchable directory: degraded=%v %s", got.Degraded, got.Hash)
	}
	st, _ := r.c.Status(context.Background())
	if !strings.Contains(strings.Join(st.Warnings, " "), "cannot watch "+locked) {
		t.Errorf("status warnings %q do not name %s", st.Warnings, locked)
	}
	<-deny
	deny <- false
	os.Chmod(locked, 0o700)
	write(t, filepath.Join(locked, "in", "f"), "2")
	if got := query(t, r.c, root); got.Degraded || got.Hash != offline(t, root) {
		t.Fatalf("after the chmod: degraded=%v %s, want clean %s", got.Degraded, got.Hash, offline(t, root))
	}
	write(t, filepath.Join(locked, "in", "f"), "3")
	fresh(t, r.c, root, "edit in the directory now watched")
}

// TestLostRename: an overflow that swallowed a directory's rename, and a
// new directory made under the old name, leaves both watched under their
// present names.
func TestLostRename(t *testing.T) {
	root := newTree(t)
	a, b := filepath.Join(root, "a"), filepath.Join(root, "b")
	os.MkdirAll(a, 0o755)
	r := start(t, Config{Watch: []string{root}})
	fresh(t, r.c, root, "start")
	r.d.call(context.Background(), func() { r.d.testDrop = true })
	os.Rename(a, b)
	os.Mkdir(a, 0o755)
	query(t, r.c, root) // its cookie passes the dropped events
	r.d.call(context.Background(), func() { r.d.testDrop = false })
	r.d.inject <- []inEvent{{mask: unix.IN_Q_OVERFLOW}}
	fresh(t, r.c, root, "after the overflow")
	write(t, filepath.Join(a, "f"), "in the new a")
	fresh(t, r.c, root, "file in the new directory of the old name")
	write(t, filepath.Join(b, "f"), "in b")
	fresh(t, r.c, root, "file in the renamed directory")
}

// TestPathMax: a directory whose path is longer than PATH_MAX cannot be
// watched: the root is degraded, says so, and is still answered right.
func TestPathMax(t *testing.T) {
	root := newTree(t)
	name := strings.Repeat("d", 250)
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 { // 20 × 251 bytes: past 4096
		if err := unix.Mkdirat(fd, name, 0o755); err != nil {
			t.Fatal(err)
		}
		next, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		fd = next
	}
	unix.Close(fd)
	t.Cleanup(func() { os.RemoveAll(filepath.Join(root, name)) })
	r := start(t, Config{Watch: []string{root}})
	got := query(t, r.c, root)
	if !got.Degraded || got.Hash != offline(t, root) {
		t.Fatalf("root with a directory past PATH_MAX: degraded=%v %s, want %s", got.Degraded, got.Hash, offline(t, root))
	}
	st, _ := r.c.Status(context.Background())
	if !strings.Contains(strings.Join(st.Warnings, " "), "file name too long") {
		t.Errorf("status warnings %q", st.Warnings)
	}
}

// TestSubscriberSeesRecreatedRoot: a root removed and made anew is
// rehashed for its subscribers, with no query.
func TestSubscriberSeesRecreatedRoot(t *testing.T) {
	root := newTree(t)
	r := start(t, Config{Watch: []string{root}})
	s := subscribe(t, r, root)
	s.next()
	os.RemoveAll(root)
	os.MkdirAll(filepath.Join(root, "again"), 0o755)
	write(t, filepath.Join(root, "again", "f"), "1")
	s.until(offline(t, root), "the recreated root")
	write(t, filepath.Join(root, "again", "f"), "2")
	s.until(offline(t, root), "an edit of the recreated root")
}

// TestUnwatchableDirectoryRemoved: a directory that could not be watched
// degrades its root only while it is there: once removed, the root is
// watched whole, and clean, again.
func TestUnwatchableDirectoryRemoved(t *testing.T) {
	root := newTree(t)
	locked := filepath.Join(root, "locked")
	os.MkdirAll(filepath.Join(locked, "in"), 0o755)
	r := start(t, Config{Watch: []string{root}}, func(d *Daemon) {
		d.testHookAdd = func(p string) error {
			if within(p, locked) {
				return fmt.Errorf("open %s: %w", p, unix.EACCES)
			}
			return nil
		}
	})
	if got := query(t, r.c, root); !got.Degraded || got.Hash != offline(t, root) {
		t.Fatalf("root with an unwatchable directory: degraded=%v %s", got.Degraded, got.Hash)
	}
	if err := os.RemoveAll(locked); err != nil {
		t.Fatal(err)
	}
	if got := query(t, r.c, root); got.Degraded || got.Hash != offline(t, root) {
		t.Errorf("the unwatchable directory removed: degraded=%v %s, want clean %s", got.Degraded, got.Hash, offline(t, root))
	}
	st, _ := r.c.Status(context.Background())
	if w := strings.Join(st.Warnings, " "); strings.Contains(w, locked) {
		t.Errorf("status warnings %q still name %s", st.Warnings, locked)
	}
	write(t, filepath.Join(root, "f"), "after")
	fresh(t, r.c, root, "an edit after the removal")
}

// TestOverflowRescanOffLoop: the rescan after an overflow is the
// lister's: while it is held, the loop still answers (status), and once
// it ends, queries of the roots are right and events in them seen.
func TestOverflowRescanOffLoop(t *testing.T) {
	a, b := newTree(t), newTree(t)
	held := filepath.Join(a, "held")
	os.MkdirAll(held, 0o755)
	list := newGate()
	var armed atomic.Bool
	r := start(t, Config{Watch: []string{a, b}}, func(d *Daemon) {
		d.testHookAdd = func(p string) error {
			if p == held && armed.Load() {
				list.hold()
			}
			return nil
		}
	})
	list.releaseFirst(t)
	fresh(t, r.c, a, "a")
	fresh(t, r.c, b, "b")
	armed.Store(true)
	r.d.inject <- []inEvent{{mask: unix.IN_Q_OVERFLOW}}
	list.wait(t, "the rescan reaching "+held)
	write(t, filepath.Join(held, "f"), "during the rescan")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := r.c.Status(ctx)
	if err != nil {
		list.release()
		t.Fatalf("status while the rescan is held: %v", err)
	}
	if st.Overflows != 1 {
		t.Errorf("status: %d overflows, want 1", st.Overflows)
	}
	list.release()
	fresh(t, r.c, a, "a, rescanned")
	fresh(t, r.c, b, "b, rescanned")
	write(t, filepath.Join(held, "f"), "after the rescan")
	fresh(t, r.c, a, "a, an edit after the rescan")
}
