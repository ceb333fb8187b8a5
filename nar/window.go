package nar

import (
	"fmt"
	"io/fs"
	"strings"
	"sync/atomic"

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

// fdSizes is how a dump shares RLIMIT_NOFILE. The walk takes a quarter
// of it: the window of open levels, and the directories held open by
// the files of the batches in flight (batches*perBatch). What a dump adds
// once its reads block (prefetch.go) takes another quarter: a descriptor
// for each reader's file and each prefetcher's file or directory, and
// the directories that entries waiting in the prefetch queue hold open
// (pinned, counted in pipeline.offer). The rest is the process's. Under
// a limit high enough for all of the largest sizes (66,816) nothing is
// cut; concurrent dumps share the limit (activeDumps).
type fdSizes struct {
	window, perBatch int
	// batches in flight at most once reads block: coldBatches, fewer
	// under a low limit (a warm dump takes batchesInFlight of them at most).
	batches     int
	readers     int // at most, warm or cold
	prefetchers int // at most
	pinned      int // directories the prefetch queue may hold open
}

// activeDumps counts the dumps running in this process, which share
// RLIMIT_NOFILE.
var activeDumps atomic.Int32

// dumpFDs returns the sizes for a dump starting now, or for a walk
// without one (StatTree).
func dumpFDs() fdSizes {
	limit := uint64(1 << 30)
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err == nil {
		limit = min(limit, uint64(lim.Cur)) // int64 on some systems
	}
	return fdSizesFor(limit / uint64(max(1, activeDumps.Load())))
}

// fdSizesFor sizes a dump under limit descriptors: in full from 4*1088
// for the walk (64 levels, 32 directories per batch), and from
// 4*(256+maxPrefetchers+aheadFiles) for the rest; else each within its
// quarter.
func fdSizesFor(limit uint64) fdSizes {
	s := fdSizes{window: 64, perBatch: 32, batches: coldBatches, readers: 1 << 30, prefetchers: maxPrefetchers, pinned: aheadFiles}
	budget := int(limit / 4)
	if walk := 64 + coldBatches*32; budget < walk {
		s.window = max(2, budget/3)
		s.perBatch = max(1, (budget-s.window)/coldBatches)
		s.batches = min(coldBatches, max(2, (budget-s.window)/s.perBatch))
	}
	// Readers are GOMAXPROCS warm, if more than coldReaders: the full
	// sizes allow for up to 256 of them.
	if budget < 256+maxPrefetchers+aheadFiles {
		s.readers = max(1, budget/8)
		s.prefetchers = min(maxPrefetchers, max(1, budget/4))
		s.pinned = max(1, budget-s.readers-s.prefetchers)
	}
	return s
}

// evict closes the level that the top one just pushed out of the window.
// The open levels are always the innermost ones.
func (w *walker) evict() {
	if w.fds.window == 0 {
		w.fds.window = dumpFDs().window
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
