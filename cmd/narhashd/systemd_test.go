//go:build linux

package main

import (
	"bufio"
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

	"github.com/narhash/narhash/api"
	"github.com/narhash/narhash/nar/nartest"
)

// wait bounds every wait of these tests; none sleeps.
const wait = 30 * time.Second

// commands is narhashd, built once for the tests that run it as systemd
// would.
var commands = nartest.NewCommands("github.com/narhash/narhash/cmd/narhashd")

// narhashdBinary builds narhashd once for the tests that run it as
// systemd would.
func narhashdBinary(t *testing.T) string {
	t.Helper()
	dir, err := commands.Dir()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "narhashd")
}

// checkHash compares the daemon's hash of root with an offline hash and,
// when Nix is installed, with nix-hash's.
func checkHash(t *testing.T, c *api.Client, root string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	got, err := c.Hash(ctx, root, "", false)
	if err != nil {
		t.Fatalf("query %s: %v", root, err)
	}
	if want := offline(t, root); got.Hash != want {
		t.Fatalf("narhashd says %s for %s, the offline hash is %s", got.Hash, root, want)
	}
	if _, err := exec.LookPath("nix-hash"); err != nil {
		t.Log("nix-hash not installed: compared with narhash's offline hash only")
		return
	}
	out, err := exec.Command("nix-hash", "--type", "sha256", "--base32", root).Output()
	if err != nil {
		t.Fatalf("nix-hash %s: %v", root, err)
	}
	if want := strings.TrimSpace(string(out)); got.Hash != want {
		t.Fatalf("narhashd says %s for %s, nix-hash says %s", got.Hash, root, want)
	}
}

// notifySocket listens where narhashd's sd_notify datagrams go.
func notifySocket(t *testing.T, name string) <-chan string {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch := make(chan string, 16)
	go func() {
		defer close(ch)
		b := make([]byte, 4096)
		for {
			n, err := conn.Read(b)
			if err != nil {
				return
			}
			ch <- string(b[:n])
		}
	}()
	return ch
}

func nextState(t *testing.T, ch <-chan string, want string) {
	t.Helper()
	select {
	case got := <-ch:
		if got != want {
			t.Fatalf("narhashd notified %q, want %q", got, want)
		}
	case <-time.After(wait):
		t.Fatalf("narhashd did not notify %q within %v", want, wait)
	}
}

func testTree(t *testing.T) (base, root string) {
	base = nartest.TempDir(t)
	root = filepath.Join(base, "tree")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := nartest.Random(root, 7, 60); err != nil {
		t.Fatal(err)
	}
	return base, root
}

// TestSocketActivation runs narhashd as systemd's socket activation does,
// with systemd-socket-activate: narhashd starts on the first connection,
// serves the socket it was passed, answers that very connection with the
// right hash, tells an abstract NOTIFY_SOCKET READY=1 and STOPPING=1, and
// leaves the socket file, which is not its own, in place.
func TestSocketActivation(t *testing.T) {
	activate, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		t.Skip("systemd-socket-activate not installed (Debian: apt-get install systemd): socket activation not tested")
	}
	bin := narhashdBinary(t)
	base, root := testTree(t)
	run := filepath.Join(base, "run")
	if err := os.Mkdir(run, 0o700); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(run, "narhashd.sock")
	abstract := fmt.Sprintf("@narhashd-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	states := notifySocket(t, abstract)
	cmd := exec.Command(activate, "-l", sock, "--setenv=NOTIFY_SOCKET="+abstract,
		bin, "--watch", root, "--db", filepath.Join(base, "state", "cache.db"), "--socket", filepath.Join(base, "elsewhere.sock"))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	listening := make(chan struct{})
	logs := make(chan string, 1)
	go func() {
		var all strings.Builder
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			all.WriteString(sc.Text() + "\n")
			if strings.HasPrefix(sc.Text(), "Listening on ") {
				close(listening)
			}
		}
		logs <- all.String()
	}()
	select {
	case <-listening:
	case <-time.After(wait):
		t.Fatal("systemd-socket-activate did not listen")
	}
	c := &api.Client{Socket: sock}
	checkHash(t, c, root) // the first connection starts narhashd
	nextState(t, states, "READY=1")
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.PID != cmd.Process.Pid || st.Socket != sock {
		t.Errorf("status: pid %d, socket %s; want pid %d (systemd-socket-activate execs narhashd) and the activated socket %s", st.PID, st.Socket, cmd.Process.Pid, sock)
	}
	if _, err := os.Stat(filepath.Join(base, "elsewhere.sock")); err == nil {
		t.Errorf("narhashd listened on --socket too, with an activated socket")
	}
	cmd.Process.Signal(syscall.SIGTERM)
	nextState(t, states, "STOPPING=1")
	err = cmd.Wait()
	out := <-logs
	if err != nil {
		t.Fatalf("narhashd exited with %v:\n%s", err, out)
	}
	if _, err := os.Stat(sock); err != nil {
		t.Errorf("narhashd removed the activated socket, which systemd owns: %v", err)
	}
}

// TestNotifyReady: narhashd started without socket activation but with
// a NOTIFY_SOCKET sends READY=1 once its socket answers and the roots it
// was given are added (not waiting for their listing, which may outlast
// systemd's start timeout), and a change made right after is seen; then
// STOPPING=1 on SIGTERM.
func TestNotifyReady(t *testing.T) {
	base, root := testTree(t)
	states := notifySocket(t, filepath.Join(base, "notify.sock"))
	sock := filepath.Join(base, "run", "narhashd.sock")
	cmd := exec.Command(os.Args[0], "--watch", root, "--socket", sock, "--db", filepath.Join(base, "state", "cache.db"))
	cmd.Env = append(os.Environ(), "NARHASHD_TEST_CHILD=daemon", "NOTIFY_SOCKET="+filepath.Join(base, "notify.sock"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	nextState(t, states, "READY=1")
	// No retry: once ready, it answers, and the root is added.
	c := &api.Client{Socket: sock}
	roots, err := c.Roots(context.Background())
	if err != nil {
		t.Fatalf("right after READY=1: %v", err)
	}
	if len(roots) != 1 || roots[0].Path != root {
		t.Fatalf("right after READY=1 the roots are %+v; want %s", roots, root)
	}
	if err := os.WriteFile(filepath.Join(root, "after-ready"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	checkHash(t, c, root)
	cmd.Process.Signal(syscall.SIGTERM)
	nextState(t, states, "STOPPING=1")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("narhashd exited with %v", err)
	}
}

// TestInstallUnits: the units install-units writes start this binary,
// wherever it is (a path with a space, % and $ is quoted), and
// systemd-analyze finds nothing wrong with them.
func TestInstallUnits(t *testing.T) {
	built := narhashdBinary(t)
	self, err := os.ReadFile(built)
	if err != nil {
		t.Fatal(err)
	}
	odd := filepath.Join(t.TempDir(), "my bin 100% $HOME", "narhashd")
	if err := os.MkdirAll(filepath.Dir(odd), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(odd, self, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ bin, execStart string }{
		{built, built},
		{odd, `"` + strings.ReplaceAll(odd, "%", "%%") + `"`},
	} {
		dir := t.TempDir()
		out, err := exec.Command(tc.bin, "install-units", "--dir", dir).CombinedOutput()
		if err != nil {
			t.Fatalf("install-units: %v: %s", err, out)
		}
		service, err := os.ReadFile(filepath.Join(dir, "narhashd.service"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(service), "\nExecStart="+tc.execStart+"\n") || !strings.Contains(string(service), "\nType=notify\n") {
			t.Fatalf("narhashd.service does not start %s with Type=notify:\n%s", tc.execStart, service)
		}
		if _, err := os.Stat(filepath.Join(dir, "narhashd.socket")); err != nil {
			t.Fatal(err)
		}
		analyze, err := exec.LookPath("systemd-analyze")
		if err != nil {
			t.Skip("systemd-analyze not installed (Debian: apt-get install systemd): the units are not verified")
		}
		rt := t.TempDir() // systemd-analyze --user wants a runtime directory, not a running systemd
		cmd := exec.Command(analyze, "verify", "--user", "--man=no", "narhashd.socket", "narhashd.service")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+rt)
		out, err = cmd.CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Fatalf("systemd-analyze verify of the units for %s: %v\n%s", tc.bin, err, out)
		}
	}
}
