package nar

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// A Listing is the tree of an archive without its contents: what
// `nix nar ls` shows.
type Listing struct {
	Type       Type
	Executable bool
	Size       int64   // regular files
	Offset     int64   // regular files: narOffset, the offset of the contents
	Target     string  // symlinks
	Entries    []Entry // directories, in archive (byte) order
}

// An Entry is a named node of a directory listing.
type Entry struct {
	Name string
	*Listing
}

// List reads a whole archive from r, checking it as strictly as [Reader]
// does, and returns its listing. It keeps the headers, never the contents.
func List(r io.Reader) (*Listing, error) {
	// The open directories from the root down, each with the length of
	// its path: the reader checked the order, so the parent of an entry
	// is the open directory whose path is as long as the entry's
	// directory part. Keeping lengths, not paths, keeps memory linear in
	// the depth.
	type open struct {
		dir     *Listing
		pathLen int // 0 for the root
	}
	nr := NewReader(r)
	var root *Listing
	var stack []open
	for {
		hdr, err := nr.Next()
		if err == io.EOF {
			return root, nil
		}
		if err != nil {
			return nil, err
		}
		l := &Listing{Type: hdr.Type, Executable: hdr.Executable, Size: hdr.Size, Offset: hdr.Offset, Target: hdr.LinkTarget}
		pathLen := 0
		if root == nil {
			root = l
		} else {
			path := hdr.Path
			slash := strings.LastIndexByte(path, '/')
			for stack[len(stack)-1].pathLen != slash {
				stack = stack[:len(stack)-1]
			}
			top := stack[len(stack)-1].dir
			top.Entries = append(top.Entries, Entry{strings.Clone(path[slash+1:]), l}) // not a slice of the whole path
			pathLen = len(path)
		}
		if hdr.Type == TypeDirectory {
			stack = append(stack, open{l, pathLen})
		}
	}
}

// CleanPath returns path as [Header.Path] spells it: "/" for the root,
// else "/dir/file", from a path whose leading slash is optional and whose
// empty names (repeated or trailing slashes) are ignored. "." and ".."
// are names like any other, which no archive has. [Listing.Lookup] finds
// the node whose Header.Path is CleanPath(path).
func CleanPath(path string) string {
	if strings.HasPrefix(path, "/") && !strings.Contains(path, "//") && (path == "/" || !strings.HasSuffix(path, "/")) {
		return path
	}
	var b strings.Builder
	b.Grow(len(path) + 1)
	for name := range strings.SplitSeq(path, "/") {
		if name != "" {
			b.WriteByte('/')
			b.WriteString(name)
		}
	}
	if b.Len() == 0 {
		return "/"
	}
	return b.String()
}

// Lookup finds the node at path inside the listing. Paths are like
// "/dir/file"; the leading slash is optional, repeated and trailing ones
// are ignored (see [CleanPath]), and "" or "/" is the root. Symlinks are
// not followed.
func (l *Listing) Lookup(path string) (*Listing, error) {
	cur := l
	for name := range strings.SplitSeq(CleanPath(path)[1:], "/") {
		if name == "" {
			continue // the root
		}
		if cur.Type != TypeDirectory {
			return nil, fmt.Errorf("path '%s' does not exist in the archive", path)
		}
		next := cur.entry(name)
		if next == nil {
			return nil, fmt.Errorf("path '%s' does not exist in the archive", path)
		}
		cur = next
	}
	return cur, nil
}

func (l *Listing) entry(name string) *Listing {
	lo, hi := 0, len(l.Entries)
	for lo < hi {
		m := (lo + hi) / 2
		switch c := strings.Compare(l.Entries[m].Name, name); {
		case c == 0:
			return l.Entries[m].Listing
		case c < 0:
			lo = m + 1
		default:
			hi = m
		}
	}
	return nil
}

// AppendJSON appends the listing as `nix nar ls --json` prints it: with
// recursive, the whole tree; without, a directory's entries as {}.
//
// Unlike Nix, the output is always valid JSON: a byte of a name or target
// that is not part of valid UTF-8 is written as the escape \udcXX, the
// lone low surrogate U+DC00+byte. This is Python's "surrogateescape"
// (PEP 383): json.loads(s) then name.encode("utf-8", "surrogateescape")
// gives the raw bytes back, and valid UTF-8 names print as they are.
func (l *Listing) AppendJSON(b []byte, recursive bool) []byte {
	return l.appendJSON(b, recursive)
}

func (l *Listing) appendJSON(b []byte, recursive bool) []byte {
	b = append(b, `{"type":"`...)
	b = append(b, l.Type.String()...)
	b = append(b, '"')
	switch l.Type {
	case TypeRegular:
		b = append(b, `,"size":`...)
		b = strconv.AppendInt(b, l.Size, 10)
		if l.Executable {
			b = append(b, `,"executable":true`...)
		}
		b = append(b, `,"narOffset":`...)
		b = strconv.AppendInt(b, l.Offset, 10)
	case TypeSymlink:
		b = append(b, `,"target":`...)
		b = AppendJSONString(b, l.Target)
	case TypeDirectory:
		b = append(b, `,"entries":{`...)
		for i, e := range l.Entries {
			if i > 0 {
				b = append(b, ',')
			}
			b = AppendJSONString(b, e.Name)
			b = append(b, ':')
			if recursive {
				b = e.appendJSON(b, recursive)
			} else {
				b = append(b, "{}"...)
			}
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

// AppendJSONString appends s as a JSON string. Bytes that are not valid
// UTF-8 become \udcXX escapes (see [Listing.AppendJSON]).
func AppendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, `\n`...)
			case c == '\r':
				b = append(b, `\r`...)
			case c == '\t':
				b = append(b, `\t`...)
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b = append(b, '\\', 'u', 'd', 'c', hex[c>>4], hex[c&15])
			i++
			continue
		}
		b = append(b, s[i:i+n]...)
		i += n
	}
	return append(b, '"')
}
