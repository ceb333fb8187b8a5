package nar

import (
	"context"
	"fmt"
	"io/fs"
	"sync"

	"golang.org/x/sys/unix"
)

// Sizes of the dump pipeline. Memory in use stays under
// batchesInFlight*arenaSize + readers*(chunksInFlight+2)*chunkSize
// whatever the tree (about 16 MiB with two readers).
const (
	arenaSize       = 1 << 20   // contents of the small files of one batch
	batchItems      = 512       // nodes in one batch
	batchesInFlight = 8         // batches between the walker and the writer
	bigFileSize     = 256 << 10 // larger files are streamed in chunks
	chunkSize       = 256 << 10
	chunksInFlight  = 4 // chunks of one big file read ahead of the writer
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
	op     itemOp
	root   bool // the archive's root node: no entry name is written
	exec   bool
	name   span // in batch.names, NUL-terminated there
	target span // symlinks: in batch.names
	size   int64
	data   int      // small files: offset of the contents in batch.arena
	info   fileInfo // files: the walker's lstat, checked after reading
	dir    *dirRef  // files: the directory to open the file in
}

// A batch is a run of consecutive items. The walker fills in the items, a
// reader the contents of their files, and the writer emits them in order.
type batch struct {
	items []item
	names []byte
	arena []byte
	files int // small files to read into arena
	// big, for a batch that is a single large file, carries its contents
	// chunk by chunk from the reader to the writer.
	big   chan chunk
	ready chan struct{} // closed when the readers are done with the batch
	err   error         // set before ready is closed
}

type chunk struct {
	buf *[]byte
	n   int
	err error
}

func newBatch(arena int) *batch {
	return &batch{arena: make([]byte, 0, arena), ready: make(chan struct{})}
}

func (b *batch) reset() {
	b.items, b.names, b.arena = b.items[:0], b.names[:0], b.arena[:0]
	b.files, b.big, b.err = 0, nil, nil
	b.ready = make(chan struct{})
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
}

// testHookRead, when set, runs after a file's contents are read and
// before the file is stat'ed again: tests change files there.
var testHookRead func(path string)

var chunkPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

// fill reads the contents of a batch's files. It always closes b.ready.
func fill(ctx context.Context, b *batch) {
	if b.big != nil {
		fillBig(ctx, b)
		return
	}
	defer close(b.ready)
	for i := range b.items {
		it := &b.items[i]
		if it.op != opFile {
			continue
		}
		if b.err != nil || ctx.Err() != nil {
			it.dir.release()
			continue
		}
		b.err = readSmall(b, it)
	}
}

// readSmall reads a whole file into the batch's arena.
func readSmall(b *batch, it *item) error {
	fd, err := openFile(b, it)
	if err != nil {
		return err
	}
	defer closeFD(fd)
	dst := b.arena[it.data : it.data+int(it.size)]
	n, err := readFull(fd, dst)
	if err != nil {
		return &fs.PathError{Op: "read", Path: itemPath(b, it), Err: err}
	}
	if n < len(dst) {
		return fileChanged(b, it, "shrank")
	}
	if testHookRead != nil {
		testHookRead(itemPath(b, it))
	}
	return checkAfter(b, it, fd)
}

// fillBig streams a large file to the writer in chunks.
func fillBig(ctx context.Context, b *batch) {
	defer close(b.big)
	close(b.ready)
	it := &b.items[0]
	send := func(c chunk) bool {
		select {
		case b.big <- c:
			return true
		case <-ctx.Done():
			if c.buf != nil {
				chunkPool.Put(c.buf)
			}
			return false
		}
	}
	if ctx.Err() != nil {
		it.dir.release()
		return
	}
	fd, err := openFile(b, it)
	if err != nil {
		send(chunk{err: err})
		return
	}
	defer closeFD(fd)
	for left := it.size; left > 0; {
		buf := chunkPool.Get().(*[]byte)
		want := int(min(left, chunkSize))
		n, err := readFull(fd, (*buf)[:want])
		if err != nil {
			chunkPool.Put(buf)
			send(chunk{err: &fs.PathError{Op: "read", Path: itemPath(b, it), Err: err}})
			return
		}
		if n < want {
			chunkPool.Put(buf)
			send(chunk{err: fileChanged(b, it, "shrank")})
			return
		}
		if !send(chunk{buf: buf, n: n}) {
			return
		}
		left -= int64(n)
	}
	if testHookRead != nil {
		testHookRead(itemPath(b, it))
	}
	if err := checkAfter(b, it, fd); err != nil {
		send(chunk{err: err})
	}
}

// openFile opens an item's file and releases its directory.
func openFile(b *batch, it *item) (int, error) {
	name := b.names[it.name.off : it.name.off+it.name.len+1]
	fd, err := openat(it.dir.fd, &name[0], openFileFlags)
	it.dir.release() // it.dir.path stays valid for messages
	if err != nil {
		switch err {
		case unix.ENOENT, unix.ELOOP:
			return -1, fileChanged(b, it, "was replaced or deleted")
		}
		return -1, &fs.PathError{Op: "open", Path: itemPath(b, it), Err: err}
	}
	return fd, nil
}

// checkAfter compares the open file's stat with the walker's lstat: any
// difference means the file changed while it was read.
func checkAfter(b *batch, it *item, fd int) error {
	var st unix.Stat_t
	if err := fstat(fd, &st); err != nil {
		return &fs.PathError{Op: "fstat", Path: itemPath(b, it), Err: err}
	}
	if fileChangedInfo(it.info, infoOf(&st)) {
		return fileChanged(b, it, "was modified")
	}
	return nil
}

// fileChangedInfo reports whether two stats of a file differ in anything
// that a write, a truncation or a replacement changes.
func fileChangedInfo(before, after fileInfo) bool {
	return before.size != after.size || before.mtime != after.mtime ||
		before.ctime != after.ctime || before.ino != after.ino ||
		before.mode != after.mode
}

func fileChanged(b *batch, it *item, what string) error {
	return fmt.Errorf("dump %s: %w (it %s)", itemPath(b, it), ErrChanged, what)
}

func itemPath(b *batch, it *item) string {
	name := b.names[it.name.off : it.name.off+it.name.len]
	if it.root {
		return string(name)
	}
	return joinPath(it.dir.path, name)
}
