package api

import (
	"net"

	"golang.org/x/sys/unix"
)

// ucred is what the server and the client learn of the process at the
// other end of the socket.
type ucred = unix.Ucred

// peerCred returns the credentials of a Unix socket's peer (SO_PEERCRED).
func peerCred(uc *net.UnixConn) (*ucred, error) {
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) { cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) }); err != nil {
		return nil, err
	}
	return cred, cerr
}
