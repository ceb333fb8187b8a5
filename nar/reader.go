package nar

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// Type is the type of a node in an archive.
type Type uint8

// The three kinds of node a NAR holds.
const (
	TypeRegular Type = iota + 1
	TypeDirectory
	TypeSymlink
)

// String returns the word Nix uses for the type: regular, directory or symlink.
func (t Type) String() string {
	switch t {
	case TypeRegular:
		return "regular"
	case TypeDirectory:
		return "directory"
	case TypeSymlink:
		return "symlink"
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// A Header describes one node of an archive, as [Reader.Next] returns it.
type Header struct {
	// Path is "/" for the root and "/name/name…" below it. Names are raw
	// bytes: they need not be UTF-8.
	Path       string
	Type       Type
	Executable bool   // regular files only
	Size       int64  // regular files: the size of the contents
	LinkTarget string // symlinks only
	// Offset is, for regular files, the offset in the archive of the first
	// content byte (what `nix nar ls --json` calls narOffset).
	Offset int64
}

// ErrFormat is matched by every error that reports an invalid archive
// (errors.Is(err, nar.ErrFormat)).
var ErrFormat = errors.New("nar: invalid archive")

// A FormatError says where an archive breaks which rule.
type FormatError struct {
	Offset int64 // byte offset in the archive where the problem is
	// Path is the node being read there, as [Header.Path] spells it: the
	// file whose contents end early, the directory whose entries are out
	// of order or repeated, "/" for the root.
	Path   string
	Reason string // the broken rule
	Err    error  // io.ErrUnexpectedEOF for a truncated archive, else nil
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("nar: invalid archive at byte %d, in %q: %s", e.Offset, shortPath(e.Path), e.Reason)
}

// shortPath returns path, or for a deep one (up to [MaxPathLen] bytes) its
// start and end, for a message.
func shortPath(path string) string {
	if len(path) <= 256 {
		return path
	}
	return fmt.Sprintf("%s…(%d bytes)…%s", path[:100], len(path)-200, path[len(path)-100:])
}

// Is makes errors.Is(err, ErrFormat) hold.
func (e *FormatError) Is(target error) bool { return target == ErrFormat }

func (e *FormatError) Unwrap() error { return e.Err }

const readerBufSize = 64 << 10

// A Reader reads a NAR sequentially, like [archive/tar.Reader]: Next
// advances to the next node, in archive order (depth first, entries in
// byte order), and Read reads the contents of a regular file.
//
// The Reader is strict: it accepts exactly the archives Nix writes and
// rejects everything else (wrong or unknown tokens, non-zero padding,
// invalid, unsorted or duplicate names, empty or over-long targets, data
// after the end), naming the byte offset, the node and the rule in a
// *FormatError. Its memory stays bounded whatever lengths an archive
// claims: contents are streamed, names, targets and paths have fixed
// limits. The first error is sticky.
type Reader struct {
	br  *bufio.Reader
	off int64
	err error

	started   bool
	inFile    bool
	remaining int64 // contents of the current file not yet read
	pad       int
	dirs      []readFrame
	path      []byte // the current node's path; "" is the root

	scratch [64]byte
	str     [MaxTargetLen + 1 + 8]byte
}

type readFrame struct {
	pathLen int    // length of the directory's own path
	prev    []byte // previous entry name
	entries bool
}

// NewReader returns a Reader reading a NAR from r.
func NewReader(r io.Reader) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, readerBufSize)}
}

// Offset returns how many bytes of the archive have been consumed.
func (r *Reader) Offset() int64 { return r.off }

// Next advances to the next node and returns its header. The contents of
// a regular file not read by then are skipped. At the end of the archive,
// once it has checked that nothing follows it, Next returns io.EOF.
func (r *Reader) Next() (*Header, error) {
	if r.err != nil {
		return nil, r.err
	}
	hdr, err := r.next()
	if err != nil {
		r.err = err
		return nil, err
	}
	return hdr, nil
}

func (r *Reader) next() (*Header, error) {
	if r.inFile {
		if err := r.skip(); err != nil {
			return nil, err
		}
	}
	if !r.started {
		r.started = true
		if err := r.expect(tokNAR, `the NAR magic "nix-archive-1" ( type`); err != nil {
			return nil, err
		}
		return r.node()
	}
	for {
		if len(r.dirs) == 0 {
			return nil, r.end()
		}
		at := r.off
		if err := r.readFull(r.scratch[:16]); err != nil {
			return nil, err
		}
		switch string(r.scratch[:16]) {
		case tokPar:
			top := r.dirs[len(r.dirs)-1]
			r.dirs = r.dirs[:len(r.dirs)-1]
			r.path = r.path[:top.pathLen]
			if err := r.nodeDone(); err != nil {
				return nil, err
			}
			continue
		case tokEnt[:16]:
			if err := r.expect(tokEnt[16:], `"(" "name" after "entry"`); err != nil {
				return nil, err
			}
			return r.entry()
		}
		return nil, r.formatError(at, `expected "entry" or ")" ending the directory`)
	}
}

// entry reads an entry's name and begins its node.
func (r *Reader) entry() (*Header, error) {
	at := r.off
	name, err := r.readString(MaxNameLen, "entry name")
	if err != nil {
		return nil, err
	}
	if why := checkName(name); why != "" {
		return nil, r.formatError(at, fmt.Sprintf("%s: %q", why, name))
	}
	top := &r.dirs[len(r.dirs)-1]
	if top.entries {
		switch c := bytes.Compare(top.prev, name); {
		case c == 0:
			return nil, r.formatError(at, fmt.Sprintf("duplicate entry %q", name))
		case c > 0:
			return nil, r.formatError(at, fmt.Sprintf("entry %q is not after %q: entries must be in ascending byte order", name, top.prev))
		}
	}
	if top.pathLen+1+len(name) > MaxPathLen {
		return nil, r.formatError(at, "path longer than 64 KiB: the archive nests too deep")
	}
	top.prev = append(top.prev[:0], name...)
	top.entries = true
	r.path = append(append(r.path[:top.pathLen], '/'), name...)
	if err := r.expect(tokNod, `"node" "(" "type" after the entry name`); err != nil {
		return nil, err
	}
	return r.node()
}

// node reads a node's type and what follows it up to the contents.
func (r *Reader) node() (*Header, error) {
	hdr := &Header{Path: r.nodePath()}
	at := r.off
	if err := r.readFull(r.scratch[:16]); err != nil {
		return nil, err
	}
	switch string(r.scratch[:16]) {
	case tokReg[:16]:
		hdr.Type = TypeRegular
		at = r.off
		if err := r.readFull(r.scratch[:16]); err != nil {
			return nil, err
		}
		switch string(r.scratch[:16]) {
		case tokReg[16:]:
		case tokExe[16:32]:
			hdr.Executable = true
			if err := r.expect(tokExe[32:], `"" "contents" after "executable"`); err != nil {
				return nil, err
			}
		default:
			return nil, r.formatError(at, `expected "contents" or "executable" after "regular"`)
		}
		at = r.off
		size, err := r.readUint()
		if err != nil {
			return nil, err
		}
		if size > math.MaxInt64 {
			return nil, r.formatError(at, fmt.Sprintf("file size %d is impossible", size))
		}
		hdr.Size, hdr.Offset = int64(size), r.off
		r.inFile, r.remaining, r.pad = true, int64(size), padLen(size)
		if size == 0 {
			if err := r.endFile(); err != nil {
				return nil, err
			}
		}
	case tokSym[:16]:
		hdr.Type = TypeSymlink
		if err := r.expect(tokSym[16:], `"target" after "symlink"`); err != nil {
			return nil, err
		}
		at = r.off
		target, err := r.readString(MaxTargetLen, "symlink target")
		if err != nil {
			return nil, err
		}
		if why := checkTarget(target); why != "" {
			return nil, r.formatError(at, why)
		}
		hdr.LinkTarget = string(target)
		if err := r.expect(tokPar, `")" after the symlink target`); err != nil {
			return nil, err
		}
		if err := r.nodeDone(); err != nil {
			return nil, err
		}
	case tokDir[:16]:
		hdr.Type = TypeDirectory
		if err := r.expect(tokDir[16:], `"directory"`); err != nil {
			return nil, err
		}
		if len(r.dirs) < cap(r.dirs) {
			r.dirs = r.dirs[:len(r.dirs)+1]
			top := &r.dirs[len(r.dirs)-1]
			top.pathLen, top.prev, top.entries = len(r.path), top.prev[:0], false
		} else {
			r.dirs = append(r.dirs, readFrame{pathLen: len(r.path)})
		}
	default:
		return nil, r.formatError(at, `expected node type "regular", "symlink" or "directory"`)
	}
	return hdr, nil
}

// Read reads from the contents of the current regular file. It returns
// io.EOF at the end of the contents, and 0, io.EOF for other nodes.
func (r *Reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if !r.inFile {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if int64(len(p)) > r.remaining {
		p = p[:r.remaining]
	}
	n, err := r.readSome(p)
	r.off += int64(n)
	r.remaining -= int64(n)
	if r.remaining == 0 {
		err = r.endFile()
	} else if err == io.EOF {
		err = r.truncated()
	} else if err != nil {
		err = r.ioError(err)
	}
	if err != nil {
		r.err = err
	}
	return n, err
}

// skip discards the rest of the current file's contents.
func (r *Reader) skip() error {
	for r.remaining > 0 {
		n, err := r.br.Discard(int(min(r.remaining, 1<<30)))
		r.off += int64(n)
		r.remaining -= int64(n)
		if err == io.EOF {
			return r.truncated()
		} else if err != nil {
			return r.ioError(err)
		}
	}
	return r.endFile()
}

// endFile reads the padding and ")" after a file's contents.
func (r *Reader) endFile() error {
	r.inFile = false
	if r.pad > 0 {
		at := r.off
		if err := r.readFull(r.scratch[:r.pad]); err != nil {
			return err
		}
		if !allZero(r.scratch[:r.pad]) {
			return r.formatError(at, "non-zero padding after file contents")
		}
	}
	if err := r.expect(tokPar, `")" after the file contents`); err != nil {
		return err
	}
	return r.nodeDone()
}

// nodeDone reads the ")" closing the entry of a node that has just ended.
func (r *Reader) nodeDone() error {
	if len(r.dirs) == 0 {
		return nil
	}
	r.path = r.path[:r.dirs[len(r.dirs)-1].pathLen]
	return r.expect(tokPar, `")" closing the directory entry`)
}

// end checks that nothing follows the archive.
func (r *Reader) end() error {
	_, err := r.br.ReadByte()
	switch {
	case err == io.EOF:
		return io.EOF
	case err != nil:
		return r.ioError(err)
	}
	return r.formatError(r.off, "data after the end of the archive")
}

// expect reads the token tok, or fails naming what was expected.
func (r *Reader) expect(tok, what string) error {
	at := r.off
	buf := r.scratch[:len(tok)]
	if err := r.readFull(buf); err != nil {
		return err
	}
	if string(buf) != tok {
		i := 0
		for buf[i] == tok[i] {
			i++
		}
		return r.formatError(at+int64(i), "expected "+what)
	}
	return nil
}

func (r *Reader) readUint() (uint64, error) {
	if err := r.readFull(r.scratch[:8]); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(r.scratch[:8]), nil
}

// readString reads a string of at most max bytes into r.str.
func (r *Reader) readString(max int, what string) ([]byte, error) {
	at := r.off
	n, err := r.readUint()
	if err != nil {
		return nil, err
	}
	if n > uint64(max) {
		return nil, r.formatError(at, fmt.Sprintf("%s length %d exceeds the limit of %d bytes", what, n, max))
	}
	padded := int(n) + padLen(n)
	if err := r.readFull(r.str[:padded]); err != nil {
		return nil, err
	}
	if !allZero(r.str[n:padded]) {
		return nil, r.formatError(at+8+int64(n), "non-zero padding after "+what)
	}
	return r.str[:n], nil
}

func (r *Reader) readFull(p []byte) error {
	for len(p) > 0 {
		n, err := r.readSome(p)
		r.off += int64(n)
		p = p[n:]
		switch {
		case len(p) == 0:
		case err == io.EOF:
			return r.truncated()
		case err != nil:
			return r.ioError(err)
		}
	}
	return nil
}

// maxEmptyReads is how many reads in a row may return neither a byte nor
// an error, as io.Reader allows, before the Reader gives up with
// io.ErrNoProgress: bufio's limit.
const maxEmptyReads = 100

// readSome reads at least one byte into p, which is not empty, or fails.
func (r *Reader) readSome(p []byte) (int, error) {
	for range maxEmptyReads {
		if n, err := r.br.Read(p); n > 0 || err != nil {
			return n, err
		}
	}
	return 0, io.ErrNoProgress
}

func (r *Reader) truncated() error {
	return &FormatError{Offset: r.off, Path: r.nodePath(), Reason: "archive ends early (truncated)", Err: io.ErrUnexpectedEOF}
}

func (r *Reader) formatError(at int64, reason string) error {
	return &FormatError{Offset: at, Path: r.nodePath(), Reason: reason}
}

// nodePath is the path of the node being read, as Header.Path spells it.
func (r *Reader) nodePath() string {
	if len(r.path) == 0 {
		return "/"
	}
	return string(r.path)
}

func (r *Reader) ioError(err error) error {
	return fmt.Errorf("nar: read at byte %d: %w", r.off, err)
}

func allZero(p []byte) bool {
	for _, b := range p {
		if b != 0 {
			return false
		}
	}
	return true
}
