package api

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// ErrRunning is matched by Listen's error when another daemon answers on
// the socket.
var ErrRunning = errors.New("another narhashd is running")

// Listen creates the Unix socket at path for the daemon. Its directory is
// created 0700 if need be and must belong to this user. A socket file that
// nothing answers on is stale and is replaced; one that answers is another
// daemon's, and Listen fails with ErrRunning. Closing the listener removes
// the socket file only if it is still the one Listen created.
func Listen(path string) (net.Listener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("socket directory: %w", err)
	}
	st, err := os.Lstat(dir)
	if err != nil {
		return nil, fmt.Errorf("socket directory: %w", err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	switch {
	case !st.IsDir():
		return nil, fmt.Errorf("socket directory %s is not a directory", dir)
	case int(sys.Uid) != os.Getuid():
		return nil, fmt.Errorf("socket directory %s belongs to uid %d, not to you (uid %d): choose another --socket", dir, sys.Uid, os.Getuid())
	case st.Mode().Perm()&0o077 != 0 && dir != os.TempDir():
		if err := os.Chmod(dir, 0o700); err != nil {
			return nil, fmt.Errorf("socket directory %s is open to others (%v) and cannot be made 0700: %w", dir, st.Mode().Perm(), err)
		}
	}
	if _, err := os.Lstat(path); err == nil {
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("%w: it answers on %s; stop it first, or give this one another --socket", ErrRunning, path)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.ENOENT) {
			return nil, fmt.Errorf("socket %s exists and cannot be checked: %w", path, err)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
		}
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	l.SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	st, err = os.Lstat(path)
	if err != nil {
		l.Close()
		return nil, err
	}
	return &listener{UnixListener: l, path: path, ino: st.Sys().(*syscall.Stat_t).Ino}, nil
}

type listener struct {
	*net.UnixListener
	path string
	ino  uint64
}

// Close closes the listener and removes the socket file if it is still
// the one this listener created.
func (l *listener) Close() error {
	err := l.UnixListener.Close()
	if st, serr := os.Lstat(l.path); serr == nil && st.Sys().(*syscall.Stat_t).Ino == l.ino {
		os.Remove(l.path)
	}
	return err
}
