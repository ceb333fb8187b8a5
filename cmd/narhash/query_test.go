package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/narhash/narhash/api"
	"github.com/narhash/narhash/hasher"
	"github.com/narhash/narhash/nar/gitview/gittest"
	"github.com/narhash/narhash/nar/nartest"
)

// TestQueryWithoutDaemon: with nothing on the socket, query says so once
// on standard error and prints the hash Nix prints, computed here.
func TestQueryWithoutDaemon(t *testing.T) {
	needNix(t)
	dir := nartest.TempDir(t)
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for i, root := range []string{a, b} {
		if err := os.Mkdir(root, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := nartest.Random(root, uint64(i+10), 50); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(dir, "none.sock")
	out, errOut, code := narhash(t, nil, "query", "--socket", sock, a, b)
	want := string(nixOut(t, "nix-hash", "--type", "sha256", "--base32", a)) + string(nixOut(t, "nix-hash", "--type", "sha256", "--base32", b))
	note := "narhash: narhashd does not answer on " + sock + ": hashing here (start narhashd for instant answers)\n"
	if code != 0 || string(out) != want || string(errOut) != note {
		t.Errorf("query without a daemon: exit %d, stdout %q, stderr %q; want %q and the note %q", code, out, errOut, want, note)
	}

	out, _, code = narhash(t, nil, "query", "--socket", sock, "--json", "--sri", a)
	var res api.HashResult
	if err := json.Unmarshal(out, &res); code != 0 || err != nil {
		t.Fatalf("query --json: exit %d, %q: %v", code, out, err)
	}
	if sri := strings.TrimSpace(string(nixOut(t, "nix", "hash", "path", "--sri", a))); res.Source != "offline" || res.Hash != sri || res.Path != a || res.Format != "sri" || res.NARSize == 0 {
		t.Errorf("query --json without a daemon: %+v; want source offline and hash %s", res, sri)
	}

	// --daemon-only: no answer is an error, and no hash is printed.
	out, errOut, code = narhash(t, nil, "query", "--daemon-only", "--socket", sock, a)
	if code != 1 || len(out) != 0 || !strings.Contains(string(errOut), "narhashd is not running") {
		t.Errorf("query --daemon-only without a daemon: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// TestQueryFromDaemon: when the daemon answers, query prints its answer
// (the fake's hashes are not any tree's), and no note.
func TestQueryFromDaemon(t *testing.T) {
	sock := serveFake(t, &fakeBackend{version: api.Version()})
	dir := nartest.TempDir(t)
	os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644)
	fake := hasher.Hash{Algo: hasher.SHA256, Digest: make([]byte, 32)}
	fake.Digest[0] = 0x0a
	out, errOut, code := narhash(t, nil, "query", "--socket", sock, dir)
	if want := fake.Format(hasher.Nix32) + "\n"; code != 0 || len(errOut) != 0 || string(out) != want {
		t.Errorf("query with a daemon: exit %d, stdout %q, stderr %q; want the daemon's %q", code, out, errOut, want)
	}
	for _, args := range [][]string{{"--json"}, {"--json", "--daemon-only"}} {
		out := narhashOK(t, nil, append(append([]string{"query", "--socket", sock}, args...), dir)...)
		var res api.HashResult
		if err := json.Unmarshal(out, &res); err != nil || res.Source != "cache" || res.Path != dir {
			t.Errorf("query %q with a daemon: %s (%v); want source cache", args, out, err)
		}
	}
}

// hashingBackend hashes as narhashd does: the path as the kernel reads
// it, answered for where it leads.
type hashingBackend struct{ fakeBackend }

func (b *hashingBackend) Hash(ctx context.Context, path string, view api.View, _ bool) (api.Hash, error) {
	res, err := hasher.HashPath(ctx, path, nil)
	if err != nil {
		return api.Hash{}, api.Errorf(http.StatusNotFound, "hash %s: %v", path, err)
	}
	real, err := filepath.EvalSymlinks(path) // with a trailing slash, a symlink is followed
	if !strings.HasSuffix(path, "/") {
		i := strings.LastIndexByte(path, '/')
		real, err = filepath.EvalSymlinks(path[:i+1])
		real = filepath.Join(real, path[i+1:])
	}
	if err != nil {
		return api.Hash{}, api.Errorf(http.StatusNotFound, "hash %s: %v", path, err)
	}
	return api.Hash{Path: real, View: view, Digest: [32]byte(res.Hash.Digest), NARSize: res.NARSize, Source: "computed"}, nil
}

// TestQueryPathAsGiven: query reads each PATH as 'narhash hash' does, as
// the kernel does, whether the daemon answers or not: a trailing slash
// (or "/.") follows a symlink, and ".." after one is the parent of its
// target, not the symlink's.
func TestQueryPathAsGiven(t *testing.T) {
	top := nartest.TempDir(t)
	if err := os.MkdirAll(filepath.Join(top, "d", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := nartest.Random(filepath.Join(top, "d", "sub"), 7, 20); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{"d/x": "the x beside sub", "x": "the x beside link"} {
		if err := os.WriteFile(filepath.Join(top, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("d/sub", filepath.Join(top, "link")); err != nil {
		t.Fatal(err)
	}
	t.Chdir(top)
	for _, p := range [][2]string{{"link/", "link"}, {"link/../x", "x"}} {
		if bytes.Equal(narhashOK(t, nil, "hash", p[0]), narhashOK(t, nil, "hash", p[1])) {
			t.Fatalf("hash %s = hash %s: the tree does not tell them apart", p[0], p[1])
		}
	}
	daemon := serveFake(t, &hashingBackend{})
	none := filepath.Join(nartest.TempDir(t), "none.sock")
	for _, p := range []string{"link/", "link/.", "link/../x", "link", "./d/../x", top + "/link/", top + "/link/../x"} {
		want := narhashOK(t, nil, "hash", p)
		for _, sock := range []string{daemon, none} {
			if got := narhashOK(t, nil, "query", "--socket", sock, p); !bytes.Equal(got, want) {
				t.Errorf("query %s (socket %s): %q; hash %s: %q", p, sock, got, p, want)
			}
		}
	}
}

// serveStuck accepts connections on a new socket and never answers, as a
// stopped (SIGSTOP) narhashd does; accepted counts them.
func serveStuck(t *testing.T) (socket string, accepted *atomic.Int32) {
	t.Helper()
	sock := filepath.Join(nartest.TempDir(t), "s.sock")
	l, err := api.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	accepted = new(atomic.Int32)
	var conns []net.Conn // the goroutine's until done
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return sock, accepted
}

// TestQueryDaemonUnusable: when the daemon cannot be used (it takes the
// query and never answers, its socket is not trusted, what answers is
// not narhashd), query warns once, naming the socket and why, and hashes
// every PATH here; with --daemon-only it fails at the first.
func TestQueryDaemonUnusable(t *testing.T) {
	defer func(d time.Duration) { queryTimeout = d }(queryTimeout)
	dir := nartest.TempDir(t)
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for i, root := range []string{a, b} {
		if err := os.Mkdir(root, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := nartest.Random(root, uint64(i+20), 20); err != nil {
			t.Fatal(err)
		}
	}
	want := narhashOK(t, nil, "hash", a, b)

	stuck, accepted := serveStuck(t)
	untrusted := nartest.TempDir(t)
	if err := os.Chmod(untrusted, 0o777); err != nil {
		t.Fatal(err)
	}
	impostor := filepath.Join(nartest.TempDir(t), "s.sock")
	l, err := api.Listen(impostor)
	if err != nil {
		t.Fatal(err)
	}
	go http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("hello")) }))
	t.Cleanup(func() { l.Close() })

	for _, tc := range []struct {
		name, sock, why string
		timeout         time.Duration // only the stuck daemon's query waits it out
	}{
		{"stuck", stuck, "narhashd did not answer GET /v1/hash within 200ms (on " + stuck + ")", 200 * time.Millisecond},
		{"untrusted", filepath.Join(untrusted, "s.sock"), "refusing to talk to narhashd at " + filepath.Join(untrusted, "s.sock") + ": socket directory " + untrusted + " is writable by others", 0},
		{"impostor", impostor, "not narhashd's answer: the server on " + impostor, 0},
	} {
		queryTimeout = tc.timeout
		out, errOut, code := narhash(t, nil, "query", "--socket", tc.sock, a, b)
		if code != 0 || !bytes.Equal(out, want) {
			t.Errorf("%s: query: exit %d, %q, stderr %q; want %q", tc.name, code, out, errOut, want)
		}
		if lines := strings.Split(strings.TrimSuffix(string(errOut), "\n"), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "narhash: warning: "+tc.why) || !strings.HasSuffix(lines[0], "; hashing here instead") {
			t.Errorf("%s: query: stderr %q; want one warning saying %q, and that it hashes here", tc.name, errOut, tc.why)
		}
		out, errOut, code = narhash(t, nil, "query", "--daemon-only", "--socket", tc.sock, a, b)
		if code != 1 || len(out) != 0 || strings.Count(string(errOut), tc.why) != 1 || strings.Count(string(errOut), "\n") != 1 {
			t.Errorf("%s: query --daemon-only: exit %d, %q, stderr %q; want exit 1 and one error saying %q", tc.name, code, out, errOut, tc.why)
		}
	}
	if n := accepted.Load(); n > 2 {
		t.Errorf("the stuck daemon was asked %d times, want once by each query", n)
	}
}

// oldBackend is a narhashd older than view=git: it answers for the
// whole tree whatever the view asked.
type oldBackend struct{ fakeBackend }

func (b *oldBackend) Hash(ctx context.Context, path string, _ api.View, watch bool) (api.Hash, error) {
	return b.fakeBackend.Hash(ctx, path, api.ViewTree, watch)
}

// TestQueryGitOldDaemon: query --git never prints the whole tree's hash
// that a narhashd older than view=git answers: it says to restart
// narhashd, and hashes the git view here.
func TestQueryGitOldDaemon(t *testing.T) {
	gittest.NeedGit(t)
	r := gittest.Init(t, filepath.Join(nartest.TempDir(t), "repo"), t.TempDir())
	r.Write("untracked", "u\n", 0o644)
	sock := serveFake(t, &oldBackend{})
	out, errOut, code := narhash(t, nil, "query", "--git", "--sri", "--socket", sock, r.Dir)
	if want := narhashOK(t, nil, "hash", "--git", "--sri", r.Dir); code != 0 || !bytes.Equal(out, want) {
		t.Errorf("query --git of an old daemon: exit %d, %q; want hash --git's %q", code, out, want)
	}
	if msg := string(errOut); !strings.Contains(msg, "narhashd is older than this narhash") || !strings.Contains(msg, "restart narhashd") || !strings.Contains(msg, sock) {
		t.Errorf("query --git of an old daemon: stderr %q", msg)
	}
	if _, errOut, code := narhash(t, nil, "query", "--git", "--daemon-only", "--socket", sock, r.Dir); code != 1 || !strings.Contains(string(errOut), "older than this narhash") {
		t.Errorf("query --git --daemon-only of an old daemon: exit %d, %q", code, errOut)
	}
}
