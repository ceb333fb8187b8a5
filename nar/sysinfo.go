//go:build unix

package nar

// What the dump keeps of a stat, on every Unix system.

import "golang.org/x/sys/unix"

// cstring returns a NUL-terminated copy of s, for the root path.
func cstring(s string) []byte { return append([]byte(s), 0) }

// fileInfo is what the dump keeps of an lstat or fstat.
type fileInfo struct {
	mode  uint32
	size  int64
	mtime int64 // nanoseconds since the epoch
	ctime int64
	ino   uint64
	dev   uint64
	nlink uint64 // 0: deleted while open
}

// fileChangedInfo reports whether two stats of a file differ in what
// writing, truncating, chmod'ing or replacing it changes: size, mtime,
// ctime, mode, inode, device. It is the one check that something changed
// while it was read: a dump reads every file between two stats that must
// agree (or after one that proves the file old), and lists a directory
// between two (adding, removing or renaming an entry changes its mtime
// and ctime); the portable dump compares lstats by path, the fast one
// fstats of the open file, hasher.HashFile its own (StatChanged).
func fileChangedInfo(before, after fileInfo) bool {
	return before.size != after.size || before.mtime != after.mtime || before.ctime != after.ctime ||
		before.mode != after.mode || before.ino != after.ino || before.dev != after.dev
}

// StatChanged is the same check for callers with their own stats of a
// file (hasher.HashFile reads a file between two fstats of it).
func StatChanged(before, after *unix.Stat_t) bool {
	return fileChangedInfo(infoOf(before), infoOf(after))
}

func infoOf(st *unix.Stat_t) fileInfo {
	return fileInfo{
		mode:  uint32(st.Mode),
		size:  st.Size,
		mtime: st.Mtim.Nano(),
		ctime: st.Ctim.Nano(),
		ino:   uint64(st.Ino),
		dev:   uint64(st.Dev),
		nlink: uint64(st.Nlink),
	}
}

// Kinds of file, from the mode's type bits.
const (
	modeType = unix.S_IFMT
	modeReg  = unix.S_IFREG
	modeDir  = unix.S_IFDIR
	modeLnk  = unix.S_IFLNK
	modeExec = unix.S_IXUSR
)

// dtype returns the getdents d_type of a mode.
func dtype(mode uint32) uint8 {
	switch mode & modeType {
	case modeReg:
		return unix.DT_REG
	case modeDir:
		return unix.DT_DIR
	case modeLnk:
		return unix.DT_LNK
	case unix.S_IFIFO:
		return unix.DT_FIFO
	case unix.S_IFSOCK:
		return unix.DT_SOCK
	case unix.S_IFCHR:
		return unix.DT_CHR
	case unix.S_IFBLK:
		return unix.DT_BLK
	}
	return unix.DT_UNKNOWN
}

// typeWord names a d_type for error messages.
func typeWord(typ uint8) string {
	switch typ {
	case unix.DT_FIFO:
		return "named pipe (FIFO)"
	case unix.DT_SOCK:
		return "socket"
	case unix.DT_CHR:
		return "character device"
	case unix.DT_BLK:
		return "block device"
	}
	return "file of unknown type"
}
