package api

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestListenLeavesOthersAlone: a regular file at the socket path is not
// removed, and an existing directory's mode is never changed.
func TestListenLeavesOthersAlone(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "notes.txt")
	os.WriteFile(file, []byte("precious"), 0o644)
	if l, err := Listen(file); err == nil {
		l.Close()
		t.Fatal("Listen on a regular file succeeded")
	} else if !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Listen on a regular file: %v", err)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "precious" {
		t.Fatalf("the file was lost: %q, %v", b, err)
	}
	project := filepath.Join(dir, "project")
	os.Mkdir(project, 0o755)
	os.Chmod(project, 0o755)
	l, err := Listen(filepath.Join(project, "s.sock"))
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if st, _ := os.Stat(project); st.Mode().Perm() != 0o755 {
		t.Errorf("the project directory's mode became %v", st.Mode().Perm())
	}
	open := filepath.Join(dir, "open")
	os.Mkdir(open, 0o777)
	os.Chmod(open, 0o777)
	if l, err := Listen(filepath.Join(open, "s.sock")); err == nil {
		l.Close()
		t.Error("Listen in a directory writable by everyone succeeded")
	}
	if st, _ := os.Stat(open); st.Mode().Perm() != 0o777 {
		t.Errorf("mode changed to %v", st.Mode().Perm())
	}
}

// TestClientRefusesUntrusted: a socket in a directory others can write
// to is refused before anything is sent, saying what was found.
func TestClientRefusesUntrusted(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "squat")
	os.Mkdir(dir, 0o700)
	sock := filepath.Join(dir, "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	asked := make(chan struct{}, 1)
	go http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked <- struct{}{}
		w.Write([]byte(`{"version": "test", "pid": 1}`))
	}))
	c := &Client{Socket: sock}
	if _, err := c.Status(context.Background()); err != nil {
		t.Fatalf("own socket in a 0700 directory: %v", err)
	}
	<-asked
	os.Chmod(dir, 0o777)
	c = &Client{Socket: sock}
	_, err = c.Status(context.Background())
	if !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), "writable by others") {
		t.Fatalf("socket in a directory writable by all: %v", err)
	}
	select {
	case <-asked:
		t.Error("the request was sent anyway")
	default:
	}
}

// TestListenCloseTwice: a listener closed twice (http.Server.Serve closes
// it again when it returns) leaves another socket made at its path alone,
// even one that reuses its inode number (the cause of a flaky TestListen).
func TestListenCloseTwice(t *testing.T) {
	for i := range 50 {
		sock := filepath.Join(t.TempDir(), "s.sock")
		l, err := Listen(sock)
		if err != nil {
			t.Fatal(err)
		}
		l.Close()
		other, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		other.SetUnlinkOnClose(false)
		l.Close()
		if _, err := os.Lstat(sock); err != nil {
			t.Fatalf("round %d: the second Close removed another socket at the path", i)
		}
		other.Close()
	}
}

// TestListenLongPath: a socket path longer than a Unix socket's address
// holds is refused, saying so, where bind(2) says only "invalid
// argument"; the longest that fits works.
func TestListenLongPath(t *testing.T) {
	dir := t.TempDir()
	pad := func(n int) string { return filepath.Join(dir, strings.Repeat("s", n-len(dir)-1)) }
	l, err := Listen(pad(maxSocketPath))
	if err != nil {
		t.Fatalf("a socket path of %d bytes: %v", maxSocketPath, err)
	}
	l.Close()
	long := pad(maxSocketPath + 1)
	if _, err := Listen(long); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("is %d bytes, longer than the %d", maxSocketPath+1, maxSocketPath)) {
		t.Errorf("a socket path of %d bytes: %v", maxSocketPath+1, err)
	}
}
