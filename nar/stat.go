package nar

import (
	"context"
	"fmt"
	"strings"
)

// StatTree walks the tree at path as [Dump] does, lstat'ing every entry
// but reading no contents, and returns its Fingerprint and counts. It
// matches the Fingerprint of a Dump of the same unchanged tree.
func StatTree(ctx context.Context, path string) (Fingerprint, DumpStats, error) {
	return StatSelection(ctx, path, nil)
}

// StatSelection is [StatTree] of the entries sel selects (all if sel is
// nil): it matches the Fingerprint of a Dump with the same Selection.
func StatSelection(ctx context.Context, path string, sel *Selection) (Fingerprint, DumpStats, error) {
	if !fastPath {
		return portableStat(ctx, path, sel)
	}
	s := &statSink{fp: newFingerprinter()}
	if err := (&walker{ctx: ctx, root: path, sel: sel, sink: s}).run(); err != nil {
		return Fingerprint{}, DumpStats{}, statError(path, err)
	}
	return s.fp.sum(), s.count, nil
}

// statError names path in a stat walk's error, unless the error names it
// already: the walk's errors name the entry they concern, under path, and
// "stat x: lstat x: …" would say it twice.
func statError(path string, err error) error {
	if strings.Contains(err.Error(), path) {
		return err
	}
	return fmt.Errorf("stat %s: %w", path, err)
}

// statSink is a stat walk's sink (see walker): it sums up the lstat data
// of every entry into a Fingerprint, as a dump's writer does, and
// follows the checkpoints of an earlier dump if it has them (resume.go).
type statSink struct {
	fp    *fingerprinter
	count DumpStats
	check *checker // nil: no checkpoints to follow
}

func (s *statSink) lstatAll() bool { return true }
func (s *statSink) listed(*level)  {}

func (s *statSink) before(w *walker, name []byte) {
	if s.check != nil {
		s.check.at(w, s.fp, name)
	}
}

func (s *statSink) file(_ *dirRef, name []byte, fi *fileInfo, root bool) error {
	s.fp.add(rootless(name, root), fi)
	s.count.Files++
	s.count.Bytes += fi.size
	return nil
}

func (s *statSink) symlink(_ *dirRef, name []byte, fi *fileInfo, root bool) error {
	s.fp.add(rootless(name, root), fi)
	s.count.Symlinks++
	return nil
}

func (s *statSink) dir(name []byte, fi *fileInfo, root bool) {
	s.fp.add(rootless(name, root), fi)
	s.count.Dirs++
}

func (s *statSink) endDir()       { s.fp.endDir() }
func (s *statSink) finish() error { return nil }
func (s *statSink) abort()        {}

// rootless is an entry's name in the fingerprint: the root has none.
func rootless(name []byte, root bool) []byte {
	if root {
		return nil
	}
	return name
}
