package api

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// listenFDsStart is the first descriptor systemd passes (SD_LISTEN_FDS_START).
const listenFDsStart = 3

// ErrActivation is matched by Activated's error when the environment
// names sockets that cannot be served.
var ErrActivation = errors.New("socket activation")

// Activated returns the listening socket that systemd (a .socket unit,
// or systemd-socket-activate) passed to this process, or nil when none
// was passed: LISTEN_FDS unset, or LISTEN_PID naming another process.
// The protocol is sd_listen_fds(3): descriptor 3, LISTEN_FDS=1, and
// LISTEN_PID this process's pid. Exactly one descriptor is accepted, and
// it must be a listening Unix stream socket. Activated unsets LISTEN_PID,
// LISTEN_FDS and LISTEN_FDNAMES, so that children do not take them for
// their own, and marks the descriptor close-on-exec.
//
// Closing the listener leaves the socket file in place: it belongs to
// whoever created it.
func Activated() (net.Listener, error) {
	pid, fds, names := os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS"), os.Getenv("LISTEN_FDNAMES")
	os.Unsetenv("LISTEN_PID")
	os.Unsetenv("LISTEN_FDS")
	os.Unsetenv("LISTEN_FDNAMES")
	if fds == "" {
		return nil, nil
	}
	if pid != strconv.Itoa(os.Getpid()) {
		return nil, nil // meant for another process (sd_listen_fds does the same)
	}
	n, err := strconv.Atoi(fds)
	switch {
	case err != nil || n < 0:
		return nil, fmt.Errorf("%w: LISTEN_FDS=%q is not a count of descriptors", ErrActivation, fds)
	case n == 0:
		return nil, nil
	case n > 1:
		return nil, fmt.Errorf("%w: %d sockets passed (LISTEN_FDNAMES=%q); narhashd serves one: give its .socket unit a single ListenStream=", ErrActivation, n, names)
	}
	fd := listenFDsStart
	if err := checkListening(fd); err != nil {
		return nil, fmt.Errorf("%w: descriptor %d: %w", ErrActivation, fd, err)
	}
	unix.CloseOnExec(fd)
	name := "LISTEN_FD_3"
	if names != "" {
		name = names
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close() // FileListener keeps a duplicate
	l, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("%w: descriptor %d: %w", ErrActivation, fd, err)
	}
	return l, nil
}

// checkListening reports why fd is not a listening Unix stream socket.
func checkListening(fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("not open: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return errors.New("not a socket")
	}
	if sa, err := unix.Getsockname(fd); err != nil || !isUnix(sa) {
		return errors.New("not a Unix socket: use ListenStream= with a path")
	}
	if t, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || t != unix.SOCK_STREAM {
		return errors.New("not a stream socket: use ListenStream=, not ListenDatagram= or ListenSequentialPacket=")
	}
	if a, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil || a != 1 {
		return errors.New("not listening: narhashd takes a listening socket (Accept=no)")
	}
	return nil
}

// SocketPath returns the file name of a Unix listener's socket, or ""
// for an abstract or unnamed one.
func SocketPath(l net.Listener) string {
	a, ok := l.Addr().(*net.UnixAddr)
	if !ok || a.Name == "" || strings.HasPrefix(a.Name, "@") {
		return ""
	}
	return a.Name
}

func isUnix(sa unix.Sockaddr) bool {
	_, ok := sa.(*unix.SockaddrUnix)
	return ok
}
