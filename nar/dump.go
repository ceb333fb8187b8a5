package nar

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
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
// bounded set of buffers, so that a dump into a hash keeps the hash busy;
// all of them have exited when Dump returns. Every file is stat'ed before
// and after it is read: if anything changed, Dump fails with ErrChanged
// rather than produce a torn archive. Cancelling ctx stops the dump.
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
		order: make(chan *batch, batchesInFlight),
		work:  make(chan *batch, batchesInFlight),
		free:  make(chan *batch, batchesInFlight),
	}
	for range batchesInFlight {
		p.free <- newBatch(arenaSize)
	}
	w := &walker{ctx: ctx, root: path, p: p, fp: newFingerprinter()}

	var wg sync.WaitGroup
	var walkErr error
	wg.Go(func() {
		walkErr = w.run()
		if walkErr != nil {
			// Tell the writer in archive order: everything before the
			// failure is still emitted, then this error.
			b := newBatch(0)
			b.err = walkErr
			close(b.ready)
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
				fill(ctx, b)
			}
		})
	}

	nw := NewWriter(dst)
	err := emit(ctx, nw, p)
	if err == nil && walkErr != nil {
		// The walker failed without getting its error into the order
		// (the context was done); the close of p.order that ended emit
		// makes walkErr safe to read here.
		err = walkErr
	}
	if err == nil {
		err = nw.Close()
	}
	cancel(err)
	for range p.order { // unblock a walker still sending
	}
	wg.Wait()
	if err != nil {
		return DumpResult{}, err
	}
	return DumpResult{Size: nw.Offset(), Fingerprint: w.fp.sum(), DumpStats: w.count}, nil
}

// emit writes the batches to the archive in order, as their contents
// arrive.
func emit(ctx context.Context, w *Writer, p *pipeline) error {
	for b := range p.order {
		select {
		case <-b.ready:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		if b.err != nil {
			return b.err
		}
		if b.big != nil {
			if err := emitBig(ctx, w, b); err != nil {
				return err
			}
		} else if err := emitItems(w, b); err != nil {
			return err
		}
		p.free <- b
	}
	return nil
}

func emitItems(w *Writer, b *batch) error {
	for i := range b.items {
		it := &b.items[i]
		if !it.root && it.op != opEndDir {
			if err := entry(w, b.names[it.name.off:it.name.off+it.name.len]); err != nil {
				return err
			}
		}
		var err error
		switch it.op {
		case opFile:
			if err = w.File(it.exec, it.size); err == nil && it.size > 0 {
				_, err = w.Write(b.arena[it.data : it.data+int(it.size)])
			}
		case opSymlink:
			err = symlink(w, b.names[it.target.off:it.target.off+it.target.len])
		case opDir:
			err = w.Directory()
		case opEndDir:
			err = w.EndDirectory()
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func emitBig(ctx context.Context, w *Writer, b *batch) error {
	it := &b.items[0]
	if !it.root {
		if err := entry(w, b.names[it.name.off:it.name.off+it.name.len]); err != nil {
			return err
		}
	}
	if err := w.File(it.exec, it.size); err != nil {
		return err
	}
	for {
		var c chunk
		var ok bool
		select {
		case c, ok = <-b.big:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		if !ok {
			return nil
		}
		if c.err != nil {
			return c.err
		}
		_, err := w.Write((*c.buf)[:c.n])
		chunkPool.Put(c.buf)
		if err != nil {
			return err
		}
	}
}

// StatTree walks the tree at path as [Dump] does, lstat'ing every entry
// but reading no contents, and returns its Fingerprint and counts. It
// matches the Fingerprint of a Dump of the same unchanged tree.
func StatTree(ctx context.Context, path string) (Fingerprint, DumpStats, error) {
	w := &walker{ctx: ctx, root: path, fp: newFingerprinter()}
	if err := w.run(); err != nil {
		return Fingerprint{}, DumpStats{}, fmt.Errorf("stat %s: %w", path, err)
	}
	return w.fp.sum(), w.count, nil
}
