package nar

import (
	"context"
	"encoding"
	"errors"
	"io"
	"time"
)

// emitter writes the batches' items to the archive in order, through a
// Writer, as the readers make them ready, and sums up the fingerprint.
type emitter struct {
	dst      io.Writer
	w        *Writer // over dst
	fp       *fingerprinter
	count    DumpStats
	progress *Progress
	shown    struct{ Entries, Bytes int64 } // already added to progress
	held     []*batch                       // written, not yet given back
	release  int                            // how many it holds at most: see releaseBatches
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
			racyBefore: start.Add(-racyMargin).UnixNano(), since: start.UnixNano()}
	}
	if opt.From != nil {
		if err := checkResumable(opt.From); err != nil {
			return err
		}
		if err := e.resume(opt.From); err != nil {
			return err
		}
	}
	// Only a dump that starts changes the caller's checkpoints: it keeps
	// those before From, and From, and adds its own.
	if c := opt.Checkpoints; c != nil {
		if opt.From != nil {
			c.resumeFrom(opt.From)
		} else {
			c.list = nil
		}
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
//
// It must never hold every batch the walker may have, or the walker would
// wait for one forever while the writer waits for the walker: a dump
// whose descriptors allow fewer batches (fdSizesFor) gathers one less
// than it has (see Dump; the cold dump's limit only grows).
const releaseBatches = 4

// run writes the batches of p.order until the walk's end or the first
// error, which it returns.
func (e *emitter) run(ctx context.Context, p *pipeline) error {
	for b := range p.order {
		waited, err := e.batch(ctx, b)
		if err != nil {
			return err
		}
		if e.progress != nil {
			e.progress.Entries.Add(e.fp.entries - e.shown.Entries)
			e.progress.Bytes.Add(e.w.Offset() - e.shown.Bytes)
			e.shown.Entries, e.shown.Bytes = e.fp.entries, e.w.Offset()
		}
		e.held = append(e.held, b)
		if waited || len(e.held) == e.release {
			for _, h := range e.held {
				p.free <- h
			}
			e.held = e.held[:0]
		}
	}
	return nil
}

// batch writes the items of b as they become ready, and reports whether
// it had to wait for them.
func (e *emitter) batch(ctx context.Context, b *batch) (waited bool, err error) {
	done := 0
	// wait waits until more than n items are ready, or the whole batch
	// (n == len(b.items)).
	wait := func(n int) error {
		for done <= n {
			if done = int(b.done.Load()); done > n {
				break
			}
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
		if err := e.item(ctx, b, &b.items[i]); err != nil {
			return waited, err
		}
	}
	return waited, wait(len(b.items))
}

// item writes one item, taking a checkpoint before it if one is due.
func (e *emitter) item(ctx context.Context, b *batch, it *item) error {
	var name []byte
	if !it.root && it.op != opEndDir {
		name = b.names[it.name.off : it.name.off+it.name.len]
		if e.cp != nil && e.w.Offset() >= e.cp.next && ctx.Err() == nil {
			// The hash must have taken everything before this entry.
			if err := e.w.flushed(); err != nil {
				return err
			}
			if err := e.checkpoint(name, !e.w.dirs[len(e.w.dirs)-1].entries); err != nil {
				return err
			}
		}
		if err := entry(e.w, name); err != nil {
			return err
		}
	}
	e.account(name, it)
	switch it.op {
	case opDir:
		return e.w.Directory()
	case opEndDir:
		return e.w.EndDirectory()
	case opSymlink:
		return symlink(e.w, b.names[it.target.off:it.target.off+it.target.len])
	}
	if err := e.w.File(it.info.mode&modeExec != 0, it.info.size); err != nil {
		return err
	}
	// The contents: what the reader read into the arena, then what it
	// streams, if the file did not fit.
	if _, err := e.w.Write(b.arena[it.off:it.end]); err != nil {
		return err
	}
	if it.stream != nil {
		if testHookStream != nil {
			testHookStream(it.stream)
		}
		return e.stream(ctx, it)
	}
	return nil
}

// testHookStream, when set, runs when the writer takes a streamed file,
// before it reads the file's stream.
var testHookStream func(stream chan chunk)

// account adds an item, named name (nil for the root and the end of a
// directory), to the fingerprint and the counts.
func (e *emitter) account(name []byte, it *item) {
	if it.op == opEndDir {
		e.fp.endDir()
		if e.cp != nil {
			e.cp.leave()
		}
		return
	}
	e.fp.add(name, &it.info)
	if c := e.cp; c != nil {
		if max(it.info.mtime, it.info.ctime) >= c.racyBefore {
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
	}
}

// stream writes a streamed file's chunks as they arrive, until its
// reader closes the stream: after the last chunk, or early, when it fails.
// It then records the failure in the batch (b.fail), after the close: the
// writer meets it when it waits for the next item, not here.
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
		_, err := e.w.Write((*c.buf)[:c.n])
		c.release()
		if err != nil {
			return err
		}
	}
}
