package nar

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// openParent opens ".." of the directory open as fd, and checks that it
// is the directory (dev, ino) expected: one moved meanwhile is an error,
// never a reason to work somewhere else.
func openParent(fd int, dev, ino uint64) (int, error) {
	up, err := unix.Openat(fd, "..", openDirFlags, 0)
	if err != nil {
		return -1, fmt.Errorf("open a parent directory again: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(up, &st); err != nil || uint64(st.Dev) != dev || st.Ino != ino {
		unix.Close(up)
		return -1, errors.New("a directory was moved while in use")
	}
	return up, nil
}

// removeTree removes name in the directory open as parent and everything
// below it, however deep: it never holds more than two descriptors, and
// keeps only the names of directories still to remove.
func removeTree(parent int, name string) error {
	if err := unix.Unlinkat(parent, name, 0); err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	} else if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return err
	}
	type level struct {
		f        *os.File // owns fd
		fd       int
		dev, ino uint64
		subdirs  []string // still to remove
		name     string   // in its parent
	}
	open := func(dirfd int, name string) (level, error) {
		fd, err := unix.Openat(dirfd, name, openDirFlags, 0)
		if err != nil {
			return level{}, err
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return level{}, err
		}
		f := os.NewFile(uintptr(fd), name)
		l := level{f: f, fd: fd, dev: uint64(st.Dev), ino: st.Ino, name: name}
		ents, err := f.ReadDir(-1)
		if err != nil {
			f.Close()
			return level{}, err
		}
		for _, e := range ents {
			if e.IsDir() {
				l.subdirs = append(l.subdirs, e.Name())
			} else if err := unix.Unlinkat(fd, e.Name(), 0); err != nil && !errors.Is(err, unix.ENOENT) {
				f.Close()
				return level{}, err
			}
		}
		return l, nil
	}
	top, err := open(parent, name)
	if err != nil {
		return err
	}
	var stack []level
	for {
		if n := len(top.subdirs); n > 0 {
			next, err := open(top.fd, top.subdirs[n-1])
			if err != nil {
				top.f.Close()
				return err
			}
			top.subdirs = top.subdirs[:n-1]
			top.f.Close()
			top.f, top.fd = nil, -1
			stack = append(stack, top)
			top = next
			continue
		}
		if len(stack) == 0 {
			top.f.Close()
			return unix.Unlinkat(parent, name, unix.AT_REMOVEDIR)
		}
		up := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		fd, err := openParent(top.fd, up.dev, up.ino)
		top.f.Close()
		if err != nil {
			return err
		}
		up.f, up.fd = os.NewFile(uintptr(fd), up.name), fd
		if err := unix.Unlinkat(fd, top.name, unix.AT_REMOVEDIR); err != nil {
			up.f.Close()
			return err
		}
		top = up
	}
}
