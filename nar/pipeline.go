package nar

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
)

// The dump pipeline: how [Dump] turns a tree into archive bytes on
// several goroutines. This file holds its rules and the types its stages
// share; each stage is a file of its own:
//
//	walk.go   the walker: lists directories in NAR order and checks what
//	          a Writer would check; its sink for a dump is
//	pack.go   the packer: packs the walk's entries into batches and sends
//	          each, in order, to the writer and to the readers;
//	read.go   the readers: open, stat and read a batch's files into its
//	          arena, streaming a file too large for it (coldstream.go:
//	          a large file not cached, several chunks at once);
//	emit.go   the writer (emitter): writes each batch's items to dst in
//	          order, through a Writer, as its reader makes them ready,
//	          and sums up the Fingerprint and the counts;
//	dump.go   Dump, which starts them, waits for them and decides the result.
//
// The walker and packer run on one goroutine, the readers on
// DumpOptions.Readers goroutines (GOMAXPROCS by default, fewer under a low
// RLIMIT_NOFILE: window.go), the writer on the caller's. A dump whose
// reads block adds readers up to coldReaders and starts prefetchers
// (prefetch.go), and a parallel stream its own workers (coldstream.go).
//
// Ownership. A batch belongs to one stage at a time, and only its owner
// writes it:
//   - the packer, from freeBatch until it sends the batch: items, names,
//     files. After the send nobody changes them.
//   - one reader, from p.work until it publishes the batch complete or
//     failed: the arena, and each file item's info, off, end and stream.
//     A batch without files is complete when the packer sends it, and
//     goes to no reader.
//   - the writer reads the arena only up to what the reader published
//     (below), and owns the batch once it is complete, until it hands it
//     back on p.free (or to batchPool when the dump ends).
//   - a chunk buffer is its reader's (chunks), or a parallel stream's
//     (coldstream.go), lent to the writer with each chunk sent on a
//     stream, and given back once written (chunk.home).
//
// Publication. b.done counts the items ready for the writer: the reader
// stores it (an atomic store: release) after reading a file's contents
// into the arena and its stat into the item, and the writer loads it
// (acquire) before reading them. done goes one past len(items) exactly
// once, when the batch is complete or failed (b.err set, before that
// store and never after). A reader nudges b.wake (capacity 1) after each store,
// so the writer, which sets b.waiting before it sleeps on b.wake, cannot
// miss one. A streamed file is ready once its stream holds its first
// chunk, with the start of its contents (its first read) in the arena;
// the rest follows in chunks on its channel, which its reader closes as
// soon as the last chunk is on it, the file checked unchanged first.
//
// Errors travel one way: in archive order, to the writer. A reader that
// fails records the error in its batch (b.fail), a stream's included;
// the walker sends its error as a batch of its own (failedBatch) after
// the batches it sent before (the one it was packing is dropped). The
// writer stops at the first error it meets, and writes nothing more: not
// even the items of the failed batch that were read before the failure
// but not yet written. Dump cancels the context with that error as its
// cause: every stage watches the context, stops, and releases what it
// holds (directory references, chunks). A stage never reports an error
// any other way; when the context is done, stages just stop, and the
// dump's error is the context's cause.
//
// Stopping. freeBatch and the sends between stages fail only when the
// context is done; what the stopped stage held is released there, and
// never sent on.
//
// Memory is bounded by the sizes below, whatever the tree.

// One encoder: the writer drives a Writer, which checks and lays out the
// archive's bytes as it does for any caller; the readers only read. The
// walker has checked names, their order and path lengths already, so a
// Writer's error here other than dst's is a bug. (Laying the bytes out in
// the arenas on the readers instead, as the dump did until 2026-11-21,
// took the same time within 3 % on the GOROOT copy and the synthetic
// trees, warm on 2 cores: not worth a second encoder.)
//
// Sizes of the dump pipeline. Memory in use stays under
// batchesInFlight*arenaSize + R*(readerChunks*chunkSize +
// readerSmall*smallChunk) with R readers (each streams files in chunks of
// its own, made only when needed: see chunks): 16 MiB and 7 MiB a reader,
// 30 MiB with two, 72 MiB with eight. A dump whose reads block takes
// coldBatches instead, adds readers up to coldReaders with readerSmallCold
// small chunks each (5.25 MiB), and one of its streams may read
// parallelBufs chunks ahead (coldstream.go): 124 + 1.75*R MiB for R up to
// coldReaders warm readers (128 MiB with two, 138 MiB with eight), 40 +
// 7*R MiB for more. Names take at most batchNames more a batch, and
// aheadFiles names in the prefetch queue.
//
// Measured on a copy of GOROOT, warm, on 2 cores (2026-11-21): 16
// batches and 1 MiB chunks took 0.94-0.96 of the time of 8 batches and
// 4 MiB chunks. More batches keep the readers further ahead of the
// writer, which otherwise catches up with the batch a reader is still
// filling while the other reader has none left to fill; smaller chunks
// fault in a quarter of the fresh memory a big file's stream takes.
const (
	arenaSize       = 1 << 20            // one batch's files' contents, those that fit
	batchItems      = 512                // nodes in one batch at most
	batchNames      = 256 << 10          // and bytes of their names and symlink targets
	batchesInFlight = 16                 // batches between the walker and the writer
	coldBatches     = 32                 // the same, once reads were seen to block
	chunkSize       = 1 << 20            // a streamed file travels in chunks this big
	chunksInFlight  = 3                  // chunks of one file read ahead of the writer
	readerChunks    = chunksInFlight + 2 // chunks of one reader's, in all of its streams
	// A stream whose rest is at most smallChunk travels in one small
	// chunk, of which a reader has readerSmall (see chunks); a reader
	// that a cold dump adds has readerSmallCold.
	smallChunk      = 64 << 10
	readerSmall     = 32
	readerSmallCold = 4
	firstBatchFiles = 32 // files in a batch before any file size is known
	// firstRead is the most a file's first read takes (see readFile):
	// a larger file keeps what it read, and no more, of its batch's arena
	// when it is streamed.
	firstRead = 64 << 10
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
	op     itemOp
	root   bool     // the archive's root node: no entry name is written
	name   span     // in batch.names, NUL-terminated there
	target span     // symlinks: in batch.names
	info   fileInfo // lstat (symlinks), fstat (directories, and files once opened)
	dir    *dirRef  // files: the directory to open the file in
	// off and end bound a file's contents in the arena once it is
	// ready; a streamed file's stream carries the rest.
	off, end int
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
	arena []byte // fixed length; the reader reads the files' contents into it
	files int    // files for a reader to read
	// done counts the items ready for the writer: a file is ready once
	// its contents are in the arena, or its stream holds its first
	// chunk. It goes one past len(items) when the batch is complete or
	// failed (err is set). The reader stores it after the item
	// (release), the writer loads it (acquire).
	done atomic.Int32
	wake chan struct{} // a reader's nudge after done grows (capacity 1)
	// waiting is set while the writer waits for this batch: its reader
	// then publishes progress sooner and yields to it (see advance).
	waiting atomic.Bool
	yield   bool  // see advance; set by the packer
	err     error // set before done passes len(items)
}

// failedBatch carries the walk's failure to the writer, in order after
// the batches the walk sent before it: it has no items and is failed from
// the start. It is not the pipeline's: the writer stops at it.
func failedBatch(err error) *batch {
	b := newBatch(0)
	b.fail(err)
	return b
}

// A chunk is a piece of a streamed file's contents.
type chunk struct {
	buf *[]byte
	n   int
	// home is where buf goes back once written: its reader's free chunks
	// of its size (see chunks), or a parallel stream's slot (coldstream.go).
	home chan<- *[]byte
}

// release gives the chunk's buffer back to its reader, once written. It
// never waits: home has room for all of the reader's chunks of its size.
func (c chunk) release() {
	select {
	case c.home <- c.buf:
	default: // not while chunks.get keeps to readerChunks and readerSmall
		putChunk(c.buf)
	}
}

func newBatch(arena int) *batch {
	return &batch{arena: make([]byte, arena), wake: make(chan struct{}, 1)}
}

func (b *batch) reset() {
	b.items, b.names = b.items[:0], b.names[:0]
	b.files, b.err = 0, nil
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
// until this reader blocks. Not in a dump whose reads block, though: there
// the device limits it, and a reader that yields among the many
// goroutines coming back from their reads waits long for its turn.
//
// Once done is stored, the batch may be the writer's, written, handed back
// and reused: advance then touches only b.wake and b.waiting, which are
// safe to share; the worst a late token does is wake the batch's next
// writer to load done once more.
func (b *batch) advance(n int) {
	yield := b.yield // the batch may be the writer's once done is stored
	b.done.Store(int32(n))
	select {
	case b.wake <- struct{}{}:
	default:
	}
	if yield && b.waiting.Load() {
		runtime.Gosched()
	}
}

// fail records err and releases the writer: everything after the failed
// item is abandoned.
func (b *batch) fail(err error) {
	b.err = err
	b.advance(len(b.items) + 1)
}

// finish publishes that the batch is complete.
func (b *batch) finish() { b.advance(len(b.items) + 1) }

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
	// limit is how many batches may exist (walker only): at most
	// batchesInFlight, and fdSizes.batches once reads block.
	limit int
	// files read so far, and the arena bytes they took (a streamed file
	// takes only its first read's), for the packer to size batches.
	files, used atomic.Int64
	// blocked counts the reads that found their file's bytes not in the
	// page cache (see readFast); the packer sets prefetchers going on
	// them (prefetch.go).
	blocked atomic.Int64
	// parallel holds a token while a stream reads its file several
	// chunks at once (coldstream.go): one at a time.
	parallel chan struct{}
	// noatimeDenied is set once an open with O_NOATIME failed with EPERM
	// (see openFile).
	noatimeDenied atomic.Bool
	// ahead takes what the prefetchers warm (prefetch.go), from the
	// packer and from the prefetchers themselves. It is never closed:
	// the prefetchers run until the dump's context is done, and Dump
	// drains it once they have exited.
	ahead chan prefetch
	// pinned is how many more directories entries waiting in ahead may
	// hold open (see offer), under pinMu.
	pinMu  sync.Mutex
	pinned int
	wg     *sync.WaitGroup // Dump's: the walker, the readers and the prefetchers
	// restoreProcs, if not nil, undoes the packer's raise of GOMAXPROCS
	// (procs.go) once the dump's stages have exited.
	restoreProcs func()
	// racyBefore is the dump's start less racyMargin, in nanoseconds
	// since the epoch: files changed before it can be read the fast way.
	racyBefore int64
}

// freeBatch returns an empty batch for the walker to fill: a written one,
// or a new one while fewer than p.limit exist (a small tree needs
// few), or else the next written one when it comes back. It fails only
// when ctx is done first.
func (p *pipeline) freeBatch(ctx context.Context) (*batch, error) {
	var b *batch
	select {
	case b = <-p.free:
	default:
		if p.made < p.limit {
			p.made++
			b = batchPool.Get().(*batch)
			break
		}
		select {
		case b = <-p.free:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
	b.reset()
	return b, nil
}

// batchPool keeps batches, with their arenas, from one dump to the next.
var batchPool = sync.Pool{New: func() any { return newBatch(arenaSize) }}

// testHookChunkMade, when set, runs when a reader takes a chunk buffer
// from chunkPool (small: from smallPool).
var testHookChunkMade func(small bool)

// chunkPool and smallPool keep chunk buffers from one dump to the next.
var (
	chunkPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}
	smallPool = sync.Pool{New: func() any { b := make([]byte, smallChunk); return &b }}
)

// putChunk gives a chunk buffer back to its pool.
func putChunk(buf *[]byte) {
	if cap(*buf) == smallChunk {
		smallPool.Put(buf)
	} else {
		chunkPool.Put(buf)
	}
}

// chunks are one reader's chunk buffers, of two sizes: readerChunks of
// chunkSize and readerSmall (readerSmallCold) of smallChunk at most,
// however many files it streams ahead of the writer, which gives each back
// once written (to chunk.home, the reader's free of its size). A reader
// waiting for one only waits for the writer to get to what it sent
// already: the writer takes a reader's streams in the order the reader
// made them, and a stream that holds any of the reader's chunks has its
// first chunk, so its item, with everything before it in its batch, is
// ready for the writer.
//
// Most streamed files are small: they did not fit in what was left of
// their batch's arena, and the rest after their first read is at most
// smallChunk (on the GOROOT copy, 514 of 617 streams; on /usr/share/doc,
// 287 of 398). With chunks of one size, each of those took a 1 MiB
// buffer, and a reader running ahead of the writer soon waited for one
// to come back, instead of reading its batch's next files.
type chunks struct {
	big, small         chan *[]byte // free chunks of chunkSize, of smallChunk
	madeBig, madeSmall int          // taken from chunkPool, from smallPool
}

// newChunks makes a reader's chunks, with small small chunks at most.
func newChunks(small int) *chunks {
	return &chunks{big: make(chan *[]byte, readerChunks), small: make(chan *[]byte, small)}
}

// get returns a free chunk buffer that holds want bytes, and where it goes
// back to, waiting for the writer to give one back if all of the reader's
// of that size are out. It fails only when ctx is done.
func (c *chunks) get(ctx context.Context, want int) (*[]byte, chan *[]byte, error) {
	free, made, limit, pool := c.big, &c.madeBig, readerChunks, &chunkPool
	if want <= smallChunk {
		free, made, limit, pool = c.small, &c.madeSmall, cap(c.small), &smallPool
	}
	select {
	case buf := <-free:
		return buf, free, nil
	default:
	}
	if *made < limit {
		*made++
		if testHookChunkMade != nil {
			testHookChunkMade(want <= smallChunk)
		}
		return pool.Get().(*[]byte), free, nil
	}
	select {
	case buf := <-free:
		return buf, free, nil
	case <-ctx.Done():
		return nil, nil, context.Cause(ctx)
	}
}

// close returns an exiting reader's free chunk buffers to their pools for
// the next dump. (Those the writer gives back later are garbage.)
func (c *chunks) close() {
	for _, free := range []chan *[]byte{c.big, c.small} {
		for len(free) > 0 {
			putChunk(<-free)
		}
	}
}
