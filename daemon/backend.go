//go:build linux

package daemon

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/narhash/narhash/api"
	"github.com/narhash/narhash/cache"
	"github.com/narhash/narhash/hasher"
	"github.com/narhash/narhash/nar"
	"github.com/narhash/narhash/nar/gitview"
)

var errStopped = api.Errorf(http.StatusServiceUnavailable, "narhashd is shutting down")

// Hash returns the NAR hash of path as it is now: at some moment after the
// call. A path inside a watched root is answered from memory once the
// watcher has caught up; a path outside every root is checked by a stat
// walk against its cached entry, and hashed if that differs (by the
// worker pool). With watch, the path becomes a root first. view is what of
// the path is hashed: api.ViewGit for its git view (see gitview.go).
func (d *Daemon) Hash(ctx context.Context, path string, view api.View, watch bool) (api.Hash, error) {
	path, err := resolveQuery(path)
	if err != nil {
		return api.Hash{}, hashError(path, err)
	}
	if watch {
		if _, err := d.AddRoot(ctx, path, api.RootOptions{}); err != nil {
			return api.Hash{}, err
		}
	}
	barrier := d.cookies.wait(ctx, d.cfg.CookieTimeout)
	if ctx.Err() != nil {
		return api.Hash{}, ctx.Err()
	}
	ch := make(chan result, 1)
	var immediate *result
	inRoot, resolve := false, false
	var listed chan struct{}
	call := func() {
		if d.mounts.changed() {
			d.mountsChanged()
		}
		r := d.rootOf(path)
		if r == nil {
			return
		}
		d.checkSeat(r)
		if listed == nil && r.listing > 0 {
			// Wait, off the loop, for the listings of r asked for
			// so far (the lister holds its directories open while
			// it lists them), then ask again; a later listing makes
			// the answer a stat walk's (root.unsure).
			listed = d.listedCh(r)
			return
		}
		listed = nil
		if throughSymlink(r, path) {
			resolve = true // it leads outside what r's watches see
			return
		}
		t := d.trackView(path, r, view)
		inRoot = true
		if barrier != nil || t.root.unsure() || d.cookieFault != "" {
			// Events cannot vouch for the tree: check it by a stat walk
			// begun after this query.
			t.verified = false
			t.staleBefore = time.Now()
			t.changes.all = true
		}
		if t.fresh() && t.gitCurrent() {
			immediate = &result{hash: t.apiHash(d, "cache")}
			return
		}
		t.waiters = append(t.waiters, waiter{ch, t.staleBefore})
		if d.testHookWaits != nil {
			d.testHookWaits(path)
		}
		d.schedule(t, true)
	}
	if err := d.callErr(ctx, call); err != nil {
		return api.Hash{}, err
	}
	if listed != nil {
		select {
		case <-listed:
		case <-ctx.Done():
			return api.Hash{}, ctx.Err()
		case <-d.stopped:
			return api.Hash{}, errStopped
		}
		if err := d.callErr(ctx, call); err != nil {
			return api.Hash{}, err
		}
	}
	if resolve {
		real, err := filepath.EvalSymlinks(filepath.Dir(path))
		if err != nil {
			return api.Hash{}, hashError(path, err)
		}
		return d.hashOutside(ctx, filepath.Join(real, filepath.Base(path)), view)
	}
	if !inRoot {
		return d.hashOutside(ctx, path, view)
	}
	if immediate != nil {
		return immediate.hash, nil
	}
	select {
	case r := <-ch:
		if r.err != nil {
			return api.Hash{}, hashError(path, r.err)
		}
		return r.hash, nil
	case <-ctx.Done():
		return api.Hash{}, ctx.Err()
	case <-d.stopped:
		return api.Hash{}, errStopped
	}
}

// track returns the tracked path for path, in root r, starting to track
// it if need be. Runs on the loop.
func (d *Daemon) track(path string, r *root) *tracked {
	t := d.tracked[path]
	if t == nil {
		t = d.newTracked(path)
		t.root = r
	}
	t.used = d.now()
	d.sweepIdle()
	return t
}

// hashOutside answers for a path outside every root, by a job of the
// worker pool: its cached entry if a stat walk matches the entry's
// fingerprint, else a new hash.
func (d *Daemon) hashOutside(ctx context.Context, path string, view api.View) (api.Hash, error) {
	j := &job{outside: path, reply: make(chan *job, 1), git: view == api.ViewGit}
	j.ctx, j.cancel = context.WithCancel(ctx)
	defer j.cancel()
	if err := d.callErr(ctx, func() { d.outq = append(d.outq, j) }); err != nil {
		return api.Hash{}, err
	}
	select {
	case <-j.reply:
	case <-ctx.Done():
		return api.Hash{}, ctx.Err()
	case <-d.stopped:
		return api.Hash{}, errStopped
	}
	if j.err != nil {
		return api.Hash{}, hashError(path, j.err)
	}
	return j.out, nil
}

// runOutside is a worker's part of hashOutside.
func (d *Daemon) runOutside(j *job) {
	path := j.outside
	fp, _, err := nar.StatTree(j.ctx, path)
	if err != nil {
		j.err = err
		return
	}
	if e, ok, err := d.store.Get(path); err == nil && ok && e.Fingerprint == fp && !fp.Racy(e.Computed.UnixNano()) {
		j.out = api.Hash{Path: path, Digest: e.Hash, NARSize: e.NARSize, Source: "validated", Computed: e.Computed, Took: e.Took}
		return
	}
	start := time.Now()
	res, err := hasher.HashPath(j.ctx, path, nil)
	if err != nil {
		j.err = err
		return
	}
	e := cache.Entry{Hash: [32]byte(res.Hash.Digest), NARSize: res.NARSize, Fingerprint: res.Fingerprint, Computed: start, Took: time.Since(start)}
	j.save = &cache.Item{Path: path, Entry: e}
	j.out = api.Hash{Path: path, Digest: e.Hash, NARSize: e.NARSize, Source: "computed", Computed: e.Computed, Took: e.Took}
}

// hashError gives an error its HTTP status: a missing path is 404, a tree
// narhash cannot hash (a FIFO in it) 422.
func hashError(path string, err error) error {
	var ae *api.Error
	switch {
	case errors.As(err, &ae):
		return err
	case errors.Is(err, os.ErrNotExist):
		return api.Errorf(http.StatusNotFound, "hash %s: %v", clip(path), clipErr(err))
	case errors.Is(err, nar.ErrUnsupportedType), errors.Is(err, gitview.ErrNotWorktree):
		return api.Errorf(http.StatusUnprocessableEntity, "hash %s: %v", clip(path), clipErr(err))
	}
	return api.Errorf(http.StatusInternalServerError, "hash %s: %v", clip(path), clipErr(err))
}

// Roots lists the watched roots.
func (d *Daemon) Roots(ctx context.Context) ([]api.Root, error) {
	var roots []api.Root
	if err := d.callErr(ctx, func() { roots = d.rootList() }); err != nil {
		return nil, err
	}
	return roots, nil
}

// AddRoot starts watching path and keeps it across restarts. A root
// added again is watched again from scratch.
func (d *Daemon) AddRoot(ctx context.Context, path string, opt api.RootOptions) (api.Root, error) {
	path, err := resolveQuery(path)
	if err != nil {
		return api.Root{}, api.Errorf(http.StatusNotFound, "cannot watch %s: %v", clip(path), clipErr(err))
	}
	var out api.Root
	var r *root
	var listed chan struct{}
	if cerr := d.callErr(ctx, func() {
		if r, err = d.addRoot(path, opt.Validate, true); err == nil {
			listed = d.listedCh(r)
		}
	}); cerr != nil {
		return api.Root{}, cerr
	}
	if err != nil {
		return api.Root{}, err
	}
	// The answer says what is watched: wait for the listing, off the
	// loop (queries meanwhile check r by stat walks).
	select {
	case <-listed:
	case <-ctx.Done():
		return api.Root{}, ctx.Err()
	case <-d.stopped:
		return api.Root{}, errStopped
	}
	if cerr := d.callErr(ctx, func() { out = d.rootInfo(r) }); cerr != nil {
		return api.Root{}, cerr
	}
	return out, nil
}

// RemoveRoot stops watching path.
func (d *Daemon) RemoveRoot(ctx context.Context, path string) error {
	var err error
	if cerr := d.callErr(ctx, func() { err = d.removeRoot(filepath.Clean(path)) }); cerr != nil {
		return cerr
	}
	return err
}

// Status describes the daemon.
func (d *Daemon) Status(ctx context.Context) (api.Status, error) {
	var st api.Status
	if err := d.callErr(ctx, func() {
		st = api.Status{
			Version: api.Version(),
			PID:     os.Getpid(), Started: d.started, Socket: d.cfg.Socket, DB: d.cfg.DB, Workers: d.cfg.Workers,
			Roots: d.rootList(), Pending: len(d.queue) + d.running, Epoch: d.epoch, Overflows: d.overflows,
			Warnings: append([]string(nil), d.warnings...),
		}
		st.Checkpoints, st.Resumed = d.checkpointBytes(), d.resumed
		st.TrackingBytes, st.Tracked = d.trackingBytes()
		if w := d.faults.warning(); w != "" {
			st.Warnings = append(st.Warnings, w)
		}
		if err := d.store.Check(); err != nil {
			st.Warnings = append(st.Warnings, err.Error())
		}
		if d.cookieFault != "" {
			st.Warnings = append(st.Warnings, d.cookieFault)
		}
		if w := d.cookies.warning(); w != "" {
			st.Warnings = append(st.Warnings, w)
		}
		for _, r := range st.Roots {
			if r.Warning != "" {
				st.Warnings = append(st.Warnings, r.Path+": "+r.Warning)
			}
		}
	}); err != nil {
		return api.Status{}, err
	}
	return st, nil
}

func (d *Daemon) rootList() []api.Root {
	roots := make([]api.Root, 0, len(d.roots))
	for _, r := range d.roots {
		roots = append(roots, d.rootInfo(r))
	}
	sortRoots(roots)
	return roots
}

func (d *Daemon) rootInfo(r *root) api.Root {
	info := api.Root{Path: r.path, Watches: d.watchCount(r.path), Degraded: r.degraded, Warning: r.warning, Validate: r.validate}
	switch {
	case r.job != nil:
		info.State = "hashing"
	case r.err != nil:
		info.State, info.Error = "failed", r.err.Error()
	case r.entry == nil:
		info.State = "dirty"
	case !r.verified:
		info.State = "unverified"
	case r.entryGen != r.gen:
		info.State = "dirty"
	default:
		info.State = "clean"
	}
	if r.entry != nil {
		info.Hash = hasher.EncodeNix32(r.entry.Hash[:])
		info.NARSize, info.Computed = r.entry.NARSize, r.entry.Computed
		info.TookMS = float64(r.entry.Took.Microseconds()) / 1000
	}
	return info
}

// Subscribe sends the current hash of path's view, then every new one,
// until ctx is done or the daemon stops. path must be in a watched root.
func (d *Daemon) Subscribe(ctx context.Context, path string, view api.View, send func(api.Hash) error) error {
	path, err := resolveQuery(path)
	if err != nil {
		return hashError(path, err)
	}
	ch := make(chan api.Hash, 1)
	inRoot := false
	// Registered first: callErr may fail (the client left) after the
	// call below has run, with ch subscribed.
	defer d.call(context.Background(), func() {
		t := d.tracked[path]
		if view == api.ViewGit {
			t = d.gitTracked[path]
		}
		if t != nil {
			delete(t.subs, ch)
		}
	})
	if err := d.callErr(ctx, func() {
		r := d.rootOf(path)
		if r == nil || throughSymlink(r, path) {
			return
		}
		t := d.trackView(path, r, view)
		inRoot = true
		if t.subs == nil {
			t.subs = map[chan api.Hash]struct{}{}
		}
		t.subs[ch] = struct{}{}
	}); err != nil {
		return err
	}
	if !inRoot {
		return api.Errorf(http.StatusBadRequest, "%s is not in a watched root: watch it first (narhash watch add %s)", clip(path), clip(path))
	}
	cur, err := d.Hash(ctx, path, view, false)
	if err != nil {
		return err
	}
	if err := send(cur); err != nil {
		return err
	}
	last, failed := cur.Digest, ""
	for {
		select {
		case h, ok := <-ch:
			if !ok {
				return api.Errorf(http.StatusGone, "%s is no longer watched", clip(path))
			}
			if h.Failed == failed && (h.Failed != "" || h.Digest == last) {
				continue // nothing new
			}
			// After a failure, the next hash is sent even if it is the
			// one sent before it.
			last, failed = h.Digest, h.Failed
			if err := send(h); err != nil {
				return err
			}
		case <-d.stopped:
			return errStopped
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func sortRoots(roots []api.Root) {
	sort.Slice(roots, func(i, j int) bool { return roots[i].Path < roots[j].Path })
}
