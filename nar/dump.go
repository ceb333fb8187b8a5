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
	// ColdProcs, if positive, lets a dump whose reads block (its files
	// not in the page cache) raise runtime.GOMAXPROCS to at least
	// ColdProcs until it ends, so that its many reads in flight wait less
	// for a processor (see procs.go; the narhash commands use
	// DefaultColdProcs). GOMAXPROCS is the whole process's: when the last
	// such dump ends, it goes back to what it was or, if the GOMAXPROCS
	// environment variable is not set, to the runtime's default. A
	// program that sets GOMAXPROCS itself should leave ColdProcs 0.
	ColdProcs int
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
// bounded set of buffers, which the writer takes in order through a
// Writer (see pipeline.go); all of them have exited when Dump returns. A file is stat'ed after it is
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
	activeDumps.Add(1)
	defer activeDumps.Add(-1)
	fds := dumpFDs()
	readers := runtime.GOMAXPROCS(0)
	if opt != nil && opt.Readers > 0 {
		readers = opt.Readers
	}
	readers = min(readers, fds.readers)
	start := time.Now()
	e := &emitter{dst: dst, w: NewWriter(dst), fp: newFingerprinter()}
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
		order:      make(chan *batch, coldBatches),
		work:       make(chan *batch, coldBatches),
		free:       make(chan *batch, coldBatches),
		limit:      min(batchesInFlight, fds.batches),
		pinned:     fds.pinned,
		parallel:   make(chan struct{}, 1),
	}
	e.release = min(releaseBatches, p.limit-1)
	k := &packer{ctx: ctx, p: p, readers: readers, fds: fds}
	if opt != nil {
		k.coldProcs = opt.ColdProcs
	}
	w := &walker{ctx: ctx, root: path, from: from, sink: k}
	w.fds.window = fds.window
	k.walk = w
	if opt != nil {
		w.sel = opt.Select
	}

	var wg sync.WaitGroup
	p.wg = &wg
	wg.Go(func() {
		if err := w.run(); err != nil {
			select {
			case p.order <- failedBatch(err):
			case <-ctx.Done(): // the dump fails already
			}
		}
		k.close()
	})
	for range readers {
		p.startReader(ctx, readerSmall)
	}

	err := e.run(ctx, p)
	if err == nil && ctx.Err() == nil {
		// The walk ends every directory it begins: an incomplete archive
		// is a bug. Close also writes out what the Writer holds, the
		// dump's last write. (A stopped walk ends none: see below.)
		err = e.w.Close()
	}
	if err == nil {
		// A dump cancelled after its last check of ctx, even during that
		// last write, still fails: the caller asked for no result.
		err = context.Cause(ctx)
	}
	cancel(err)         // stops every stage (see pipeline.go)
	for range p.order { // unblock a walker still sending
	}
	wg.Wait()
	p.drainAhead()
	if p.restoreProcs != nil {
		p.restoreProcs()
	}
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
	return DumpResult{Size: e.w.Offset(), Fingerprint: e.fp.sum(), DumpStats: e.count, Since: since}, nil
}
