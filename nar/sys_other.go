//go:build unix && !linux

package nar

// The system calls of dump.go's pipeline on Unix systems other than
// Linux. The pipeline does not run there (fastPath is false: Dump,
// StatTree and StatSelection take the portable dump of portable.go, and
// StatCheckpoints matches no checkpoint), but it is compiled everywhere,
// so these keep it building. getdents has no portable equivalent and
// fails with ENOSYS.

import (
	"golang.org/x/sys/unix"
)

// fastPath: Dump runs the pipeline of dump.go, not the portable dump.
const fastPath = false

const (
	openFileFlags = unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NOCTTY | unix.O_NONBLOCK
	openDirFlags  = unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_DIRECTORY
	oNoatime      = 0
)

func openat(dirfd int, name *byte, flags int) (int, error) {
	return unix.Openat(dirfd, unix.BytePtrToString(name), flags, 0)
}

func fstatat(dirfd int, name *byte, st *unix.Stat_t) error {
	return unix.Fstatat(dirfd, unix.BytePtrToString(name), st, unix.AT_SYMLINK_NOFOLLOW)
}

func readlinkat(dirfd int, name *byte, buf []byte) (int, error) {
	return unix.Readlinkat(dirfd, unix.BytePtrToString(name), buf)
}

func fstat(fd int, st *unix.Stat_t) error { return unix.Fstat(fd, st) }

func getdents(int, []byte) (int, error) { return 0, unix.ENOSYS }

func closeFD(fd int) { unix.Close(fd) }

func fstatLocal(fd int, st *unix.Stat_t) error { return fstat(fd, st) }

func closeLocal(fd int) { closeFD(fd) }

func readOnce(fd int, p []byte) (int, error) { return unix.Read(fd, p) }

func readNoWait(int, []byte, int64) (int, error) { return 0, unix.ENOSYS }

func prefetchFile(int) {}

func pread(fd int, p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		m, err := unix.Pread(fd, p[n:], off+int64(n))
		if err != nil {
			return n, err
		}
		if m == 0 {
			break
		}
		n += m
	}
	return n, nil
}

func localClock(int) bool { return false }

func pseudoFS(int) string { return "" }

// renameNoReplace is Linux's renameat2 with RENAME_NOREPLACE; elsewhere it
// fails with ENOSYS, and Restore checks that new does not exist, then
// renames.
func renameNoReplace(int, string, string) error { return unix.ENOSYS }
