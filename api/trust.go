package api

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// ErrUntrusted is matched by the client's error when the socket or the
// process answering on it may not be the user's own narhashd.
var ErrUntrusted = errors.New("refusing to talk to narhashd")

// An UntrustedError says why the client refused a server.
type UntrustedError struct {
	Socket string
	Why    string
}

func (e *UntrustedError) Error() string {
	return fmt.Sprintf("%v at %s: %s", ErrUntrusted, e.Socket, e.Why)
}

func (e *UntrustedError) Unwrap() error { return ErrUntrusted }

// dialTimeout bounds connecting to the socket.
const dialTimeout = 5 * time.Second

// dialTrusted connects to the socket after checking its directory and the
// socket file, and checks the peer's credentials once connected.
func dialTrusted(ctx context.Context, sock string) (net.Conn, error) {
	if err := checkDir(filepath.Dir(sock), true); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.ENOENT)}
		}
		return nil, &UntrustedError{sock, err.Error()}
	}
	st, err := os.Lstat(sock)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: "unix", Err: err}
	}
	me := uint32(os.Getuid())
	if st.Mode().Type() != fs.ModeSocket {
		return nil, &UntrustedError{sock, fmt.Sprintf("it is not a socket (%v)", st.Mode().Type())}
	}
	if uid := st.Sys().(*syscall.Stat_t).Uid; uid != me && uid != 0 {
		return nil, &UntrustedError{sock, fmt.Sprintf("the socket belongs to uid %d, not to you (uid %d) or root", uid, me)}
	}
	d := net.Dialer{Timeout: dialTimeout}
	c, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return nil, err
	}
	cred, err := peerCred(c.(*net.UnixConn))
	if err != nil {
		c.Close()
		return nil, &UntrustedError{sock, fmt.Sprintf("cannot learn who answers: %v", err)}
	}
	if cred.Uid != me && cred.Uid != 0 {
		c.Close()
		return nil, &UntrustedError{sock, fmt.Sprintf("the process answering (pid %d) runs as uid %d, not as you (uid %d) or root", cred.Pid, cred.Uid, me)}
	}
	return c, nil
}
