package gitview

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// Mode bits of an index entry (git's object modes).
const (
	ModeFile    = 0o100644
	ModeExec    = 0o100755
	ModeSymlink = 0o120000
	ModeGitlink = 0o160000 // a submodule's commit
	modeDir     = 0o040000 // a sparse index's directory entry
	modeType    = 0o170000
)

// An Entry is one entry of a git index: a path git tracks.
type Entry struct {
	Path  []byte // slash-separated, relative to the worktree's top
	Mode  uint32 // ModeFile, ModeExec, ModeSymlink or ModeGitlink
	Stage uint8  // 0, or 1 to 3 for the sides of a merge conflict
	// SkipWorktree is set for a path outside a sparse checkout (usually
	// absent from the worktree), IntentToAdd by git add -N.
	SkipWorktree, IntentToAdd bool
}

// ErrUnsupportedIndex matches the error for an index this parser does not
// read on its own: a split index (its entries are in a shared file) or a
// sparse index (whole directories stand for their files). Open then asks
// git ls-files.
var ErrUnsupportedIndex = errors.New("unsupported index")

// ParseIndex parses the contents of a git index file, versions 2, 3 and 4,
// whose object names are hashSize bytes (20 for SHA-1, 32 for SHA-256),
// and checks its trailing checksum (unless it is zero, as
// index.skipHash writes it). The entries' paths point into data (version
// 4 builds them). Entries are in the index's order: by path, then stage.
func ParseIndex(data []byte, hashSize int) ([]Entry, error) {
	if hashSize != sha1.Size && hashSize != sha256.Size {
		return nil, fmt.Errorf("gitview: object names of %d bytes: want 20 (SHA-1) or 32 (SHA-256)", hashSize)
	}
	if len(data) < 12+hashSize || string(data[:4]) != "DIRC" {
		return nil, errors.New("gitview: not a git index (no DIRC header)")
	}
	version := binary.BigEndian.Uint32(data[4:])
	if version < 2 || version > 4 {
		return nil, fmt.Errorf("gitview: index version %d: only versions 2, 3 and 4 exist", version)
	}
	body := data[:len(data)-hashSize]
	if sum := data[len(data)-hashSize:]; !allZero(sum) && !bytes.Equal(sum, checksum(body, hashSize)) {
		return nil, errors.New("gitview: index checksum mismatch: the index is corrupt (git status rewrites it; or remove it and run git reset)")
	}
	count := binary.BigEndian.Uint32(data[8:])
	// An entry takes at least 40 bytes of stat data, the object name,
	// the flags and one byte of name.
	fixed := 40 + hashSize + 2
	if uint64(count) > uint64(len(body)-12)/uint64(fixed+1) {
		return nil, fmt.Errorf("gitview: index claims %d entries, more than its %d bytes can hold", count, len(data))
	}
	entries := make([]Entry, 0, count)
	var prev []byte // version 4: the previous entry's path
	// An error in what the entries say is reported only after the
	// extensions: a split index's entries may be nameless and unsorted.
	var invalid error
	off := 12
	for i := range int(count) {
		start := off
		if len(body)-off < fixed {
			return nil, fmt.Errorf("gitview: index entry %d: truncated", i)
		}
		mode := binary.BigEndian.Uint32(body[off+24:])
		flags := binary.BigEndian.Uint16(body[off+40+hashSize:])
		off += fixed
		e := Entry{Mode: mode, Stage: uint8(flags >> 12 & 3)}
		if flags&0x4000 != 0 { // extended flags
			if version < 3 {
				return nil, fmt.Errorf("gitview: index entry %d: extended flags in a version 2 index", i)
			}
			if len(body)-off < 2 {
				return nil, fmt.Errorf("gitview: index entry %d: truncated", i)
			}
			ext := binary.BigEndian.Uint16(body[off:])
			e.SkipWorktree, e.IntentToAdd = ext&0x4000 != 0, ext&0x2000 != 0
			off += 2
		}
		if version == 4 {
			strip, n := varint(body[off:])
			if n == 0 || strip > uint64(len(prev)) {
				return nil, fmt.Errorf("gitview: index entry %d: bad path prefix length", i)
			}
			off += n
			end := bytes.IndexByte(body[off:], 0)
			if end < 0 {
				return nil, fmt.Errorf("gitview: index entry %d: path not terminated", i)
			}
			keep := prev[:len(prev)-int(strip)]
			p := make([]byte, 0, len(keep)+end)
			e.Path = append(append(p, keep...), body[off:off+end]...)
			off += end + 1
		} else {
			end := int(flags & 0xfff)
			if end == 0xfff { // the length did not fit: look for the NUL
				end = bytes.IndexByte(body[off:], 0)
			}
			if end < 0 || len(body)-off <= end || body[off+end] != 0 {
				return nil, fmt.Errorf("gitview: index entry %d: path not terminated", i)
			}
			e.Path = body[off : off+end : off+end]
			// 1 to 8 NULs pad the entry to a multiple of 8 bytes.
			off = start + (off-start+end+8)&^7
			if off > len(body) {
				return nil, fmt.Errorf("gitview: index entry %d: truncated", i)
			}
		}
		if invalid == nil {
			invalid = check(entries, &e, i)
		}
		entries = append(entries, e)
		prev = e.Path
	}
	if err := extensions(body[off:]); err != nil {
		return nil, err
	}
	if invalid != nil {
		return nil, invalid
	}
	return entries, nil
}

// check checks entry i, e, which follows entries.
func check(entries []Entry, e *Entry, i int) error {
	if len(e.Path) == 0 {
		return fmt.Errorf("gitview: index entry %d: empty path", i)
	}
	switch e.Mode & modeType {
	case modeDir:
		return fmt.Errorf("gitview: %w: a sparse index (directory entry %q)", ErrUnsupportedIndex, e.Path)
	case ModeFile &^ 0o777, ModeSymlink, ModeGitlink:
	default:
		return fmt.Errorf("gitview: index entry %q: mode %o is not a file, symlink or submodule", e.Path, e.Mode)
	}
	if len(entries) > 0 {
		last := &entries[len(entries)-1]
		if c := bytes.Compare(last.Path, e.Path); c > 0 || c == 0 && last.Stage >= e.Stage {
			return fmt.Errorf("gitview: index entry %q: out of order after %q: the index is corrupt", e.Path, last.Path)
		}
	}
	return nil
}

// extensions checks the extensions after the entries: those git requires
// a reader to understand (lower-case signature) are ones this parser does
// not read.
func extensions(b []byte) error {
	for len(b) > 0 {
		if len(b) < 8 {
			return errors.New("gitview: index extension truncated")
		}
		sig, size := b[:4], binary.BigEndian.Uint32(b[4:])
		if uint64(size) > uint64(len(b)-8) {
			return fmt.Errorf("gitview: index extension %q truncated", sig)
		}
		switch {
		case string(sig) == "link":
			return fmt.Errorf("gitview: %w: a split index (core.splitIndex)", ErrUnsupportedIndex)
		case string(sig) == "sdir":
			return fmt.Errorf("gitview: %w: a sparse index (index.sparse)", ErrUnsupportedIndex)
		case sig[0] < 'A' || sig[0] > 'Z':
			return fmt.Errorf("gitview: %w: required extension %q", ErrUnsupportedIndex, sig)
		}
		b = b[8+size:]
	}
	return nil
}

// varint decodes git's offset varint (varint.c), returning the value and
// the bytes read, 0 if it is truncated or overflows.
func varint(b []byte) (uint64, int) {
	if len(b) == 0 {
		return 0, 0
	}
	c := b[0]
	v := uint64(c & 127)
	for i := 1; c&128 != 0; i++ {
		v++
		if v == 0 || v>>57 != 0 || i >= len(b) {
			return 0, 0
		}
		c = b[i]
		v = v<<7 + uint64(c&127)
		if c&128 == 0 {
			return v, i + 1
		}
	}
	return v, 1
}

func checksum(b []byte, size int) []byte {
	if size == sha256.Size {
		s := sha256.Sum256(b)
		return s[:]
	}
	s := sha1.Sum(b)
	return s[:]
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
