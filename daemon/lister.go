//go:build linux

package daemon

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"time"
)

// The listing of new directories, off the loop. A new root, a directory
// made or moved into a root (a mkdir -p, a checkout) is watched and
// listed, recursively, by the lister goroutine, so that queries of other
// roots are not kept waiting behind a large tree. Each directory is
// watched first and listed second, as watchTree does. Meanwhile:
//   - a query of the root, or of a root that holds the directory (nested
//     roots), waits, off the loop, for the listings that count for it
//     asked for before the query (Hash); while later ones are under way
//     the root counts as unsure (root.unsure) and the query is checked
//     by a stat walk, as a degraded root's are, since a change in a
//     directory not yet watched has no event;
//   - events of watches the loop does not know yet are kept (d.early) and
//     applied once the lister's results have recorded those watches;
//   - when a listing ends, everything at, above and below its directory
//     is touched, so that an entry computed meanwhile is not served.
// Overflow rescans are listings too. The re-watch of a directory after a
// chmod stays on the loop (watchTree): rare, and small.

// listReq asks the lister for the watches of dir and all below it.
type listReq struct {
	r     *root
	dir   string
	roots []*root // the roots that count it: r and those that hold it
	// mounts are the mount points strictly inside r (root.mounts), which
	// the listing does not enter: a root with a filesystem
	// mounted inside is degraded and checked by a stat walk anyway, and
	// watching all of an NFS or FUSE mount would spend watches on events
	// that never come, or hang the lister on a server that does not
	// answer.
	mounts map[string]bool
}

// listResult is a part of a listing: up to listChunk directories.
type listResult struct {
	req  *listReq
	dirs []listedDir
	done bool // the last part
}

// listedDir is one directory the lister watched, or failed to.
type listedDir struct {
	path     string
	wd       int32
	dev, ino uint64
	err      error
	gone     bool // not a directory any more: its parent's event says so
}

const (
	listChunk = 256     // directories per result
	maxEarly  = 1 << 16 // events kept for watches not yet recorded
)

// listLater hands the watching of dir in r, and of all below it, to the
// lister. The listing counts for r and for every root that holds dir (an
// outer root of a nested one): events of the watches it adds are kept
// aside until it records them, so none of those roots can trust its
// events meanwhile. On the loop.
func (d *Daemon) listLater(r *root, dir string) {
	req := &listReq{r: r, dir: dir, mounts: r.mounts}
	d.rootIdx.above(dir, func(_ string, o *root) { req.roots = append(req.roots, o) })
	if !slices.Contains(req.roots, r) {
		req.roots = append(req.roots, r)
	}
	for _, o := range req.roots {
		o.listing++
		o.listAsked++
	}
	d.listing++
	d.listAsked++
	d.listQ = append(d.listQ, req)
}

// lister watches and lists the directories asked for, one request at a
// time, until ctx is done.
func (d *Daemon) lister(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case req := <-d.listReqs:
			if !d.list(ctx, req) {
				return
			}
		}
	}
}

// list walks req.dir, sending its watches to the loop in parts; false if
// ctx ended first.
func (d *Daemon) list(ctx context.Context, req *listReq) bool {
	var out []listedDir
	send := func(done bool) bool {
		select {
		case d.listed <- listResult{req: req, dirs: out, done: done}:
			out = nil
			return true
		case <-ctx.Done():
			return false
		}
	}
	stack := []string{req.dir}
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		f, wd, dev, ino, err := d.openWatch(p)
		ld := listedDir{path: p, wd: wd, dev: dev, ino: ino, err: err, gone: f == nil && err == nil}
		if f != nil {
			ents, err := f.ReadDir(-1)
			f.Close()
			if err != nil {
				ld.err = fmt.Errorf("list: %w", err)
			}
			for _, e := range ents {
				if !e.IsDir() {
					continue
				}
				if q := filepath.Join(p, e.Name()); !req.mounts[q] {
					stack = append(stack, q)
				}
			}
		}
		out = append(out, ld)
		if len(out) == listChunk && !send(false) {
			return false
		}
	}
	return send(true)
}

// onListed records the watches of a part of a listing, applies the
// events they had meanwhile and, at the end of the listing, touches what
// it may have changed. On the loop.
func (d *Daemon) onListed(res listResult) {
	r := res.req.r
	live := d.roots[r.path] == r
	for _, ld := range res.dirs {
		owner := r
		if !live && !ld.gone {
			// The root was removed meanwhile: the watch is needed only
			// if the directory is in another root (an outer one, whose
			// events it brings) or is the parent of one; else it is
			// removed, unless the loop has it already.
			if !d.needed(ld.path) {
				if _, known := d.watches[ld.wd]; ld.err == nil && !known {
					d.in.rm(ld.wd)
				}
				continue
			}
			owner = d.rootOf(ld.path) // nil for the parent of a root
		}
		switch {
		case ld.gone:
		case ld.err != nil:
			if owner != nil {
				d.unwatchable(owner, ld.path, ld.err)
			}
		case d.removed[ld.wd]:
			// The loop removed this watch after the lister added it
			// (the directory was moved, say): the kernel no longer
			// watches it; watch it again.
			if f, err := d.addWatch(ld.path); err != nil {
				if owner != nil {
					d.unwatchable(owner, ld.path, err)
				}
			} else if f != nil {
				f.Close()
			}
		default:
			d.setWatch(ld.wd, ld.path, ld.dev, ld.ino)
			if owner == nil {
				continue
			}
			if _, was := owner.unwatchable[ld.path]; was {
				delete(owner.unwatchable, ld.path)
				d.updateDegraded(owner)
			}
		}
	}
	now := d.now()
	d.replayEarly(now)
	if !res.done {
		return
	}
	for _, o := range res.req.roots {
		o.listing--
		o.listEnded++
	}
	d.listing--
	d.listEnded++
	// Also when r was removed meanwhile: an outer root holds p.
	p := res.req.dir
	d.trackIdx.above(p, func(_ string, t *tracked) { d.touch(t, now) })
	d.trackIdx.below(p, func(_ string, t *tracked) { d.touch(t, now) })
	d.touchGit(p, true, now)
	if d.listing == 0 {
		d.early = nil // of watches dropped before they were recorded
		d.removed = nil
	}
	waiting := d.listWaiters[:0]
	for _, w := range d.listWaiters {
		if w.done(d) {
			close(w.ch)
		} else {
			waiting = append(waiting, w)
		}
	}
	d.listWaiters = waiting
}

// rmWatch removes a watch from the kernel. While a listing is under way,
// it remembers the watch descriptor: the lister may have added the same
// watch (the same inode) before it was removed. On the loop.
func (d *Daemon) rmWatch(wd int32) {
	d.in.rm(wd)
	if d.listing > 0 {
		if d.removed == nil {
			d.removed = map[int32]bool{}
		}
		d.removed[wd] = true
	}
}

// keepEarly keeps an event of a watch the loop does not know, while a
// listing may be about to record it; false if there is none. On the loop.
func (d *Daemon) keepEarly(ev inEvent) bool {
	if d.listing == 0 {
		return false
	}
	if len(d.early) == maxEarly {
		d.early = nil
		d.onOverflow() // as if the kernel's queue had overflowed
		return true
	}
	d.early = append(d.early, ev)
	return true
}

// replayEarly applies, in order, the kept events whose watches are now
// known.
func (d *Daemon) replayEarly(now time.Time) {
	if len(d.early) == 0 {
		return
	}
	var known []inEvent
	left := d.early[:0]
	for _, ev := range d.early {
		if d.watches[ev.wd] != nil {
			known = append(known, ev)
		} else {
			left = append(left, ev)
		}
	}
	d.early = left
	for _, ev := range known {
		d.onEvent(ev, now)
	}
}

// listWaiter's ch is closed when the listings of r (every listing, for
// a nil r) asked for before it are done. The lister takes them in order.
type listWaiter struct {
	r    *root
	upTo int
	ch   chan struct{}
}

func (w listWaiter) done(d *Daemon) bool {
	if w.r == nil {
		return d.listEnded >= w.upTo
	}
	return w.r.listEnded >= w.upTo
}

// listedCh returns a channel closed once the listings of r (every
// listing, for a nil r) asked for so far are done: later ones cannot keep
// it waiting. On the loop.
func (d *Daemon) listedCh(r *root) chan struct{} {
	w := listWaiter{r: r, upTo: d.listAsked, ch: make(chan struct{})}
	if r != nil {
		w.upTo = r.listAsked
	}
	if w.done(d) {
		close(w.ch)
		return w.ch
	}
	d.listWaiters = append(d.listWaiters, w)
	return w.ch
}

// unsure reports whether events cannot vouch for r: it is degraded, or
// a listing of its directories, or of directories of an inner root, is
// under way.
func (r *root) unsure() bool { return r.degraded || r.listing > 0 }
