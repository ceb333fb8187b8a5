package nar

import (
	"bytes"
	"context"

	"golang.org/x/sys/unix"
)

// Reads that block. A warm dump's reads copy from the page cache and
// never block: its readers keep the writer busy on their own. A cold
// dump's reads wait for the device, and then what bounds it is how many
// reads are in flight, one per reader, each reader working through its
// batch in order. So when the readers find files not cached (a read that
// must not block could not be done: readFast), the packer also gives the
// files it packs to prefetchers, which open each and ask the kernel to
// read it into the page cache (prefetchFile), as many at once as there
// are prefetchers, ahead of the readers by what the batches in flight
// hold. Their number doubles, from 8 up to maxPrefetchers, each time the
// readers are seen blocking again; once the prefetchers keep ahead of
// the readers, it stops growing. A warm dump starts none, and on a
// filesystem that cannot tell whether a read would block (tmpfs, where
// reads do not block anyway) none start either.

const (
	maxPrefetchers = 64
	coldReaders    = coldBatches / 2 // readers, once reads block
	firstPrefetch  = 8
	prefetchBytes  = 4 << 20 // of a file's start; the kernel reads ahead of the rest
	aheadFiles     = coldBatches * batchItems
)

// Test hooks: testBlockedReads counts every read readFast does as
// blocked, testHookPrefetched runs after a prefetcher warmed a file.
var (
	testBlockedReads   bool
	testHookPrefetched func()
)

// prefetch is a file or directory for a prefetcher to warm: its name
// (NUL-terminated) in dir, which it holds a reference to.
type prefetch struct {
	dir   *dirRef
	name  []byte
	isDir bool
}

// readFast reads the start of a file for readFile's fast path. Where the
// filesystem allows, it first tries a read that must not block: if the
// bytes are not in the page cache, the read counts as blocked, and is
// done again, waiting.
func (p *pipeline) readFast(fd int, fs *fsInfo, buf []byte) (int, error) {
	if testBlockedReads {
		p.blocked.Add(1)
	}
	if !fs.noWaitOff.Load() {
		n, err := readNoWait(fd, buf)
		switch err {
		case nil:
			return n, nil
		case unix.EAGAIN:
			p.blocked.Add(1)
		case unix.EOPNOTSUPP, unix.EINVAL, unix.ENOSYS:
			fs.noWaitOff.Store(true)
		}
	}
	return readOnce(fd, buf)
}

// prefetch gives a file the packer packed, or a directory the walk
// listed, to the prefetchers, if they run and have room for it.
func (k *packer) prefetch(dir *dirRef, name []byte, isDir bool) {
	if k.prefetchers == 0 {
		return
	}
	offer(k.p.ahead, dir, name, isDir)
}

// listed gives the prefetchers the subdirectories of a directory the
// walk just listed: the walk lists them later, in NAR order, and finds
// them cached.
func (k *packer) listed(l *level) {
	if k.prefetchers == 0 {
		return
	}
	for _, d := range l.names {
		if d.typ == unix.DT_DIR {
			offer(k.p.ahead, l.dir, l.dents[d.off:d.off+d.len], true)
		}
	}
}

// offer gives the prefetchers an entry of dir, if they have room for it.
func offer(ahead chan<- prefetch, dir *dirRef, name []byte, isDir bool) {
	dir.refs.Add(1)
	select {
	case ahead <- prefetch{dir, append([]byte(nil), name[:len(name)+1]...), isDir}:
	default:
		dir.release()
	}
}

// adapt starts prefetchers, or more of them, if the readers found files
// not cached since it last looked; the packer calls it once per batch.
func (k *packer) adapt() {
	blocked := k.p.blocked.Load()
	if blocked == k.blockedSeen || k.prefetchers == maxPrefetchers {
		return
	}
	k.blockedSeen = blocked
	k.p.limit = coldBatches
	if k.p.ahead == nil {
		k.p.ahead = make(chan prefetch, aheadFiles)
		if k.coldProcs > 0 {
			k.p.restoreProcs = raiseProcs(k.coldProcs)
		}
	}
	n := min(maxPrefetchers, max(firstPrefetch, 2*k.prefetchers))
	for ; k.prefetchers < n; k.prefetchers++ {
		k.p.wg.Go(func() { k.p.prefetcher(k.ctx) })
	}
	for ; k.readers < coldReaders; k.readers++ {
		k.p.startReader(k.ctx)
	}
}

// prefetcher warms the files and directories it is given until the dump
// is done: Dump cancels ctx then. It lists a directory, to cache its entries, and offers its
// subdirectories to the prefetchers in turn: the listing runs ahead of
// the walk, as far as the queue has room. Once the dump stops, it only
// gives back the references its work holds.
func (p *pipeline) prefetcher(ctx context.Context) {
	var buf []byte // getdents's, for directories
	for {
		var f prefetch
		select {
		case f = <-p.ahead:
		case <-ctx.Done():
			return // Dump drains ahead once no prefetcher can offer to it
		}
		if ctx.Err() == nil {
			if f.isDir {
				buf = prefetchDir(p.ahead, f, buf)
			} else {
				p.prefetchOpen(f)
			}
		}
		f.dir.release()
	}
}

// drainAhead gives back the references of the work the prefetchers
// left, once they have all exited.
func (p *pipeline) drainAhead() {
	for len(p.ahead) > 0 {
		(<-p.ahead).dir.release()
	}
}

func (p *pipeline) prefetchOpen(f prefetch) {
	fd, err := p.openFile(f.dir.fd, &f.name[0])
	if err != nil {
		return
	}
	prefetchFile(fd)
	closeFD(fd)
	if testHookPrefetched != nil {
		testHookPrefetched()
	}
}

// prefetchDir lists the directory f, offering its subdirectories.
func prefetchDir(ahead chan<- prefetch, f prefetch, buf []byte) []byte {
	fd, err := openat(f.dir.fd, &f.name[0], openDirFlags)
	if err != nil {
		return buf
	}
	d := &dirRef{fd: fd, parent: f.dir, name: string(f.name[:len(f.name)-1]), fs: f.dir.fs}
	d.refs.Store(1)
	defer d.release()
	if buf == nil {
		buf = make([]byte, 32<<10)
	}
	for {
		n, err := getdents(fd, buf)
		if err != nil || n == 0 {
			return buf
		}
		for off := 0; off < n; {
			reclen := int(buf[off+16]) | int(buf[off+17])<<8
			if buf[off+18] == unix.DT_DIR {
				name := buf[off+19 : off+reclen]
				name = name[:bytes.IndexByte(name, 0)+1]
				if !bytes.Equal(name, dot) && !bytes.Equal(name, dotdot) {
					offer(ahead, d, name[:len(name)-1], true)
				}
			}
			off += reclen
		}
	}
}

var dot = []byte(".\x00")
