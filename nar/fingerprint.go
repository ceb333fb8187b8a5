package nar

import (
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"hash"
)

// A Fingerprint sums up the lstat data of every entry of a tree, in NAR
// order: name, type and mode, size, mtime, ctime and inode; of a
// directory, its name and type only (its timestamps change when entries
// are added, removed or renamed, which their own records show, and its
// mode and inode are not in the NAR; a dump resumed inside a directory
// that gained an entry after the checkpoint could not know its new
// timestamps). Two stat walks
// that give the same Fingerprint saw the same metadata, so a hash recorded
// with it can be trusted without rereading the contents, unless an entry
// was modified within the clock granularity of the moment it was recorded
// (see [Fingerprint.Racy]).
type Fingerprint struct {
	Digest  [sha256.Size]byte
	Entries int64 // files, directories and symlinks, the root included
	// Newest is the latest mtime or ctime of any entry, in nanoseconds
	// since the epoch.
	Newest int64
}

// Racy reports whether a hash recorded at recorded (nanoseconds since the
// epoch) with this fingerprint cannot be trusted by stat alone: an entry
// was changed so close to that moment that a later change within the same
// timestamp granule would leave its timestamps equal (git's "racy git"
// rule). The margin is the dump's own racyMargin, which covers coarse
// kernel clocks and filesystems with 1-second timestamps.
func (f Fingerprint) Racy(recorded int64) bool {
	return f.Newest+racyMargin.Nanoseconds() >= recorded
}

// fingerprinter accumulates a Fingerprint. It gathers its records in buf
// and hashes them a few kilobytes at a time: one hash Write per entry's
// record and another for its name cost more than hashing their bytes
// (1.7 % of a warm dump's CPU on 100,000 tiny files).
type fingerprinter struct {
	h       hash.Hash
	buf     []byte // records not yet hashed
	entries int64
	newest  int64
}

func newFingerprinter() *fingerprinter {
	return &fingerprinter{h: sha256.New(), buf: make([]byte, 0, fpFlush+fpRecord+MaxNameLen)}
}

const (
	fpEntry  = 'e'
	fpDirEnd = ')'
	// fpRecord is the size of an entry's record without its name.
	fpRecord = 1 + 4 + 5*8 + 2
	// fpFlush is how much of buf is hashed at a time.
	fpFlush = 4 << 10
)

// add records one entry: its name (empty for the root) and its lstat data.
func (f *fingerprinter) add(name []byte, fi *fileInfo) {
	if fi.mode&modeType == modeDir {
		f.addDir(name)
		return
	}
	r := f.buf
	r = append(r, fpEntry)
	r = binary.LittleEndian.AppendUint32(r, fi.mode)
	r = binary.LittleEndian.AppendUint64(r, uint64(fi.size))
	r = binary.LittleEndian.AppendUint64(r, uint64(fi.mtime))
	r = binary.LittleEndian.AppendUint64(r, uint64(fi.ctime))
	r = binary.LittleEndian.AppendUint64(r, fi.ino)
	r = binary.LittleEndian.AppendUint16(r, uint16(len(name)))
	f.buf = append(r, name...)
	f.entries++
	f.newest = max(f.newest, fi.mtime, fi.ctime)
	f.flushFull()
}

// addDir records a directory: its name and type.
func (f *fingerprinter) addDir(name []byte) {
	r := f.buf
	r = append(r, fpEntry)
	r = binary.LittleEndian.AppendUint32(r, modeDir)
	r = append(r, make([]byte, 32)...)
	r = binary.LittleEndian.AppendUint16(r, uint16(len(name)))
	f.buf = append(r, name...)
	f.entries++
	f.flushFull()
}

func (f *fingerprinter) endDir() {
	f.buf = append(f.buf, fpDirEnd)
	f.flushFull()
}

func (f *fingerprinter) flushFull() {
	if len(f.buf) >= fpFlush {
		f.flush()
	}
}

func (f *fingerprinter) flush() {
	f.h.Write(f.buf)
	f.buf = f.buf[:0]
}

// state is the fingerprint's hash state so far, for a checkpoint.
func (f *fingerprinter) state() ([]byte, error) {
	f.flush()
	return f.h.(encoding.BinaryMarshaler).MarshalBinary()
}

// restore sets the hash state to one that state returned.
func (f *fingerprinter) restore(state []byte) error {
	f.buf = f.buf[:0]
	return f.h.(encoding.BinaryUnmarshaler).UnmarshalBinary(state)
}

func (f *fingerprinter) sum() Fingerprint {
	f.flush()
	fp := Fingerprint{Entries: f.entries, Newest: f.newest}
	f.h.Sum(fp.Digest[:0])
	return fp
}
