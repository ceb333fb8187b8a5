//go:build linux

package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/narhash/narhash/api"
	"github.com/narhash/narhash/cache"
	"github.com/narhash/narhash/hasher"
	"github.com/narhash/narhash/nar"
	"github.com/narhash/narhash/nar/gitview"
)

// The git view of a path (api.ViewGit) is tracked apart from its plain
// view, in d.gitTracked and d.gitIdx, and saved in the database under a
// key of its own (gitKey). After a restart an entry is served only once a
// stat walk of the view as the index now selects it matches the entry's
// fingerprint: the fingerprint records every selected entry, so an index
// that selects other paths fails the check.
// Its hash depends on the worktree's files below the path, whose events
// touch it as they touch the plain view, and on git's index, HEAD and
// refs. Those may lie outside every watched root (a linked worktree's git
// directory, or the view of a subdirectory), so they are not trusted to
// events: their stat (gitSig) is read before each job reads the index and
// again whenever an entry would answer a query, and any difference means
// the entry is not the view as it is now. Events inside the git directory
// (when it is in a root) touch the view too, so that subscribers hear of
// a git add or a commit.

// gitState is what a tracked git view knows besides its entry. Owned by
// the loop.
type gitState struct {
	repo    gitview.Repo // the worktree, once a job has found it
	sig     gitSig       // of the git files the entry's job read
	known   bool         // repo and sig are set
	watched []string     // the git directories watched for it (watchGit)
}

// gitSig is the stat of the files under the git directory that the view
// depends on: the index, HEAD, packed-refs and the ref HEAD names (the
// last three tell whether the worktree is clean, which decides how
// submodules show). git replaces each of them by a rename, which changes
// the inode, so a change is never missed by a stat.
type gitSig [4]fileStamp

type fileStamp struct {
	ino, size    uint64
	mtime, ctime unix.Timespec
	exists       bool
}

func stampOf(path string) fileStamp {
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil {
		return fileStamp{}
	}
	return fileStamp{ino: st.Ino, size: uint64(st.Size), mtime: st.Mtim, ctime: st.Ctim, exists: true}
}

// readGitSig stats the files a git view depends on.
func readGitSig(r gitview.Repo) gitSig {
	sig := gitSig{
		stampOf(filepath.Join(r.GitDir, "index")),
		stampOf(filepath.Join(r.GitDir, "HEAD")),
		stampOf(filepath.Join(r.CommonDir, "packed-refs")),
	}
	if head, err := os.ReadFile(filepath.Join(r.GitDir, "HEAD")); err == nil {
		if ref, ok := bytes.CutPrefix(bytes.TrimSpace(head), []byte("ref: ")); ok && filepath.IsLocal(string(ref)) {
			sig[3] = stampOf(filepath.Join(r.CommonDir, string(ref)))
		}
	}
	return sig
}

// openGit reads the git view of path between two reads of its signature,
// so that the signature returned is that of the index the view holds.
func openGit(ctx context.Context, path string) (*gitview.View, gitSig, error) {
	for try := 1; ; try++ {
		var before gitSig
		if dir, err := filepath.EvalSymlinks(path); err == nil {
			if repo, err := gitview.FindRepo(dir); err == nil {
				before = readGitSig(repo)
			}
		}
		v, err := gitview.Open(ctx, path)
		if err != nil {
			return nil, gitSig{}, err
		}
		if readGitSig(v.Repo) == before {
			return v, before, nil
		}
		if try == 3 {
			return nil, gitSig{}, fmt.Errorf("git view of %s: %w (git kept rewriting its index)", path, nar.ErrChanged)
		}
	}
}

// runGit is a worker's job on a git view: a hash, a stat walk to verify
// an entry, or an answer for a path outside every root.
func (d *Daemon) runGit(j *job) {
	if j.outside != "" {
		d.runGitOutside(j)
		return
	}
	v, sig, err := openGit(j.ctx, j.t.path)
	if err != nil {
		j.err = err
		return
	}
	j.gitRepo, j.gitSig = v.Repo, sig
	if j.verify {
		j.fp, _, j.err = nar.StatSelection(j.ctx, v.Dir, v.Select)
		return
	}
	j.res, j.err = hasher.HashPath(j.ctx, v.Dir, &hasher.Options{Select: v.Select, ColdProcs: nar.DefaultColdProcs})
}

// runGitOutside answers for the git view of a path outside every root,
// as runOutside does for the whole tree: its saved entry if a stat walk
// of the view matches the entry's fingerprint, else a new hash. A view
// whose index changed meanwhile is read again.
func (d *Daemon) runGitOutside(j *job) {
	path := j.outside
	for try := 1; ; try++ {
		v, sig, err := openGit(j.ctx, path)
		if err != nil {
			j.err = err
			return
		}
		fp, _, err := nar.StatSelection(j.ctx, v.Dir, v.Select)
		if err != nil {
			j.err = err
			return
		}
		if e, ok, err := d.store.Get(gitKey(path)); err == nil && ok && e.Fingerprint == fp && !fp.Racy(e.Computed.UnixNano()) && readGitSig(v.Repo) == sig {
			j.out = api.Hash{Path: path, View: api.ViewGit, Digest: e.Hash, NARSize: e.NARSize, Source: "validated", Computed: e.Computed, Took: e.Took}
			return
		}
		start := time.Now()
		res, err := hasher.HashPath(j.ctx, v.Dir, &hasher.Options{Select: v.Select, ColdProcs: nar.DefaultColdProcs})
		if err != nil {
			j.err = err
			return
		}
		if readGitSig(v.Repo) != sig {
			if try == 3 {
				j.err = fmt.Errorf("git view of %s: %w (git's index changed while it was hashed)", path, nar.ErrChanged)
				return
			}
			continue
		}
		e := cache.Entry{Hash: [32]byte(res.Hash.Digest), NARSize: res.NARSize, Fingerprint: res.Fingerprint, Computed: start, Took: time.Since(start)}
		j.save = &cache.Item{Path: gitKey(path), Entry: e}
		j.out = api.Hash{Path: path, View: api.ViewGit, Digest: e.Hash, NARSize: e.NARSize, Source: "computed", Computed: e.Computed, Took: e.Took}
		return
	}
}

// gitKey is the database key of the git view of path: a NUL never
// appears in a path.
func gitKey(path string) string { return path + "\x00git" }

// gitCurrent reports whether t's entry, if it is a git view's, was
// computed from the git files as they are now. On the loop.
func (t *tracked) gitCurrent() bool {
	return t.git == nil || t.git.known && readGitSig(t.git.repo) == t.git.sig
}

// watchGit watches the git directory of t's worktree and its common
// directory (not what is below them: the index, HEAD and packed-refs are
// at their top), so that a subscriber hears of a git add even when they
// are outside every root. Their events touch t (touchGit). On the loop.
func (d *Daemon) watchGit(t *tracked) {
	if t.git.watched != nil {
		return
	}
	t.git.watched = []string{t.git.repo.GitDir}
	if t.git.repo.CommonDir != t.git.repo.GitDir {
		t.git.watched = append(t.git.watched, t.git.repo.CommonDir)
	}
	for _, dir := range t.git.watched {
		d.gitWatches[dir]++
		if _, ok := d.watchPaths.get(dir); ok {
			continue // in a root, or watched for another view
		}
		f, err := d.addWatch(dir)
		if f != nil {
			f.Close()
		}
		if err != nil {
			d.log.Warn("cannot watch a git directory: subscribers to its git views hear of index changes only with the next change of a file", "path", dir, "err", err)
		}
	}
}

// unwatchGit undoes watchGit for a git view no longer tracked: a git
// directory no other view needs, outside every root, is no longer watched.
func (d *Daemon) unwatchGit(t *tracked) {
	for _, dir := range t.git.watched {
		if d.gitWatches[dir]--; d.gitWatches[dir] > 0 {
			continue
		}
		delete(d.gitWatches, dir)
		if w, ok := d.watchPaths.get(dir); ok && !d.needed(dir) {
			d.dropWatch(w, false)
		}
	}
	t.git.watched = nil
}

// maxGitTracked bounds the git views tracked; past it the least recently
// asked for idle ones are forgotten.
const maxGitTracked = 256

// trackView returns the tracked path for path's view in root r, starting
// to track it if need be. On the loop.
func (d *Daemon) trackView(path string, r *root, view api.View) *tracked {
	if view != api.ViewGit {
		return d.track(path, r)
	}
	t := d.gitTracked[path]
	if t == nil {
		t = &tracked{path: path, root: r, git: &gitState{}, used: d.now(), agg: d.aggregator()}
		if e, ok, err := d.store.Get(gitKey(path)); err == nil && ok {
			t.entry, t.entryGen, t.verified = &e, t.gen, false
		}
		d.gitTracked[path] = t
		d.gitIdx.set(path, t)
		if len(d.gitTracked) > d.maxGit {
			d.evictGit(t)
		}
	}
	t.used = d.now()
	d.sweepIdle()
	return t
}

// evictGit forgets the least recently used half of the idle git views,
// never keep: the view being asked for (forgotten, it would never answer).
func (d *Daemon) evictGit(keep *tracked) {
	var idle []*tracked
	for _, t := range d.gitTracked {
		if t != keep && t.job == nil && len(t.waiters) == 0 && len(t.subs) == 0 {
			idle = append(idle, t)
		}
	}
	slices.SortFunc(idle, func(a, b *tracked) int { return a.used.Compare(b.used) })
	for _, t := range idle[:len(idle)/2] {
		d.forget(t, errors.New("evicted"))
	}
}

// isTracked reports whether t is still tracked.
func (d *Daemon) isTracked(t *tracked) bool {
	if t.git != nil {
		return d.gitTracked[t.path] == t
	}
	return d.tracked[t.path] == t
}

// touchGit records a change at p for the git views it may change: those
// at or above p, below p if p is a directory made or removed, and those
// whose git directory holds p.
func (d *Daemon) touchGit(p string, dir bool, now time.Time) {
	if len(d.gitTracked) == 0 {
		return
	}
	d.gitIdx.above(p, func(_ string, t *tracked) { d.touch(t, now) })
	if dir {
		d.gitIdx.below(p, func(_ string, t *tracked) { d.touch(t, now) })
	}
	for _, t := range d.gitTracked {
		if t.git.known && (within(p, t.git.repo.GitDir) || within(p, t.git.repo.CommonDir)) {
			d.touch(t, now)
		}
	}
}

// touchAllGit records that every git view may have changed (lost events).
func (d *Daemon) touchAllGit(now time.Time) {
	for _, t := range d.gitTracked {
		d.touch(t, now)
	}
}

// rootGoneGit moves the git views of a root no longer watched to the
// root that now holds them, or forgets them with their cache entries.
func (d *Daemon) rootGoneGit(r *root) {
	for _, t := range d.gitTracked {
		if t.root != r {
			continue
		}
		if other := d.rootOf(t.path); other != nil {
			t.root = other
			continue
		}
		d.forget(t, fmt.Errorf("%s is no longer watched", clip(r.path)))
	}
}
