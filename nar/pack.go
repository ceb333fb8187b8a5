package nar

import (
	"context"
	"errors"
	"io/fs"

	"golang.org/x/sys/unix"
)

// testHookSentFiles, when set, runs on the walk's goroutine after the
// packer sent a batch with files to the readers: tests hold the walk
// there.
var testHookSentFiles func()

// packer is a dump's sink (see walker): it packs what the walk visits
// into batches, in order, and sends each to the writer, and to the
// readers if it has files. Directories and symlinks are complete as it
// packs them; a file is a name and a directory to open it in, which the
// reader opens, stats and reads. It runs on the walk's goroutine.
type packer struct {
	ctx  context.Context
	p    *pipeline
	cur  *batch // being packed; nil before the first item and after a send
	room int    // files cur can still take
	// Files waiting in a batch hold their directory open, so a batch
	// takes files from at most fds.perBatch directories (see window.go):
	// batchDir is the directory of cur's last file, batchDirs counts
	// the changes of directory among its files.
	batchDir  *dirRef
	batchDirs int
	link      [MaxTargetLen + 1]byte
	// Readers and prefetchers started, and p.blocked when adapt last
	// looked.
	readers     int
	prefetchers int
	blockedSeen int64
	coldProcs   int // DumpOptions.ColdProcs
	fds         fdSizes
	// walk is the walk packing into it, whose stack offerPending reads
	// (on the walk's goroutine).
	walk *walker
}

func (k *packer) lstatAll() bool         { return false }
func (k *packer) before(*walker, []byte) {}

func (k *packer) file(dir *dirRef, name []byte, _ *fileInfo, root bool) error {
	if k.cur != nil && (k.room == 0 || dir != k.batchDir && k.batchDirs >= k.fds.perBatch) {
		if err := k.send(); err != nil {
			return err
		}
	}
	if err := k.add(item{op: opFile, root: root, dir: dir}, name, nil); err != nil {
		return err
	}
	dir.refs.Add(1) // released by the reader, or by releaseFiles
	k.prefetch(dir, name)
	k.cur.files++
	k.room--
	if dir != k.batchDir {
		k.batchDir = dir
		k.batchDirs++
	}
	return nil
}

func (k *packer) symlink(dir *dirRef, name []byte, fi *fileInfo, root bool) error {
	n, err := readlinkat(dir.fd, &name[0], k.link[:])
	if err != nil {
		if err == unix.ENOENT || err == unix.EINVAL {
			return entryChanged(dir, name, root, "was replaced")
		}
		return &fs.PathError{Op: "readlink", Path: entryPath(dir, name, root), Err: err}
	}
	if why := checkTarget(k.link[:n]); why != "" {
		return &fs.PathError{Op: "readlink", Path: entryPath(dir, name, root), Err: errors.New(why)}
	}
	if int64(n) != fi.size {
		return entryChanged(dir, name, root, "was retargeted")
	}
	return k.add(item{op: opSymlink, root: root, info: *fi}, name, k.link[:n])
}

func (k *packer) dir(name []byte, fi *fileInfo, root bool) {
	// A batch is always to be had: add fails only when the dump
	// stopped, which the walk notices at its next entry.
	k.add(item{op: opDir, root: root, info: *fi}, name, nil)
}

func (k *packer) endDir() {
	k.add(item{op: opEndDir}, nil, nil) // as in dir
}

func (k *packer) finish() error { return k.send() }

// close ends the walk's part of the pipeline: no more batches.
func (k *packer) close() {
	close(k.p.order)
	close(k.p.work)
}

func (k *packer) abort() {
	if k.cur != nil {
		k.cur.releaseFiles()
		batchPool.Put(k.cur)
		k.cur = nil
	}
}

// add appends it to the current batch, or to a new one if it does not
// fit, copying name (and its NUL) and target. It fails only if the dump
// stopped while it waited for a batch.
func (k *packer) add(it item, name, target []byte) error {
	if b := k.cur; b == nil || len(b.items) == batchItems || len(b.names)+len(name)+1+len(target) > batchNames {
		if err := k.next(); err != nil {
			return err
		}
	}
	b := k.cur
	if name != nil {
		it.name = span{uint32(len(b.names)), uint32(len(name))}
		b.names = append(b.names, name[:len(name)+1]...)
	}
	if target != nil {
		it.target = span{uint32(len(b.names)), uint32(len(target))}
		b.names = append(b.names, target...)
	}
	b.items = append(b.items, it)
	return nil
}

// next sends the current batch and starts a new one. A batch takes about
// as many files as fit half its arena at the average arena bytes a file
// took so far: a large file's size would make batches of small files
// small, and the batches in flight hold less than they could (on GOROOT,
// where half the bytes are in 23 files, about 30 files each, not 90).
func (k *packer) next() error {
	if err := k.send(); err != nil {
		return err
	}
	b, err := k.p.freeBatch(k.ctx)
	if err != nil {
		return err
	}
	k.cur = b
	k.batchDir, k.batchDirs = nil, 0
	k.room = firstBatchFiles // until the readers have seen some sizes
	if files := k.p.files.Load(); files > 0 {
		avg := max(1, k.p.used.Load()/files)
		k.room = int(min(batchItems, max(1, arenaSize/(2*avg))))
	}
	return nil
}

// send sends the current batch to the writer, and to the readers if it
// has files to read; a batch without files is complete as it is.
func (k *packer) send() error {
	b := k.cur
	if b == nil {
		return nil
	}
	k.cur = nil
	b.yield = k.prefetchers == 0
	if b.files == 0 {
		b.finish() // nothing for a reader to do
	}
	select {
	case k.p.order <- b:
	case <-k.ctx.Done():
		b.releaseFiles()
		batchPool.Put(b)
		return context.Cause(k.ctx)
	}
	if b.files == 0 {
		return nil
	}
	k.adapt()
	select {
	case k.p.work <- b:
		if testHookSentFiles != nil {
			testHookSentFiles()
		}
		return nil
	case <-k.ctx.Done():
		// The writer has it: it must see it fail, not wait for it.
		b.releaseFiles()
		b.fail(context.Cause(k.ctx))
		return context.Cause(k.ctx)
	}
}
