//go:build linux

package daemon

import (
	"context"
	"fmt"
	"path/filepath"
	"time"
)

// The listing of new directories, off the loop. A new root, a directory
// made or moved into a root (a mkdir -p, a checkout) is watched and
// listed, recursively, by the lister goroutine, so that queries of other
// roots are not kept waiting behind a large tree. Each directory is
// watched first and listed second, as watchTree does. Meanwhile:
//   - a query of the root waits, off the loop, for the listings of it
//     asked for before the query (Hash); while later ones are under way
//     the root counts as unsure (root.unsure) and the query is checked
//     by a stat walk, as a degraded root's are, since a change in a
//     directory not yet watched has no event;
//   - events of watches the loop does not know yet are kept (d.early) and
//     applied once the lister's results have recorded those watches;
//   - when a listing ends, everything at, above and below its directory
//     is touched, so that an entry computed meanwhile is not served.
// Overflow rescans and the re-watch of a directory after a chmod stay on
// the loop (watchTree): rare, and small or needing everything at once.

// listReq asks the lister for the watches of dir and all below it.
type listReq struct {
	r   *root
	dir string
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
// lister. On the loop.
func (d *Daemon) listLater(r *root, dir string) {
	r.listing++
	d.listing++
	r.listAsked++
	d.listAsked++
	d.listQ = append(d.listQ, &listReq{r: r, dir: dir})
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
				if e.IsDir() {
					stack = append(stack, filepath.Join(p, e.Name()))
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
		switch {
		case ld.gone:
		case !live:
			// The root was removed meanwhile: the watch is not needed,
			// unless the loop has it for another root.
			if _, known := d.watches[ld.wd]; ld.err == nil && !known && !d.needed(ld.path) {
				d.in.rm(ld.wd)
			}
		case ld.err != nil:
			d.unwatchable(r, ld.path, ld.err)
		case d.removed[ld.wd]:
			// The loop removed this watch after the lister added it
			// (the directory was moved, say): the kernel no longer
			// watches it; watch it again.
			if f, err := d.addWatch(ld.path); err != nil {
				d.unwatchable(r, ld.path, err)
			} else if f != nil {
				f.Close()
			}
		default:
			d.setWatch(ld.wd, ld.path, ld.dev, ld.ino)
			if _, was := r.unwatchable[ld.path]; was {
				delete(r.unwatchable, ld.path)
				d.updateDegraded(r)
			}
		}
	}
	now := time.Now()
	d.replayEarly(now)
	if !res.done {
		return
	}
	r.listing--
	d.listing--
	r.listEnded++
	d.listEnded++
	if live {
		p := res.req.dir
		d.trackIdx.above(p, func(_ string, t *tracked) { d.touch(t, now) })
		d.trackIdx.below(p, func(_ string, t *tracked) { d.touch(t, now) })
		d.touchGit(p, true, now)
	}
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
// a listing of its directories is under way.
func (r *root) unsure() bool { return r.degraded || r.listing > 0 }
