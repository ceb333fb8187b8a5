//go:build linux

package daemon

import (
	"strings"
	"time"

	"github.com/narhash/narhash/cache"
	"github.com/narhash/narhash/hasher"
	"github.com/narhash/narhash/nar"
)

// Incremental rehash. Hashing a tree, a job saves checkpoints of the
// SHA-256 state (nar.Checkpoints); each tracked path keeps those of the
// dump behind its entry, and the first path in NAR order that an event
// named since that dump began (changes). The next job resumes at the
// last checkpoint at or before that path, reading and hashing only what
// follows it: every byte of the archive before it is unchanged, or an
// event would have named an earlier path. Whatever events cannot vouch
// for hashes in full: a lost event (overflow), a root watched anew, a
// degraded root, a query whose barrier failed, and git views, which are
// never resumed. For those, and after a restart, a stat walk finds the
// last checkpoint the tree still matches (nar.StatCheckpoints: its
// entries before it have the lstat data the dump saw, none too recent
// for a stat to vouch for it) and the hash resumes there; a stat walk
// costs a small part of a hash.

// changes is what happened to a tracked path since the dump whose
// checkpoints it keeps began.
type changes struct {
	all   bool   // anything may have changed: hash in full
	first string // the first changed path in NAR order, relative to the tracked path
}

// add records a change at rel ("" is the tracked path itself).
func (c *changes) add(rel string) {
	if rel == "" {
		c.all = true
		return
	}
	if c.first == "" || nar.ComparePaths(rel, c.first) < 0 {
		c.first = rel
	}
}

// touchAt records a change at p, which is t's path or inside it.
func (d *Daemon) touchAt(t *tracked, p string, now time.Time) {
	rel := strings.TrimPrefix(p, t.path)
	if rel != "" && rel[0] != '/' && t.path != "/" {
		rel = "" // not inside t: a change of all of it
	}
	t.changes.add(strings.TrimPrefix(rel, "/"))
	d.changed(t, now)
}

// Checkpoint spacing: a root's every 1 MiB of archive (see nar's doc for
// the memory this takes), at most rootCheckpoints of them (past 4 GiB of
// archive they are further apart), so that saving them with each entry
// stays cheap; a sub-path's only where it pays, when its last archive was
// at least subPathCheckpointsFrom, and at most subPathCheckpoints of
// them, so that the 4096 sub-paths tracked at most hold at most about
// 100 MiB of checkpoints.
const (
	rootCheckpoints    = 4096
	subPathCheckpoints = 64
)

// subPathCheckpointsFrom is a variable for tests.
var subPathCheckpointsFrom int64 = 64 << 20

// planResume sets up a hash job's checkpoints and, where events vouch
// for a prefix of the tree, the checkpoint it resumes at. On the loop.
func (d *Daemon) planResume(t *tracked, j *job) {
	every := rootCheckpointEvery
	switch {
	case t.git != nil:
		return
	case t.root.tracked == t:
		if t.entry != nil {
			every = max(every, t.entry.NARSize/rootCheckpoints)
		}
	case t.entry != nil && t.entry.NARSize >= subPathCheckpointsFrom:
		every = max(every, t.entry.NARSize/subPathCheckpoints)
	default:
		t.cps = nil
		return
	}
	j.cps = &nar.Checkpoints{Every: every}
	switch {
	case t.cps == nil:
	case !t.changes.all && t.changes.first != "" && !t.root.unsure():
		if cp := t.cps.Before(t.changes.first); cp != nil {
			j.cps, j.from = t.cps.Clone(), cp
		}
	default:
		// Events cannot vouch for the tree: a stat walk finds the last
		// checkpoint it still matches.
		j.vcps = t.cps
	}
}

// rootCheckpointEvery is the closest spacing of checkpoints, in bytes of
// archive. Tests make it small.
var rootCheckpointEvery int64 = 1 << 20

// runHash is a worker's hash job: resumed if planned, else in full.
func (d *Daemon) runHash(j *job) {
	if j.vcps != nil {
		if _, _, last, err := nar.StatCheckpoints(j.ctx, j.t.path, j.vcps); err == nil && last != nil {
			j.cps, j.from = j.vcps.Clone(), last
		}
	}
	opt := &hasher.Options{Checkpoints: j.cps, From: j.from, ColdProcs: nar.DefaultColdProcs}
	j.res, j.err = hasher.HashPath(j.ctx, j.t.path, opt)
	if j.err != nil && j.from != nil && j.ctx.Err() == nil {
		// What the events vouched for did not hold (a directory on the
		// way to the checkpoint is gone): hash it all.
		d.log.Debug("resume failed: hashing in full", "path", j.t.path, "err", j.err)
		j.from = nil
		if j.cps != nil {
			j.cps = &nar.Checkpoints{Every: j.cps.Every}
		}
		j.res, j.err = hasher.HashPath(j.ctx, j.t.path, &hasher.Options{Checkpoints: j.cps, ColdProcs: nar.DefaultColdProcs})
	}
}

// hashed takes a hash job's accepted result: t keeps its checkpoints and
// has no change since, and the item to save carries them. A resumed
// entry's Computed, which the racy rule compares the fingerprint with,
// is the start of the earliest dump that read part of the tree if one of
// its entries was racy then (nar.DumpResult.Since), else the job's.
func (d *Daemon) hashed(t *tracked, j *job, it *cache.Item) {
	t.cps, t.changes = j.cps, changes{}
	if j.from != nil {
		d.resumed++
		t.resumed++
		it.Entry.Computed = minTime(it.Entry.Computed, j.res.Since)
	}
	if j.cps != nil && j.cps.Len() > 0 {
		if b, err := j.cps.MarshalBinary(); err == nil {
			it.Checkpoints = b
		}
	}
}

// verifyFailed takes a verify job's stat walk that did not match the entry:
// the hash resumes at the last checkpoint the tree still matched.
func (d *Daemon) verifyFailed(t *tracked, j *job) {
	t.changes = changes{all: true}
	if j.err == nil && j.last != nil {
		t.changes = changes{first: j.last.Path}
	}
}

// loadCheckpoints reads the checkpoints kept with path's entry.
func (d *Daemon) loadCheckpoints(path string) *nar.Checkpoints {
	b, err := d.store.Checkpoints(path)
	if err != nil || b == nil {
		return nil
	}
	var cps nar.Checkpoints
	if err := cps.UnmarshalBinary(b); err != nil {
		d.log.Debug("checkpoints not read: hashing in full", "path", path, "err", err)
		return nil
	}
	return &cps
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// checkpointBytes is the memory the tracked paths' checkpoints take. On
// the loop.
func (d *Daemon) checkpointBytes() int64 {
	var n int64
	for _, t := range d.tracked {
		if t.cps != nil {
			n += int64(t.cps.Size())
		}
	}
	return n
}
