//go:build linux

package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestDeletedDatabase: a database file deleted while in use is reported
// in status.
func TestDeletedDatabase(t *testing.T) {
	root := newTree(t)
	r := start(t, Config{Watch: []string{root}})
	query(t, r.c, root)
	os.Remove(r.cfg.DB)
	st, err := r.c.Status(context.Background())
	if err != nil || !strings.Contains(strings.Join(st.Warnings, " "), "was removed while in use") {
		t.Errorf("status warnings %q, %v", st.Warnings, err)
	}
}

// TestStoreFaultReported: a failed write of the database is in status.
func TestStoreFaultReported(t *testing.T) {
	r := start(t, Config{})
	r.d.faults.record(fmt.Errorf("write %s: %w", r.cfg.DB, syscall.ENOSPC))
	st, _ := r.c.Status(context.Background())
	if w := strings.Join(st.Warnings, " "); !strings.Contains(w, "disk is full") {
		t.Errorf("status warnings %q", st.Warnings)
	}
}

// TestCookieDirRemoved: a cookie directory someone removes is made anew,
// and queries are fast and right again.
func TestCookieDirRemoved(t *testing.T) {
	root := newTree(t)
	r := start(t, Config{Watch: []string{root}})
	query(t, r.c, root)
	var old string
	r.d.call(context.Background(), func() { old = r.d.cookies.dir })
	os.RemoveAll(old)
	write(t, filepath.Join(root, "f"), "1")
	fresh(t, r.c, root, "after the cookie directory was removed")
	var dir string
	r.d.call(context.Background(), func() { dir = r.d.cookies.dir })
	if dir == old {
		t.Fatal("no new cookie directory")
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(root, "f"), "2")
	fresh(t, r.c, root, "with the new cookie directory")
	if got := query(t, r.c, root); got.Source != "cache" {
		t.Errorf("an unchanged root is answered from %q, want cache: the barrier does not work", got.Source)
	}
}

// TestReAddAfterWatchLimit: once the limit is raised, adding the root
// again watches it fully.
func TestReAddAfterWatchLimit(t *testing.T) {
	root := newTree(t)
	os.MkdirAll(filepath.Join(root, "over/limit"), 0o755)
	limited := true
	r := start(t, Config{Watch: []string{root}}, func(d *Daemon) {
		d.testHookAdd = func(p string) error {
			if limited && strings.Contains(p, "over") {
				return fmt.Errorf("add %s: %w", p, syscall.ENOSPC)
			}
			return nil
		}
	})
	if got := query(t, r.c, root); !got.Degraded {
		t.Fatal("not degraded at the limit")
	}
	r.d.call(context.Background(), func() { limited = false })
	root2, err := r.c.AddRoot(context.Background(), root)
	if err != nil || root2.Degraded || root2.Warning != "" {
		t.Fatalf("added again: %+v, %v", root2, err)
	}
	write(t, filepath.Join(root, "over/limit/f"), "x")
	if got := query(t, r.c, root); got.Degraded || got.Hash != offline(t, root) {
		t.Fatalf("after adding again: degraded=%v %s", got.Degraded, got.Hash)
	}
}

// TestCookieFileFails: a cookie file that cannot be made (here: its name
// is taken) leaves queries right, checked by stat walk, and is said in
// status until a cookie file is made again.
func TestCookieFileFails(t *testing.T) {
	root := newTree(t)
	r := start(t, Config{Watch: []string{root}})
	fresh(t, r.c, root, "start")
	c := &r.d.cookies
	c.mu.Lock()
	dir, name := c.dir, strconv.FormatUint(c.n+2, 10) // the second query's cookie
	c.mu.Unlock()
	write(t, filepath.Join(dir, name), "taken")
	fresh(t, r.c, root, "a query whose cookie is made") // and whose barrier passes the taken file's event
	write(t, filepath.Join(root, "f"), "1")
	if got := query(t, r.c, root); got.Hash != offline(t, root) || got.Source != "validated" && got.Source != "computed" {
		t.Errorf("a query whose cookie cannot be made: %s from %s, want %s checked by a stat walk", got.Hash, got.Source, offline(t, root))
	}
	warned := func() bool {
		st, err := r.c.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return strings.Contains(strings.Join(st.Warnings, " "), "cannot make cookie files in narhashd's directory "+dir)
	}
	if !warned() {
		t.Error("status does not say a cookie file could not be made")
	}
	fresh(t, r.c, root, "a query whose cookie is made again")
	if warned() {
		t.Error("status still says a cookie file could not be made after one was")
	}
}
