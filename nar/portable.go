package nar

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The portable dump: what [Dump], [StatTree] and [StatSelection] do on
// systems other than Linux, where the pipeline of dump.go (getdents,
// readers ahead of the writer) is not built to run (see fastPath). One
// goroutine walks the tree with lstat and os.ReadDir, in NAR order, and
// writes it through a [Writer]; files are stat'ed before and after they
// are read, directories before listing and after their subtree, as the
// fast dump does, so a tree that changes fails with ErrChanged. The
// archive, the Fingerprint and the counts are the fast dump's, byte for
// byte (portable_test.go compares them on Linux). Checkpoints and resumed
// dumps need the fast dump.

// portableDump is [Dump] on the portable path.
func portableDump(ctx context.Context, dst io.Writer, path string, opt *DumpOptions) (DumpResult, error) {
	start := time.Now()
	p := &portable{ctx: ctx, fp: newFingerprinter(), buf: make([]byte, 256<<10)}
	if opt != nil {
		if opt.Checkpoints != nil || opt.From != nil {
			return DumpResult{}, fmt.Errorf("dump %s: checkpoints and resumed dumps need the Linux dump; on %s dump without them", path, runtime.GOOS)
		}
		p.sel, p.progress = opt.Select, opt.Progress
	}
	p.w = NewWriter(dst)
	if err := p.root(path); err != nil {
		return DumpResult{}, err
	}
	if err := p.w.Close(); err != nil {
		return DumpResult{}, fmt.Errorf("dump %s: %w", path, err)
	}
	p.report()
	return DumpResult{Size: p.w.Offset(), Fingerprint: p.fp.sum(), DumpStats: p.count, Since: start}, nil
}

// portableStat is [StatSelection] on the portable path.
func portableStat(ctx context.Context, path string, sel *Selection) (Fingerprint, DumpStats, error) {
	p := &portable{ctx: ctx, fp: newFingerprinter(), sel: sel}
	if err := p.root(path); err != nil {
		return Fingerprint{}, DumpStats{}, statError(path, err)
	}
	return p.fp.sum(), p.count, nil
}

// portable is one walk; w is nil for a stat walk.
type portable struct {
	ctx      context.Context
	w        *Writer
	fp       *fingerprinter
	count    DumpStats
	sel      *Selection
	progress *Progress
	shown    Progress // what progress has been given
	buf      []byte
	// pending are the directories entered but not yet written (with a
	// Selection, a directory is written once it holds a selected entry).
	pending []pendingDir
}

type pendingDir struct {
	name []byte // nil for the root
	info fileInfo
}

func (p *portable) root(path string) error {
	fi, err := lstat(path)
	if err != nil {
		return err
	}
	var sel *selNode
	if p.sel != nil {
		if fi.mode&modeType != modeDir {
			return &fs.PathError{Op: "dump", Path: path, Err: errors.New("not a directory: only a directory's entries can be selected")}
		}
		sel = &p.sel.root
	}
	return p.node(path, nil, fi, sel)
}

// node dumps the entry at path, called name (nil for the root), whose
// lstat is fi.
func (p *portable) node(path string, name []byte, fi fileInfo, sel *selNode) error {
	if err := p.ctx.Err(); err != nil {
		return err
	}
	switch fi.mode & modeType {
	case modeReg:
		if sel != nil && !sel.leaf {
			return nil
		}
		if err := p.begin(name, fi); err != nil {
			return err
		}
		p.count.Files++
		p.count.Bytes += fi.size
		if p.w == nil {
			return nil
		}
		return p.file(path, fi)
	case modeLnk:
		if sel != nil && !sel.leaf {
			return nil
		}
		target, err := os.Readlink(path)
		if err != nil {
			return err
		}
		if err := p.begin(name, fi); err != nil {
			return err
		}
		p.count.Symlinks++
		if p.w == nil {
			return nil
		}
		return p.wrap(path, p.w.Symlink(target))
	case modeDir:
		if sel != nil && name != nil && len(sel.children) == 0 && !sel.keep {
			return nil
		}
		return p.dir(path, name, fi, sel)
	}
	return &fs.PathError{Op: "dump", Path: path,
		Err: fmt.Errorf("%w: a %s; a NAR holds only regular files, directories and symlinks", ErrUnsupportedType, typeWord(dtype(fi.mode)))}
}

// begin writes the directories still pending and the entry's name, and
// adds the entry to the fingerprint.
func (p *portable) begin(name []byte, fi fileInfo) error {
	for _, d := range p.pending {
		p.fp.add(d.name, &d.info)
		p.count.Dirs++
		if p.w != nil {
			if d.name != nil {
				p.w.Entry(string(d.name))
			}
			p.w.Directory()
		}
	}
	p.pending = p.pending[:0]
	p.fp.add(name, &fi)
	if p.w != nil && name != nil {
		if err := p.w.Entry(string(name)); err != nil {
			return err
		}
	}
	p.report()
	return nil
}

func (p *portable) dir(path string, name []byte, fi fileInfo, sel *selNode) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if after, err := fstatInfo(f); err != nil {
		return err
	} else if after.ino != fi.ino || after.dev != fi.dev {
		return fmt.Errorf("dump %s: %w (it was replaced)", path, ErrChanged)
	}
	ents, err := f.ReadDir(-1)
	if err != nil {
		return err
	}
	// By name as a string: byte order, the archive's.
	slices.SortFunc(ents, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	wrote := sel == nil || name == nil || sel.keep
	if wrote {
		if err := p.begin(name, fi); err != nil {
			return err
		}
		p.count.Dirs++
		if p.w != nil {
			p.w.Directory()
		}
	} else {
		p.pending = append(p.pending, pendingDir{name, fi})
	}
	depth := len(p.pending)
	for _, e := range ents {
		var csel *selNode
		if sel != nil {
			if csel = sel.children[e.Name()]; csel == nil {
				continue
			}
		}
		child := filepath.Join(path, e.Name())
		if why := checkName(e.Name()); why != "" {
			return &fs.PathError{Op: "dump", Path: child, Err: errors.New(why)}
		}
		cfi, err := lstat(child)
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("dump %s: %w (it was deleted)", child, ErrChanged)
		}
		if err != nil {
			return err
		}
		if err := p.node(child, []byte(e.Name()), cfi, csel); err != nil {
			return err
		}
	}
	if !wrote && len(p.pending) == depth { // nothing selected was found in it
		p.pending = p.pending[:depth-1]
		return nil
	}
	if after, err := fstatInfo(f); err != nil {
		return err
	} else if fileChangedInfo(fi, after) {
		return fmt.Errorf("dump %s: %w (entries were added, removed or renamed)", path, ErrChanged)
	}
	p.fp.endDir()
	if p.w != nil {
		return p.wrap(path, p.w.EndDirectory())
	}
	return nil
}

// file writes a regular file's node and contents, checking that it did
// not change while it was read.
func (p *portable) file(path string, fi fileInfo) error {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ELOOP) {
			return fmt.Errorf("dump %s: %w (it was replaced)", path, ErrChanged)
		}
		return err
	}
	defer f.Close()
	if err := p.w.File(fi.mode&modeExec != 0, fi.size); err != nil {
		return p.wrap(path, err)
	}
	var n int64
	for n < fi.size {
		if err := p.ctx.Err(); err != nil {
			return err
		}
		k, err := f.Read(p.buf[:min(int64(len(p.buf)), fi.size-n)])
		if k > 0 {
			if _, err := p.w.Write(p.buf[:k]); err != nil {
				return p.wrap(path, err)
			}
			n += int64(k)
		}
		if err == io.EOF || k == 0 && err == nil {
			break
		}
		if err != nil {
			return err
		}
	}
	after, err := fstatInfo(f)
	if err != nil {
		return err
	}
	if n != fi.size || fileChangedInfo(fi, after) {
		return fmt.Errorf("dump %s: %w (it was modified while it was read)", path, ErrChanged)
	}
	return nil
}

func (p *portable) report() {
	if p.progress == nil || p.w == nil {
		return
	}
	entries, bytes := p.fp.entries, p.w.Offset()
	p.progress.Entries.Add(entries - p.shown.Entries.Load())
	p.progress.Bytes.Add(bytes - p.shown.Bytes.Load())
	p.shown.Entries.Store(entries)
	p.shown.Bytes.Store(bytes)
}

// wrap names the path in a Writer's error.
func (p *portable) wrap(path string, err error) error {
	if err != nil {
		return fmt.Errorf("dump %s: %w", path, err)
	}
	return nil
}

func lstat(path string) (fileInfo, error) {
	var st unix.Stat_t
	for {
		err := unix.Lstat(path, &st)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fileInfo{}, &fs.PathError{Op: "lstat", Path: path, Err: err}
		}
		return infoOf(&st), nil
	}
}

func fstatInfo(f *os.File) (fileInfo, error) {
	var st unix.Stat_t
	if err := fstat(int(f.Fd()), &st); err != nil {
		return fileInfo{}, &fs.PathError{Op: "fstat", Path: f.Name(), Err: err}
	}
	return infoOf(&st), nil
}
