package nar

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// ErrWriteTooLong is returned by [Writer.Write] when more bytes are written
// than the size announced by [Writer.File].
var ErrWriteTooLong = errors.New("nar: write too long")

// writerBufSize is the size of the buffer that gathers tokens and small
// contents into few large writes to the underlying writer.
const writerBufSize = 16 << 10

// directContents: see emitContents.
const directContents = 1 << 10

type writerState uint8

const (
	wantNode writerState = iota // File, Symlink or Directory
	inFile                      // Write, until the announced size is reached
	inDir                       // Entry or EndDirectory
	done                        // the root node is complete; only Close
)

var stateWords = [...]string{
	wantNode: "where a node (file, symlink or directory) is due",
	inFile:   "while file contents are due",
	inDir:    "inside a directory, where an entry or its end is due",
	done:     "after the archive's root node is complete",
}

// A Writer produces a NAR, synchronously and in order: the root node, and
// inside each directory its entries in strictly ascending byte order.
//
//	w := nar.NewWriter(out)
//	w.Directory()
//	w.Entry("hello")
//	w.File(false, 5)
//	w.Write([]byte("hello"))
//	w.EndDirectory()
//	w.Close()
//
// Like [archive/tar.Writer], the first error is sticky: every later call
// returns it. A Writer checks every rule a strict reader enforces (names,
// targets, order, sizes), so it never produces an archive that does not
// read back. It buffers output; [Writer.Close] flushes it. Once past the
// first directory levels, no call allocates.
type Writer struct {
	w         io.Writer
	buf       []byte
	off       int64 // bytes of archive produced so far, buffered or not
	err       error
	state     writerState
	remaining int64 // contents still due for the current file
	size      int64 // the current file's size
	dirs      []dirFrame
	pathLen   int // length of the path of the node being begun
}

// dirFrame is one open directory.
type dirFrame struct {
	pathLen int    // length of the directory's path inside the archive
	prev    []byte // the previous entry's name, for the order check
	entries bool   // at least one entry has been started
}

// NewWriter returns a Writer that writes a NAR to w. Nothing is written
// until the root node is begun.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w, buf: make([]byte, 0, writerBufSize)}
}

// Reset discards the Writer's state and makes it write a new archive to w,
// reusing its buffers.
func (w *Writer) Reset(dst io.Writer) {
	w.w = dst
	w.buf = w.buf[:0]
	w.off = 0
	w.err = nil
	w.state = wantNode
	w.remaining = 0
	w.size = 0
	w.dirs = w.dirs[:0]
	w.pathLen = 0
}

// Offset returns the number of bytes of archive produced so far, buffered
// or not; after Close it is the archive's size. After File of a non-empty
// file it is the offset of the file's first content byte (the narOffset of
// `nix nar ls --json`). File of an empty file has already ended it, so
// Offset is then past its closing ")", 16 bytes past its narOffset.
func (w *Writer) Offset() int64 { return w.off }

// File begins a regular file of size bytes, to be given by [Writer.Write].
func (w *Writer) File(executable bool, size int64) error {
	if err := w.beginNode("File"); err != nil {
		return err
	}
	if size < 0 {
		return w.fail(fmt.Errorf("nar: negative file size %d", size))
	}
	w.put(appendFileHeader(w.buf, executable, size))
	w.remaining = size
	w.size = size
	w.state = inFile
	if size == 0 {
		w.endFile()
	}
	return w.err
}

// Write writes contents of the current file. Writing more than the size
// given to File fails with ErrWriteTooLong and writes nothing.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if w.state != inFile {
		return 0, w.misuse("Write")
	}
	if int64(len(p)) > w.remaining {
		return 0, w.fail(ErrWriteTooLong)
	}
	w.emitContents(p)
	w.remaining -= int64(len(p))
	if w.remaining == 0 {
		w.endFile()
	}
	if w.err != nil {
		return 0, w.err
	}
	return len(p), nil
}

// Symlink writes a symlink node pointing at target, which is stored as it
// is, never resolved.
func (w *Writer) Symlink(target string) error { return symlink(w, target) }

func symlink[S ~string | ~[]byte](w *Writer, target S) error {
	if err := w.beginNode("Symlink"); err != nil {
		return err
	}
	if why := checkTarget(target); why != "" {
		return w.fail(fmt.Errorf("nar: symlink %q: %s", target, why))
	}
	w.put(appendSymlink(w.buf, target))
	w.endNode()
	return w.err
}

// Directory begins a directory node. Its entries follow through
// [Writer.Entry]; [Writer.EndDirectory] ends it.
func (w *Writer) Directory() error {
	if err := w.beginNode("Directory"); err != nil {
		return err
	}
	w.put(append(w.buf, tokDir...))
	if len(w.dirs) < cap(w.dirs) {
		w.dirs = w.dirs[:len(w.dirs)+1]
		top := &w.dirs[len(w.dirs)-1]
		top.pathLen, top.prev, top.entries = w.pathLen, top.prev[:0], false
	} else {
		w.dirs = append(w.dirs, dirFrame{pathLen: w.pathLen})
	}
	w.state = inDir
	return w.err
}

// Entry begins the entry called name in the current directory; its node
// (File, Symlink or Directory) must follow. Names must be valid and
// strictly ascending in byte order.
func (w *Writer) Entry(name string) error { return entry(w, name) }

func entry[S ~string | ~[]byte](w *Writer, name S) error {
	if w.err != nil {
		return w.err
	}
	if w.state != inDir {
		return w.misuse("Entry")
	}
	if why := checkName(name); why != "" {
		return w.fail(fmt.Errorf("nar: entry %q: %s", name, why))
	}
	top := &w.dirs[len(w.dirs)-1]
	if top.pathLen+1+len(name) > MaxPathLen {
		return w.fail(fmt.Errorf("nar: entry %q: path longer than 64 KiB: the tree nests too deep", name))
	}
	if top.entries {
		if compareName(top.prev, name) >= 0 {
			return w.fail(fmt.Errorf("nar: entry %q is not after %q: entries must be in ascending byte order", name, top.prev))
		}
	}
	w.put(appendEntry(w.buf, top.entries, name))
	top.prev = append(top.prev[:0], name...)
	top.entries = true
	w.pathLen = top.pathLen + 1 + len(name)
	w.state = wantNode
	return w.err
}

// compareName compares like bytes.Compare, for either kind of name.
func compareName[S ~string | ~[]byte](a []byte, b S) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	return cmpInt(len(a), len(b))
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// EndDirectory ends the current directory.
func (w *Writer) EndDirectory() error {
	if w.err != nil {
		return w.err
	}
	if w.state != inDir {
		return w.misuse("EndDirectory")
	}
	w.put(appendEndDir(w.buf, w.dirs[len(w.dirs)-1].entries))
	w.dirs = w.dirs[:len(w.dirs)-1]
	w.endNode()
	return w.err
}

// Close checks that the archive is complete and flushes it to the
// underlying writer, which it does not close.
func (w *Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	if w.state != done {
		return w.fail(fmt.Errorf("nar: Close called %s: archive incomplete", stateWords[w.state]))
	}
	w.flush()
	return w.err
}

func (w *Writer) beginNode(op string) error {
	if w.err != nil {
		return w.err
	}
	if w.state != wantNode {
		return w.misuse(op)
	}
	if w.off == 0 {
		w.put(append(w.buf, tokNAR...))
	}
	return nil
}

// endFile closes a file whose contents are all written.
func (w *Writer) endFile() {
	w.put(appendFileTrailer(w.buf, w.size))
	w.endNode()
}

// endNode moves on after a node is complete.
func (w *Writer) endNode() {
	if len(w.dirs) == 0 {
		w.state = done
	} else {
		w.state = inDir
	}
}

func (w *Writer) misuse(op string) error {
	return w.fail(fmt.Errorf("nar: %s called %s", op, stateWords[w.state]))
}

func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	return w.err
}

// put takes what an append of archive bytes to w.buf made (see wire.go
// for the layout), and flushes the buffer when it is full.
func (w *Writer) put(b []byte) {
	w.off += int64(len(b) - len(w.buf))
	w.buf = b
	if len(w.buf) >= writerBufSize {
		w.flush()
	}
}

// emitContents gathers small contents into the buffer and hands the
// others, from directContents bytes on, to the underlying writer
// directly: a hash takes them faster from where they are than after a
// copy (1-2 % of hashing a GOROOT's small files through a Writer into
// SHA-256, measured in-process, with 1, 2 or 4 KiB as the limit).
func (w *Writer) emitContents(p []byte) {
	if len(p) < directContents && len(w.buf)+len(p) <= writerBufSize {
		w.put(append(w.buf, p...))
		return
	}
	w.flush()
	if w.err != nil {
		return
	}
	if err := writeAll(w.w, p); err != nil {
		w.fail(err)
		return
	}
	w.off += int64(len(p))
}

func (w *Writer) flush() {
	if w.err != nil || len(w.buf) == 0 {
		return
	}
	if err := writeAll(w.w, w.buf); err != nil {
		w.fail(err)
	}
	w.buf = w.buf[:0]
}

// writeAll writes p to dst, taking a short count without an error (which
// breaks io.Writer's contract) as io.ErrShortWrite.
func writeAll(dst io.Writer, p []byte) error {
	n, err := dst.Write(p)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	return err
}

// flushed writes out what the Writer holds and returns its error: a
// dump's checkpoint needs the destination to have taken every byte so far.
func (w *Writer) flushed() error {
	w.flush()
	return w.err
}

// resumeWriter returns a Writer that goes on with an archive where a dump
// took a checkpoint: off bytes written, inside the root and the
// directories that hold path, before the entry path, which is its
// directory's first if first is set. It knows only the names of the
// directories it is in, so the order of the entries it goes on with is
// checked against them, not against the entry before path: the dump's
// walk checks the order of every directory's entries anyway.
func resumeWriter(dst io.Writer, off int64, path string, first bool) *Writer {
	w := NewWriter(dst)
	w.off, w.state = off, inDir
	names := strings.Split(path, "/")
	pathLen := 0
	for i, name := range names {
		f := dirFrame{pathLen: pathLen, entries: true}
		if i < len(names)-1 {
			f.prev = []byte(name) // the directory the archive is in
		} else {
			f.entries = !first
		}
		w.dirs = append(w.dirs, f)
		pathLen += 1 + len(name)
	}
	return w
}
