package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/narhash/narhash/api"
	"github.com/narhash/narhash/cache"
	"golang.org/x/sys/unix"
)

// tracked is a path whose hash the daemon keeps fresh: a root, or a path
// inside a root that was asked for. Owned by the loop.
type tracked struct {
	path     string
	root     *root // the watched root it is in (itself, for a root)
	gen      uint64
	entry    *cache.Entry
	entryGen uint64 // the generation entry was computed at
	verified bool   // entry was computed or stat-checked by this run
	agg      aggregator
	job      *job
	queued   bool
	waiters  []chan result
	subs     map[chan api.Hash]struct{}
	err      error // the last job's failure, until the next success
	// staleBefore: no job begun before this time may answer a query. Set
	// when a query cannot rely on events: a degraded root, a failed barrier.
	staleBefore time.Time
}

// result is what a waiting query gets.
type result struct {
	hash api.Hash
	err  error
}

// fresh reports whether the entry is the hash of the tree as it is.
func (t *tracked) fresh() bool {
	return t.entry != nil && t.entryGen == t.gen && t.verified && !t.root.degraded
}

// current reports whether the running job, if any, can answer a query
// that is waiting now.
func (t *tracked) current() bool {
	return t.job != nil && t.job.gen == t.gen && !t.job.start.Before(t.staleBefore)
}

func (t *tracked) apiHash(d *Daemon, source string) api.Hash {
	return api.Hash{
		Path: t.path, Root: t.root.path, Digest: t.entry.Hash, NARSize: t.entry.NARSize, Source: source,
		Computed: t.entry.Computed, Took: t.entry.Took, Epoch: d.epoch, Degraded: t.root.degraded,
	}
}

// fail answers every waiter with err.
func (t *tracked) fail(err error) {
	for _, w := range t.waiters {
		w <- result{err: err}
	}
	t.waiters = nil
}

// root is a watched tree.
type root struct {
	*tracked
	watches  map[string]bool // watched directories
	degraded bool            // not (fully) watched: validated by stat walk on every query
	warning  string
}

// startup loads the roots kept in the database and those of the config,
// watches them and schedules the check of their cached entries.
func (d *Daemon) startup() {
	roots, err := d.store.Roots()
	if err != nil {
		d.log.Error("read roots", "err", err)
	}
	seen := map[string]bool{}
	for _, r := range roots {
		seen[r.Path] = true
		if _, err := d.addRoot(r.Path, false); err != nil {
			d.log.Warn("cannot watch a saved root", "root", r.Path, "err", err)
		}
	}
	for _, p := range d.cfg.Watch {
		abs, err := filepath.Abs(p)
		if err != nil || seen[abs] {
			continue
		}
		if _, err := d.addRoot(abs, true); err != nil {
			d.log.Error("cannot watch", "root", abs, "err", err)
			d.warnings = append(d.warnings, fmt.Sprintf("cannot watch %s: %v", abs, err))
		}
	}
}

// addRoot starts watching path; with save, it is kept in the database.
func (d *Daemon) addRoot(path string, save bool) (*root, error) {
	if r, ok := d.roots[path]; ok {
		return r, nil
	}
	st, err := os.Lstat(path)
	if err != nil {
		return nil, api.Errorf(404, "cannot watch %s: %v", path, err)
	}
	if within(d.cookies.dir, path) {
		return nil, api.Errorf(400, "cannot watch %s: it holds narhashd's own directory %s, whose files would change its hash; give narhashd a --socket outside it", path, d.cookies.dir)
	}
	r := &root{watches: map[string]bool{}}
	t := d.tracked[path] // a path inside another root that becomes a root of its own
	if t == nil {
		t = &tracked{path: path}
		d.loadEntry(t)
		d.tracked[path] = t
	}
	r.tracked = t
	t.root = r
	d.roots[path] = r
	if save {
		if err := d.store.AddRoot(cache.Root{Path: path, Added: time.Now()}); err != nil {
			d.log.Error("save root", "root", path, "err", err)
		}
	}
	if remote(path) {
		r.degraded = true
		r.warning = "on a network or FUSE filesystem, which inotify cannot watch: every query checks it by a stat walk"
	} else if st.IsDir() {
		d.watchTree(r, path)
	} else {
		d.watch(r, filepath.Dir(path)) // a file or symlink root: its directory's events name it
	}
	d.log.Info("watching", "root", path, "watches", len(r.watches), "degraded", r.degraded)
	d.schedule(t, true)
	return r, nil
}

// loadEntry gives t its cached entry, unverified.
func (d *Daemon) loadEntry(t *tracked) {
	if e, ok, err := d.store.Get(t.path); err == nil && ok {
		t.entry, t.entryGen, t.verified = &e, t.gen, false
	}
}

// removeRoot stops watching path.
func (d *Daemon) removeRoot(path string) error {
	r, ok := d.roots[path]
	if !ok {
		return api.Errorf(404, "%s is not watched", path)
	}
	for dir := range r.watches {
		if !d.watchedByOther(dir, r) {
			d.watcher.Remove(dir)
		}
	}
	delete(d.roots, path)
	if err := d.store.RemoveRoot(path); err != nil {
		d.log.Error("forget root", "root", path, "err", err)
	}
	// Paths inside it are no longer tracked, unless another root holds them.
	for p, t := range d.tracked {
		if t.root == r {
			if other := d.rootOf(p); other != nil {
				t.root = other
				continue
			}
			if t.job != nil {
				t.job.cancel()
			}
			t.fail(fmt.Errorf("%s is no longer watched", path))
			delete(d.tracked, p)
		}
	}
	return nil
}

func (d *Daemon) watchedByOther(dir string, r *root) bool {
	for _, o := range d.roots {
		if o != r && o.watches[dir] {
			return true
		}
	}
	return false
}

// rootOf returns the innermost root that path is in, or nil.
func (d *Daemon) rootOf(path string) *root {
	var best *root
	for p, r := range d.roots {
		if within(path, p) && (best == nil || len(p) > len(best.path)) {
			best = r
		}
	}
	return best
}

// ensureWatched watches a directory root again after it was removed (and
// perhaps created anew): its own watch went with it, and nothing above
// it is watched. Whatever happened meanwhile was not seen, so every path
// in it is invalidated.
func (d *Daemon) ensureWatched(r *root) {
	if r.degraded || r.watches[r.path] {
		return
	}
	st, err := os.Lstat(r.path)
	if err != nil || !st.IsDir() {
		return // a file root watches its directory; a missing root fails its job
	}
	d.watchTree(r, r.path)
	now := time.Now()
	for p, t := range d.tracked {
		if within(p, r.path) {
			d.touch(t, now)
		}
	}
}

// watchTree watches dir and every directory below it: each is watched
// first and listed second, so that nothing created in between is missed.
func (d *Daemon) watchTree(r *root, dir string) {
	if !d.watch(r, dir) {
		return
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return // gone already: its parent's event says so
	}
	for _, e := range ents {
		if e.IsDir() {
			d.watchTree(r, filepath.Join(dir, e.Name()))
		}
	}
}

// watch adds one directory's watch; false if it could not.
func (d *Daemon) watch(r *root, dir string) bool {
	if r.watches[dir] {
		return true
	}
	add := d.watcher.Add
	if d.testHookAdd != nil {
		add = d.testHookAdd
	}
	if err := add(dir); err != nil {
		if errors.Is(err, syscall.ENOSPC) {
			if !r.degraded {
				r.degraded = true
				r.warning = "the inotify watch limit (fs.inotify.max_user_watches) is reached: every query checks this root by a stat walk; raise the limit with 'sudo sysctl fs.inotify.max_user_watches=1048576' and re-add the root"
				d.log.Warn("inotify watch limit reached", "root", r.path, "path", dir)
			}
		} else if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			d.log.Warn("cannot watch", "path", dir, "err", err)
		}
		return false
	}
	r.watches[dir] = true
	return true
}

// onEvent applies one watcher event.
func (d *Daemon) onEvent(ev fsnotify.Event) {
	if filepath.Dir(ev.Name) == d.cookies.dir {
		if ev.Has(fsnotify.Create) {
			d.cookies.seen(filepath.Base(ev.Name))
		}
		return
	}
	now := time.Now()
	for p, t := range d.tracked {
		if affects(ev.Name, p) {
			d.touch(t, now)
		}
	}
	switch {
	case ev.Has(fsnotify.Create):
		if st, err := os.Lstat(ev.Name); err == nil && st.IsDir() {
			if r := d.rootOf(ev.Name); r != nil && !r.degraded {
				d.watchTree(r, ev.Name)
			}
		}
	case ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename):
		// A renamed directory keeps its watch under the old name: drop
		// it and those below, as for a removal; its new name's Create
		// adds them back.
		for _, r := range d.roots {
			for dir := range r.watches {
				if within(dir, ev.Name) {
					delete(r.watches, dir)
					if !d.watchedByOther(dir, r) {
						d.watcher.Remove(dir)
					}
				}
			}
		}
	}
}

// touch records a change of t: its entry is no longer current, and a
// job hashing the old state is cancelled.
func (d *Daemon) touch(t *tracked, now time.Time) {
	t.gen++
	t.agg.touch(now)
	if t.job != nil && t.job.gen != t.gen {
		t.job.cancel()
	}
}

// onWatchError handles an error from the watcher: an overflow means lost
// events, so everything is rescanned and rehashed.
func (d *Daemon) onWatchError(err error) {
	if !errors.Is(err, fsnotify.ErrEventOverflow) {
		d.log.Warn("watcher", "err", err)
		return
	}
	d.epoch++
	d.overflows++
	d.log.Warn("inotify queue overflowed: events were lost; rescanning every root", "epoch", d.epoch)
	now := time.Now()
	for _, r := range d.roots {
		if !r.degraded {
			if st, err := os.Lstat(r.path); err == nil && st.IsDir() {
				d.watchTree(r, r.path)
			}
		}
	}
	for _, t := range d.tracked {
		d.touch(t, now)
	}
	d.cookies.failAll() // their events may have been lost too
}

// remote reports whether path is on a filesystem inotify cannot watch.
func remote(path string) bool {
	var st unix.Statfs_t
	if unix.Statfs(path, &st) != nil {
		return false
	}
	switch uint32(st.Type) {
	case unix.NFS_SUPER_MAGIC, unix.SMB_SUPER_MAGIC, 0xFF534D42 /* CIFS */, 0xFE534D42, /* SMB2 */
		unix.FUSE_SUPER_MAGIC, unix.V9FS_MAGIC, unix.CEPH_SUPER_MAGIC, unix.AFS_SUPER_MAGIC, unix.CODA_SUPER_MAGIC:
		return true
	}
	return false
}
