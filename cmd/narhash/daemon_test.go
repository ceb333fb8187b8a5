package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/narhash/narhash/api"
	"github.com/narhash/narhash/nar/nartest"
)

func TestDaemonNotRunning(t *testing.T) {
	sock := filepath.Join(nartest.TempDir(t), "none.sock")
	for _, args := range [][]string{{"query", "--daemon-only", "--socket", sock, "."}, {"status", "--socket", sock}, {"watch", "ls", "--socket", sock}} {
		_, errOut, code := narhash(t, nil, args...)
		msg := string(errOut)
		if code != 1 || !strings.Contains(msg, "narhashd is not running") || !strings.Contains(msg, sock) || !strings.Contains(msg, "start it with 'narhashd'") {
			t.Errorf("narhash %q: exit %d, %q", args, code, msg)
		}
	}
}

// fakeBackend answers like a daemon that knows one root, with hashes no
// real hash would give (its digests are all zero but the first byte): an
// answer that has one came from the daemon.
type fakeBackend struct {
	roots   []api.Root
	version string
}

func (f *fakeBackend) Hash(_ context.Context, path string, view api.View, watch bool) (api.Hash, error) {
	if strings.HasSuffix(path, "missing") {
		return api.Hash{}, api.Errorf(http.StatusNotFound, "hash %s: no such file or directory", path)
	}
	h := api.Hash{Path: path, View: view, NARSize: 120, Source: "cache"}
	h.Digest[0] = 0x0a // any digest will do
	return h, nil
}
func (f *fakeBackend) Roots(context.Context) ([]api.Root, error) { return f.roots, nil }
func (f *fakeBackend) AddRoot(_ context.Context, p string, _ api.RootOptions) (api.Root, error) {
	r := api.Root{Path: p, State: "clean", Watches: 3}
	f.roots = append(f.roots, r)
	return r, nil
}
func (f *fakeBackend) RemoveRoot(context.Context, string) error { f.roots = nil; return nil }
func (f *fakeBackend) Status(context.Context) (api.Status, error) {
	return api.Status{Version: f.version, PID: 42, Started: time.Now(), Workers: 2, Roots: f.roots, Warnings: []string{"a warning"}}, nil
}

// Subscribe sends a hash, a failure (its message with a newline, as a
// file's name may have), and the hash again.
func (f *fakeBackend) Subscribe(ctx context.Context, path string, view api.View, send func(api.Hash) error) error {
	h, _ := f.Hash(ctx, path, view, false)
	for _, h := range []api.Hash{h, {Path: path, View: view, Failed: "dump " + path + "/a\nb: unsupported file type"}, h} {
		if err := send(h); err != nil {
			return err
		}
	}
	return nil
}

// serveFake serves b on a new socket until the test ends.
func serveFake(t *testing.T, b api.Backend) (socket string) {
	t.Helper()
	sock := filepath.Join(nartest.TempDir(t), "s.sock")
	l, err := api.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: api.NewHandler(b), ConnContext: api.ConnContext}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return sock
}

func TestDaemonCommands(t *testing.T) {
	sock := serveFake(t, &fakeBackend{version: api.Version()})

	out := narhashOK(t, nil, "query", "--socket", sock, "/a", "/b")
	if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); len(lines) != 2 || len(lines[0]) != 52 {
		t.Errorf("query: %q", out)
	}
	out = narhashOK(t, nil, "query", "--socket", sock, "--sri", "--json", "/a")
	if !strings.Contains(string(out), `"hash":"sha256-`) || !strings.Contains(string(out), `"source":"cache"`) {
		t.Errorf("query --json: %s", out)
	}
	if _, errOut, code := narhash(t, nil, "query", "--socket", sock, "/missing"); code != 1 || !strings.Contains(string(errOut), "no such file") {
		t.Errorf("query of a missing path: exit %d, %s", code, errOut)
	}
	if out := narhashOK(t, nil, "watch", "add", "--socket", sock, "/src"); !strings.Contains(string(out), "watching /src (3 directories)") {
		t.Errorf("watch add: %s", out)
	}
	if out := narhashOK(t, nil, "watch", "ls", "--socket", sock); string(out) != "/src\n" {
		t.Errorf("watch ls: %q", out)
	}
	// A symlink's hash is the link's: watch add says so, and names the
	// tree it points to; a file is a file.
	dir := nartest.TempDir(t)
	link, file := filepath.Join(dir, "link"), filepath.Join(dir, "file")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	target, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	if out := narhashOK(t, nil, "watch", "add", "--socket", sock, link, file); string(out) != "watching "+link+" (a symlink: its hash is the link's own, as nix-hash gives it; to follow the tree it points to, watch "+target+")\nwatching "+file+" (a file)\n" {
		t.Errorf("watch add of a symlink and a file: %q", out)
	}
	if out := narhashOK(t, nil, "status", "--socket", sock); !strings.Contains(string(out), "narhashd "+api.Version()+", pid 42") || !strings.Contains(string(out), "warning: a warning") {
		t.Errorf("status: %s", out)
	}
	if out := narhashOK(t, nil, "watch", "rm", "--socket", sock, "/src"); !strings.Contains(string(out), "no longer watching /src") {
		t.Errorf("watch rm: %s", out)
	}
	// The fake ends the stream after three lines: the CLI says the daemon
	// closed it.
	out, _, code := narhash(t, nil, "subscribe", "--socket", sock, "/a")
	lines := strings.Split(string(out), "\n")
	if code != 1 || len(lines) != 4 || len(lines[0]) != 52 || lines[1] != `failed: dump /a/a\nb: unsupported file type` || lines[2] != lines[0] {
		t.Errorf("subscribe: exit %d, %q", code, out)
	}
	out, _, _ = narhash(t, nil, "subscribe", "--json", "--socket", sock, "/a")
	if lines := strings.Split(string(out), "\n"); len(lines) != 4 || lines[1] != `{"path":"/a","epoch":0,"failed":"dump /a/a\nb: unsupported file type"}` {
		t.Errorf("subscribe --json: %q", out)
	}
}

// TestStatusVersion: status shows the daemon's version, and warns in one
// line on standard error when it is not this narhash's.
func TestStatusVersion(t *testing.T) {
	for _, tc := range []struct {
		daemon, warning string
	}{
		{api.Version(), ""},
		{"v9.9.9", "narhash: warning: narhashd is version v9.9.9, this narhash is " + api.Version() + ": restart narhashd after an upgrade\n"},
		{"", "narhash: warning: narhashd is version unknown (older than this narhash), this narhash is " + api.Version() + ": restart narhashd after an upgrade\n"},
	} {
		sock := serveFake(t, &fakeBackend{version: tc.daemon})
		out, errOut, code := narhash(t, nil, "status", "--socket", sock)
		if code != 0 || string(errOut) != tc.warning {
			t.Errorf("daemon %q: status: exit %d, stderr %q; want %q", tc.daemon, code, errOut, tc.warning)
		}
		if tc.daemon != "" && !strings.HasPrefix(string(out), "narhashd "+tc.daemon+", pid 42") {
			t.Errorf("daemon %q: status: %q", tc.daemon, out)
		}
		js := narhashOK(t, nil, "status", "--json", "--socket", sock)
		if !strings.Contains(string(js), `"version":"`+tc.daemon+`"`) {
			t.Errorf("daemon %q: status --json: %s", tc.daemon, js)
		}
	}
}
