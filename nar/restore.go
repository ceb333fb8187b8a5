package nar

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrExist is matched by the error of Restore when the destination exists.
var ErrExist = fs.ErrExist

// Restore unpacks the archive read from r into the new path dest, as
// `nix-store --restore dest` does: files are created 0666 and executables
// 0777 (both less the umask), directories 0777 less the umask, symlinks as
// they are.
//
// It is all or nothing. The archive is unpacked into a temporary sibling
// of dest, every node created relative to its parent's descriptor and
// never through a symlink, and renamed to dest only once the whole archive,
// up to its last byte, has checked out. On any error the sibling is
// removed and dest does not exist; nothing is ever written outside it.
// An existing dest is an error matching ErrExist.
func Restore(r io.Reader, dest string) (err error) {
	dest = filepath.Clean(dest)
	if _, err := os.Lstat(dest); err == nil {
		return fmt.Errorf("restore %s: %w: choose a path that does not exist yet", dest, ErrExist)
	}
	parentPath, base := filepath.Split(dest)
	if parentPath == "" {
		parentPath = "."
	}
	parent, err := unix.Open(parentPath, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("restore %s: open parent directory: %w", dest, err)
	}
	defer unix.Close(parent)

	tmp := tempName(base)
	rs := &restorer{nr: NewReader(r), root: parent, tmp: tmp}
	defer func() {
		rs.closeAll()
		if err != nil { // tmp is a fresh random name: whatever is there is ours
			if rerr := removeTree(parent, tmp); rerr != nil {
				err = fmt.Errorf("%w; and removing the partial tree %s: %v", err, filepath.Join(parentPath, tmp), rerr)
			}
		}
	}()
	if err := rs.run(); err != nil {
		return fmt.Errorf("restore %s: %w", dest, err)
	}
	if err := renameNoReplace(parent, tmp, base); err != nil {
		if err == unix.EEXIST {
			return fmt.Errorf("restore %s: %w (it appeared while restoring)", dest, ErrExist)
		}
		if err != unix.EINVAL && err != unix.ENOSYS {
			return fmt.Errorf("restore %s: rename into place: %w", dest, err)
		}
		// The filesystem cannot rename without replacing: check, then rename.
		if _, serr := os.Lstat(dest); serr == nil {
			return fmt.Errorf("restore %s: %w (it appeared while restoring)", dest, ErrExist)
		}
		if err := unix.Renameat(parent, tmp, parent, base); err != nil {
			return fmt.Errorf("restore %s: rename into place: %w", dest, err)
		}
	}
	return nil
}

type restorer struct {
	nr   *Reader
	root int    // the descriptor of dest's parent
	tmp  string // the temporary name of the root there
	dirs []openDir
	buf  []byte
}

// openDir is a directory being restored. Only the deepest maxOpenDirs
// are kept open; one above them is opened again, as ".." of its child
// (checked to be the same inode), when the archive returns to it. The
// length of its path, not the path, is kept: memory stays linear in the
// depth.
type openDir struct {
	pathLen  int // 0 for the root
	fd       int // -1 when closed
	dev, ino uint64
}

// maxOpenDirs bounds the descriptors a restore keeps open.
const maxOpenDirs = 64

// tempName is the name a restore to base unpacks under: base with a
// random suffix, base shortened if need be so the name fits in NAME_MAX
// (255 bytes), as any name dest can have does.
func tempName(base string) string {
	var rnd [6]byte
	rand.Read(rnd[:])
	suffix := ".narhash-restore-" + hex.EncodeToString(rnd[:])
	if len(base)+1+len(suffix) > 255 {
		base = base[:255-1-len(suffix)]
	}
	return "." + base + suffix
}

func (rs *restorer) run() error {
	for {
		hdr, err := rs.nr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		dirfd, name := rs.root, rs.tmp
		path := ""
		if hdr.Path != "/" {
			path = hdr.Path
			slash := strings.LastIndexByte(path, '/')
			for len(rs.dirs) > 0 && rs.dirs[len(rs.dirs)-1].pathLen != slash {
				if err := rs.pop(); err != nil {
					return err
				}
			}
			if len(rs.dirs) == 0 {
				return errors.New("nar: restore lost its place in the archive") // unreachable for a valid archive
			}
			dirfd, name = rs.dirs[len(rs.dirs)-1].fd, path[slash+1:]
		}
		if err := rs.create(dirfd, name, path, hdr); err != nil {
			return err
		}
	}
}

func (rs *restorer) create(dirfd int, name, path string, hdr *Header) error {
	shown := shortPath(path)
	if shown == "" {
		shown = "/"
	}
	switch hdr.Type {
	case TypeDirectory:
		if err := unix.Mkdirat(dirfd, name, 0o777); err != nil {
			return createError("directory", path, shown, err)
		}
		fd, err := unix.Openat(dirfd, name, openDirFlags, 0)
		if err != nil {
			return fmt.Errorf("open directory %s: %w", shown, err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return fmt.Errorf("stat directory %s: %w", shown, err)
		}
		rs.dirs = append(rs.dirs, openDir{len(path), fd, uint64(st.Dev), st.Ino})
		if n := len(rs.dirs) - maxOpenDirs - 1; n >= 0 && rs.dirs[n].fd >= 0 {
			unix.Close(rs.dirs[n].fd)
			rs.dirs[n].fd = -1
		}
	case TypeSymlink:
		if err := unix.Symlinkat(hdr.LinkTarget, dirfd, name); err != nil {
			return createError("symlink", path, shown, err)
		}
	case TypeRegular:
		fd, err := unix.Openat(dirfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o666)
		if err != nil {
			return createError("file", path, shown, err)
		}
		f := os.NewFile(uintptr(fd), shown)
		err = rs.fill(f, hdr)
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("write file %s: %w", shown, cerr)
		}
		return err
	}
	return nil
}

// createError says why the node at path (shown: as a message shows it)
// could not be created as a what. The reader lets no name through twice
// and the temporary root is new, so a name that exists already is one the
// filesystem takes for another: it folds case ("A" and "a") or normalises
// Unicode. That error does not match ErrExist, which says dest exists.
func createError(what, path, shown string, err error) error {
	if err == unix.EEXIST && path != "" {
		return fmt.Errorf("create %s %s: it collides with an entry already restored (likely a case or Unicode collision on this filesystem): restore onto a filesystem that tells such names apart", what, shown)
	}
	return fmt.Errorf("create %s %s: %w", what, shown, err)
}

// fill copies the current file's contents into f. An error reading the
// archive (a *FormatError, which names the file) is returned as it is;
// one writing f names the file.
func (rs *restorer) fill(f *os.File, hdr *Header) error {
	if rs.buf == nil {
		rs.buf = make([]byte, 256<<10)
	}
	for {
		n, rerr := rs.nr.Read(rs.buf)
		if n > 0 {
			if _, err := f.Write(rs.buf[:n]); err != nil {
				if pe, ok := err.(*fs.PathError); ok {
					err = pe.Err // the os.File's "write NAME: ", which we say already
				}
				return fmt.Errorf("write file %s: %w", f.Name(), err)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	if hdr.Executable {
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			return fmt.Errorf("stat file %s: %w", f.Name(), err)
		}
		if err := unix.Fchmod(int(f.Fd()), uint32(st.Mode&0o7777|0o111)); err != nil {
			return fmt.Errorf("make %s executable: %w", f.Name(), err)
		}
	}
	return nil
}

// pop leaves the deepest open directory, opening its parent again if it
// was closed.
func (rs *restorer) pop() error {
	top := rs.dirs[len(rs.dirs)-1]
	rs.dirs = rs.dirs[:len(rs.dirs)-1]
	defer unix.Close(top.fd)
	if len(rs.dirs) == 0 || rs.dirs[len(rs.dirs)-1].fd >= 0 {
		return nil
	}
	up := &rs.dirs[len(rs.dirs)-1]
	fd, err := openParent(top.fd, up.dev, up.ino)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	up.fd = fd
	return nil
}

func (rs *restorer) closeAll() {
	for _, d := range rs.dirs {
		if d.fd >= 0 {
			unix.Close(d.fd)
		}
	}
	rs.dirs = nil
}
