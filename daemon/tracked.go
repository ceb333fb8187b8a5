//go:build linux

package daemon

import (
	"errors"
	"slices"
	"time"
	"unsafe"

	"github.com/narhash/narhash/api"
	"github.com/narhash/narhash/cache"
	"github.com/narhash/narhash/nar"
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
	waiters  []waiter
	subs     map[chan api.Hash]struct{}
	err      error // the last job's failure, until the next success
	// staleBefore: no job begun before this time may answer a query. Set
	// when a query cannot rely on events: a degraded root, a failed barrier.
	staleBefore time.Time
	used        time.Time // last asked for; the least recently used sub-paths are evicted
	git         *gitState // a git view's (see gitview.go); nil for the whole tree
	// Incremental rehash (resume.go): the checkpoints of the dump
	// behind the entry, and what changed since it began.
	cps     *nar.Checkpoints
	changes changes
	resumed int // hashes resumed at a checkpoint
}

// waiter is a query waiting for t's hash. Only a job begun at or after
// since may answer it: since is t's staleBefore when it came, when events
// could not vouch for the tree.
type waiter struct {
	ch    chan result
	since time.Time
}

// result is what a waiting query gets.
type result struct {
	hash api.Hash
	err  error
}

// fresh reports whether the entry is the hash of the tree as it is.
func (t *tracked) fresh() bool {
	return t.entry != nil && t.entryGen == t.gen && t.verified && !t.root.unsure()
}

// current reports whether a job of t's generation runs: it answers the
// queries from before it began, and schedules one more for the others
// (see schedule).
func (t *tracked) current() bool {
	return t.job != nil && t.job.gen == t.gen
}

// background reports whether t is rehashed when it changes, unasked: a
// root, or a path someone subscribed to. Other sub-paths are rehashed
// when queried, so a change costs nothing per tracked path.
func (t *tracked) background() bool { return t.root.tracked == t || len(t.subs) > 0 }

// view is the view t is of: its git view, or the whole tree.
func (t *tracked) view() api.View {
	if t.git != nil {
		return api.ViewGit
	}
	return api.ViewTree
}

func (t *tracked) apiHash(d *Daemon, source string) api.Hash {
	return api.Hash{
		Path: t.path, View: t.view(), Root: t.root.path, Digest: t.entry.Hash, NARSize: t.entry.NARSize, Source: source,
		Computed: t.entry.Computed, Took: t.entry.Took, Epoch: d.epoch, Degraded: t.root.degraded,
	}
}

// failure is what t's subscribers get when a job fails with err: the
// path, without a hash.
func (t *tracked) failure(d *Daemon, err error) api.Hash {
	return api.Hash{Path: t.path, View: t.view(), Root: t.root.path, Epoch: d.epoch, Degraded: t.root.degraded, Failed: err.Error()}
}

// notify sends h to t's subscribers, keeping only the newest for a slow
// one.
func (t *tracked) notify(h api.Hash) {
	for ch := range t.subs {
		select {
		case <-ch:
		default:
		}
		ch <- h
	}
}

// fail answers every waiter with err, whenever it came: the path is no
// longer tracked, or the daemon stops. A failed job's error goes through
// reply instead, which keeps it from the queries that came after the job
// began while events could not vouch for the tree.
func (t *tracked) fail(err error) {
	for _, w := range t.waiters {
		w.ch <- result{err: err}
	}
	t.waiters = nil
}

// maxTracked bounds the sub-paths tracked besides the roots. Past it,
// the least recently asked for are forgotten, with their cache entries.
const maxTracked = 4096

// newTracked starts tracking path, with its cached entry (unverified).
func (d *Daemon) newTracked(path string) *tracked {
	t := &tracked{path: path, used: d.now(), agg: d.aggregator()}
	if e, ok, err := d.store.Get(path); err == nil && ok {
		t.entry, t.entryGen, t.verified = &e, t.gen, false
		t.cps = d.loadCheckpoints(path)
	}
	d.tracked[path] = t
	d.trackIdx.set(path, t)
	if len(d.tracked)-len(d.roots) > d.maxTracked {
		d.evict()
	}
	return t
}

// aggregator returns a new tracked path's debounce, as configured.
func (d *Daemon) aggregator() aggregator {
	return aggregator{quiet: d.cfg.Quiet, maxDelay: d.cfg.MaxDelay}
}

// idleAfter is how long a sub-path or git view that nobody asks for,
// subscribes to or is hashing stays tracked; sweepEvery is how often at
// most the daemon looks for such paths. It looks when it is asked for a
// path, never on a timer, so an idle daemon does not wake up: what it
// keeps meanwhile is bounded by maxTracked and maxGitTracked.
const (
	idleAfter  = 15 * time.Minute
	sweepEvery = time.Minute
)

// evictable reports whether t may be forgotten: a sub-path or git view
// with no job, no waiting query and no subscriber.
func (t *tracked) evictable() bool {
	return t.root != nil && t.root.tracked != t && t.job == nil && len(t.waiters) == 0 && len(t.subs) == 0
}

// sweepIdle forgets, with their cache entries, the sub-paths and git
// views unasked for idleAfter. At most once every sweepEvery, so that its
// walk over every tracked path costs nothing per query. On the loop.
func (d *Daemon) sweepIdle() {
	now := d.now()
	if now.Sub(d.lastSweep) < sweepEvery {
		return
	}
	d.lastSweep = now
	var idle []*tracked
	for _, m := range []map[string]*tracked{d.tracked, d.gitTracked} {
		for _, t := range m {
			if t.evictable() && now.Sub(t.used) >= d.idleAfter {
				idle = append(idle, t)
			}
		}
	}
	for _, t := range idle {
		d.forget(t, errors.New("forgotten after being idle"))
	}
}

// trackingBytes estimates the memory the tracked paths take besides their
// checkpoints: each one's struct, its path (kept by the map and the index)
// and its cache entry. On the loop.
func (d *Daemon) trackingBytes() (n int64, paths int) {
	for _, m := range []map[string]*tracked{d.tracked, d.gitTracked} {
		for _, t := range m {
			n += int64(unsafe.Sizeof(*t)) + 2*int64(len(t.path))
			if t.entry != nil {
				n += int64(unsafe.Sizeof(*t.entry))
			}
		}
		paths += len(m)
	}
	return n, paths
}

// evict forgets the least recently used eighth of the idle sub-paths.
func (d *Daemon) evict() {
	var idle []*tracked
	for _, t := range d.tracked {
		if t.evictable() {
			idle = append(idle, t)
		}
	}
	n := max(1, d.maxTracked/8)
	if n < len(idle) {
		slices.SortFunc(idle, func(a, b *tracked) int { return a.used.Compare(b.used) })
		idle = idle[:n]
	}
	for _, t := range idle {
		d.forget(t, errors.New("evicted"))
	}
}

// forget stops tracking t and deletes its cache entry: t is evicted, or
// its root is no longer watched.
func (d *Daemon) forget(t *tracked, err error) {
	d.untrack(t, err)
	key := t.path
	if t.git != nil {
		key = gitKey(t.path)
	}
	select {
	case d.deletes <- key:
	default: // the writer is behind; the entry stays, harmless
	}
}

// untrack stops tracking t, answering its waiters with err.
func (d *Daemon) untrack(t *tracked, err error) {
	if t.job != nil {
		t.job.cancel()
	}
	t.fail(err)
	for ch := range t.subs {
		close(ch)
	}
	t.subs = nil
	if t.git != nil {
		d.unwatchGit(t)
		delete(d.gitTracked, t.path)
		d.gitIdx.delete(t.path)
	} else {
		delete(d.tracked, t.path)
		d.trackIdx.delete(t.path)
	}
	delete(d.dirty, t)
}

// touch records a change of t: its entry is no longer current, and a
// job hashing the old state is cancelled.
func (d *Daemon) touch(t *tracked, now time.Time) {
	t.changes.all = true
	d.changed(t, now)
}

// changed records a change of t, whose extent the caller has noted in
// t.changes.
func (d *Daemon) changed(t *tracked, now time.Time) {
	t.gen++
	if t.background() || len(t.waiters) > 0 {
		t.agg.touch(now)
		d.dirty[t] = struct{}{}
	}
	if t.job != nil && t.job.gen != t.gen {
		t.job.cancel()
	}
}
