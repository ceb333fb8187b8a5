//go:build linux

package daemon

import (
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// onEvents applies a batch of inotify events, in order.
func (d *Daemon) onEvents(batch []inEvent) {
	now := d.now()
	for _, ev := range batch {
		if ev.err != nil || ev.mask&unix.IN_Q_OVERFLOW != 0 {
			if ev.err != nil {
				d.log.Warn("watcher", "err", ev.err)
			}
			d.onOverflow()
			continue
		}
		if d.testDrop && ev.wd != d.cookies.wd {
			continue
		}
		d.onEvent(ev, now)
	}
}

// onEvent applies one event. Its path is the one the loop knows its watch
// by, which every rename the loop saw has kept up to date.
func (d *Daemon) onEvent(ev inEvent, now time.Time) {
	w := d.watches[ev.wd]
	if w == nil {
		// A watch the lister added and the loop has yet to record, or
		// one already dropped, whose events are of no use.
		d.keepEarly(ev)
		return
	}
	if ev.wd == d.cookies.wd {
		d.onCookieEvent(ev)
		return
	}
	if ev.mask&unix.IN_IGNORED != 0 {
		d.dropWatch(w, true) // the kernel dropped it: deleted, or unmounted
		return
	}
	if ev.mask&unix.IN_UNMOUNT != 0 {
		d.mountsChanged()
		return
	}
	p := w.path
	if ev.name != "" {
		p = filepath.Join(w.path, ev.name)
	}
	isDir := ev.mask&unix.IN_ISDIR != 0 || ev.name == ""
	structural := ev.mask&(unix.IN_CREATE|unix.IN_DELETE|unix.IN_MOVED_FROM|unix.IN_MOVED_TO|unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) != 0
	d.trackIdx.above(p, func(_ string, t *tracked) { d.touchAt(t, p, now) })
	if structural && isDir {
		d.trackIdx.below(p, func(_ string, t *tracked) { d.touch(t, now) })
	}
	d.touchGit(p, structural && isDir, now)
	switch {
	case ev.mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) != 0:
		// The directory is gone from this path; if it was moved within a
		// root, its new name's event watches it again.
		d.unwatchTree(w.path, nil)
		d.goneUnwatchable(w.path)
	case isDir && ev.mask&(unix.IN_DELETE|unix.IN_MOVED_FROM) != 0:
		d.unwatchTree(p, nil)
		d.goneUnwatchable(p)
	case isDir && ev.mask&(unix.IN_CREATE|unix.IN_MOVED_TO) != 0:
		if r := d.rootOf(p); r != nil && !r.remote {
			d.listLater(r, p)
		}
	case isDir && ev.mask&unix.IN_ATTRIB != 0:
		// A directory that could not be watched may be readable now.
		if r := d.rootOf(p); r != nil {
			if _, ok := r.unwatchable[p]; ok {
				d.watchTree(r, p)
			}
		}
	}
	for _, r := range d.links[p] {
		d.checkSeat(r) // a symlink on the way to r changed
	}
	if r, ok := d.roots[p]; ok && ev.mask&(unix.IN_CREATE|unix.IN_MOVED_TO|unix.IN_DELETE|unix.IN_MOVED_FROM) != 0 {
		// The root itself was made, replaced or removed (an event of its
		// parent's watch): watch what its path names now.
		d.checkSeat(r)
	}
}

// onOverflow handles lost events: every root is rescanned by the lister
// (meanwhile it is unsure: queries wait for it, or check by stat walk),
// each watch checked against what its path names now, and everything
// rehashed.
func (d *Daemon) onOverflow() {
	d.epoch++
	d.overflows++
	d.log.Warn("inotify queue overflowed: events were lost; rescanning every root", "epoch", d.epoch)
	now := d.now()
	// A watch whose path names another inode now (a lost rename or
	// removal) is dropped; the rescan watches the path anew.
	for _, w := range d.watches {
		if w.wd == d.cookies.wd {
			continue
		}
		var st unix.Stat_t
		if unix.Lstat(w.path, &st) != nil || st.Dev != w.dev || st.Ino != w.ino {
			d.dropWatch(w, false)
		}
	}
	for _, r := range d.roots {
		d.checkSeat(r)
		if !r.remote && r.seated {
			d.listLater(r, r.path)
		}
	}
	for _, t := range d.tracked {
		d.touch(t, now)
	}
	d.touchAllGit(now)
	d.cookies.failAll() // their events may have been lost too
}
