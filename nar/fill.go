package nar

import (
	"context"
	"fmt"
	"io/fs"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Sizes of the dump pipeline. Memory in use stays under
// batchesInFlight*arenaSize + streams*(chunksInFlight+2)*chunkSize, where
// at most one stream per reader is open: about 48 MiB with two readers,
// whatever the tree.
const (
	arenaSize       = 1 << 20 // one batch's framed archive bytes, small files' contents included
	batchItems      = 512     // nodes in one batch at most
	batchesInFlight = 8       // batches between the walker and the writer
	chunkSize       = 4 << 20 // a streamed file travels in chunks this big
	smallChunkSize  = 256 << 10
	chunksInFlight  = 3  // chunks of one file read ahead of the writer
	firstBatchFiles = 32 // files in a batch before any file size is known
	// earlyAdvance is how many bytes of contents a reader publishes at
	// a time, rather than the whole batch at once, while the writer waits
	// for it: a wake per file would cost more than it saves on tiny files.
	earlyAdvance = 64 << 10
)

type itemOp uint8

const (
	opFile itemOp = iota
	opSymlink
	opDir    // begins a directory
	opEndDir // ends the innermost directory
)

type span struct{ off, len uint32 }

// item is one step of the archive, in NAR order.
type item struct {
	op   itemOp
	root bool // the archive's root node: no entry name is written
	// closePrev: the previous entry of the same directory must be closed
	// first (for opEndDir: the directory has entries to close).
	closePrev bool
	name      span     // in batch.names, NUL-terminated there
	target    span     // symlinks: in batch.names
	info      fileInfo // lstat (symlinks), fstat (directories, and files once opened)
	dir       *dirRef  // files: the directory to open the file in
	// end is where the item's bytes end in the arena once it is ready;
	// for a streamed file, where its header ends and its chunks go.
	end int
	// stream carries the contents of a file too large for the arena,
	// chunk by chunk, from its reader to the writer.
	stream chan chunk
}

// A batch is a run of consecutive items. The walker fills in the items,
// a reader opens and reads their files, and the writer emits them in
// order, following the reader's progress.
type batch struct {
	items []item
	names []byte
	arena []byte // fixed length; the reader frames the archive into it
	files int    // files for a reader to read
	// frames is the sum of the items' frameMax: the arena room the
	// framing may take, whatever the contents take.
	frames int
	end    int // the arena's framed length, once done reaches len(items)
	// done counts the items ready for the writer: a file is ready once it
	// is framed into the arena, or once its stream is set up. It goes one
	// past len(items) when the batch is complete (end is set) or failed
	// (err is set). The reader stores it after the item (release), the
	// writer loads it (acquire).
	done atomic.Int32
	wake chan struct{} // a reader's nudge after done grows (capacity 1)
	// waiting is set while the writer waits for this batch: its reader
	// then publishes progress sooner and yields to it (see advance).
	waiting atomic.Bool
	err     error // set before done passes len(items)
}

type chunk struct {
	buf *[]byte
	n   int
	err error
}

func newBatch(arena int) *batch {
	return &batch{arena: make([]byte, arena), wake: make(chan struct{}, 1)}
}

func (b *batch) reset() {
	b.items, b.names = b.items[:0], b.names[:0]
	b.files, b.frames, b.end, b.err = 0, 0, 0, nil
	b.done.Store(0)
	b.waiting.Store(false)
	select {
	case <-b.wake:
	default:
	}
}

// advance publishes that the first n items are ready. If the writer is
// waiting for them, the reader yields its processor: the runtime queues the
// goroutine a channel send wakes to run next on the sender's processor,
// and the writer, whose hash is what limits a dump, should not wait there
// until this reader blocks.
func (b *batch) advance(n int) {
	b.done.Store(int32(n))
	select {
	case b.wake <- struct{}{}:
	default:
	}
	if b.waiting.Load() {
		runtime.Gosched()
	}
}

// fail records err and releases the writer: everything after the failed
// item is abandoned.
func (b *batch) fail(err error) {
	b.err = err
	b.advance(len(b.items) + 1)
}

// finish publishes that the batch is complete, framed up to end.
func (b *batch) finish(end int) {
	b.end = end
	b.advance(len(b.items) + 1)
}

// releaseFiles drops the directory references of the files of a batch
// that no reader will see.
func (b *batch) releaseFiles() {
	for i := range b.items {
		if it := &b.items[i]; it.op == opFile {
			it.dir.release()
		}
	}
}

// pipeline connects the walker, the readers and the writer of one dump.
type pipeline struct {
	order chan *batch // walker -> writer, in NAR order
	work  chan *batch // walker -> readers
	free  chan *batch // writer -> walker, batches to reuse
	made  int         // batches taken from batchPool so far (walker only)
	// files and bytes read so far, for the walker to size batches.
	files, bytes atomic.Int64
	// racyBefore is the dump's start less racyMargin, in nanoseconds
	// since the epoch: files changed before it can be read the fast way.
	racyBefore int64
}

// freeBatch returns an empty batch for the walker to fill: a written one,
// or a new one while fewer than batchesInFlight exist (a small tree needs
// few), or else the next written one when it comes back. It returns a
// batch with no arena if ctx is done first, to be thrown away.
func (p *pipeline) freeBatch(ctx context.Context) *batch {
	var b *batch
	select {
	case b = <-p.free:
	default:
		if p.made < batchesInFlight {
			p.made++
			b = batchPool.Get().(*batch)
			break
		}
		select {
		case b = <-p.free:
		case <-ctx.Done():
			return newBatch(0)
		}
	}
	b.reset()
	return b
}

// testHookRead, when set, runs after a file's contents are read and
// before the file is stat'ed again: tests change files there.
var testHookRead func(path string)

// Chunk buffers: small ones for files that merely overflowed their
// batch's arena, large ones for large files.
var (
	chunkPool      = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}
	smallChunkPool = sync.Pool{New: func() any { b := make([]byte, smallChunkSize); return &b }}
)

func getChunk(fileSize int64) *[]byte {
	if fileSize <= smallChunkSize {
		return smallChunkPool.Get().(*[]byte)
	}
	return chunkPool.Get().(*[]byte)
}

func putChunk(b *[]byte) {
	if len(*b) == smallChunkSize {
		smallChunkPool.Put(b)
	} else {
		chunkPool.Put(b)
	}
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
	data := hdr + len(tokReg) + 8
	room := limit - (len(tokExe) - len(tokReg)) - 7 - len(tokPar) - data
	if it.dir.localClock && room > 0 {
		n, err := readOnce(fd, b.arena[data:data+room])
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
				to := data + len(tokExe) - len(tokReg)
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
	defer close(it.stream)
	if err := stream(ctx, b, it, fd); err != nil {
		select {
		case it.stream <- chunk{err: err}:
		case <-ctx.Done():
		}
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
