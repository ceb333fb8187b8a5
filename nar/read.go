package nar

import (
	"context"
	"fmt"
	"io/fs"
	"time"

	"golang.org/x/sys/unix"
)

// testHookRead, when set, runs after a file's contents are read and
// before the file is stat'ed again: tests change files there.
var testHookRead func(path string)

// startReader starts a reader: it fills the batches of p.work until the
// walk is done.
func (p *pipeline) startReader(ctx context.Context) {
	p.wg.Go(func() {
		for b := range p.work {
			fill(ctx, p, b)
		}
	})
}

// fill frames a batch into its arena, opening and reading its files in
// order, and publishes its progress as it goes.
func fill(ctx context.Context, p *pipeline, b *batch) {
	var files, bytes int64
	f := framer{a: b.arena} // only this reader touches the arena
	left, shown := b.frames, 0
	for i := range b.items {
		it := &b.items[i]
		// left keeps the room the framing of the items after this one
		// may take.
		left -= frameMax(it, int(it.name.len), int(it.target.len))
		if it.op != opFile {
			b.frameNode(&f, it)
			it.end = f.n
			continue
		}
		if b.err != nil || ctx.Err() != nil {
			it.dir.release()
			continue
		}
		size, err := readFile(ctx, p, b, i, &f, len(b.arena)-left)
		if err != nil {
			b.fail(err)
			continue
		}
		if it.stream == nil {
			it.end = f.n
		}
		files++
		bytes += size
		if f.n-shown >= earlyAdvance && b.waiting.Load() {
			b.advance(i + 1)
			shown = f.n
		}
	}
	p.files.Add(files)
	p.bytes.Add(bytes)
	switch {
	case b.err != nil:
	case ctx.Err() != nil:
		// Files were skipped, their bytes never framed: the writer must
		// not take the batch as complete.
		b.fail(context.Cause(ctx))
	default:
		b.finish(f.n)
	}
}

// racyMargin is how much older than a moment a file's ctime and mtime
// must be for a stat to prove the file unchanged since: more than a coarse
// kernel clock's lag and a 1-second timestamp's rounding. The dump's fast
// path and Fingerprint.Racy both use it. Tests shorten it.
var racyMargin = 2 * time.Second

// readFile opens the file of item i and frames it into the arena, where
// it must end by limit, or else frames its header and streams its
// contents to the writer.
//
// The fast path reads first and stats once, after: if the file's ctime
// and mtime are older than the dump's start (less racyMargin), nothing
// wrote, truncated or chmod'ed it since, for every such change sets ctime
// to the current time; so the bytes read are the file's, whole. That
// holds only where ctime comes from this machine's clock (localClock).
// A file changed recently ("racy", as git says), on another filesystem,
// or too large for the arena takes the careful path: stat, read, stat
// again, and compare.
func readFile(ctx context.Context, p *pipeline, b *batch, i int, f *framer, limit int) (int64, error) {
	it := &b.items[i]
	name := b.names[it.name.off : it.name.off+it.name.len+1]
	fd, err := openat(it.dir.fd, &name[0], openFileFlags|oNoatime)
	if err == unix.EPERM { // O_NOATIME is for the file's owner only
		fd, err = openat(it.dir.fd, &name[0], openFileFlags)
	}
	it.dir.release() // it.dir's other fields stay valid
	if err != nil {
		switch err {
		case unix.ENOENT, unix.ELOOP:
			return 0, fileChanged(b, it, "was replaced or deleted")
		}
		return 0, &fs.PathError{Op: "open", Path: itemPath(b, it), Err: err}
	}
	defer closeFD(fd)
	b.prefix(f, it)
	hdr := f.n
	// Contents go where a plain file's do; an executable file's header is
	// longer, and they move up. Either way they end with room left for
	// the padding and closing parenthesis before limit.
	data := hdr + fileHeaderLen(false)
	room := limit - (fileHeaderLen(true) - fileHeaderLen(false)) - 7 - len(tokPar) - data
	if it.dir.fs.localClock && room > 0 {
		n, err := p.readFast(fd, it.dir.fs, b.arena[data:data+room])
		if err != nil {
			return 0, &fs.PathError{Op: "read", Path: itemPath(b, it), Err: err}
		}
		if testHookRead != nil {
			testHookRead(itemPath(b, it))
		}
		var st unix.Stat_t
		if err := fstat(fd, &st); err != nil {
			return 0, &fs.PathError{Op: "fstat", Path: itemPath(b, it), Err: err}
		}
		info := infoOf(&st)
		if info.mode&modeType == modeReg && info.size == int64(n) && n < room && info.nlink > 0 &&
			info.ctime < p.racyBefore && info.mtime < p.racyBefore {
			it.info = info
			exec := info.mode&modeExec != 0
			if exec { // make room for the longer header, which would overwrite them
				to := hdr + fileHeaderLen(true)
				copy(b.arena[to:to+n], b.arena[data:data+n])
			}
			f.fileHeader(exec, info.size)
			f.n += n
			f.fileTrailer(info.size)
			return info.size, nil
		}
	}
	return readCareful(ctx, b, i, f, limit, fd)
}

// readCareful reads a file between two stats of it, which must agree. f
// is at the start of the file's header.
func readCareful(ctx context.Context, b *batch, i int, f *framer, limit int, fd int) (int64, error) {
	it := &b.items[i]
	var st unix.Stat_t
	if err := fstat(fd, &st); err != nil {
		return 0, &fs.PathError{Op: "fstat", Path: itemPath(b, it), Err: err}
	}
	it.info = infoOf(&st)
	switch {
	case it.info.mode&modeType != modeReg:
		return 0, fileChanged(b, it, "was replaced")
	case it.info.nlink == 0:
		return 0, fileChanged(b, it, "was deleted")
	}
	size := it.info.size
	f.fileHeader(it.info.mode&modeExec != 0, size)
	if size <= int64(limit-7-len(tokPar)-f.n) {
		n, err := pread(fd, b.arena[f.n:f.n+int(size)], 0)
		if err != nil {
			return 0, &fs.PathError{Op: "read", Path: itemPath(b, it), Err: err}
		}
		if int64(n) < size {
			return 0, fileChanged(b, it, "shrank")
		}
		f.n += n
		f.fileTrailer(size)
		return size, checkAfter(b, it, fd)
	}
	// Too large for what is left of the arena: stream it. The writer
	// may take the item as soon as its stream exists; the framing after
	// the contents goes into the arena, for the writer to take with
	// whatever follows.
	it.end = f.n
	it.stream = make(chan chunk, chunksInFlight)
	b.advance(i + 1)
	err := stream(ctx, b, it, fd)
	close(it.stream)
	if err != nil {
		return 0, err
	}
	f.fileTrailer(size)
	return size, nil
}

// stream sends a file's contents to the writer in chunks.
func stream(ctx context.Context, b *batch, it *item, fd int) error {
	for off := int64(0); off < it.info.size; {
		buf := getChunk(it.info.size)
		want := int(min(it.info.size-off, int64(len(*buf))))
		n, err := pread(fd, (*buf)[:want], off)
		if err != nil {
			putChunk(buf)
			return &fs.PathError{Op: "read", Path: itemPath(b, it), Err: err}
		}
		if n < want {
			putChunk(buf)
			return fileChanged(b, it, "shrank")
		}
		select {
		case it.stream <- chunk{buf: buf, n: n}:
		case <-ctx.Done():
			putChunk(buf)
			return context.Cause(ctx)
		}
		off += int64(n)
	}
	return checkAfter(b, it, fd)
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
