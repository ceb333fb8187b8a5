//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/narhash/narhash/api"
	"github.com/narhash/narhash/hasher"
	"github.com/narhash/narhash/nar/nartest"
)

// The test binary doubles as narhashd, and as a client, in child processes.
func TestMain(m *testing.M) {
	switch os.Getenv("NARHASHD_TEST_CHILD") {
	case "daemon":
		ctx, _ := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
	case "client":
		_, err := (&api.Client{Socket: os.Args[1]}).Status(context.Background())
		fmt.Println(err)
		os.Exit(0)
	}
	code := m.Run()
	commands.Remove()
	os.Exit(code)
}

func daemonProcess(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "NARHASHD_TEST_CHILD=daemon")
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

func waitUp(t *testing.T, c *api.Client) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := c.Status(context.Background()); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("narhashd did not come up")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func offline(t *testing.T, path string) string {
	t.Helper()
	res, err := hasher.HashPath(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return res.Hash.Format(hasher.Nix32)
}

// TestKill9: narhashd killed with SIGKILL while the tree churns comes
// back on the same database (and the stale socket) with correct answers,
// including for changes made while it was down.
func TestKill9(t *testing.T) {
	base := nartest.TempDir(t)
	root := filepath.Join(base, "tree")
	os.Mkdir(root, 0o755)
	if err := nartest.Random(root, 3, 200); err != nil {
		t.Fatal(err)
	}
	sock, db := filepath.Join(base, "run", "s.sock"), filepath.Join(base, "state", "cache.db")
	args := []string{"--watch", root, "--socket", sock, "--db", db}
	c := &api.Client{Socket: sock}
	rng := rand.New(rand.NewPCG(9, 9))
	churn := func(n int) {
		for i := range n {
			p := filepath.Join(root, fmt.Sprintf("churn%d", rng.IntN(20)))
			os.WriteFile(p, nartest.Bytes(rng, rng.IntN(4000)), 0o644)
			if i%7 == 0 {
				os.Remove(p)
			}
		}
	}
	for round := range 3 {
		cmd := daemonProcess(t, args...)
		waitUp(t, c)
		if got, err := c.Hash(context.Background(), root, "", false); err != nil || got.Hash != offline(t, root) {
			t.Fatalf("round %d, after start: %+v %v", round, got, err)
		}
		done := make(chan struct{})
		go func() { churn(300); close(done) }()
		for range 5 { // queries racing the churn: answered, whatever they say
			c.Hash(context.Background(), root, "", false)
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		<-done
		churn(50) // while it is down
	}
	daemonProcess(t, args...)
	waitUp(t, c)
	if got, err := c.Hash(context.Background(), root, "", false); err != nil || got.Hash != offline(t, root) {
		t.Fatalf("after the last restart: %+v %v", got, err)
	}
}

// TestOtherUserRefused: a client running as another user is refused,
// even when the socket's permissions would let it in.
func TestOtherUserRefused(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root, to run a client as another user")
	}
	base, err := os.MkdirTemp("/dev/shm", "narhashd-uid-")
	if err != nil {
		base, err = os.MkdirTemp("", "narhashd-uid-")
		if err != nil {
			t.Fatal(err)
		}
	}
	defer os.RemoveAll(base)
	os.Chmod(base, 0o755)
	sock := filepath.Join(base, "run", "s.sock")
	daemonProcess(t, "--socket", sock, "--db", filepath.Join(base, "cache.db"))
	c := &api.Client{Socket: sock}
	waitUp(t, c)
	os.Chmod(filepath.Dir(sock), 0o755)
	os.Chmod(sock, 0o777)
	// A copy of the test binary that the other user may run.
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(base, "client")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, sock)
	cmd.Env = append(os.Environ(), "NARHASHD_TEST_CHILD=client")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("client as uid 65534: %v: %s", err, out)
	}
	if !strings.Contains(string(out), "answers only that user and root, not uid 65534") {
		t.Fatalf("client as uid 65534 got %q; want a refusal", out)
	}
	if _, err := c.Status(context.Background()); err != nil {
		t.Errorf("the daemon's own user: %v", err)
	}
}

func TestFlags(t *testing.T) {
	for _, tc := range []struct {
		args             []string
		code             int
		wantOut, wantErr string
	}{
		{[]string{"-h"}, 0, "Usage: narhashd", ""},
		{[]string{"--help"}, 0, "install-units", ""},
		{[]string{"--version"}, 0, "narhashd " + api.Version() + "\n", ""},
		{[]string{"install-units", "-h"}, 0, "Usage: narhashd install-units", ""},
		{[]string{"install-units", "extra"}, 2, "", `unexpected argument "extra"`},
		{[]string{"stray"}, 2, "", "did you mean --watch stray"},
		{[]string{"--watch", "/src", "--watch", ""}, 2, "", "--watch: an empty PATH"},
		{[]string{"--log-level", "loud"}, 2, "", "--log-level"},
		{[]string{"--no-such"}, 2, "", "narhashd: unknown flag: --no-such\nRun 'narhashd -h' for help.\n"},
	} {
		var out, errb strings.Builder
		code := run(context.Background(), tc.args, &out, &errb)
		if code != tc.code || !strings.Contains(out.String(), tc.wantOut) || !strings.Contains(errb.String(), tc.wantErr) {
			t.Errorf("narhashd %q: exit %d, stdout %q, stderr %q; want %d, %q and %q", tc.args, code, out.String(), errb.String(), tc.code, tc.wantOut, tc.wantErr)
		}
		if tc.wantOut == "" && out.Len() > 0 {
			t.Errorf("narhashd %q wrote %q to stdout; want it on stderr", tc.args, out.String())
		}
		if tc.wantErr == "" && errb.Len() > 0 {
			t.Errorf("narhashd %q wrote %q to stderr; want it on stdout", tc.args, errb.String())
		}
	}
}
