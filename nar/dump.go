package nar

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// ErrChanged means that the tree changed while it was being dumped: a
// file's size, mtime, ctime or inode differed after reading it from before,
// or a directory gained or lost entries. The partial archive must not be
// trusted; dumping again usually succeeds.
var ErrChanged = errors.New("changed while it was read")

// ErrUnsupportedType is matched by the error for a socket, FIFO or device
// in a tree: a NAR cannot hold them (Nix fails the same way).
var ErrUnsupportedType = errors.New("unsupported file type")

// DumpOptions tune [Dump]. The zero value is ready to use.
type DumpOptions struct {
	// Readers is the number of goroutines reading files ahead of the
	// writer; 0 means runtime.GOMAXPROCS(0).
	Readers int
	// Progress, if not nil, is added to as the archive is written, once
	// per batch, for a progress display; several dumps may share one.
	Progress *Progress
	// Select, if not nil, restricts the dump of a directory to the
	// entries it selects (see [Selection]), as Nix restricts the copy
	// of a git worktree to its tracked files.
	Select *Selection
}

// Progress counts a dump's progress. Read it from any goroutine.
type Progress struct {
	Entries atomic.Int64 // files, directories and symlinks written
	Bytes   atomic.Int64 // bytes of archive written
}

// DumpStats counts what a dump visited.
type DumpStats struct {
	Files, Dirs, Symlinks int64
	Bytes                 int64 // total size of the regular files
}

// A DumpResult describes a completed dump.
type DumpResult struct {
	Size        int64 // bytes of NAR written
	Fingerprint Fingerprint
	DumpStats
}

// Dump writes the NAR serialisation of the file, directory or symlink at
// path to dst, byte for byte what `nix-store --dump` writes on Linux: the
// root is lstat'ed (a symlink is stored, not followed), a file is
// executable when its owner-execute bit is set, directory entries are
// sorted by byte order and names are raw bytes. Sockets, FIFOs and devices
// fail with ErrUnsupportedType.
//
// Files are read ahead of the writer by opt.Readers goroutines into a
// bounded set of buffers, where they also lay out the archive's bytes, so
// that a dump into a hash keeps the hash busy with few, large writes; all
// of them have exited when Dump returns. A file is stat'ed after it is
// read, and also before unless its timestamps prove it unchanged since
// well before the dump began (see readFile); directories are stat'ed
// before listing and after their subtree. If anything changed, Dump fails
// with ErrChanged rather than produce a torn archive. Cancelling ctx stops
// the dump.
//
// Dump returns with the archive's size a Fingerprint of the lstat data of
// every entry, which [StatTree] recomputes without reading contents.
func Dump(ctx context.Context, dst io.Writer, path string, opt *DumpOptions) (DumpResult, error) {
	readers := runtime.GOMAXPROCS(0)
	if opt != nil && opt.Readers > 0 {
		readers = opt.Readers
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	p := &pipeline{
		racyBefore: time.Now().Add(-racyMargin).UnixNano(),
		order:      make(chan *batch, batchesInFlight),
		work:       make(chan *batch, batchesInFlight),
		free:       make(chan *batch, batchesInFlight),
	}
	w := &walker{ctx: ctx, root: path, p: p}
	if opt != nil {
		w.sel = opt.Select
	}

	var wg sync.WaitGroup
	var walkErr error
	wg.Go(func() {
		walkErr = w.run()
		if walkErr != nil {
			// Tell the writer in archive order: everything before the
			// failure is still emitted, then this error.
			b := newBatch(0)
			b.fail(walkErr)
			select {
			case p.order <- b:
			case <-ctx.Done():
			}
		}
		close(p.order)
		close(p.work)
	})
	for range readers {
		wg.Go(func() {
			for b := range p.work {
				fill(ctx, p, b)
			}
		})
	}

	e := &emitter{dst: dst, fp: newFingerprinter()}
	if opt != nil {
		e.progress = opt.Progress
	}
	err := e.run(ctx, p)
	if err == nil && walkErr != nil {
		// The walker failed without getting its error into the order
		// (the context was done); the close of p.order that ended run
		// makes walkErr safe to read here.
		err = walkErr
	}
	if err == nil {
		// A dump cancelled after its last check of ctx still fails: the
		// caller asked for no result.
		err = context.Cause(ctx)
	}
	if err == nil && (e.depth != 0 || e.fp.entries == 0) {
		// The walk ends every directory it begins; a Writer's Close
		// would check the same.
		err = fmt.Errorf("dump %s: internal error: the archive is incomplete", path)
	}
	cancel(err)
	for range p.order { // unblock a walker still sending
	}
	wg.Wait()
	for _, b := range e.held {
		batchPool.Put(b)
	}
	for len(p.free) > 0 { // the rest are left to the collector
		batchPool.Put(<-p.free)
	}
	if err != nil {
		return DumpResult{}, err
	}
	return DumpResult{Size: e.off, Fingerprint: e.fp.sum(), DumpStats: e.count}, nil
}

// batchPool keeps batches, with their arenas, from one dump to the next.
var batchPool = sync.Pool{New: func() any { return newBatch(arenaSize) }}

// emitter writes the batches' framed bytes to the archive in order, as the
// readers make their items ready, and sums up the fingerprint.
type emitter struct {
	dst      io.Writer
	off      int64 // bytes written
	depth    int   // directories begun and not ended
	fp       *fingerprinter
	count    DumpStats
	progress *Progress
	shown    struct{ Entries, Bytes int64 } // already added to progress
	held     []*batch                       // written, not yet given back
}

// releaseBatches is how many written batches the writer gathers before it
// gives them back to the walker, as long as the readers keep ahead of it.
// While the hash is what limits the dump, the walker and the readers then
// wake once to refill several batches instead of once for each, and the
// context switches saved are CPU time the hash does not have to share (on
// 2 cores, 2% of a source tree's time). When the writer had to wait for a
// reader, it gives back at once.
const releaseBatches = 4

func (e *emitter) run(ctx context.Context, p *pipeline) error {
	for b := range p.order {
		waited, err := e.batch(ctx, b)
		if err != nil {
			return err
		}
		if e.progress != nil {
			e.progress.Entries.Add(e.fp.entries - e.shown.Entries)
			e.progress.Bytes.Add(e.off - e.shown.Bytes)
			e.shown.Entries, e.shown.Bytes = e.fp.entries, e.off
		}
		if len(b.arena) != arenaSize { // the walker's error batch
			continue
		}
		e.held = append(e.held, b)
		if waited || len(e.held) == releaseBatches {
			for _, h := range e.held {
				p.free <- h
			}
			e.held = e.held[:0]
		}
	}
	return nil
}

// batch writes the bytes of b as its items become ready, in runs as long
// as the readers allow, and reports whether it had to wait for them.
func (e *emitter) batch(ctx context.Context, b *batch) (waited bool, err error) {
	done := 0
	written, ready := 0, 0 // arena bytes written, and framed by the items so far
	// wait waits until more than n items are ready, or the whole batch
	// (n == len(b.items)), writing what is ready in the meantime.
	wait := func(n int) error {
		for done <= n {
			if done = int(b.done.Load()); done > n {
				break
			}
			if err := e.write(b.arena[written:ready]); err != nil {
				return err
			}
			written = ready
			waited = true
			// A reader that advanced since the load above has left a
			// token in b.wake, so the select below cannot miss it.
			b.waiting.Store(true)
			select {
			case <-b.wake:
			case <-ctx.Done():
				b.waiting.Store(false)
				return context.Cause(ctx)
			}
			b.waiting.Store(false)
		}
		if done > len(b.items) && b.err != nil { // err is final once done is
			return b.err
		}
		return nil
	}
	for i := range b.items {
		if err := wait(i); err != nil {
			return waited, err
		}
		it := &b.items[i]
		e.account(b, it)
		ready = it.end
		if it.stream != nil {
			if err := e.write(b.arena[written:ready]); err != nil {
				return waited, err
			}
			written = ready
			if err := e.stream(ctx, it); err != nil {
				return waited, err
			}
		}
	}
	if err := wait(len(b.items)); err != nil { // for b.end
		return waited, err
	}
	return waited, e.write(b.arena[written:b.end])
}

// account adds an item to the fingerprint and the counts.
func (e *emitter) account(b *batch, it *item) {
	if it.op == opEndDir {
		e.fp.endDir()
		e.depth--
		return
	}
	var name []byte
	if !it.root {
		name = b.names[it.name.off : it.name.off+it.name.len]
	}
	e.fp.add(name, &it.info)
	switch it.op {
	case opFile:
		e.count.Files++
		e.count.Bytes += it.info.size
	case opSymlink:
		e.count.Symlinks++
	case opDir:
		e.count.Dirs++
		e.depth++
	}
}

func (e *emitter) write(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	n, err := e.dst.Write(p)
	e.off += int64(n)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	return err
}

// stream writes a streamed file's chunks as they arrive.
func (e *emitter) stream(ctx context.Context, it *item) error {
	for {
		var c chunk
		var ok bool
		select {
		case c, ok = <-it.stream:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		if !ok {
			return nil
		}
		if c.err != nil {
			return c.err
		}
		err := e.write((*c.buf)[:c.n])
		putChunk(c.buf)
		if err != nil {
			return err
		}
	}
}

// StatTree walks the tree at path as [Dump] does, lstat'ing every entry
// but reading no contents, and returns its Fingerprint and counts. It
// matches the Fingerprint of a Dump of the same unchanged tree.
func StatTree(ctx context.Context, path string) (Fingerprint, DumpStats, error) {
	return StatSelection(ctx, path, nil)
}

// StatSelection is [StatTree] of the entries sel selects (all if sel is
// nil): it matches the Fingerprint of a Dump with the same Selection.
func StatSelection(ctx context.Context, path string, sel *Selection) (Fingerprint, DumpStats, error) {
	w := &walker{ctx: ctx, root: path, sel: sel, fp: newFingerprinter()}
	if err := w.run(); err != nil {
		return Fingerprint{}, DumpStats{}, fmt.Errorf("stat %s: %w", path, err)
	}
	return w.fp.sum(), w.count, nil
}
