package nar

import (
	"bytes"
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// A Checkpoint is the state of a dump into a hash at an entry boundary:
// everything before the entry at Path (in NAR order) has been hashed and
// nothing after it. A dump given one in [DumpOptions.From] restores the
// hash's state and carries on from there, reading only the entries from
// Path on, and gives the hash a full dump would give, provided no entry
// before Path changed since the dump that took the checkpoint read it.
//
// A Checkpoint is immutable; it holds the hash's state (about 100 bytes
// for SHA-256), the Fingerprint's, Path and a few counts: about 400 bytes
// in memory for a typical path (Checkpoints.Size), 300 encoded.
type Checkpoint struct {
	// Path is the entry that begins at Offset, relative to the dumped
	// directory, its names joined by slashes.
	Path string
	// Offset is the size of the archive before the entry.
	Offset int64

	first bool   // Path is its directory's first entry: no previous entry to close
	hash  []byte // the destination's state (encoding.BinaryMarshaler)
	fp    []byte // the fingerprint hash's state
	fpN   int64  // the fingerprint's entries
	fpNew int64  // and its newest timestamp
	stats DumpStats
	// since is when the earliest dump that read an entry before Path
	// began; racy, whether one of them changed too close to the moment
	// the dump that read it began for a stat to vouch for it (see
	// Fingerprint.Racy).
	since int64
	racy  bool
}

// Checkpoints are those of one dump, in archive order. [Dump] appends to
// them (see [DumpOptions.Checkpoints]).
type Checkpoints struct {
	// Every is the spacing of the checkpoints in bytes of archive: one
	// is taken at the first entry boundary Every bytes or more after the
	// last. Zero means 1 MiB.
	Every int64
	list  []Checkpoint
}

// defaultEvery is the default spacing of checkpoints: on a 2-core
// machine, a dump hashes it in about 1.5 ms, and a checkpoint costs two
// hash states and a path.
const defaultEvery = 1 << 20

func (c *Checkpoints) every() int64 {
	if c.Every > 0 {
		return c.Every
	}
	return defaultEvery
}

// Len returns the number of checkpoints.
func (c *Checkpoints) Len() int { return len(c.list) }

// Size returns about how many bytes of memory the checkpoints take.
func (c *Checkpoints) Size() int {
	n := 0
	for i := range c.list {
		cp := &c.list[i]
		n += 128 + len(cp.Path) + len(cp.hash) + len(cp.fp)
	}
	return n
}

// Clone returns a copy of c that a dump can append to while c stays as
// it is. The checkpoints themselves are shared: they are immutable.
func (c *Checkpoints) Clone() *Checkpoints {
	return &Checkpoints{Every: c.Every, list: slices.Clone(c.list)}
}

// Before returns the last checkpoint at or before path in NAR order (see
// [ComparePaths]), or nil if there is none: to resume a dump of a tree in
// which path is the first entry that changed.
func (c *Checkpoints) Before(path string) *Checkpoint {
	i, _ := slices.BinarySearchFunc(c.list, path, func(cp Checkpoint, p string) int {
		if ComparePaths(cp.Path, p) <= 0 {
			return -1
		}
		return 1
	})
	if i == 0 {
		return nil
	}
	return &c.list[i-1]
}

// resumeFrom drops the checkpoints at or after from's offset and adds
// from: a dump resumed there adds the next ones.
func (c *Checkpoints) resumeFrom(from *Checkpoint) {
	i, _ := slices.BinarySearchFunc(c.list, from.Offset, func(cp Checkpoint, off int64) int {
		if cp.Offset < off {
			return -1
		}
		return 1
	})
	c.list = append(c.list[:i], *from)
}

// ComparePaths compares two paths inside an archive (names joined by
// slashes) in NAR order: name by name, in byte order, a directory before
// what it holds. It differs from comparing the strings: "a/b" comes
// before "a-b", since the name "a" comes before "a-b".
func ComparePaths(a, b string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		ca, cb := a[i], b[i]
		if ca == cb {
			continue
		}
		// A slash ends a name: it sorts before every byte a name holds.
		if ca == '/' {
			return -1
		}
		if cb == '/' {
			return 1
		}
		if ca < cb {
			return -1
		}
		return 1
	}
	return len(a) - len(b)
}

// checkpointer is the emitter's part in taking checkpoints. It keeps the
// path of the directory being emitted.
type checkpointer struct {
	to    *Checkpoints
	next  int64  // offset at or after which the next one is due
	dir   []byte // the innermost open directory's path in the archive
	lens  []int  // for each open directory, the length of dir outside it
	state encoding.BinaryMarshaler
	// racyBefore is the dump's start less racyMargin, in nanoseconds: an
	// entry with a newer timestamp makes the checkpoints after it racy.
	racyBefore, since int64
	racy              bool
}

// enter records that a directory named name begins (root: the archive's
// root, which has no name).
func (c *checkpointer) enter(name []byte, root bool) {
	c.lens = append(c.lens, len(c.dir))
	if root {
		return
	}
	if len(c.dir) > 0 {
		c.dir = append(c.dir, '/')
	}
	c.dir = append(c.dir, name...)
}

func (c *checkpointer) leave() {
	c.dir = c.dir[:c.lens[len(c.lens)-1]]
	c.lens = c.lens[:len(c.lens)-1]
}

// checkpoint records a checkpoint before the entry named name, in the
// innermost open directory, where the Writer is; first: the directory's
// first entry.
func (e *emitter) checkpoint(name []byte, first bool) error {
	c := e.cp
	hash, err := c.state.MarshalBinary()
	if err != nil {
		return fmt.Errorf("nar: checkpoint: %w", err)
	}
	fp, err := e.fp.state()
	if err != nil {
		return fmt.Errorf("nar: checkpoint: %w", err)
	}
	var path strings.Builder
	path.Grow(len(c.dir) + 1 + len(name))
	path.Write(c.dir)
	if len(c.dir) > 0 {
		path.WriteByte('/')
	}
	path.Write(name)
	c.to.list = append(c.to.list, Checkpoint{
		Path: path.String(), Offset: e.w.Offset(), first: first, hash: hash, fp: fp,
		fpN: e.fp.entries, fpNew: e.fp.newest, stats: e.count, since: c.since, racy: c.racy,
	})
	c.next = e.w.Offset() + c.to.every()
	return nil
}

// resume sets the emitter up to carry on from a checkpoint: dst's state,
// the offset, the fingerprint, the counts and the open directories.
func (e *emitter) resume(from *Checkpoint) error {
	u, ok := e.dst.(encoding.BinaryUnmarshaler)
	if !ok {
		return errors.New("nar: resuming a dump needs a destination whose state can be restored (encoding.BinaryUnmarshaler), such as a SHA-256 hash")
	}
	if err := u.UnmarshalBinary(from.hash); err != nil {
		return fmt.Errorf("nar: resume at %q: restore the hash: %w", from.Path, err)
	}
	if err := e.fp.restore(from.fp); err != nil {
		return fmt.Errorf("nar: resume at %q: restore the fingerprint: %w", from.Path, err)
	}
	e.w = resumeWriter(e.dst, from.Offset, from.Path, from.first)
	e.fp.entries, e.fp.newest, e.count = from.fpN, from.fpNew, from.stats
	e.shown.Entries, e.shown.Bytes = e.fp.entries, from.Offset // progress counts what this dump writes
	dirs := strings.Count(from.Path, "/") + 1                  // the root and Path's parents
	if c := e.cp; c != nil {
		c.next = from.Offset + c.to.every()
		c.since, c.racy = min(c.since, from.since), from.racy
		c.enter(nil, true)
		for name := range strings.SplitSeq(from.Path, "/") {
			if len(c.lens) == dirs {
				break
			}
			c.enter([]byte(name), false)
		}
	}
	return nil
}

// checkResumable reports why a dump of this tree cannot resume at cp.
func checkResumable(cp *Checkpoint) error {
	if cp.Path == "" || len(cp.Path) > MaxPathLen {
		return fmt.Errorf("nar: resume at %q: not a path inside an archive", cp.Path)
	}
	for name := range strings.SplitSeq(cp.Path, "/") {
		if why := checkName(name); why != "" {
			return fmt.Errorf("nar: resume at %q: %s", cp.Path, why)
		}
	}
	if len(cp.hash) == 0 || len(cp.fp) == 0 {
		return fmt.Errorf("nar: resume at %q: not a checkpoint a dump took", cp.Path)
	}
	return nil
}

// matches reports whether the fingerprint so far is the one cp recorded.
func (f *fingerprinter) matches(cp *Checkpoint) bool {
	if f.entries != cp.fpN || f.newest != cp.fpNew {
		return false
	}
	state, err := f.state()
	return err == nil && bytes.Equal(state, cp.fp)
}

// The encoding of Checkpoints (MarshalBinary): a version byte, Every,
// the count, then each checkpoint's fields, strings and byte slices
// prefixed by their length (uvarint), integers as varints; last, the
// SHA-256 of all that, so that a damaged copy is refused rather than
// resume a dump into a wrong hash.
const checkpointsVersion = 1

// MarshalBinary encodes the checkpoints, to keep them across restarts.
func (c *Checkpoints) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, c.Size())
	b = append(b, checkpointsVersion)
	b = binary.AppendVarint(b, c.Every)
	b = binary.AppendUvarint(b, uint64(len(c.list)))
	for i := range c.list {
		cp := &c.list[i]
		b = appendBytes(b, []byte(cp.Path))
		b = binary.AppendVarint(b, cp.Offset)
		flags := byte(0)
		if cp.first {
			flags |= 1
		}
		if cp.racy {
			flags |= 2
		}
		b = append(b, flags)
		b = appendBytes(b, cp.hash)
		b = appendBytes(b, cp.fp)
		for _, v := range []int64{cp.fpN, cp.fpNew, cp.stats.Files, cp.stats.Dirs, cp.stats.Symlinks, cp.stats.Bytes, cp.since} {
			b = binary.AppendVarint(b, v)
		}
	}
	sum := sha256.Sum256(b)
	return append(b, sum[:]...), nil
}

func appendBytes(b, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

// errCheckpoints is the error for an encoding UnmarshalBinary cannot read.
var errCheckpoints = errors.New("nar: damaged or unknown checkpoints encoding")

// UnmarshalBinary decodes what MarshalBinary encoded, replacing c's
// checkpoints. Nothing in it is trusted: a damaged encoding is an error.
func (c *Checkpoints) UnmarshalBinary(data []byte) error {
	if len(data) < sha256.Size {
		return errCheckpoints
	}
	data, sum := data[:len(data)-sha256.Size], data[len(data)-sha256.Size:]
	if want := sha256.Sum256(data); !bytes.Equal(sum, want[:]) {
		return errCheckpoints
	}
	d := decoder{b: data}
	if d.byte() != checkpointsVersion {
		return errCheckpoints
	}
	every := d.varint()
	n := d.uvarint()
	if d.bad || n > uint64(len(data)) {
		return errCheckpoints
	}
	list := make([]Checkpoint, 0, n)
	for range n {
		var cp Checkpoint
		cp.Path = string(d.bytes())
		cp.Offset = d.varint()
		flags := d.byte()
		cp.first, cp.racy = flags&1 != 0, flags&2 != 0
		cp.hash, cp.fp = d.bytes(), d.bytes()
		for _, v := range []*int64{&cp.fpN, &cp.fpNew, &cp.stats.Files, &cp.stats.Dirs, &cp.stats.Symlinks, &cp.stats.Bytes, &cp.since} {
			*v = d.varint()
		}
		if d.bad || checkResumable(&cp) != nil ||
			len(list) > 0 && (cp.Offset <= list[len(list)-1].Offset || ComparePaths(cp.Path, list[len(list)-1].Path) <= 0) {
			return errCheckpoints
		}
		list = append(list, cp)
	}
	if len(d.b) != 0 {
		return errCheckpoints
	}
	c.Every, c.list = every, list
	return nil
}

type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.bad = true
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.bad || n > uint64(len(d.b)) {
		d.bad = true
		return nil
	}
	p := bytes.Clone(d.b[:n])
	d.b = d.b[n:]
	return p
}
