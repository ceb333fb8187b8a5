package nar

import (
	"fmt"
	"io/fs"
	"strings"

	"golang.org/x/sys/unix"
)

// The walk's bound on open directories. A walk keeps open only the
// innermost levels of its stack, a window of them; it opens a level
// again, through ".." of the level it leaves, when it returns there, and
// checks that it is the directory it listed. Files waiting in a batch for
// a reader hold their directory open too (see dirRef), so a batch takes
// files from a bounded number of directories. A tree of any depth is then
// walked with a bounded number of descriptors, and a tree less deep than
// the window (any source tree) opens each directory once, as before.

// fdWindow is a walk's bound on the directories it holds open.
type fdWindow struct {
	window int // levels of the stack kept open; 0 until the first is opened
}

// fdBudget sizes the window and the packer's bound: 64 levels and 32
// directories per batch, at most 64 + coldBatches*32 = 1088 descriptors
// (and the prefetchers' few), or under a low RLIMIT_NOFILE at most about
// a quarter of it.
func fdBudget() (window, perBatch int) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil || lim.Cur >= 4*(64+coldBatches*32) {
		return 64, 32
	}
	budget := int(lim.Cur) / 4
	window = max(2, budget/3)
	return window, max(1, (budget-window)/coldBatches)
}

// evict closes the level that the top one just pushed out of the window.
// The open levels are always the innermost ones.
func (w *walker) evict() {
	if w.fds.window == 0 {
		w.fds.window, _ = fdBudget()
	}
	i := len(w.stack) - 1 - w.fds.window
	if i < 0 || w.stack[i].closed {
		return
	}
	w.stack[i].dir.release()
	w.stack[i].closed = true
}

var dotdot = []byte("..\x00")

// reopen opens the closed level l again, as the parent of child, the
// directory the walk is leaving, and checks that it is the directory l
// listed.
func (w *walker) reopen(l *level, child *dirRef) error {
	old := l.dir
	fd, err := openat(child.fd, &dotdot[0], openDirFlags)
	if err != nil {
		if err == unix.ENOENT { // child was deleted
			return movedAway(old)
		}
		return &fs.PathError{Op: "open", Path: old.path(), Err: err}
	}
	if err := fstat(fd, &w.st); err != nil {
		closeFD(fd)
		return &fs.PathError{Op: "fstat", Path: old.path(), Err: err}
	}
	if now := infoOf(&w.st); now.dev != l.info.dev || now.ino != l.info.ino {
		closeFD(fd)
		return movedAway(old)
	}
	d := &dirRef{fd: fd, parent: old.parent, name: old.name, fs: old.fs}
	d.refs.Store(1)
	l.dir, l.closed = d, false
	return nil
}

func movedAway(dir *dirRef) error {
	return fmt.Errorf("dump %s: %w (a subdirectory was moved or deleted while it was walked)", dir.path(), ErrChanged)
}

// path returns the directory's path, its ancestors' names joined.
func (d *dirRef) path() string {
	if d.parent == nil {
		return d.name
	}
	var names []string
	for p := d; p != nil; p = p.parent {
		names = append(names, p.name)
	}
	var b strings.Builder
	for i := len(names) - 1; i >= 0; i-- {
		b.WriteString(names[i])
		if i > 0 {
			b.WriteByte('/')
		}
	}
	return b.String()
}
