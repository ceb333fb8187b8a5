//go:build linux

package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/narhash/narhash/api"
	"github.com/narhash/narhash/cache"
	"golang.org/x/sys/unix"
)

// root is a watched tree. It is watched as a whole: the directories in
// it, and its parent directory, whose events say when the root itself is
// removed, replaced or made anew. What the root's path names is checked
// again on every query (dev and inode), so a symlink on its path that is
// retargeted, or a filesystem mounted over it, is seen too.
type root struct {
	*tracked
	degraded    bool            // validated by stat walk on every query
	warning     string          // why it is degraded
	validate    bool            // the user asked for a stat walk on every query
	remote      bool            // on NFS, FUSE and the like
	mountedIn   string          // a filesystem mounted strictly inside it
	mounts      map[string]bool // all such mount points, which listings do not enter
	unwatchable map[string]error
	dev, ino    uint64 // what the path named when it was last watched
	seated      bool   // dev and ino are set
	listing     int    // listings of its directories under way (lister.go)
	listAsked   int    // listings of its directories asked for, ever
	listEnded   int    // and done
}

// updateDegraded sets r.degraded and r.warning from their causes.
func (d *Daemon) updateDegraded(r *root) {
	var why []string
	if r.validate {
		why = append(why, "validated on every query, as asked (--validate)")
	}
	if r.remote {
		why = append(why, "on a network or FUSE filesystem, which inotify cannot watch: every query checks it by a stat walk")
	}
	if r.mountedIn != "" {
		why = append(why, fmt.Sprintf("a filesystem is mounted at %s inside it: every query checks it by a stat walk", clip(r.mountedIn)))
	}
	limit := false
	var other []string
	for dir, err := range r.unwatchable {
		if errors.Is(err, errWatchLimit) {
			limit = true
		} else {
			other = append(other, fmt.Sprintf("%s (%v)", clip(dir), err))
		}
	}
	if limit {
		why = append(why, "the inotify watch limit (fs.inotify.max_user_watches) is reached: every query checks this root by a stat walk; raise the limit with 'sudo sysctl fs.inotify.max_user_watches=1048576' and re-add the root (narhash watch add)")
	}
	if len(other) > 0 {
		sort.Strings(other)
		if len(other) > 3 {
			other = append(other[:3], fmt.Sprintf("and %d more", len(other)-3))
		}
		why = append(why, "cannot watch "+strings.Join(other, ", ")+": every query checks this root by a stat walk until they can be watched (a chmod of them is noticed)")
	}
	was := r.degraded
	r.degraded, r.warning = len(why) > 0, strings.Join(why, "; ")
	if r.degraded && !was {
		d.log.Warn("root degraded", "root", r.path, "err", r.warning)
	}
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
		if _, err := d.addRoot(r.Path, r.Validate, false); err != nil {
			d.log.Warn("cannot watch a saved root", "root", r.Path, "err", err)
		}
	}
	for _, p := range d.cfg.Watch {
		abs, err := filepath.Abs(p)
		if err != nil || seen[abs] {
			continue
		}
		if _, err := d.addRoot(abs, false, true); err != nil {
			d.log.Error("cannot watch", "root", abs, "err", err)
			d.warnings = append(d.warnings, fmt.Sprintf("cannot watch %s: %v", abs, err))
		}
	}
}

// addRoot starts watching path; with save, it is kept in the database.
// A root added again is watched again from scratch: whatever could not be
// watched before (the watch limit, an unreadable directory) is retried.
func (d *Daemon) addRoot(path string, validate, save bool) (*root, error) {
	if _, err := os.Lstat(path); err != nil {
		return nil, api.Errorf(404, "cannot watch %s: %v", clip(path), err)
	}
	if within(d.cookies.dir, path) {
		return nil, api.Errorf(400, "cannot watch %s: it holds narhashd's own directory %s, whose files would change its hash; give narhashd a --socket outside it", clip(path), d.cookies.dir)
	}
	r, ok := d.roots[path]
	if !ok {
		r = &root{}
		t := d.tracked[path] // a path inside another root that becomes a root of its own
		if t == nil {
			t = d.newTracked(path)
		}
		r.tracked = t
		d.roots[path] = r
		d.rootIdx.set(path, r)
	}
	r.tracked.root = r
	// Paths inside it that belonged to an outer root now belong to it.
	d.trackIdx.below(path, func(_ string, t *tracked) {
		if t.root != r && within(r.path, t.root.path) {
			t.root = r
		}
	})
	r.validate = validate
	if save {
		if err := d.store.AddRoot(cache.Root{Path: path, Added: time.Now(), Validate: validate}); err != nil {
			d.log.Error("save root", "root", path, "err", err)
			d.storeFault(err)
		}
	}
	d.seat(r)
	d.log.Info("watching", "root", path, "listing", r.listing > 0, "degraded", r.degraded)
	if r.listing == 0 {
		// Else it is hashed when its listing ends (onListed touches it).
		d.schedule(r.tracked, true)
	}
	return r, nil
}

// seat watches r as its path is now: the parent directory, then the tree
// if it is a directory; it records what the path names, and invalidates
// every path in it, since whatever happened before was not seen.
func (d *Daemon) seat(r *root) {
	r.unwatchable = nil
	r.remote = remote(r.path)
	r.mountedIn = d.mounts.inside(r.path)
	r.mounts = d.mounts.allInside(r.path)
	r.seated = false
	if parent := filepath.Dir(r.path); parent != r.path {
		if f, err := d.addWatch(parent); err == nil && f != nil {
			f.Close()
		} else if err != nil {
			d.unwatchable(r, parent, err)
		}
	}
	d.watchLinks(r)
	var st unix.Stat_t
	if err := unix.Lstat(r.path, &st); err == nil {
		r.dev, r.ino, r.seated = st.Dev, st.Ino, true
		if st.Mode&unix.S_IFMT == unix.S_IFDIR && !r.remote {
			d.listLater(r, r.path)
		}
	}
	d.updateDegraded(r)
	now := d.now()
	d.trackIdx.above(r.path, func(_ string, t *tracked) { d.touch(t, now) })
	d.trackIdx.below(r.path, func(_ string, t *tracked) { d.touch(t, now) })
}

// watchLinks watches the directory of each symlink on the way to r, so
// that retargeting one is seen when it happens, by subscribers too (a
// query checks what the path names anyway).
func (d *Daemon) watchLinks(r *root) {
	end := 0
	components(filepath.Dir(r.path), func(name string) bool {
		end += 1 + len(name)
		q := r.path[:end]
		st, err := os.Lstat(q)
		if err != nil {
			return false
		}
		if st.Mode()&os.ModeSymlink != 0 {
			if !slices.Contains(d.links[q], r) {
				d.links[q] = append(d.links[q], r)
			}
			if f, err := d.addWatch(filepath.Dir(q)); err == nil && f != nil {
				f.Close()
			}
		}
		return true
	})
}

// forgetLinks undoes watchLinks for a root no longer watched.
func (d *Daemon) forgetLinks(r *root) {
	for q, rs := range d.links {
		if i := slices.Index(rs, r); i >= 0 {
			rs = slices.Delete(rs, i, i+1)
			if len(rs) > 0 {
				d.links[q] = rs
				continue
			}
			delete(d.links, q)
			if dir := filepath.Dir(q); !d.needed(dir) {
				if w, ok := d.watchPaths.get(dir); ok {
					d.dropWatch(w, false)
				}
			}
		}
	}
}

// checkSeat makes sure r is watched as what its path names now: a root
// removed and made anew, replaced, or reached through a symlink that was
// retargeted or a filesystem mounted over it, is watched again.
func (d *Daemon) checkSeat(r *root) {
	var st unix.Stat_t
	err := unix.Lstat(r.path, &st)
	switch {
	case err != nil && !r.seated:
		return // still missing
	case err == nil && r.seated && st.Dev == r.dev && st.Ino == r.ino:
		if st.Mode&unix.S_IFMT != unix.S_IFDIR || r.remote {
			return
		}
		if w, ok := d.watchPaths.get(r.path); ok && w.dev == st.Dev && w.ino == st.Ino {
			return
		}
	}
	d.log.Info("root changed under its path: watching it anew", "root", r.path)
	d.unwatchTree(r.path, func(p string) bool { return false })
	d.seat(r)
}

// removeRoot stops watching path.
func (d *Daemon) removeRoot(path string) error {
	r, ok := d.roots[path]
	if !ok {
		return api.Errorf(404, "%s is not watched", clip(path))
	}
	delete(d.roots, path)
	d.rootIdx.delete(path)
	d.forgetLinks(r)
	d.unwatchTree(path, d.needed)
	if parent := filepath.Dir(path); !d.needed(parent) {
		if w, ok := d.watchPaths.get(parent); ok {
			d.dropWatch(w, false)
		}
	}
	if err := d.store.RemoveRoot(path); err != nil {
		d.log.Error("forget root", "root", path, "err", err)
		d.storeFault(err)
	}
	// Paths inside it are no longer tracked, unless another root holds them.
	var gone []*tracked
	d.trackIdx.above(path, func(_ string, t *tracked) {
		if t.path == path {
			gone = append(gone, t)
		}
	})
	d.trackIdx.below(path, func(_ string, t *tracked) { gone = append(gone, t) })
	for _, t := range gone {
		if t.root != r {
			continue
		}
		if other := d.rootOf(t.path); other != nil {
			t.root = other
			continue
		}
		err := fmt.Errorf("%s is no longer watched", clip(path))
		if t.path == path {
			// Its entry stays: the root added again is served from it
			// once a stat walk matches, not hashed whole again.
			d.untrack(t, err)
			continue
		}
		d.forget(t, err)
	}
	d.rootGoneGit(r)
	return nil
}

// needed reports whether the directory at p must stay watched: it is in
// a root (not a remote one), or is the parent of one or of a symlink on
// the way to one.
func (d *Daemon) needed(p string) bool {
	if r := d.rootOf(p); r != nil && !r.remote {
		return true
	}
	for q := range d.links {
		if filepath.Dir(q) == p {
			return true
		}
	}
	n := d.rootIdx.find(p)
	if n == nil {
		return false
	}
	for _, k := range n.kids {
		if k.has {
			return true
		}
	}
	return false
}

// rootOf returns the innermost root that path is in, or nil.
func (d *Daemon) rootOf(path string) *root {
	_, r, _ := d.rootIdx.deepest(path)
	return r
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

// clipErr shortens an error's message the same way: one that quotes a
// long path.
func clipErr(err error) error {
	if msg := err.Error(); len(msg) > 512 {
		return fmt.Errorf("%s…(%d bytes)…%s", msg[:200], len(msg)-400, msg[len(msg)-200:])
	}
	return err
}

// clip shortens a path for a message or a log line: the first and last
// 100 bytes of one longer than 256.
func clip(p string) string {
	if len(p) <= 256 {
		return p
	}
	return fmt.Sprintf("%s…(%d bytes)…%s", p[:100], len(p)-200, p[len(p)-100:])
}
