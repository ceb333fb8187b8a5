package nar

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sync/atomic"

	"golang.org/x/sys/cpu"
	"golang.org/x/sys/unix"
)

// dirRef is an open directory that files are opened relative to. The walk
// holds one reference while the directory is in its window of open levels
// (see window.go) and each pending file holds one until it is opened; the
// last release closes the descriptor. Its path, for error messages, is
// its parent's joined with its name (see path): a chain, not a string
// per level, so that memory stays linear in the depth.
type dirRef struct {
	fd     int
	parent *dirRef // nil for the working directory, named "."
	name   string  // the root's path for the root
	fs     *fsInfo // what the walk learnt of its filesystem
	// The fields above do not change once the directory is open; refs,
	// which the packer and the readers change for every file, is on a
	// cache line of its own, so that a reader's loads of fd and fs do not
	// miss each time another core has just counted a file.
	_    cpu.CacheLinePad
	refs atomic.Int32
	// queued counts the prefetch queue's entries in the directory
	// (pipeline.offer), under the pipeline's pinMu.
	queued int32
}

func (d *dirRef) release() {
	if d.refs.Add(-1) == 0 && d.fd != unix.AT_FDCWD {
		closeFD(d.fd)
	}
}

// dent is a directory entry: its name, in level.names, and its d_type.
type dent struct {
	// key is the name's first 8 bytes, big-endian, zero-padded: names
	// hold no NUL, so keys order as names do, unless they are equal.
	key      uint64
	off, len uint32
	typ      uint8
}

// nameKey is the key of a dent named name.
func nameKey(name []byte) uint64 {
	var b [8]byte
	copy(b[:], name)
	return binary.BigEndian.Uint64(b[:])
}

// level is one directory being walked.
type level struct {
	dir   *dirRef
	info  fileInfo // fstat of the directory when it was listed
	names []byte   // its entries' names, each followed by a NUL
	ents  []dent   // its entries, in byte order of their names
	next  int
	// closed: out of the window of open levels, the walk no longer
	// holds dir; it opens the directory again when it returns to it.
	closed bool
	// pathLen is the length of the directory's path inside the archive.
	pathLen int
	// With a Selection: sel is the directory's node, and a directory
	// other than the root is pending until its first entry is dumped,
	// so that one holding no selected entry is left out; name is its
	// name, in its parent's names.
	sel     *selNode
	pending bool
	name    []byte
}

// entName is the name of l's entry d.
func (l *level) entName(d dent) []byte { return l.names[d.off : d.off+d.len] }

// entNameNUL is the same name followed by its NUL, for openat.
func (l *level) entNameNUL(d dent) []byte { return l.names[d.off : d.off+d.len+1] }

// walker visits a tree in NAR order: it lists directories, checks what a
// Writer would check (names, path lengths), lstats the entries whose type
// the listing does not give, and sees that no directory changed while it
// was walked. What it visits goes to its sink: a dump's packer (pack.go)
// or a stat walk's fingerprint (stat.go). It runs on one goroutine.
type walker struct {
	ctx     context.Context
	root    string
	sel     *Selection  // nil: the whole tree
	from    *Checkpoint // resume there (see resume.go)
	sink    sink
	stack   []level
	fsByDev map[uint64]*fsInfo
	st      unix.Stat_t
	fds     fdWindow // how many directories the walk keeps open (window.go)
	// getdents reads into buf, the names gather in names and ents before
	// each level keeps an exact copy: one buffer for the whole walk.
	buf   []byte
	names []byte
	ents  []dent
}

// A sink takes what a walk visits, in NAR order. A name is followed by a
// NUL byte in its backing array (for openat), and valid only during the
// call; the root's is its path, and root is set.
type sink interface {
	// lstatAll: the walk must lstat every entry, not only those whose
	// type its listing does not give.
	lstatAll() bool
	// listed is called once a directory is listed, before its entries
	// are visited.
	listed(l *level)
	// before is called before each entry of the top directory that the
	// walk visits: with a Selection, only the entries it holds.
	before(w *walker, name []byte)
	// fi is the entry's lstat, or for a file in a dump nil: the
	// readers stat files once they open them.
	file(dir *dirRef, name []byte, fi *fileInfo, root bool) error
	symlink(dir *dirRef, name []byte, fi *fileInfo, root bool) error
	dir(name []byte, fi *fileInfo, root bool)
	endDir()
	// finish is called after the last entry, abort instead when the walk
	// fails: the sink gives up what it holds.
	finish() error
	abort()
}

// run walks the whole tree. On error it stops, releasing what it holds.
func (w *walker) run() error {
	err := w.walk()
	if err != nil {
		w.sink.abort()
	}
	for i := len(w.stack) - 1; i >= 0 && !w.stack[i].closed; i-- {
		w.stack[i].dir.release()
	}
	w.stack = w.stack[:0]
	return err
}

func (w *walker) walk() error {
	if w.from != nil {
		if err := w.resume(); err != nil {
			return err
		}
		return w.loop()
	}
	root := cstring(w.root)
	cwd := workingDir()
	if err := fstatat(unix.AT_FDCWD, &root[0], &w.st); err != nil {
		return &fs.PathError{Op: "lstat", Path: w.root, Err: err}
	}
	fi := infoOf(&w.st)
	var sel *selNode
	if w.sel != nil {
		if dtype(fi.mode) != unix.DT_DIR {
			return &fs.PathError{Op: "dump", Path: w.root, Err: errors.New("not a directory: only a directory's entries can be selected")}
		}
		sel = &w.sel.root
	}
	if err := w.node(cwd, root[:len(root)-1], unix.DT_UNKNOWN, &fi, true, sel); err != nil {
		return err
	}
	return w.loop()
}

// loop walks the entries of the directories on the stack, and what
// follows them, to the end of the tree.
func (w *walker) loop() error {
	for len(w.stack) > 0 {
		if err := w.ctx.Err(); err != nil {
			return context.Cause(w.ctx)
		}
		top := &w.stack[len(w.stack)-1]
		if top.next == len(top.ents) {
			if err := w.endDir(top); err != nil {
				return err
			}
			continue
		}
		d := top.ents[top.next]
		top.next++
		name := top.entNameNUL(d)
		var sel *selNode
		if top.sel != nil {
			if sel = top.sel.children[string(name[:d.len])]; sel == nil {
				continue
			}
		}
		w.sink.before(w, name[:d.len])
		if err := w.node(top.dir, name[:d.len], d.typ, nil, false, sel); err != nil {
			return err
		}
	}
	return w.sink.finish()
}

// node handles one entry, or the root. name is followed by a NUL byte in
// its backing array. fi is its lstat if the caller has one. sel is its
// node in the Selection, if the dump has one.
func (w *walker) node(dir *dirRef, name []byte, typ uint8, fi *fileInfo, root bool, sel *selNode) error {
	// What a Writer would check, checked here to name the path: a dump's
	// Writer then never fails (see pipeline.go), and a stat walk has none.
	pathLen := 0
	if !root {
		parent := &w.stack[len(w.stack)-1]
		if why := checkName(name); why != "" {
			return &fs.PathError{Op: "dump", Path: entryPath(dir, name, root), Err: errors.New(why)}
		}
		if pathLen = parent.pathLen + 1 + len(name); pathLen > MaxPathLen {
			return &fs.PathError{Op: "dump", Path: entryPath(dir, name, root),
				Err: errors.New("path inside the archive longer than 64 KiB: the tree nests too deep")}
		}
	}
	if fi == nil && (typ == unix.DT_UNKNOWN || typ == unix.DT_LNK || w.sink.lstatAll() && typ != unix.DT_DIR) {
		if err := fstatat(dir.fd, &name[0], &w.st); err != nil {
			if err == unix.ENOENT {
				return entryChanged(dir, name, root, "was deleted")
			}
			return &fs.PathError{Op: "lstat", Path: entryPath(dir, name, root), Err: err}
		}
		info := infoOf(&w.st)
		fi = &info
	}
	if fi != nil {
		typ = dtype(fi.mode)
	}
	if sel != nil && !root && !sel.admits(typ) {
		return nil // selected as something it is not on disk
	}
	if w.sel != nil && !root && typ != unix.DT_DIR {
		w.open()
	}
	switch typ {
	case unix.DT_REG:
		return w.sink.file(dir, name, fi, root)
	case unix.DT_LNK:
		return w.sink.symlink(dir, name, fi, root)
	case unix.DT_DIR:
		return w.enterDir(dir, name, fi, root, pathLen, sel)
	}
	return &fs.PathError{Op: "dump", Path: entryPath(dir, name, root),
		Err: fmt.Errorf("%w: a %s; a NAR holds only regular files, directories and symlinks", ErrUnsupportedType, typeWord(typ))}
}

// enterDir opens a directory, lists it and makes it the walk's top level.
// fi, if not nil, is the lstat that said it is a directory. With a
// Selection, a directory other than the root is left pending (see open).
func (w *walker) enterDir(parent *dirRef, name []byte, fi *fileInfo, root bool, pathLen int, sel *selNode) error {
	l, err := w.openDir(parent, name, fi, root, pathLen, sel)
	if err != nil {
		return err
	}
	switch {
	case !l.pending:
		w.beginDir(l, root)
	case sel.keep:
		w.open()
	}
	return nil
}

// openDir opens a directory, lists it and pushes it on the stack.
func (w *walker) openDir(parent *dirRef, name []byte, fi *fileInfo, root bool, pathLen int, sel *selNode) (*level, error) {
	fd, err := openat(parent.fd, &name[0], openDirFlags)
	if err != nil {
		if err == unix.ENOENT || err == unix.ELOOP || err == unix.ENOTDIR {
			return nil, entryChanged(parent, name, root, "was replaced")
		}
		return nil, &fs.PathError{Op: "open", Path: entryPath(parent, name, root), Err: err}
	}
	d := &dirRef{fd: fd, parent: parent, name: string(name)}
	if root {
		d.parent, d.name = nil, w.root
	}
	d.refs.Store(1)
	if len(w.stack) == cap(w.stack) { // doubling: a deep walk copies the stack little
		w.stack = append(make([]level, 0, max(16, 2*cap(w.stack))), w.stack...)
	}
	w.stack = w.stack[:len(w.stack)+1]
	l := &w.stack[len(w.stack)-1]
	l.dir, l.next, l.closed = d, 0, false
	l.pathLen = pathLen
	l.sel, l.pending, l.name = sel, w.sel != nil && !root, name
	if err := fstat(fd, &w.st); err != nil {
		return nil, &fs.PathError{Op: "fstat", Path: d.path(), Err: err}
	}
	l.info = infoOf(&w.st)
	if fi != nil && l.info.ino != fi.ino {
		return nil, entryChanged(parent, name, root, "was replaced")
	}
	d.fs = w.fsInfo(fd, l.info.dev)
	if err := w.list(l); err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: d.path(), Err: err}
	}
	w.sink.listed(l)
	w.evict()
	return l, nil
}

// beginDir gives a directory to the sink.
func (w *walker) beginDir(l *level, root bool) {
	w.sink.dir(l.name, &l.info, root)
}

// open is called, with a Selection, before an entry is added to the top
// directory: it adds the directories being walked that are still
// pending, outermost first.
func (w *walker) open() {
	i := len(w.stack)
	for i > 1 && w.stack[i-1].pending { // the root is never pending
		i--
	}
	for ; i < len(w.stack); i++ {
		w.stack[i].pending = false
		w.beginDir(&w.stack[i], false)
	}
}

// workingDir is the directory the root is opened in. A root that is a
// file is read the careful way: nothing is known of its filesystem.
func workingDir() *dirRef {
	d := &dirRef{fd: unix.AT_FDCWD, name: ".", fs: &fsInfo{}}
	d.refs.Store(1)
	return d
}

// fsInfo is what a dump knows of a filesystem it reads.
type fsInfo struct {
	localClock bool // it stamps ctime from this machine's clock
	// noWaitOff: it refused a read that must not block (see readNoWait).
	noWaitOff atomic.Bool
}

// fsInfo returns the fsInfo of the device of the open directory fd.
func (w *walker) fsInfo(fd int, dev uint64) *fsInfo {
	f, ok := w.fsByDev[dev]
	if !ok {
		if w.fsByDev == nil {
			w.fsByDev = map[uint64]*fsInfo{}
		}
		f = &fsInfo{localClock: localClock(fd)}
		w.fsByDev[dev] = f
	}
	return f
}

// list reads all of the directory's entries into the walk's buffer and
// keeps an exact copy of their names, sorted.
func (w *walker) list(l *level) error {
	if w.buf == nil {
		w.buf = make([]byte, 32<<10)
	}
	w.names, w.ents = w.names[:0], w.ents[:0]
	for {
		n, err := getdents(l.dir.fd, w.buf)
		if err != nil {
			return err
		}
		if n == 0 {
			break
		}
		for off := 0; off < n; {
			reclen := int(w.buf[off+16]) | int(w.buf[off+17])<<8
			typ := w.buf[off+18]
			nameOff := off + 19
			nameLen := bytes.IndexByte(w.buf[nameOff:off+reclen], 0)
			name := w.buf[nameOff : nameOff+nameLen]
			if !(nameLen == 1 && name[0] == '.') && !(nameLen == 2 && name[0] == '.' && name[1] == '.') {
				w.ents = append(w.ents, dent{nameKey(name), uint32(len(w.names)), uint32(nameLen), typ})
				w.names = append(w.names, w.buf[nameOff:nameOff+nameLen+1]...)
			}
			off += reclen
		}
	}
	l.names = append(l.names[:0], w.names...)
	l.ents = append(l.ents[:0], w.ents...)
	slices.SortFunc(l.ents, func(a, b dent) int {
		if c := cmp.Compare(a.key, b.key); c != 0 {
			return c
		}
		return bytes.Compare(l.entName(a), l.entName(b))
	})
	return nil
}

// endDir leaves the top directory, checking that it did not change while
// it was walked.
func (w *walker) endDir(l *level) error {
	if err := fstat(l.dir.fd, &w.st); err != nil {
		return &fs.PathError{Op: "fstat", Path: l.dir.path(), Err: err}
	}
	if fileChangedInfo(l.info, infoOf(&w.st)) {
		return fmt.Errorf("dump %s: %w (entries were added, removed or renamed)", l.dir.path(), ErrChanged)
	}
	if n := len(w.stack); n > 1 && w.stack[n-2].closed {
		if err := w.reopen(&w.stack[n-2], l.dir); err != nil {
			return err
		}
	}
	l.dir.release()
	pending := l.pending
	w.stack = w.stack[:len(w.stack)-1]
	if pending { // it held no selected entry: it is not in the archive
		return nil
	}
	w.sink.endDir()
	return nil
}

// entryChanged reports that an entry changed while the tree was read.
func entryChanged(dir *dirRef, name []byte, root bool, what string) error {
	return fmt.Errorf("dump %s: %w (it %s)", entryPath(dir, name, root), ErrChanged, what)
}

// entryPath is the path of the entry name of dir, or of the root (whose
// name is its path).
func entryPath(dir *dirRef, name []byte, root bool) string {
	if root {
		return string(name)
	}
	return joinPath(dir.path(), name)
}

func joinPath(dir string, name []byte) string {
	if dir == "." {
		return string(name)
	}
	return dir + "/" + string(name)
}
