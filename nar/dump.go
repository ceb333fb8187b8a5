package nar

import (
	"context"
	"encoding"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
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
	// Checkpoints, if not nil, gets the dump's checkpoints appended (see
	// [Checkpoint]): one at the first entry boundary every
	// Checkpoints.Every bytes of archive. dst must then be a hash whose
	// state can be saved (encoding.BinaryMarshaler), such as SHA-256.
	// Those it held are dropped first; with From, only those at or after
	// From: give the dump a Clone of the Checkpoints From is one of.
	Checkpoints *Checkpoints
	// From, if not nil, resumes the dump at a checkpoint that an
	// earlier dump of the same path into the same kind of hash took:
	// dst's state is restored (it must be an encoding.BinaryUnmarshaler)
	// and only the entries from From.Path on are read. The caller
	// vouches that no entry before From.Path in NAR order changed since
	// that dump read it; a watcher that saw no event for such a path
	// can. The result, Size, Fingerprint and counts included, is then
	// that of a full dump of the tree as it is. Neither Checkpoints nor
	// From can be used with Select.
	From *Checkpoint
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
	// Since is the moment to give Fingerprint.Racy: when the dump
	// began; for a resumed dump in which an entry had changed shortly
	// before the dump that read it began (racy), when the earliest dump
	// that read part of the tree began, for a stat cannot vouch for that
	// entry since then.
	Since time.Time
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
	if !fastPath {
		return portableDump(ctx, dst, path, opt)
	}
	readers := runtime.GOMAXPROCS(0)
	if opt != nil && opt.Readers > 0 {
		readers = opt.Readers
	}
	start := time.Now()
	e := &emitter{dst: dst, fp: newFingerprinter()}
	var from *Checkpoint
	if opt != nil {
		e.progress, from = opt.Progress, opt.From
		if err := e.setup(opt, start); err != nil {
			return DumpResult{}, fmt.Errorf("dump %s: %w", path, err)
		}
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	p := &pipeline{
		racyBefore: start.Add(-racyMargin).UnixNano(),
		order:      make(chan *batch, batchesInFlight),
		work:       make(chan *batch, batchesInFlight),
		free:       make(chan *batch, batchesInFlight),
	}
	w := &walker{ctx: ctx, root: path, p: p, from: from}
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
	since := start
	switch {
	case e.cp != nil && e.cp.racy:
		since = time.Unix(0, e.cp.since)
	case e.cp == nil && from != nil:
		since = time.Unix(0, min(start.UnixNano(), from.since))
	}
	return DumpResult{Size: e.off, Fingerprint: e.fp.sum(), DumpStats: e.count, Since: since}, nil
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
	cp       *checkpointer                  // nil: no checkpoints taken
}

// setup prepares the emitter for opt's checkpoints and resume point.
func (e *emitter) setup(opt *DumpOptions, start time.Time) error {
	if opt.Select != nil && (opt.Checkpoints != nil || opt.From != nil) {
		return errors.New("nar: a dump with a Selection takes no checkpoints and cannot resume")
	}
	if c := opt.Checkpoints; c != nil {
		m, ok := e.dst.(encoding.BinaryMarshaler)
		if !ok {
			return errors.New("nar: checkpoints need a destination whose state can be saved (encoding.BinaryMarshaler), such as a SHA-256 hash")
		}
		e.cp = &checkpointer{to: c, next: c.every(), state: m,
			racyFrom: start.Add(-racyMargin).UnixNano(), since: start.UnixNano()}
		if opt.From != nil {
			c.resumeFrom(opt.From)
		} else {
			c.list = nil
		}
	}
	if opt.From != nil {
		if err := checkResumable(opt.From); err != nil {
			return err
		}
		return e.resume(opt.From)
	}
	return nil
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
	afterStream := false   // the previous item was a streamed file
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
		if e.cp != nil && it.op != opEndDir && !it.root && !afterStream && e.off+int64(ready-written) >= e.cp.next && ctx.Err() == nil {
			// A checkpoint is due: the hash must have taken everything
			// before this item. (After a streamed file, the framing
			// that closes it is counted with this item: not here.)
			if err := e.write(b.arena[written:ready]); err != nil {
				return waited, err
			}
			written = ready
			if err := e.checkpoint(b.names[it.name.off:it.name.off+it.name.len], !it.closePrev); err != nil {
				return waited, err
			}
		}
		e.account(b, it)
		ready = it.end
		afterStream = it.stream != nil
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
		if e.cp != nil {
			e.cp.leave()
		}
		return
	}
	var name []byte
	if !it.root {
		name = b.names[it.name.off : it.name.off+it.name.len]
	}
	e.fp.add(name, &it.info)
	if c := e.cp; c != nil {
		if max(it.info.mtime, it.info.ctime) >= c.racyFrom {
			c.racy = true
		}
		if it.op == opDir {
			c.enter(name, it.root)
		}
	}
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

// statError names path in a stat walk's error, unless the error names it
// already: the walk's errors name the entry they concern, under path, and
// "stat x: lstat x: …" would say it twice.
func statError(path string, err error) error {
	if strings.Contains(err.Error(), path) {
		return err
	}
	return fmt.Errorf("stat %s: %w", path, err)
}

// StatSelection is [StatTree] of the entries sel selects (all if sel is
// nil): it matches the Fingerprint of a Dump with the same Selection.
func StatSelection(ctx context.Context, path string, sel *Selection) (Fingerprint, DumpStats, error) {
	if !fastPath {
		return portableStat(ctx, path, sel)
	}
	w := &walker{ctx: ctx, root: path, sel: sel, fp: newFingerprinter()}
	if err := w.run(); err != nil {
		return Fingerprint{}, DumpStats{}, statError(path, err)
	}
	return w.fp.sum(), w.count, nil
}
