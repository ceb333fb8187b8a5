package nar

import (
	"context"
	"sync"

	"golang.org/x/sys/unix"
)

// Cold large files, read several chunks at once. A stream reads its file
// one chunk after another, and when the file is not in the page cache each
// read waits for the device, with only the kernel's read-ahead for one
// sequential reader in flight. A device serves more than that: on this
// project's 2-core VM, `dd` read a 1 GiB file cold in 0.89–1.11 s, and its
// four quarters at once in 0.69–0.76 s. So a stream whose file has more
// than parallelFrom bytes left, and whose bytes past what the prefetchers
// warm are not cached (a read there that must not block could not be
// done), reads parallelReads chunks at once, on goroutines of its own,
// into buffers of its own, and sends them to the writer in order.
//
// One stream at a time in a dump does (pipeline.parallel): the other
// readers' streams and the prefetchers keep the device busy already where
// many files are cold, and each such stream holds parallelBufs chunks.
// Measured on the benchmark's big tree (one 1 GiB file), cold, 2 cores,
// `narhash hash` before and after taking turns, caches dropped before each
// run: 949 -> 826 ms (medians of 8). No other tree of the benchmark's has
// a file this long; GOROOT, src and /usr/lib/x86_64-linux-gnu cold moved
// within this VM's noise. A first version, which copied each chunk once
// more, chose the number of reads: 4 took big from 895 to 817 ms and 2
// from 935 to 867 ms (medians of 6), 8 took 816 ms against 838 ms for 4.
const (
	parallelFrom  = 16 << 20
	parallelReads = 4
	parallelBufs  = 2 * parallelReads
)

// Test hooks: testColdStreams has every stream long enough read in
// parallel, as if its file were not cached; testHookParallel runs when a
// parallel stream starts (true) and once it has stopped (false).
var (
	testColdStreams  bool
	testHookParallel func(started bool)
)

// A parallelStream reads the chunks of one file from a given offset on
// parallelReads goroutines: chunk j by worker j%parallelReads, into the
// buffer of slot j%parallelBufs, onto that slot's ready, where take finds
// it in order. The buffer goes to the writer with the chunk, which gives
// it back to the slot's free once written (chunk.home), for chunk
// j+parallelBufs. So a worker only waits for the writer to take chunks
// before its own, never for chunks after it (which would deadlock: all
// buffers read ahead, none for the next chunk).
type parallelStream struct {
	slots []parallelSlot
	quit  chan struct{}
	wg    sync.WaitGroup
	next  int           // the chunk take returns next
	token chan struct{} // the dump's pipeline.parallel, given back by stop
}

type parallelSlot struct {
	free  chan *[]byte   // the slot's buffer, when no chunk holds it
	ready chan chunkRead // the slot's chunk, once read
}

// A chunkRead is a chunk as read, with the read's error.
type chunkRead struct {
	chunk
	err error
}

// parallelStream starts reading the file fd from off to size in parallel,
// if the file qualifies (see above) and no other stream of the dump does;
// otherwise it returns nil, and the caller reads the file itself. The
// caller must stop it, and keep fd open until then.
func (p *pipeline) parallelStream(fd int, fs *fsInfo, off, size int64) *parallelStream {
	// The prefetchers may have warmed the file's start (prefetchBytes):
	// what tells is the byte after it.
	if size-off <= parallelFrom || !coldAt(fd, fs, max(off, prefetchBytes)) {
		return nil
	}
	select {
	case p.parallel <- struct{}{}:
	default:
		return nil
	}
	s := &parallelStream{
		slots: make([]parallelSlot, parallelBufs),
		quit:  make(chan struct{}),
		token: p.parallel,
	}
	for i := range s.slots {
		s.slots[i] = parallelSlot{free: make(chan *[]byte, 1), ready: make(chan chunkRead, 1)}
		s.slots[i].free <- chunkPool.Get().(*[]byte)
	}
	if testHookParallel != nil {
		testHookParallel(true)
	}
	chunks := int((size - off + chunkSize - 1) / chunkSize)
	for w := range parallelReads {
		s.wg.Go(func() {
			for j := w; j < chunks; j += parallelReads {
				slot := &s.slots[j%len(s.slots)]
				var buf *[]byte
				select {
				case buf = <-slot.free:
				case <-s.quit:
					return
				}
				at := off + int64(j)*chunkSize
				n, err := pread(fd, (*buf)[:min(size-at, chunkSize)], at)
				slot.ready <- chunkRead{chunk{buf, n, slot.free}, err} // never waits: the slot's one buffer is this one
			}
		})
	}
	return s
}

// coldAt reports whether the byte at off of the open file fd is not in
// the page cache, on a filesystem that can tell.
func coldAt(fd int, fs *fsInfo, off int64) bool {
	if testColdStreams {
		return true
	}
	if fs.noWaitOff.Load() {
		return false
	}
	var b [1]byte
	_, err := readNoWait(fd, b[:], off)
	return err == unix.EAGAIN
}

// take returns the next chunk in order, once read; a read's error is the
// chunk's. It fails only when ctx is done first.
func (s *parallelStream) take(ctx context.Context) (chunkRead, error) {
	select {
	case c := <-s.slots[s.next%len(s.slots)].ready:
		s.next++
		return c, nil
	case <-ctx.Done():
		return chunkRead{}, context.Cause(ctx)
	}
}

// stop stops the workers and waits for them: after it the file is no
// longer read. The buffers not with the writer go back to chunkPool; those
// it holds come back to their slots later, and are left to the collector.
func (s *parallelStream) stop() {
	close(s.quit)
	s.wg.Wait()
	if testHookParallel != nil {
		testHookParallel(false)
	}
	<-s.token
	for _, slot := range s.slots {
		select {
		case c := <-slot.ready:
			chunkPool.Put(c.buf)
		case buf := <-slot.free:
			chunkPool.Put(buf)
		default:
		}
	}
}
