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
// the readers, it stops growing. Under a low RLIMIT_NOFILE, readers,
// prefetchers and the directories the queue holds open are fewer
// (window.go's fdSizes). A warm dump starts none, and on a
// filesystem that cannot tell whether a read would block (tmpfs, where
// reads do not block anyway) none start either.
//
// The walk waits for the device too, cold: for each directory it lists
// and each symlink it lstats, one at a time. So the prefetchers also list
// the subdirectories and lstat the symlinks of every directory the walk
// lists (listed), starting, when they start, with those the walk listed
// before and has not reached (offerPending), and in turn those of each
// directory they list: the walk finds them cached. They keep to the
// dump's Selection, if it has one: an untracked tree is never read.

const (
	maxPrefetchers = 64
	coldReaders    = coldBatches / 2 // readers, once reads block
	firstPrefetch  = 8
	prefetchBytes  = 4 << 20 // of a file's start; the kernel reads ahead of the rest
	aheadFiles     = coldBatches * batchItems
)

// Test hooks: testBlockedReads counts every read readFast does as
// blocked, testHookPrefetched runs after a prefetcher warmed a file,
// testHookPrefetchedEntry after it listed a directory or lstat'ed a
// symlink (typ DT_DIR or DT_LNK).
var (
	testBlockedReads        bool
	testHookPrefetched      func()
	testHookPrefetchedEntry func(typ uint8, name string)
)

// prefetch is an entry for a prefetcher to warm: its name
// (NUL-terminated) in dir, which it holds a reference to, and its type
// (DT_REG, DT_DIR or DT_LNK). sel is a directory's node in the dump's
// Selection, nil without one: a prefetcher offers only the entries the
// dump will visit.
type prefetch struct {
	dir  *dirRef
	name []byte
	typ  uint8
	sel  *selNode
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
		n, err := readNoWait(fd, buf, 0)
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

// prefetch gives a file the packer packed to the prefetchers, if they
// run and have room for it.
func (k *packer) prefetch(dir *dirRef, name []byte) {
	if k.prefetchers == 0 {
		return
	}
	k.p.offer(dir, name, unix.DT_REG, nil)
}

// listed gives the prefetchers the subdirectories and symlinks of a
// directory the walk just listed: the walk lists and lstats them later,
// in NAR order, and finds them cached.
func (k *packer) listed(l *level) {
	if k.prefetchers > 0 {
		k.p.offerEntries(l, l.ents)
	}
}

// offerPending gives the prefetchers, once they start, the subdirectories
// and symlinks the walk has listed but not yet reached, innermost level
// first: the order the walk will reach them in. Without it, those of a
// directory listed before the reads were seen to block (the root, in a
// tree whose top holds many small directories, as /usr/share/doc does)
// would wait for the walk, one at a time.
func (k *packer) offerPending() {
	for i := len(k.walk.stack) - 1; i >= 0; i-- {
		if l := &k.walk.stack[i]; !l.closed {
			k.p.offerEntries(l, l.ents[l.next:])
		}
	}
}

// offerEntries offers the subdirectories and symlinks among ents, entries
// of the directory l, that the walk will visit (those l.sel holds, if not
// nil).
func (p *pipeline) offerEntries(l *level, ents []dent) {
	for _, d := range ents {
		if d.typ != unix.DT_DIR && d.typ != unix.DT_LNK {
			continue
		}
		name := l.entName(d)
		if child, ok := visited(l.sel, name, d.typ); ok {
			p.offer(l.dir, name, d.typ, child)
		}
	}
}

// visited reports whether the walk visits the entry name, of type typ,
// of a directory whose node in the dump's Selection is sel (nil: the
// dump has none), and gives the entry's own node.
func visited(sel *selNode, name []byte, typ uint8) (*selNode, bool) {
	if sel == nil {
		return nil, true
	}
	child := sel.children[string(name)]
	return child, child != nil && child.admits(typ)
}

// offer gives the prefetchers an entry of dir, if they have room for it:
// a place in the queue and, unless entries waiting there hold dir open
// already, one of the directories the dump's descriptors allow them to
// (fdSizes.pinned). Entries waiting in the queue could otherwise hold
// any number of directories open: a prefetcher that lists one offers its
// subdirectories, and a wide tree (botocore's data, with hundreds of
// them) ran a cold dump out of descriptors under a limit of 1024.
func (p *pipeline) offer(dir *dirRef, name []byte, typ uint8, sel *selNode) {
	p.pinMu.Lock()
	if dir.queued == 0 {
		if p.pinned == 0 {
			p.pinMu.Unlock()
			return
		}
		p.pinned--
	}
	dir.queued++
	p.pinMu.Unlock()
	dir.refs.Add(1)
	select {
	case p.ahead <- prefetch{dir, append([]byte(nil), name[:len(name)+1]...), typ, sel}:
	default:
		p.unpin(dir)
	}
}

// unpin gives back what an entry of dir took in offer, once warmed or
// dropped.
func (p *pipeline) unpin(dir *dirRef) {
	p.pinMu.Lock()
	if dir.queued--; dir.queued == 0 {
		p.pinned++
	}
	p.pinMu.Unlock()
	dir.release()
}

// adapt starts prefetchers, or more of them, if the readers found files
// not cached since it last looked; the packer calls it once per batch.
func (k *packer) adapt() {
	blocked := k.p.blocked.Load()
	if blocked == k.blockedSeen || k.prefetchers == k.fds.prefetchers {
		return
	}
	k.blockedSeen = blocked
	k.p.limit = k.fds.batches
	if k.p.ahead == nil {
		k.p.ahead = make(chan prefetch, aheadFiles)
		if k.coldProcs > 0 {
			k.p.restoreProcs = raiseProcs(k.coldProcs)
		}
		k.offerPending()
	}
	n := min(k.fds.prefetchers, max(firstPrefetch, 2*k.prefetchers))
	for ; k.prefetchers < n; k.prefetchers++ {
		k.p.wg.Go(func() { k.p.prefetcher(k.ctx) })
	}
	for ; k.readers < min(coldReaders, k.fds.readers); k.readers++ {
		k.p.startReader(k.ctx, readerSmallCold)
	}
}

// prefetcher warms the files and directories it is given until the dump
// is done: Dump cancels ctx then. It lists a directory, to cache its
// entries, and offers its subdirectories and symlinks to the prefetchers
// in turn: the listing runs ahead of the walk, as far as the queue has
// room. It lstats a symlink, which the walk will lstat too: a symlink's
// inode is what the walk waits for, cold. Once the dump stops, it only
// gives back the references its work holds.
func (p *pipeline) prefetcher(ctx context.Context) {
	var buf []byte // getdents's, for directories
	var st unix.Stat_t
	for {
		var f prefetch
		select {
		case f = <-p.ahead:
		case <-ctx.Done():
			return // Dump drains ahead once no prefetcher can offer to it
		}
		if ctx.Err() == nil {
			switch f.typ {
			case unix.DT_DIR:
				buf = p.prefetchDir(f, buf)
			case unix.DT_LNK:
				fstatat(f.dir.fd, &f.name[0], &st)
			default:
				p.prefetchOpen(f)
			}
			if testHookPrefetchedEntry != nil && f.typ != unix.DT_REG {
				testHookPrefetchedEntry(f.typ, string(f.name[:len(f.name)-1]))
			}
		}
		p.unpin(f.dir)
	}
}

// drainAhead gives back the references of the work the prefetchers
// left, once they have all exited.
func (p *pipeline) drainAhead() {
	for len(p.ahead) > 0 {
		p.unpin((<-p.ahead).dir)
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

// prefetchDir lists the directory f, offering its subdirectories and
// symlinks (those its Selection holds, if it has one).
func (p *pipeline) prefetchDir(f prefetch, buf []byte) []byte {
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
			if typ := buf[off+18]; typ == unix.DT_DIR || typ == unix.DT_LNK {
				name := buf[off+19 : off+reclen]
				name = name[:bytes.IndexByte(name, 0)]
				if typ == unix.DT_DIR && (bytes.Equal(name, dot[:1]) || bytes.Equal(name, dotdot[:2])) {
					// not entries of the archive
				} else if sel, ok := visited(f.sel, name, typ); ok {
					p.offer(d, name, typ, sel)
				}
			}
			off += reclen
		}
	}
}

var dot = []byte(".\x00")
