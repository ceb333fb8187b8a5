//go:build linux

package daemon

import (
	"context"
	"errors"
	"time"

	"github.com/narhash/narhash/api"
	"github.com/narhash/narhash/cache"
	"github.com/narhash/narhash/hasher"
	"github.com/narhash/narhash/nar"
	"github.com/narhash/narhash/nar/gitview"
)

// A job hashes a tracked path, or, to verify a cached entry, stat-walks
// it; or it answers for a path outside every root (outside).
type job struct {
	t      *tracked
	gen    uint64 // the path's generation when the job began
	verify bool
	ctx    context.Context
	cancel context.CancelFunc
	start  time.Time

	res hasher.Result   // hash jobs
	fp  nar.Fingerprint // verify jobs
	err error

	outside string      // a path outside every root
	reply   chan *job   // told when an outside job is done
	out     api.Hash    // its answer
	save    *cache.Item // its new entry, for the store writer

	// Incremental rehash (resume.go): a hash job's checkpoints and where
	// it resumes; checkpoints a stat walk follows (verify jobs, and hash
	// jobs that events cannot vouch for) and the last the tree matched.
	cps     *nar.Checkpoints
	from    *nar.Checkpoint
	vcps    *nar.Checkpoints
	last    *nar.Checkpoint
	git     bool // of a git view: see gitview.go
	gitRepo gitview.Repo
	gitSig  gitSig // of the git files the view was read from
}

// schedule queues t for a job, at the front when a query waits for it.
// A running job of t's generation is left to finish even if it began
// before a query that events cannot vouch for (staleBefore): it answers
// the queries that came before it began, and its result schedules the
// next job for the others (reply). Cancelling it would let queries that
// keep coming on a degraded root starve each other.
func (d *Daemon) schedule(t *tracked, urgent bool) {
	if t.current() {
		return // the running job will do, or schedule the next one
	}
	if t.queued {
		if !urgent {
			return
		}
		for i, q := range d.queue {
			if q == t {
				d.queue = append(d.queue[:i], d.queue[i+1:]...)
				break
			}
		}
	}
	t.queued = true
	if urgent {
		d.queue = append([]*tracked{t}, d.queue...)
	} else {
		d.queue = append(d.queue, t)
	}
}

// startDue queues the paths whose debounce has run out.
func (d *Daemon) startDue(now time.Time) {
	for t := range d.dirty {
		if at, ok := t.agg.due(); ok && !at.After(now) && t.job == nil {
			delete(d.dirty, t)
			d.schedule(t, false)
		}
	}
}

// dispatch starts queued jobs while workers are free: tracked paths
// first, then paths outside every root.
func (d *Daemon) dispatch(ctx context.Context) {
	for d.running < d.cfg.Workers && len(d.queue) == 0 && len(d.outq) > 0 {
		j := d.outq[0]
		d.outq = d.outq[1:]
		if j.ctx.Err() != nil {
			continue // its client left
		}
		d.running++
		select {
		case d.jobs <- j:
		case <-ctx.Done():
			return
		}
	}
	for d.running < d.cfg.Workers && len(d.queue) > 0 {
		t := d.queue[0]
		d.queue = d.queue[1:]
		t.queued = false
		if t.current() {
			continue
		}
		if !d.isTracked(t) {
			continue // no longer tracked
		}
		if t.job != nil {
			t.job.cancel() // of an older generation; its result will be ignored
		}
		j := &job{t: t, gen: t.gen, start: time.Now(), git: t.git != nil}
		j.verify = t.entry != nil && t.entryGen == t.gen && (!t.verified || t.root.unsure())
		if j.verify {
			j.vcps = t.cps
		} else {
			d.planResume(t, j)
		}
		j.ctx, j.cancel = context.WithCancel(ctx)
		t.job = j
		t.agg.reset()
		delete(d.dirty, t)
		d.running++
		select {
		case d.jobs <- j:
		case <-ctx.Done():
			return
		}
	}
}

// worker runs jobs until ctx is done.
func (d *Daemon) worker(ctx context.Context) {
	for {
		select {
		case j := <-d.jobs:
			if j.git {
				d.runGit(j)
			} else if j.outside != "" {
				d.runOutside(j)
			} else if j.verify {
				j.fp, _, j.last, j.err = nar.StatCheckpoints(j.ctx, j.t.path, j.vcps)
			} else {
				d.runHash(j)
			}
			if d.testHookDone != nil && j.t != nil {
				d.testHookDone(j.t.path)
			}
			j.cancel()
			select {
			case d.results <- j:
			case <-ctx.Done():
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

// onResult takes a finished job's result, keeping it only if the path
// did not change while the job ran.
func (d *Daemon) onResult(j *job) {
	d.running--
	if j.outside != "" {
		if j.save != nil {
			d.save(*j.save)
		}
		j.reply <- j
		return
	}
	t := j.t
	if t.job != j {
		return // replaced
	}
	t.job = nil
	if !d.isTracked(t) {
		// Forgotten while it ran (untrack cancelled it, too late): its
		// result would save a deleted entry and watch git directories
		// for a view no longer tracked.
		return
	}
	if j.gen != t.gen || errors.Is(j.err, context.Canceled) {
		// The tree changed under the job: whatever it found is stale.
		if len(t.waiters) > 0 {
			d.schedule(t, true)
		}
		return
	}
	took := time.Since(j.start)
	if t.git != nil && j.err == nil && readGitSig(j.gitRepo) != j.gitSig {
		// git's index (or HEAD) changed after the job read it: a
		// query waiting now may have seen the change.
		d.schedule(t, len(t.waiters) > 0)
		return
	}
	if j.verify {
		if j.err == nil && j.fp == t.entry.Fingerprint && !j.fp.Racy(t.entry.Computed.UnixNano()) && (t.git == nil || !t.git.known || j.gitSig == t.git.sig) {
			t.verified = true
			if t.git != nil { // a saved git view: now its git files are known
				t.git.repo, t.git.sig, t.git.known = j.gitRepo, j.gitSig, true
				d.watchGit(t)
			}
			d.answer(t, "validated", j.start)
			return
		}
		// Changed while narhashd was away (or unsure): hash it again,
		// from the last checkpoint the tree still matched.
		t.verified = false
		t.entry = nil
		d.verifyFailed(t, j)
		d.schedule(t, len(t.waiters) > 0)
		return
	}
	if j.err != nil {
		t.err = j.err
		d.log.Warn("hash failed", "path", t.path, "err", j.err, "dur", took)
		d.reply(t, j.start, result{err: j.err})
		t.notify(t.failure(d, j.err))
		return
	}
	failedBefore := t.err != nil
	it := cache.Item{Path: t.path, Entry: cache.Entry{Hash: [32]byte(j.res.Hash.Digest), NARSize: j.res.NARSize, Fingerprint: j.res.Fingerprint, Computed: j.start, Took: took}}
	d.hashed(t, j, &it)
	e := it.Entry
	changed := t.entry == nil || t.entry.Hash != e.Hash
	t.entry, t.entryGen, t.verified, t.err = &e, j.gen, true, nil
	if t.git != nil {
		if t.git.watched != nil && t.git.repo != j.gitRepo {
			d.unwatchGit(t) // the worktree moved
		}
		t.git.repo, t.git.sig, t.git.known = j.gitRepo, j.gitSig, true
		d.watchGit(t)
		d.save(cache.Item{Path: gitKey(t.path), Entry: e})
	} else {
		d.save(it)
	}
	d.log.Debug("hashed", "path", t.path, "hash", j.res.Hash.Format(hasher.Nix32), "bytes", e.NARSize, "dur", took)
	d.answer(t, "computed", j.start)
	if changed || failedBefore {
		t.notify(t.apiHash(d, "computed"))
	}
}

// answer gives t's current entry, which a job begun at begun computed or
// checked, to the waiters it may answer (see reply).
func (d *Daemon) answer(t *tracked, source string, begun time.Time) {
	if len(t.waiters) > 0 {
		d.reply(t, begun, result{hash: t.apiHash(d, source)})
	}
}

// reply gives r, what a job begun at begun found (a hash or a failure),
// to the waiters it may answer (see waiter). The others came after that
// job began, when events could not vouch for the tree (a degraded root,
// a failed barrier): it may have missed a change they must see (one that
// mends a failure, too), so they wait for the next job, which it
// schedules.
func (d *Daemon) reply(t *tracked, begun time.Time, r result) {
	later := t.waiters[:0]
	for _, w := range t.waiters {
		if begun.Before(w.since) {
			later = append(later, w)
			continue
		}
		w.ch <- r
	}
	clear(t.waiters[len(later):])
	t.waiters = later
	if len(later) > 0 {
		t.verified = false
		d.schedule(t, true)
	}
}

// save hands an entry to the store writer. If the writer is that far
// behind (a slow or failing disk), the entry is not kept: it is only a
// cache, and the loop must not wait.
func (d *Daemon) save(it cache.Item) {
	select {
	case d.saves <- it:
	default:
		d.faults.record(errors.New("the database writer is behind: results were not saved"))
	}
}

// storeWriter commits results and deletions in batches: whatever has
// arrived when it wakes, up to 256 results at once. It sleeps while there
// is nothing to write.
func (d *Daemon) storeWriter() {
	var batch []cache.Item
	var gone []string
	for {
		select {
		case p := <-d.deletes:
			gone = append(gone, p)
		case it, ok := <-d.saves:
			if !ok {
				d.flush(batch, gone)
				return
			}
			batch = append(batch, it)
		}
	more:
		for len(batch) < 256 {
			select {
			case it, ok := <-d.saves:
				if !ok {
					d.flush(batch, gone)
					return
				}
				batch = append(batch, it)
			case p := <-d.deletes:
				gone = append(gone, p)
			default:
				break more
			}
		}
		d.flush(batch, gone)
		batch, gone = batch[:0], gone[:0]
	}
}

// flush writes a batch, and records a failure for status.
func (d *Daemon) flush(batch []cache.Item, gone []string) {
	if len(batch) == 0 && len(gone) == 0 {
		return
	}
	err := d.store.Update(batch, gone)
	d.faults.record(err)
	if err != nil {
		d.log.Error("save results", "err", err, "path", d.cfg.DB)
	}
}

var _ api.Backend = (*Daemon)(nil)
