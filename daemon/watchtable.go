//go:build linux

package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// dirWatch is one inotify watch: a directory, by watch descriptor. Its
// path is the name the loop last knew it by; dev and ino are the inode
// the kernel watches, so a path that now names another directory is
// told apart from the watched one.
type dirWatch struct {
	wd       int32
	path     string
	dev, ino uint64
}

// errWatchLimit marks a directory not watched for want of inotify watches.
var errWatchLimit = errors.New("the inotify watch limit (fs.inotify.max_user_watches) is reached")

// setWatch records that wd watches the directory at path. The kernel
// gives the same wd for an inode already watched: if the loop knew it by
// another name (its rename was lost, say to an overflow), the name is
// corrected; a watch the path named before, of another inode, is removed.
func (d *Daemon) setWatch(wd int32, path string, dev, ino uint64) {
	if w := d.watches[wd]; w != nil {
		if w.path == path {
			w.dev, w.ino = dev, ino
			return
		}
		if cur, ok := d.watchPaths.get(w.path); ok && cur == w {
			d.watchPaths.delete(w.path)
		}
		w.path, w.dev, w.ino = path, dev, ino
	} else {
		d.watches[wd] = &dirWatch{wd: wd, path: path, dev: dev, ino: ino}
	}
	if old, ok := d.watchPaths.get(path); ok && old.wd != wd {
		d.rmWatch(old.wd)
		delete(d.watches, old.wd)
	}
	d.watchPaths.set(path, d.watches[wd])
}

// dropWatch forgets a watch, and removes it from the kernel unless gone.
func (d *Daemon) dropWatch(w *dirWatch, gone bool) {
	if !gone {
		d.rmWatch(w.wd)
	}
	delete(d.watches, w.wd)
	if cur, ok := d.watchPaths.get(w.path); ok && cur == w {
		d.watchPaths.delete(w.path)
	}
}

// unwatchTree drops the watches of dir and of everything below it,
// except those keep says to keep.
func (d *Daemon) unwatchTree(dir string, keep func(path string) bool) {
	var drop []*dirWatch
	if w, ok := d.watchPaths.get(dir); ok {
		drop = append(drop, w)
	}
	d.watchPaths.below(dir, func(_ string, w *dirWatch) { drop = append(drop, w) })
	for _, w := range drop {
		if keep == nil || !keep(w.path) {
			d.dropWatch(w, false)
		}
	}
}

// addWatch watches the directory at path: it opens it (never through a
// symlink), watches the open inode and returns it for listing; nil with
// no error if path is not a directory any more. On the loop.
func (d *Daemon) addWatch(path string) (*os.File, error) {
	f, wd, dev, ino, err := d.openWatch(path)
	if f == nil || err != nil {
		return nil, err
	}
	d.setWatch(wd, path, dev, ino)
	return f, nil
}

// openWatch is addWatch but for recording the watch: the lister calls it
// too, and the loop records what it returns.
func (d *Daemon) openWatch(path string) (f *os.File, wd int32, dev, ino uint64, err error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
			return nil, 0, 0, 0, nil
		}
		return nil, 0, 0, 0, err
	}
	f = os.NewFile(uintptr(fd), path)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		return nil, 0, 0, 0, err
	}
	add := d.in.watchFD
	if d.testHookAdd != nil {
		add = func(fd int) (int32, error) {
			if err := d.testHookAdd(path); err != nil {
				return -1, err
			}
			return d.in.watchFD(fd)
		}
	}
	wd, err = add(fd)
	if err != nil {
		f.Close()
		if errors.Is(err, unix.ENOSPC) {
			return nil, 0, 0, 0, errWatchLimit
		}
		return nil, 0, 0, 0, err
	}
	return f, wd, st.Dev, st.Ino, nil
}

// watchTree watches dir and every directory below it, each watched first
// and listed second, so that nothing created in between is missed. A
// directory that cannot be watched (unreadable, a path past PATH_MAX, the
// watch limit) is recorded in r, which is then degraded; it is tried
// again on its next event, on a rescan and when the root is added again.
func (d *Daemon) watchTree(r *root, dir string) {
	stack := []string{dir}
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		f, err := d.addWatch(p)
		if err != nil {
			d.unwatchable(r, p, err)
			continue
		}
		if _, was := r.unwatchable[p]; was {
			delete(r.unwatchable, p)
			d.updateDegraded(r)
		}
		if f == nil {
			continue // gone already: its parent's event says so
		}
		ents, err := f.ReadDir(-1)
		f.Close()
		if err != nil {
			d.unwatchable(r, p, fmt.Errorf("list: %w", err))
			continue
		}
		for _, e := range ents {
			if e.IsDir() {
				stack = append(stack, filepath.Join(p, e.Name()))
			}
		}
	}
}

// unwatchable records that dir in r cannot be watched.
func (d *Daemon) unwatchable(r *root, dir string, err error) {
	if r.unwatchable == nil {
		r.unwatchable = map[string]error{}
	}
	if _, was := r.unwatchable[dir]; !was {
		d.log.Warn("cannot watch", "root", r.path, "path", clip(dir), "err", err)
	}
	r.unwatchable[dir] = err
	d.updateDegraded(r)
}

// goneUnwatchable forgets the directories that could not be watched at
// or below dir, which is gone from its path (removed or moved away): a
// root degraded only by them is watched whole again. One moved within
// the root is tried again when it is listed at its new path.
func (d *Daemon) goneUnwatchable(dir string) {
	d.rootIdx.above(dir, func(_ string, r *root) {
		n := len(r.unwatchable)
		for p := range r.unwatchable {
			if within(p, dir) {
				delete(r.unwatchable, p)
			}
		}
		if len(r.unwatchable) != n {
			d.updateDegraded(r)
		}
	})
}

// watchCount is the number of watches at or below path.
func (d *Daemon) watchCount(path string) int {
	n := 0
	if _, ok := d.watchPaths.get(path); ok {
		n++
	}
	d.watchPaths.below(path, func(string, *dirWatch) { n++ })
	return n
}
