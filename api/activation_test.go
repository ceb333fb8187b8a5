package api

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestActivatedChild is the child process of TestActivated: it takes
// the activated socket, accepts one connection on it, and prints what
// happened.
func TestActivatedChild(t *testing.T) {
	if os.Getenv("NARHASH_ACTIVATION_CHILD") == "" {
		t.Skip("run by TestActivated")
	}
	l, err := Activated()
	left := os.Getenv("LISTEN_PID") + os.Getenv("LISTEN_FDS") + os.Getenv("LISTEN_FDNAMES")
	switch {
	case left != "":
		fmt.Printf("environment left: %q\n", left)
	case err != nil:
		fmt.Printf("error: %v\n", err)
	case l == nil:
		fmt.Println("none")
	default:
		c, err := l.Accept()
		if err != nil {
			fmt.Printf("accept: %v\n", err)
			return
		}
		c.Write([]byte("hello"))
		c.Close()
		l.Close()
		fmt.Printf("served on %s\n", SocketPath(l))
	}
}

// TestActivated passes descriptor 3 to a child as systemd does. The
// child's pid is only known once it runs, so a shell sets LISTEN_PID to
// its own pid and execs the test binary, which keeps it.
func TestActivated(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "s.sock")
	stream, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	streamFile, _ := stream.File()
	gram, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(dir, "g.sock"), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer gram.Close()
	gramFile, _ := gram.File()
	fd, _ := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0) // never listens
	unlistened := os.NewFile(uintptr(fd), "unlistened")
	defer unlistened.Close()
	regular, err := os.Create(filepath.Join(dir, "file"))
	if err != nil {
		t.Fatal(err)
	}
	defer regular.Close()

	for _, tc := range []struct {
		name     string
		file     *os.File
		pid, fds string // pid "self" is the child's own
		want     string
	}{
		{"listening stream", streamFile, "self", "1", "served on " + sock},
		{"no LISTEN_FDS", streamFile, "self", "", "none"},
		{"another pid", streamFile, "1", "1", "none"},
		{"two sockets", streamFile, "self", "2", "error: socket activation: 2 sockets passed"},
		{"bad count", streamFile, "self", "x", `error: socket activation: LISTEN_FDS="x"`},
		{"datagram", gramFile, "self", "1", "error: socket activation: descriptor 3: not a stream socket"},
		{"not listening", unlistened, "self", "1", "error: socket activation: descriptor 3: not listening"},
		{"a file", regular, "self", "1", "error: socket activation: descriptor 3: not a socket"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pid := tc.pid
			if pid == "self" {
				pid = "$$"
			}
			script := fmt.Sprintf(`export LISTEN_PID=%s LISTEN_FDS=%s LISTEN_FDNAMES=narhashd.sock; exec "$0" -test.run='^TestActivatedChild$' -test.v=false`, pid, tc.fds)
			if tc.fds == "" {
				script = `export LISTEN_PID=$$; exec "$0" -test.run='^TestActivatedChild$' -test.v=false`
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, "sh", "-c", script, os.Args[0])
			cmd.Env = append(os.Environ(), "NARHASH_ACTIVATION_CHILD=1")
			cmd.ExtraFiles = []*os.File{tc.file}
			type result struct {
				out []byte
				err error
			}
			done := make(chan result, 1)
			go func() { out, err := cmd.CombinedOutput(); done <- result{out, err} }()
			var reply string
			if strings.HasPrefix(tc.want, "served") {
				c, err := net.Dial("unix", sock)
				if err != nil {
					t.Fatal(err)
				}
				c.SetReadDeadline(time.Now().Add(time.Minute)) // a broken child never answers
				b := make([]byte, 16)
				n, _ := c.Read(b)
				c.Close()
				reply = string(b[:n])
			}
			r := <-done
			out := string(r.out)
			if r.err != nil || !strings.HasPrefix(out, tc.want) {
				t.Fatalf("child: %v\n%s\nwant a line starting %q", r.err, out, tc.want)
			}
			if strings.HasPrefix(tc.want, "served") && reply != "hello" {
				t.Errorf("client read %q from the activated socket, want hello", reply)
			}
		})
	}
	if _, err := os.Stat(sock); err != nil {
		t.Errorf("closing the activated listener removed the socket file: %v", err)
	}
}
