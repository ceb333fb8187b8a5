package api

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// ErrRunning is matched by Listen's error when another daemon answers on
// the socket.
var ErrRunning = errors.New("another narhashd is running")

// MaxConns bounds the connections a listener from Listen serves at once;
// more wait in the kernel's queue until one ends.
const MaxConns = 256

var maxConns = MaxConns // for tests

// maxSocketPath is the longest path a Unix socket's address holds: its
// sun_path less the final NUL (107 bytes on Linux, 103 on macOS and the
// BSDs). bind(2) refuses a longer one with only "invalid argument".
var maxSocketPath = len(syscall.RawSockaddrUnix{}.Path) - 1

// Listen creates the Unix socket at path for the daemon. Its directory is
// created 0700 if need be; an existing one must belong to this user and
// must not be writable by others (unless sticky, like /tmp), and its mode
// is never changed. A socket file that nothing answers on is stale and is
// replaced; one that answers is another daemon's, and Listen fails with
// ErrRunning; anything else at path is left alone, and Listen fails.
// Closing the listener removes the socket file only if it is still the
// one Listen created.
func Listen(path string) (net.Listener, error) {
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("socket path %s is %d bytes, longer than the %d a Unix socket's address holds: give narhashd a shorter --socket", path, len(path), maxSocketPath)
	}
	dir := filepath.Dir(path)
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("socket directory: %w", err)
		}
	}
	if err := checkDir(dir, false); err != nil {
		return nil, err
	}
	if st, err := os.Lstat(path); err == nil {
		if st.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket (%v): narhashd does not remove it; give narhashd another --socket", path, st.Mode().Type())
		}
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
	// Peers are checked (SO_PEERCRED) whatever the mode; 0600 says so.
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	st, err := os.Lstat(path)
	if err != nil {
		l.Close()
		return nil, err
	}
	return &listener{UnixListener: l, path: path, id: st, slots: make(chan struct{}, maxConns)}, nil
}

// checkDir checks a socket's directory: a directory owned by this user
// (or, for a client, root), not writable by others unless sticky.
func checkDir(dir string, client bool) error {
	st, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("socket directory: %w", err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	me := os.Getuid()
	switch {
	case !st.IsDir():
		return fmt.Errorf("socket directory %s is not a directory (%v)", dir, st.Mode().Type())
	case int(sys.Uid) != me && !(client && sys.Uid == 0):
		return fmt.Errorf("socket directory %s belongs to uid %d, not to you (uid %d): someone else may be answering there; choose another socket (NARHASHD_SOCKET, --socket)", dir, sys.Uid, me)
	case st.Mode().Perm()&0o022 != 0 && st.Mode()&fs.ModeSticky == 0:
		return fmt.Errorf("socket directory %s is writable by others (mode %v): anyone could put a socket there; use a directory only you can write to (chmod go-w %s)", dir, st.Mode().Perm(), dir)
	}
	return nil
}

type listener struct {
	*net.UnixListener
	path  string
	id    os.FileInfo
	once  sync.Once
	err   error
	slots chan struct{}
}

// Accept waits for a free slot, then for a connection.
func (l *listener) Accept() (net.Conn, error) {
	l.slots <- struct{}{}
	c, err := l.UnixListener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &conn{UnixConn: c.(*net.UnixConn), free: func() { <-l.slots }}, nil
}

// Close closes the listener and removes the socket file if it is still
// the one this listener created. The file is checked while the socket is
// still bound, which keeps its inode: a file of the same inode is ours.
func (l *listener) Close() error {
	l.once.Do(func() {
		if st, err := os.Lstat(l.path); err == nil && os.SameFile(st, l.id) {
			os.Remove(l.path)
		}
		l.err = l.UnixListener.Close()
	})
	return l.err
}

// conn frees its listener slot once closed.
type conn struct {
	*net.UnixConn
	once sync.Once
	free func()
}

func (c *conn) Close() error {
	err := c.UnixConn.Close()
	c.once.Do(c.free)
	return err
}

// Timeouts of the server NewServer makes (variables for tests).
var (
	readTimeout  = 10 * time.Second // to read a request
	idleTimeout  = 60 * time.Second // between requests on a kept-alive connection
	writeTimeout = 30 * time.Second // for each line of a subscription
)

// NewServer returns the HTTP server for b on a listener from Listen: it
// answers only the daemon's user and root, drops requests that are not
// sent within 10 s and idle connections after a minute, and limits
// request headers to 64 KiB. Requests' contexts are done when ctx is,
// so Shutdown ends them at once; a subscription then ends with a last
// line saying so.
func NewServer(ctx context.Context, b Backend) *http.Server {
	return &http.Server{
		Handler:           newHandler(b, ctx.Done()),
		ConnContext:       ConnContext,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ReadHeaderTimeout: readTimeout,
		ReadTimeout:       readTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    64 << 10,
	}
}
