package nar

import (
	"context"
	"fmt"
	"io/fs"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// testHookRead, when set, runs after a file's contents are read and
// before the file is stat'ed again: tests change files there.
var testHookRead func(path string)

// testHookNoatimeDenied, when set, runs when an open with O_NOATIME was
// refused.
var testHookNoatimeDenied func()

// startReader starts a reader, with small small chunks (see chunks): it
// fills the batches of p.work until the walk is done.
func (p *pipeline) startReader(ctx context.Context, small int) {
	p.wg.Go(func() {
		c := newChunks(small)
		defer c.close()
		for b := range p.work {
			fill(ctx, p, c, b)
		}
	})
}

// fill reads the contents of a batch's files into its arena, in order,
// and publishes its progress as it goes.
func fill(ctx context.Context, p *pipeline, c *chunks, b *batch) {
	var files, used int64
	at, shown := 0, 0 // where the next file's contents go in the arena
	for i := range b.items {
		it := &b.items[i]
		if it.op != opFile {
			continue // ready as the packer made it
		}
		if b.err != nil || ctx.Err() != nil {
			it.dir.release()
			continue
		}
		if err := readFile(ctx, p, c, b, i, at); err != nil {
			b.fail(err)
			continue
		}
		at = it.end
		files++
		used += int64(it.end - it.off)
		if at-shown >= earlyAdvance && b.waiting.Load() {
			b.advance(i + 1)
			shown = at
		}
	}
	p.files.Add(files)
	p.used.Add(used)
	switch {
	case b.err != nil:
	case ctx.Err() != nil:
		// Files were skipped, their contents never read: the writer
		// must not take the batch as complete.
		b.fail(context.Cause(ctx))
	default:
		b.finish()
	}
}

// openFile opens the file name (NUL-terminated) in dir for reading.
// It asks for O_NOATIME, so that a dump does not dirty the atime of every
// inode it reads; but only the file's owner (or root) may, and anyone
// else gets EPERM. After the first EPERM the dump stops asking: a tree
// the user does not own, such as a store path or a system toolchain, would
// otherwise cost two opens a file (tiny tree as another user: 0.24 s,
// not 0.21).
func (p *pipeline) openFile(dir int, name *byte) (int, error) {
	if !p.noatimeDenied.Load() {
		fd, err := openat(dir, name, openFileFlags|oNoatime)
		if err != unix.EPERM {
			return fd, err
		}
		p.noatimeDenied.Store(true)
		if testHookNoatimeDenied != nil {
			testHookNoatimeDenied()
		}
	}
	return openat(dir, name, openFileFlags)
}

// racyMargin is how much older than a moment a file's ctime and mtime
// must be for a stat to prove the file unchanged since: more than a coarse
// kernel clock's lag and a 1-second timestamp's rounding. The dump's fast
// path and Fingerprint.Racy both use it. Tests shorten it.
var racyMargin = 2 * time.Second

// readFile opens the file of item i and reads its contents into the
// arena from at, or streams them to the writer if they do not fit.
//
// The fast path reads first and stats once, after: if the file's ctime
// and mtime are older than the dump's start (less racyMargin), nothing
// wrote, truncated or chmod'ed it since, for every such change sets ctime
// to the current time; so the bytes read are the file's, whole. That
// holds only where ctime comes from this machine's clock (localClock).
// The first read takes at most firstRead bytes: a file larger than that
// keeps them at the start of its contents, and reads or streams the rest
// between that stat and another, which must agree, as does a file changed
// recently ("racy", as git says) or on another filesystem (the careful
// path: stat, read, stat again, and compare).
func readFile(ctx context.Context, p *pipeline, c *chunks, b *batch, i int, at int) error {
	it := &b.items[i]
	name := b.names[it.name.off : it.name.off+it.name.len+1]
	fd, err := p.openFile(it.dir.fd, &name[0])
	it.dir.release() // it.dir's other fields stay valid
	if err != nil {
		switch err {
		case unix.ENOENT, unix.ELOOP:
			return fileChanged(b, it, "was replaced or deleted")
		}
		return &fs.PathError{Op: "open", Path: itemPath(b, it), Err: err}
	}
	if it.dir.fs.localClock {
		defer closeLocal(fd)
	} else {
		defer closeFD(fd)
	}
	it.off, it.end = at, at
	if room := min(len(b.arena)-at, firstRead); it.dir.fs.localClock && room > 0 {
		n, err := p.readFast(fd, it.dir.fs, b.arena[at:at+room])
		if err != nil {
			// What was listed as a file may no longer be one: a FIFO
			// or a device fails to read (EAGAIN, ESPIPE). The careful
			// path stats before it reads, and says so.
			return readCareful(ctx, p, c, b, i, fd)
		}
		if testHookRead != nil {
			testHookRead(itemPath(b, it))
		}
		var st unix.Stat_t
		if err := fstatLocal(fd, &st); err != nil {
			return &fs.PathError{Op: "fstat", Path: itemPath(b, it), Err: err}
		}
		info := infoOf(&st)
		if info.mode&modeType == modeReg && info.nlink > 0 && int64(n) <= info.size &&
			info.ctime < p.racyBefore && info.mtime < p.racyBefore {
			it.info = info
			it.end = at + n
			if info.size == int64(n) {
				return nil
			}
			return readRest(ctx, p, c, b, i, fd)
		}
	}
	return readCareful(ctx, p, c, b, i, fd)
}

// readCareful reads a file between two stats of it, which must agree,
// into the arena from it.off, or streams it.
func readCareful(ctx context.Context, p *pipeline, c *chunks, b *batch, i int, fd int) error {
	it := &b.items[i]
	var st unix.Stat_t
	if err := fstat(fd, &st); err != nil {
		return &fs.PathError{Op: "fstat", Path: itemPath(b, it), Err: err}
	}
	it.info = infoOf(&st)
	switch {
	case it.info.mode&modeType != modeReg:
		return fileChanged(b, it, "was replaced")
	case it.info.nlink == 0:
		return fileChanged(b, it, "was deleted")
	}
	it.end = it.off
	return readRest(ctx, p, c, b, i, fd)
}

// readRest reads what follows the start of a file that is in the arena
// already (it.off to it.end, perhaps nothing), up to the size of the
// stat in it.info: into the arena after it if the file fits there, or else
// streamed. Then it stats the file again, which must agree.
func readRest(ctx context.Context, p *pipeline, c *chunks, b *batch, i int, fd int) error {
	it := &b.items[i]
	size, have := it.info.size, int64(it.end-it.off)
	if size <= int64(len(b.arena)-it.off) {
		n, err := pread(fd, b.arena[it.end:it.off+int(size)], have)
		if err != nil {
			return &fs.PathError{Op: "read", Path: itemPath(b, it), Err: err}
		}
		if int64(n) < size-have {
			return shrank(b, it, fd)
		}
		it.end = it.off + int(size)
		return checkAfter(b, it, fd)
	}
	// Too large for what is left of the arena: stream the rest.
	it.stream = make(chan chunk, chunksInFlight)
	return stream(ctx, p, c, b, i, fd, have)
}

// stream sends the contents of the file of item i from off to the writer
// in chunks, and closes its stream. It publishes the item (advance) only
// once the first chunk is on the stream, and checks the file unchanged
// before it sends the last, closing the stream right after: so the writer
// never waits for the reader to begin a file or to stat it at the end,
// only, in a file of several chunks, for the next chunk. Most streamed
// files are the ones that did not fit in what was left of their batch's
// arena, and their rest fits in one chunk: on the GOROOT copy, warm on 2
// cores, the writer used to wait there about 300 times a dump. A large
// file not in the page cache is read several chunks at once (coldstream.go).
func stream(ctx context.Context, p *pipeline, c *chunks, b *batch, i int, fd int, off int64) error {
	it := &b.items[i]
	ch, closed := it.stream, false
	defer func() {
		if !closed { // stopped before the last chunk
			close(ch)
		}
	}()
	par := p.parallelStream(fd, it.dir.fs, off, it.info.size)
	if par != nil {
		defer par.stop()
	}
	for first := true; off < it.info.size; first = false {
		want := int(min(it.info.size-off, chunkSize))
		r, err := readChunk(ctx, par, c, fd, want, off)
		if err != nil {
			return err
		}
		if r.err != nil || r.n < want {
			r.home <- r.buf // never waits: home has room for every buffer of its own
			if r.err != nil {
				return &fs.PathError{Op: "read", Path: itemPath(b, it), Err: r.err}
			}
			return shrank(b, it, fd)
		}
		off += int64(r.n)
		last := off == it.info.size
		if last {
			if err := checkAfter(b, it, fd); err != nil {
				r.home <- r.buf
				return err
			}
		}
		idle := len(ch) == 0 // the writer may be waiting for it
		select {
		case ch <- r.chunk:
		case <-ctx.Done():
			r.home <- r.buf
			return context.Cause(ctx)
		}
		if last {
			close(ch)
			closed = true
		}
		switch {
		case first:
			b.advance(i + 1)
		case idle && b.yield:
			// As in advance: the send readied the writer to run next
			// on this processor, where it would wait out the next
			// chunk's read.
			runtime.Gosched()
		}
	}
	return nil
}

// readChunk reads a stream's next chunk, want bytes at off: from par, if
// the file is read several chunks at once, or else into a chunk buffer of
// the reader's. Only a failure of c.get, or par.take, is its error.
func readChunk(ctx context.Context, par *parallelStream, c *chunks, fd, want int, off int64) (chunkRead, error) {
	if par != nil {
		return par.take(ctx)
	}
	buf, home, err := c.get(ctx, want)
	if err != nil {
		return chunkRead{}, err
	}
	n, err := pread(fd, (*buf)[:want], off)
	return chunkRead{chunk{buf, n, home}, err}, nil
}

// checkAfter stats the open file again: any difference from the stat
// taken when it was opened means the file changed while it was read.
func checkAfter(b *batch, it *item, fd int) error {
	if testHookRead != nil {
		testHookRead(itemPath(b, it))
	}
	var st unix.Stat_t
	if err := fstat(fd, &st); err != nil {
		return &fs.PathError{Op: "fstat", Path: itemPath(b, it), Err: err}
	}
	if after := infoOf(&st); fileChangedInfo(it.info, after) || after.nlink == 0 {
		return fileChanged(b, it, "was modified, replaced or deleted")
	}
	return nil
}

// shrank is the error for a file that gave fewer bytes than its size: a
// change, unless it is a kernel pseudo-file, which no retry reads whole
// (nix-hash fails on it too: "unexpected end-of-file").
func shrank(b *batch, it *item, fd int) error {
	if kind := pseudoFS(fd); kind != "" {
		return fmt.Errorf("dump %s: a %s file, whose size (%d bytes) is not its length, cannot be archived", itemPath(b, it), kind, it.info.size)
	}
	return fileChanged(b, it, "shrank")
}

func fileChanged(b *batch, it *item, what string) error {
	return fmt.Errorf("dump %s: %w (it %s)", itemPath(b, it), ErrChanged, what)
}

func itemPath(b *batch, it *item) string {
	name := b.names[it.name.off : it.name.off+it.name.len]
	if it.root {
		return string(name)
	}
	return joinPath(it.dir.path(), name)
}
