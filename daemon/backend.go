package daemon

import (
	"context"
	"errors"
	"net/http"
	"os"
	"sort"
	"time"

	"github.com/narhash/narhash/api"
	"github.com/narhash/narhash/cache"
	"github.com/narhash/narhash/hasher"
	"github.com/narhash/narhash/nar"
)

var errStopped = api.Errorf(http.StatusServiceUnavailable, "narhashd is shutting down")

// Hash returns the NAR hash of path as it is now: at some moment after the
// call. A path inside a watched root is answered from memory once the
// watcher has caught up; a path outside every root is checked by a stat
// walk against its cached entry, and hashed if that differs. With watch,
// the path becomes a root first.
func (d *Daemon) Hash(ctx context.Context, path string, watch bool) (api.Hash, error) {
	if watch {
		if _, err := d.AddRoot(ctx, path); err != nil {
			return api.Hash{}, err
		}
	}
	barrier := d.cookies.wait(ctx, d.cfg.CookieTimeout)
	if ctx.Err() != nil {
		return api.Hash{}, ctx.Err()
	}
	ch := make(chan result, 1)
	var immediate *result
	inRoot := false
	if !d.call(ctx, func() {
		t := d.track(path)
		if t == nil {
			return
		}
		inRoot = true
		d.ensureWatched(t.root)
		if barrier != nil || t.root.degraded {
			// Events cannot vouch for the tree: check it by a stat walk
			// begun after this query.
			t.verified = false
			t.staleBefore = time.Now()
		}
		if t.fresh() {
			immediate = &result{hash: t.apiHash(d, "cache")}
			return
		}
		t.waiters = append(t.waiters, ch)
		d.schedule(t, true)
	}) {
		return api.Hash{}, errStopped
	}
	if !inRoot {
		return d.hashOutside(ctx, path)
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
	}
}

// track returns the tracked path for path, starting to track it if it
// is inside a root; nil if it is outside every root. Runs on the loop.
func (d *Daemon) track(path string) *tracked {
	if t := d.tracked[path]; t != nil {
		return t
	}
	r := d.rootOf(path)
	if r == nil {
		return nil
	}
	t := &tracked{path: path, root: r}
	d.loadEntry(t)
	d.tracked[path] = t
	return t
}

// hashOutside answers for a path outside every root: its cached entry if
// a stat walk matches the entry's fingerprint, else a new hash.
func (d *Daemon) hashOutside(ctx context.Context, path string) (api.Hash, error) {
	fp, _, err := nar.StatTree(ctx, path)
	if err != nil {
		return api.Hash{}, hashError(path, err)
	}
	if e, ok, err := d.store.Get(path); err == nil && ok && e.Fingerprint == fp && !fp.Racy(e.Computed.UnixNano()) {
		return api.Hash{Path: path, Digest: e.Hash, NARSize: e.NARSize, Source: "validated", Computed: e.Computed, Took: e.Took}, nil
	}
	start := time.Now()
	res, err := hasher.HashPath(ctx, path, nil)
	if err != nil {
		return api.Hash{}, hashError(path, err)
	}
	e := cache.Entry{Hash: [32]byte(res.Hash.Digest), NARSize: res.NARSize, Fingerprint: res.Fingerprint, Computed: start, Took: time.Since(start)}
	if err := d.store.PutMany([]cache.Item{{Path: path, Entry: e}}); err != nil {
		d.log.Error("save result", "path", path, "err", err)
	}
	return api.Hash{Path: path, Digest: e.Hash, NARSize: e.NARSize, Source: "computed", Computed: e.Computed, Took: e.Took}, nil
}

// hashError gives an error its HTTP status: a missing path is 404, a tree
// narhash cannot hash (a FIFO in it) 422.
func hashError(path string, err error) error {
	var ae *api.Error
	switch {
	case errors.As(err, &ae):
		return err
	case errors.Is(err, os.ErrNotExist):
		return api.Errorf(http.StatusNotFound, "hash %s: %v", path, err)
	case errors.Is(err, nar.ErrUnsupportedType):
		return api.Errorf(http.StatusUnprocessableEntity, "hash %s: %v", path, err)
	}
	return api.Errorf(http.StatusInternalServerError, "hash %s: %v", path, err)
}

// Roots lists the watched roots.
func (d *Daemon) Roots(ctx context.Context) ([]api.Root, error) {
	var roots []api.Root
	if !d.call(ctx, func() { roots = d.rootList() }) {
		return nil, errStopped
	}
	return roots, nil
}

// AddRoot starts watching path and keeps it across restarts.
func (d *Daemon) AddRoot(ctx context.Context, path string) (api.Root, error) {
	var out api.Root
	var err error
	if !d.call(ctx, func() {
		var r *root
		if r, err = d.addRoot(path, true); err == nil {
			out = d.rootInfo(r)
		}
	}) {
		return api.Root{}, errStopped
	}
	return out, err
}

// RemoveRoot stops watching path.
func (d *Daemon) RemoveRoot(ctx context.Context, path string) error {
	var err error
	if !d.call(ctx, func() { err = d.removeRoot(path) }) {
		return errStopped
	}
	return err
}

// Status describes the daemon.
func (d *Daemon) Status(ctx context.Context) (api.Status, error) {
	var st api.Status
	if !d.call(ctx, func() {
		st = api.Status{
			Version: api.Version(),
			PID:     os.Getpid(), Started: d.started, Socket: d.cfg.Socket, DB: d.cfg.DB, Workers: d.cfg.Workers,
			Roots: d.rootList(), Pending: len(d.queue) + d.running, Epoch: d.epoch, Overflows: d.overflows,
			Warnings: append([]string(nil), d.warnings...),
		}
		for _, r := range st.Roots {
			if r.Warning != "" {
				st.Warnings = append(st.Warnings, r.Path+": "+r.Warning)
			}
		}
	}) {
		return api.Status{}, errStopped
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
	info := api.Root{Path: r.path, Watches: len(r.watches), Degraded: r.degraded, Warning: r.warning}
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

// Subscribe sends the current hash of path, then every new one, until
// ctx is done. path must be in a watched root.
func (d *Daemon) Subscribe(ctx context.Context, path string, send func(api.Hash) error) error {
	ch := make(chan api.Hash, 1)
	inRoot := false
	if !d.call(ctx, func() {
		t := d.track(path)
		if t == nil {
			return
		}
		inRoot = true
		if t.subs == nil {
			t.subs = map[chan api.Hash]struct{}{}
		}
		t.subs[ch] = struct{}{}
	}) {
		return errStopped
	}
	if !inRoot {
		return api.Errorf(http.StatusBadRequest, "%s is not in a watched root: watch it first (narhash watch add %s)", path, path)
	}
	defer d.call(context.Background(), func() {
		if t := d.tracked[path]; t != nil {
			delete(t.subs, ch)
		}
	})
	cur, err := d.Hash(ctx, path, false)
	if err != nil {
		return err
	}
	if err := send(cur); err != nil {
		return err
	}
	last := cur.Digest
	for {
		select {
		case h := <-ch:
			if h.Digest == last {
				continue
			}
			last = h.Digest
			if err := send(h); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func sortRoots(roots []api.Root) {
	sort.Slice(roots, func(i, j int) bool { return roots[i].Path < roots[j].Path })
}
