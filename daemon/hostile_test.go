//go:build linux

package daemon

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/narhash/narhash/api"
)

// The hostile trials use real kernel limits and mounts. They run when
// NARHASH_HOSTILE=1 (CI sets it, as root): each runs in a child process
// in new user and mount namespaces, so its limits and mounts touch
// nothing outside it, except TestHostileQueueOverflow, which sets the
// global fs.inotify.max_queued_events for the moment the daemon's inotify
// instance is made, and restores it.

func hostile(t *testing.T) {
	t.Helper()
	if os.Getenv("NARHASH_HOSTILE") == "" {
		t.Skip("a hostile trial: set NARHASH_HOSTILE=1 (needs root or unprivileged user namespaces)")
	}
}

// inNamespaces reports whether this is the child that runs the trial;
// in the parent it runs the child and fails the test if the child fails.
func inNamespaces(t *testing.T) bool {
	t.Helper()
	if os.Getenv("NARHASH_IN_NS") == t.Name() {
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			t.Fatalf("make mounts private: %v", err)
		}
		return true
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "NARHASH_IN_NS="+t.Name())
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS: "+t.Name())) {
		t.Fatalf("the trial in its namespaces: %v\n%s", err, out)
	}
	return false
}

// TestHostileWatchLimit: past the real watch limit the root is degraded,
// answered right, and said so; once the limit is raised, adding the root
// again watches it fully.
func TestHostileWatchLimit(t *testing.T) {
	hostile(t)
	if !inNamespaces(t) {
		return
	}
	root := newTree(t)
	for i := range 40 {
		os.MkdirAll(filepath.Join(root, "many", strconv.Itoa(i)), 0o755)
	}
	const limit = "/proc/sys/user/max_inotify_watches"
	if err := os.WriteFile(limit, []byte("20\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := start(t, Config{Watch: []string{root}})
	for i := range 3 {
		write(t, filepath.Join(root, "many", strconv.Itoa(30+i), "f"), strconv.Itoa(i))
		if got, want := query(t, r.c, root), offline(t, root); !got.Degraded || got.Hash != want {
			t.Fatalf("at the limit, edit %d: degraded=%v %s, want %s", i, got.Degraded, got.Hash, want)
		}
	}
	st, _ := r.c.Status(context.Background())
	if !strings.Contains(strings.Join(st.Warnings, " "), "max_user_watches") {
		t.Errorf("status warnings %q", st.Warnings)
	}
	os.WriteFile(limit, []byte("100000\n"), 0o644)
	if got, err := r.c.AddRoot(context.Background(), root); err != nil || got.Degraded {
		t.Fatalf("added again after raising the limit: %+v, %v", got, err)
	}
	write(t, filepath.Join(root, "many", "39", "f"), "after")
	if got, want := query(t, r.c, root), offline(t, root); got.Degraded || got.Hash != want || got.Source == "validated" {
		t.Fatalf("after raising the limit: %+v, want %s from events", got, want)
	}
}

// TestHostileMounts: a filesystem mounted inside a root degrades it
// (answered by stat walk, said so); one mounted over the root, and the
// root's filesystem unmounted, are followed.
func TestHostileMounts(t *testing.T) {
	hostile(t)
	if !inNamespaces(t) {
		return
	}
	root := newTree(t)
	sub := filepath.Join(root, "sub")
	os.Mkdir(sub, 0o755)
	write(t, filepath.Join(sub, "under"), "covered by the mount")
	r := start(t, Config{Watch: []string{root}})
	fresh(t, r.c, root, "before mounting")
	if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "size=4m"); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(sub, "in-mount"), "1")
	if got, want := query(t, r.c, root), offline(t, root); !got.Degraded || got.Hash != want {
		t.Fatalf("tmpfs mounted inside: degraded=%v %s, want %s", got.Degraded, got.Hash, want)
	}
	write(t, filepath.Join(sub, "in-mount"), "2")
	fresh(t, r.c, root, "edit in the mounted filesystem")
	unmount(t, sub)
	if got, want := query(t, r.c, root), offline(t, root); got.Degraded || got.Hash != want {
		t.Fatalf("unmounted: degraded=%v %s, want %s", got.Degraded, got.Hash, want)
	}
	write(t, filepath.Join(sub, "under"), "edited")
	fresh(t, r.c, root, "edit under the former mount point")
	// A subscriber hears of a mount with no query.
	s := subscribe(t, r, root)
	s.next()
	if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "size=4m"); err != nil {
		t.Fatal(err)
	}
	s.until(offline(t, root), "the mount")
	s.stop()
	unmount(t, sub)
	// Over the root itself.
	if err := unix.Mount("tmpfs", root, "tmpfs", 0, "size=4m"); err != nil {
		t.Fatal(err)
	}
	fresh(t, r.c, root, "tmpfs mounted over the root")
	os.Mkdir(filepath.Join(root, "d"), 0o755)
	write(t, filepath.Join(root, "d", "f"), "on tmpfs")
	fresh(t, r.c, root, "edit on the filesystem over the root")
	unmount(t, root)
	fresh(t, r.c, root, "the root's filesystem unmounted")
	write(t, filepath.Join(root, "after-unmount"), "x")
	fresh(t, r.c, root, "edit after the unmount")
}

// TestHostileMountNotListed: the directories of a filesystem mounted
// inside a root are not watched (the root is degraded and checked by a
// stat walk: an NFS or FUSE mount would take watches that see nothing,
// and could hang the lister), and answers stay right, in it and around
// it; once it is unmounted, the directory under it is watched again.
func TestHostileMountNotListed(t *testing.T) {
	hostile(t)
	if !inNamespaces(t) {
		return
	}
	root := newTree(t)
	sub := filepath.Join(root, "sub")
	os.Mkdir(sub, 0o755)
	if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "size=4m"); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		d := filepath.Join(sub, fmt.Sprintf("d%02d", i), "deeper")
		os.MkdirAll(d, 0o755)
		write(t, filepath.Join(d, "f"), strconv.Itoa(i))
	}
	r := start(t, Config{Watch: []string{root}})
	if got, want := query(t, r.c, root), offline(t, root); !got.Degraded || got.Hash != want {
		t.Fatalf("tmpfs mounted inside: degraded=%v %s, want %s", got.Degraded, got.Hash, want)
	}
	inMount := func() (n int) {
		r.d.call(context.Background(), func() {
			for _, w := range r.d.watches {
				if w.path == sub || strings.HasPrefix(w.path, sub+"/") {
					n++
				}
			}
		})
		return n
	}
	if n := inMount(); n != 0 {
		t.Errorf("%d directories of the filesystem mounted inside the root are watched, want none", n)
	}
	write(t, filepath.Join(sub, "d03", "deeper", "f"), "edited in the mount")
	fresh(t, r.c, root, "edit in the mounted filesystem")
	unmount(t, sub)
	if got, want := query(t, r.c, root), offline(t, root); got.Degraded || got.Hash != want {
		t.Fatalf("unmounted: degraded=%v %s, want %s", got.Degraded, got.Hash, want)
	}
	if n := inMount(); n != 1 {
		t.Errorf("after the unmount %d watches at or under %s, want 1 (the directory itself)", n, sub)
	}
	write(t, filepath.Join(sub, "under"), "edit under the former mount point")
	fresh(t, r.c, root, "edit under the former mount point")
}

// TestHostileDiskFull: a database on a full filesystem is reported in
// status, and answers stay right.
func TestHostileDiskFull(t *testing.T) {
	hostile(t)
	if !inNamespaces(t) {
		return
	}
	state := t.TempDir()
	if err := unix.Mount("tmpfs", state, "tmpfs", 0, "size=512k"); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(state, unix.MNT_DETACH)
	root := newTree(t)
	r := start(t, Config{Watch: []string{root}, DB: filepath.Join(state, "cache.db")})
	query(t, r.c, root)
	// Fill the filesystem.
	f, _ := os.Create(filepath.Join(state, "filler"))
	f.Write(make([]byte, 1<<20))
	f.Close()
	// Each result saved is a new key in the database, 150 bytes of path:
	// more than the pages the database freed before could hold, so some
	// commit must take new blocks. (With 50 short paths none had to, 2
	// times in 110 runs of the trials with both cores busy.)
	for i := range 200 {
		sub := filepath.Join(root, fmt.Sprintf("new%03d-%s", i, strings.Repeat("p", 140)))
		os.Mkdir(sub, 0o755)
		write(t, filepath.Join(sub, "f"), strings.Repeat("x", i))
		fresh(t, r.c, sub, "with the disk full")
	}
	// The store's writer commits on its own goroutine, so the failure
	// may come after the last save; and the warning says how the last
	// write went, so a later commit that fits in freed pages clears it
	// (both seen under load, 4 times in 290 runs of the trials). So wait
	// for a failure to be counted, then see status report it while the
	// disk stays full: every save fails now that the freed pages are
	// used (one more result saved each round).
	if !eventually(func() bool {
		r.d.faults.mu.Lock()
		defer r.d.faults.mu.Unlock()
		return r.d.faults.count > 0
	}) {
		t.Fatal("no write of the database failed in 10 s with the disk full")
	}
	statusUntil(t, r.c, "database could not be written", func(st api.Status) bool {
		sub := filepath.Join(root, fmt.Sprintf("more%d-%s", time.Now().UnixNano(), strings.Repeat("p", 140)))
		os.Mkdir(sub, 0o755)
		query(t, r.c, sub)
		return strings.Contains(strings.Join(st.Warnings, " "), "database could not be written")
	})
}

// unmount unmounts the filesystem at path, as a user would: the daemon
// may be reading it (a rehash after the last change), which makes the
// unmount fail with EBUSY for that moment (1 time in 100 runs of the
// hostile trials with both cores busy), so it tries again, every 5 ms
// for up to 10 s.
func unmount(t *testing.T, path string) {
	t.Helper()
	var err error
	if !eventually(func() bool { err = unix.Unmount(path, 0); return err != unix.EBUSY }) || err != nil {
		t.Fatalf("unmount %s: %v", path, err)
	}
}

// statusUntil polls the daemon's status, every 5 ms for up to 10 s, until
// ok holds, failing the test, naming what it waited for, if it does not.
func statusUntil(t *testing.T, c *api.Client, what string, ok func(api.Status) bool) {
	t.Helper()
	var st api.Status
	var err error
	if !eventually(func() bool { st, err = c.Status(context.Background()); return err == nil && ok(st) }) {
		t.Fatalf("status, after 10 s, without %s: warnings %q, %v", what, st.Warnings, err)
	}
}

// eventually polls cond, every 5 ms for up to 10 s, and reports whether
// it held: the hostile trials' daemon acts on its own goroutines, and
// under load later than a test would otherwise look.
func eventually(cond func() bool) bool {
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// TestHostileQueueOverflow: with a real inotify queue of 64 events, a
// burst while the loop is busy overflows it, swallowing a directory's
// rename and the making of a new directory of its old name: both are
// watched under their present names afterwards.
func TestHostileQueueOverflow(t *testing.T) {
	hostile(t)
	if os.Getuid() != 0 {
		t.Skip("needs root, to set fs.inotify.max_queued_events")
	}
	const knob = "/proc/sys/fs/inotify/max_queued_events"
	saved, err := os.ReadFile(knob)
	if err != nil {
		t.Fatal(err)
	}
	restored := false
	restore := func() {
		if !restored {
			restored = true
			if err := os.WriteFile(knob, saved, 0o644); err != nil {
				t.Errorf("restore %s to %s: %v", knob, bytes.TrimSpace(saved), err)
			}
		}
	}
	defer restore()
	if err := os.WriteFile(knob, []byte("64\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	root := newTree(t)
	a, b := filepath.Join(root, "a"), filepath.Join(root, "b")
	os.MkdirAll(filepath.Join(a, "sub"), 0o755)
	os.Mkdir(filepath.Join(root, "burst"), 0o755)
	// The limit is read when the inotify instance is made, in New.
	r := start(t, Config{Watch: []string{root}}, func(*Daemon) { restore() })
	fresh(t, r.c, root, "start")
	held, release := make(chan struct{}), make(chan struct{})
	go r.d.call(context.Background(), func() { close(held); <-release })
	<-held
	for i := range 3000 {
		os.WriteFile(filepath.Join(root, "burst", strconv.Itoa(i)), nil, 0o644)
	}
	os.Rename(a, b)
	os.Mkdir(a, 0o755)
	close(release)
	fresh(t, r.c, root, "after the burst")
	st, _ := r.c.Status(context.Background())
	if st.Overflows == 0 {
		t.Fatal("the queue did not overflow: the trial tests nothing")
	}
	write(t, filepath.Join(a, "f"), "in the new a")
	fresh(t, r.c, root, "file in the new directory of the old name")
	write(t, filepath.Join(b, "sub", "f"), "in b/sub")
	fresh(t, r.c, root, "file in the renamed directory")
	write(t, filepath.Join(b, "sub", "f"), "again")
	fresh(t, r.c, root, "file in the renamed directory, again")
}

// TestHostileUnreadable: a directory the daemon's user cannot read makes
// its root degraded, said in status, and answered right; a chmod that
// makes it readable has it watched, and the root clean again. It runs as
// nobody (root could read anything), in a copy of this test binary.
func TestHostileUnreadable(t *testing.T) {
	hostile(t)
	if os.Getenv("NARHASH_AS_NOBODY") == "" {
		if os.Getuid() != 0 {
			t.Skip("needs root, to run the trial as nobody")
		}
		share, err := os.MkdirTemp("", "narhash-nobody-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(share)
		os.Chmod(share, 0o755)
		bin := filepath.Join(share, "daemon.test")
		in, _ := os.ReadFile(os.Args[0])
		if err := os.WriteFile(bin, in, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "-test.run=^TestHostileUnreadable$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), "NARHASH_AS_NOBODY=1", "HOME="+share, "XDG_RUNTIME_DIR=", "XDG_STATE_HOME=")
		cmd.Dir = share
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte("--- PASS: TestHostileUnreadable")) {
			t.Fatalf("the trial as nobody: %v\n%s", err, out)
		}
		return
	}
	root := newTree(t)
	locked := filepath.Join(root, "locked")
	os.MkdirAll(filepath.Join(locked, "in"), 0o755)
	write(t, filepath.Join(locked, "in", "f"), "0")
	os.Chmod(locked, 0o300) // enterable, not readable: not watchable
	r := start(t, Config{Watch: []string{root}})
	write(t, filepath.Join(locked, "in", "f"), "1")
	// Nor can it be hashed (by Nix either) until it is readable; status
	// says why the root is degraded, once the root's listing (which
	// start does not wait for) has reached the directory: under load
	// (both cores busy), the first status came before it 1 time in 15.
	statusUntil(t, r.c, "cannot watch "+locked+", the root degraded", func(st api.Status) bool {
		return strings.Contains(strings.Join(st.Warnings, " "), "cannot watch "+locked) && st.Roots[0].Degraded
	})
	os.Chmod(locked, 0o755)
	if got, want := query(t, r.c, root), offline(t, root); got.Degraded || got.Hash != want {
		t.Fatalf("after the chmod: degraded=%v %s, want clean %s", got.Degraded, got.Hash, want)
	}
	write(t, filepath.Join(locked, "in", "f"), "2")
	fresh(t, r.c, root, "edit in the directory now readable")
}
