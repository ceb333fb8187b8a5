package nar

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// resume sets the walk up at w.from: the root and the directories that
// hold From.Path are opened and listed, none of them added to the
// archive (the checkpoint holds their bytes so far); each one's listing
// goes on after the directory the walk is in, and the innermost one's at
// the first name not before From.Path's last. Entries added, removed or
// changed from there on are walked as they are now.
func (w *walker) resume() error {
	root := cstring(w.root)
	cwd := workingDir()
	if err := fstatat(unix.AT_FDCWD, &root[0], &w.st); err != nil {
		return &fs.PathError{Op: "lstat", Path: w.root, Err: err}
	}
	fi := infoOf(&w.st)
	if dtype(fi.mode) != unix.DT_DIR {
		return fmt.Errorf("dump %s: %w (it is no longer a directory: resume at %q impossible)", w.root, ErrChanged, w.from.Path)
	}
	if _, err := w.openDir(cwd, root[:len(root)-1], &fi, true, 0, nil); err != nil {
		return err
	}
	names := strings.Split(w.from.Path, "/")
	for i, name := range names {
		top := &w.stack[len(w.stack)-1]
		j := sort.Search(len(top.ents), func(k int) bool {
			return string(top.entName(top.ents[k])) >= name
		})
		if i == len(names)-1 {
			top.next = j
			return nil
		}
		if j == len(top.ents) || string(top.entName(top.ents[j])) != name {
			return fmt.Errorf("dump %s: %w (it is gone: resume at %q impossible)", joinPath(top.dir.path(), []byte(name)), ErrChanged, w.from.Path)
		}
		d := top.ents[j]
		top.next = j + 1
		// The name is followed by its NUL in names, for openat.
		if _, err := w.openDir(top.dir, top.entName(d), nil, false, top.pathLen+1+len(name), nil); err != nil {
			return err
		}
	}
	return nil
}

// StatCheckpoints is [StatTree] that also finds the last of cps that the
// tree still matches: before it, every entry's lstat data are what the
// dump that took it saw, and none had changed so close to the moment it
// was read that a stat cannot vouch for it (see [Fingerprint.Racy]). A
// dump of the tree resumed there ([DumpOptions.From]) gives its hash.
// It returns a nil Checkpoint if none matches. cps must be a dump's of
// path.
func StatCheckpoints(ctx context.Context, path string, cps *Checkpoints) (Fingerprint, DumpStats, *Checkpoint, error) {
	if !fastPath { // no checkpoints there: none matches
		fp, count, err := portableStat(ctx, path, nil)
		return fp, count, nil, err
	}
	s := &statSink{fp: newFingerprinter()}
	if cps != nil && len(cps.list) > 0 {
		s.check = &checker{list: cps.list}
	}
	if err := (&walker{ctx: ctx, root: path, sink: s}).run(); err != nil {
		return Fingerprint{}, DumpStats{}, nil, statError(path, err)
	}
	var last *Checkpoint
	if s.check != nil {
		last = s.check.matched
	}
	return s.fp.sum(), s.count, last, nil
}

// checker follows a stat walk through the checkpoints of a dump.
type checker struct {
	list    []Checkpoint
	next    int // the checkpoint to look for
	matched *Checkpoint
	done    bool // one did not match: none after it can
}

// at is called before the stat walk adds the entry name of the top
// directory to the fingerprint fp.
func (c *checker) at(w *walker, fp *fingerprinter, name []byte) {
	if c.done {
		return
	}
	cp := &c.list[c.next]
	if !strings.HasSuffix(cp.Path, string(name)) || !w.atPath(cp.Path, name) {
		return
	}
	if cp.racy || !fp.matches(cp) {
		c.done = true
		return
	}
	c.matched = cp
	c.next++
	c.done = c.next == len(c.list)
}

// atPath reports whether the entry name of the top directory is at path.
func (w *walker) atPath(path string, name []byte) bool {
	var b bytes.Buffer
	for i := 1; i < len(w.stack); i++ {
		b.Write(w.stack[i].name)
		b.WriteByte('/')
	}
	b.Write(name)
	return b.String() == path
}
