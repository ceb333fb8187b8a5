package nar

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"slices"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// dirRef is an open directory that files are opened relative to. The walk
// holds one reference while it lists the directory and each pending file
// holds one until it is opened; the last release closes the descriptor.
type dirRef struct {
	fd   int
	path string // for error messages
	refs atomic.Int32
}

func (d *dirRef) release() {
	if d.refs.Add(-1) == 0 && d.fd != unix.AT_FDCWD {
		closeFD(d.fd)
	}
}

// level is one directory being walked.
type level struct {
	dir   *dirRef
	info  fileInfo // fstat of the directory when it was listed
	dents []byte   // its getdents records; names stay NUL-terminated there
	names []span   // its entry names, into dents, in byte order
	next  int
}

// walker visits a tree in NAR order: it lstats every entry, adds it to the
// fingerprint and, when it feeds a pipeline, packs it into batches for the
// readers and the writer. It runs on one goroutine.
type walker struct {
	ctx   context.Context
	root  string
	p     *pipeline // nil for a stat walk
	fp    *fingerprinter
	stack []level
	cur   *batch
	st    unix.Stat_t
	link  [MaxTargetLen + 1]byte
	count DumpStats
}

// run walks the whole tree. On error it stops, releasing what it holds.
func (w *walker) run() error {
	err := w.walk()
	if err != nil && w.cur != nil {
		w.cur.releaseFiles()
		w.cur = nil
	}
	for i := len(w.stack) - 1; i >= 0; i-- {
		w.stack[i].dir.release()
	}
	w.stack = w.stack[:0]
	return err
}

func (w *walker) walk() error {
	root := cstring(w.root)
	cwd := &dirRef{fd: unix.AT_FDCWD, path: "."}
	cwd.refs.Store(1)
	if err := fstatat(unix.AT_FDCWD, &root[0], &w.st); err != nil {
		return &fs.PathError{Op: "lstat", Path: w.root, Err: err}
	}
	fi := infoOf(&w.st)
	w.fp.add(nil, &fi)
	if err := w.node(cwd, root[:len(root)-1], &fi, true); err != nil {
		return err
	}
	for len(w.stack) > 0 {
		if err := w.ctx.Err(); err != nil {
			return context.Cause(w.ctx)
		}
		top := &w.stack[len(w.stack)-1]
		if top.next == len(top.names) {
			if err := w.endDir(top); err != nil {
				return err
			}
			continue
		}
		s := top.names[top.next]
		top.next++
		name := top.dents[s.off : s.off+s.len+1] // with its NUL
		if err := fstatat(top.dir.fd, &name[0], &w.st); err != nil {
			if err == unix.ENOENT {
				return w.changed(top.dir, name[:s.len], "was deleted")
			}
			return &fs.PathError{Op: "lstat", Path: joinPath(top.dir.path, name[:s.len]), Err: err}
		}
		fi := infoOf(&w.st)
		w.fp.add(name[:s.len], &fi)
		if err := w.node(top.dir, name[:s.len], &fi, false); err != nil {
			return err
		}
	}
	return w.flush()
}

// node handles one entry (or the root) that has just been lstat'ed. name
// is followed by a NUL byte in its backing array.
func (w *walker) node(dir *dirRef, name []byte, fi *fileInfo, root bool) error {
	switch fi.mode & modeType {
	case modeReg:
		w.count.Files++
		w.count.Bytes += fi.size
		if w.p != nil {
			return w.addFile(dir, name, fi, root)
		}
		return nil
	case modeLnk:
		w.count.Symlinks++
		if w.p != nil {
			return w.addSymlink(dir, name, fi, root)
		}
		return nil
	case modeDir:
		w.count.Dirs++
		return w.enterDir(dir, name, fi, root)
	}
	return &fs.PathError{Op: "dump", Path: joinPath(dir.path, name),
		Err: fmt.Errorf("%w: a %s; a NAR holds only regular files, directories and symlinks", ErrUnsupportedType, typeWord(fi.mode))}
}

func (w *walker) enterDir(parent *dirRef, name []byte, fi *fileInfo, root bool) error {
	path := joinPath(parent.path, name)
	if root {
		path = w.root
	}
	fd, err := openat(parent.fd, &name[0], openDirFlags)
	if err != nil {
		if err == unix.ENOENT || err == unix.ELOOP || err == unix.ENOTDIR {
			return w.changed(parent, name, "was replaced")
		}
		return &fs.PathError{Op: "open", Path: path, Err: err}
	}
	d := &dirRef{fd: fd, path: path}
	d.refs.Store(1)
	if len(w.stack) < cap(w.stack) {
		w.stack = w.stack[:len(w.stack)+1]
	} else {
		w.stack = append(w.stack, level{})
	}
	l := &w.stack[len(w.stack)-1]
	l.dir, l.next, l.names, l.dents = d, 0, l.names[:0], l.dents[:0]
	if err := fstat(fd, &w.st); err != nil {
		return &fs.PathError{Op: "fstat", Path: path, Err: err}
	}
	l.info = infoOf(&w.st)
	if l.info.ino != fi.ino {
		return w.changed(parent, name, "was replaced")
	}
	if err := l.list(); err != nil {
		return &fs.PathError{Op: "readdir", Path: path, Err: err}
	}
	if w.p != nil {
		w.addItem(item{op: opDir, root: root}, name)
	}
	return nil
}

// list reads all of the directory's entries and sorts them by name.
func (l *level) list() error {
	if cap(l.dents) < 32<<10 {
		l.dents = make([]byte, 0, 32<<10)
	}
	for {
		if cap(l.dents)-len(l.dents) < 16<<10 {
			l.dents = slices.Grow(l.dents, cap(l.dents))
		}
		n, err := getdents(l.dir.fd, l.dents[len(l.dents):cap(l.dents)])
		if err != nil {
			return err
		}
		if n == 0 {
			break
		}
		start := len(l.dents)
		l.dents = l.dents[:start+n]
		for off := start; off < len(l.dents); {
			reclen := int(l.dents[off+16]) | int(l.dents[off+17])<<8
			nameOff := off + 19
			nameLen := bytes.IndexByte(l.dents[nameOff:off+reclen], 0)
			name := l.dents[nameOff : nameOff+nameLen]
			if !(nameLen == 1 && name[0] == '.') && !(nameLen == 2 && name[0] == '.' && name[1] == '.') {
				l.names = append(l.names, span{uint32(nameOff), uint32(nameLen)})
			}
			off += reclen
		}
	}
	slices.SortFunc(l.names, func(a, b span) int {
		return bytes.Compare(l.dents[a.off:a.off+a.len], l.dents[b.off:b.off+b.len])
	})
	return nil
}

func (w *walker) endDir(l *level) error {
	if err := fstat(l.dir.fd, &w.st); err != nil {
		return &fs.PathError{Op: "fstat", Path: l.dir.path, Err: err}
	}
	if now := infoOf(&w.st); now.mtime != l.info.mtime || now.ctime != l.info.ctime {
		return fmt.Errorf("dump %s: %w (entries were added, removed or renamed)", l.dir.path, ErrChanged)
	}
	w.fp.endDir()
	l.dir.release()
	w.stack = w.stack[:len(w.stack)-1]
	if w.p != nil {
		w.addItem(item{op: opEndDir}, nil)
	}
	return nil
}

func (w *walker) addSymlink(dir *dirRef, name []byte, fi *fileInfo, root bool) error {
	n, err := readlinkat(dir.fd, &name[0], w.link[:])
	if err != nil {
		if err == unix.ENOENT || err == unix.EINVAL {
			return w.changed(dir, name, "was replaced")
		}
		return &fs.PathError{Op: "readlink", Path: w.pathOf(dir, name, root), Err: err}
	}
	if int64(n) != fi.size || n > MaxTargetLen {
		if n > MaxTargetLen {
			return &fs.PathError{Op: "readlink", Path: w.pathOf(dir, name, root), Err: fmt.Errorf("target longer than %d bytes", MaxTargetLen)}
		}
		return w.changed(dir, name, "was retargeted")
	}
	it := item{op: opSymlink, root: root}
	b := w.batchFor(0)
	it.target = span{uint32(len(b.names)), uint32(n)}
	b.names = append(b.names, w.link[:n]...)
	w.addItem(it, name)
	return nil
}

func (w *walker) addFile(dir *dirRef, name []byte, fi *fileInfo, root bool) error {
	it := item{op: opFile, root: root, exec: fi.mode&modeExec != 0, size: fi.size, info: *fi, dir: dir}
	dir.refs.Add(1)
	if fi.size > bigFileSize {
		if err := w.flush(); err != nil {
			dir.release()
			return err
		}
		b := w.batchFor(0)
		b.big = make(chan chunk, chunksInFlight)
		w.addItem(it, name)
		return w.flush()
	}
	b := w.batchFor(fi.size)
	it.data = len(b.arena)
	b.arena = b.arena[:len(b.arena)+int(fi.size)]
	b.files++
	w.addItem(it, name)
	return nil
}

// batchFor returns the batch to add an item with size bytes of contents
// to, sending the current one on first if it is full.
func (w *walker) batchFor(size int64) *batch {
	if b := w.cur; b != nil {
		if len(b.items) < batchItems && int64(len(b.arena))+size <= int64(cap(b.arena)) && b.big == nil {
			return b
		}
		w.flush() // fails only when the pipeline stops, which the walk notices next
	}
	return w.fresh()
}

// fresh starts a new current batch. If the pipeline is stopping, it gives
// a throwaway batch; the walk notices the stop at the next directory entry.
func (w *walker) fresh() *batch {
	select {
	case b := <-w.p.free:
		b.reset()
		w.cur = b
	case <-w.ctx.Done():
		w.cur = newBatch(0)
	}
	return w.cur
}

// addItem appends it to the current batch, copying name and its NUL.
func (w *walker) addItem(it item, name []byte) {
	b := w.cur
	if b == nil {
		b = w.batchFor(0)
	}
	if name != nil {
		it.name = span{uint32(len(b.names)), uint32(len(name))}
		b.names = append(b.names, name[:len(name)+1]...)
	}
	b.items = append(b.items, it)
}

// flush sends the current batch to the readers (if it has files to read)
// and to the writer.
func (w *walker) flush() error {
	b := w.cur
	if b == nil {
		return nil
	}
	w.cur = nil
	select {
	case w.p.order <- b:
	case <-w.ctx.Done():
		b.releaseFiles()
		return context.Cause(w.ctx)
	}
	if b.files == 0 && b.big == nil {
		close(b.ready)
		return nil
	}
	select {
	case w.p.work <- b:
		return nil
	case <-w.ctx.Done():
		b.releaseFiles()
		close(b.ready)
		return context.Cause(w.ctx)
	}
}

// changed reports that an entry changed while the tree was read.
func (w *walker) changed(dir *dirRef, name []byte, what string) error {
	return fmt.Errorf("dump %s: %w (it %s)", joinPath(dir.path, name), ErrChanged, what)
}

func (w *walker) pathOf(dir *dirRef, name []byte, root bool) string {
	if root {
		return w.root
	}
	return joinPath(dir.path, name)
}

func joinPath(dir string, name []byte) string {
	if dir == "." {
		return string(name)
	}
	return dir + "/" + string(name)
}
