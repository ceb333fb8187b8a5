package api

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestHostileImpostor: a server run by another user is refused, whether
// it squats the socket's directory or hides behind a socket file that
// belongs to the user (SO_PEERCRED): the forged hash is never taken.
// Needs root (NARHASH_HOSTILE=1, as CI runs it), to run the impostor as
// nobody.
func TestHostileImpostor(t *testing.T) {
	if sock := os.Getenv("NARHASH_IMPOSTOR"); sock != "" {
		impostor(sock)
		return
	}
	if os.Getenv("NARHASH_HOSTILE") == "" || os.Getuid() != 0 {
		t.Skip("a hostile trial: set NARHASH_HOSTILE=1 and run as root")
	}
	const nobody = 65534
	// The impostor runs a copy of this test binary, where nobody can run it.
	share, err := os.MkdirTemp("", "narhash-impostor-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(share)
	os.Chmod(share, 0o755)
	bin := filepath.Join(share, "impostor")
	copyFile(t, os.Args[0], bin)
	squat := filepath.Join(share, "squat")
	os.Mkdir(squat, 0o700)
	os.Chown(squat, nobody, nobody)
	cmd := exec.Command(bin, "-test.run=^TestHostileImpostor$")
	cmd.Env = append(os.Environ(), "NARHASH_IMPOSTOR="+filepath.Join(squat, "s.sock"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || !strings.HasPrefix(line, "ready") {
		t.Fatalf("impostor: %q, %v", line, err)
	}
	// 1. The squatted directory (as /tmp/narhashd-<uid> can be).
	_, err = (&Client{Socket: filepath.Join(squat, "s.sock")}).Hash(context.Background(), "/x", "", false)
	if !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), "belongs to uid 65534") {
		t.Errorf("socket in a directory of uid %d: %v", nobody, err)
	}
	// 2. The impostor's socket moved into the user's own directory and
	// made the user's: only SO_PEERCRED can tell.
	mine := t.TempDir()
	sock := filepath.Join(mine, "s.sock")
	if err := os.Rename(filepath.Join(squat, "s.sock"), sock); err != nil {
		t.Fatal(err)
	}
	os.Lchown(sock, 0, 0)
	_, err = (&Client{Socket: sock}).Hash(context.Background(), "/x", "", false)
	if !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), "runs as uid 65534") {
		t.Errorf("an impostor's process behind the user's socket: %v", err)
	}
}

// impostor serves forged hashes on sock, for TestHostileImpostor.
func impostor(sock string) {
	l, err := net.Listen("unix", sock)
	if err != nil {
		os.Stdout.WriteString("listen: " + err.Error() + "\n")
		os.Exit(1)
	}
	os.Chmod(sock, 0o666)
	os.Stdout.WriteString("ready\n")
	http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"path":"/x","hash":"0000000000000000000000000000000000000000000000000000","algo":"sha256"}`))
	}))
	os.Exit(0)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	out.Close()
}
