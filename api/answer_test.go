package api

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNotNarhashd: a server of the user's own (so trusted) that is not
// narhashd gets an error naming its socket, never a result passed on as
// narhashd's: not an empty hash printed as the answer to a query.
func TestNotNarhashd(t *testing.T) {
	const nix32 = "1wgxldbmsa3akcxsi8pzf2n3rff4p2fg765ai7s10199zd32pi36"
	const hash = `{"path":"/src","hash":"` + nix32 + `","algo":"sha256","format":"nix32","narSize":236}`
	sock := filepath.Join(t.TempDir(), "s.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	answer := make(chan string, 1)
	go http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(<-answer))
	}))
	c := &Client{Socket: sock}
	ctx := context.Background()
	hashAs := func(format string) func() error {
		return func() error { _, err := c.Hash(ctx, "/src", format, false); return err }
	}
	for _, tc := range []struct {
		name, answer string
		call         func() error
		bad          string // in the error; "" for an answer narhashd gives
	}{
		{"hash", hash, hashAs(""), ""},
		{"hash in base16", `{"path":"/src","hash":"` + strings.Repeat("ab", 32) + `","algo":"sha256","narSize":236}`, hashAs("base16"), ""},
		{"not JSON", "hello", hashAs(""), "something that is not its JSON"},
		{"empty object", `{}`, hashAs(""), `a hash that is not one ("")`},
		{"another format", hash, hashAs("sri"), "not in the format asked for, sri"},
		{"another algorithm", `{"path":"/src","hash":"md5:` + strings.Repeat("ab", 16) + `","algo":"md5","narSize":236}`, hashAs(""), "not SHA-256"},
		{"no size", strings.Replace(hash, `236`, `0`, 1), hashAs(""), "a NAR size of 0 bytes"},
		{"relative path", strings.Replace(hash, `/src`, `src`, 1), hashAs(""), "a path that is not absolute"},
		{"another path", strings.Replace(hash, `/src`, `/srd`, 1), hashAs(""), `the hash of another path, "/srd", not of "/src"`},
		{"another view", strings.Replace(hash, `"hash"`, `"view":"git","hash"`, 1), hashAs(""), `the hash of view "git", not of view ""`},
		{"status", `{"version":"v1","pid":7}`, func() error { _, err := c.Status(ctx); return err }, ""},
		{"empty status", `{}`, func() error { _, err := c.Status(ctx); return err }, "without narhashd's process ID"},
		{"roots", `[{"path":"/src","state":"clean"}]`, func() error { _, err := c.Roots(ctx); return err }, ""},
		{"relative root", `[{"path":"src"}]`, func() error { _, err := c.Roots(ctx); return err }, "a root whose path is not absolute"},
		{"subscription", "{}\n", func() error {
			return c.Subscribe(ctx, "/src", "", func(HashResult) error { return errors.New("passed on") })
		}, `GET /v1/subscribe with a hash that is not one`},
		{"subscription of another path", hash + "\n", func() error {
			return c.Subscribe(ctx, "/srd", "", func(HashResult) error { return errors.New("passed on") })
		}, `the hash of another path, "/src", not of "/srd"`},
		{"subscription that changes path", hash + "\n" + strings.Replace(hash, `/src`, `/srd`, 1) + "\n", func() error {
			n := 0
			return c.Subscribe(ctx, "/src", "", func(HashResult) error {
				if n++; n > 1 {
					return errors.New("passed on")
				}
				return nil
			})
		}, `a line for another path, "/srd", after one for "/src"`},
	} {
		answer <- tc.answer
		err := tc.call()
		switch {
		case tc.bad == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.bad == "":
		case !errors.Is(err, ErrNotNarhashd) || !strings.Contains(err.Error(), tc.bad) || !strings.Contains(err.Error(), sock):
			t.Errorf("%s: got %v, want ErrNotNarhashd naming %s and saying %q", tc.name, err, sock, tc.bad)
		}
	}
}

// TestAnswers: an answer is for the path asked as the handler cleans it,
// or for where the path leads as the kernel reads it (the daemon follows
// a symlink on the way, ".." after one, a trailing slash after one), and
// for nothing else.
func TestAnswers(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"d/sub", "e"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"d/f", "f", "e/f"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("d/sub", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path, got string
		ok        bool
	}{
		{"/src", "/src", true},
		{"/src/./a//b", "/src/a/b", true},
		{"/src/a/", "/src/a/", true},
		{"/src/a/.", "/src/a/", true},
		{"/src/a/../b", "/src/a/../b", true},
		{"/src", "/srd", false},
		{"/src/a/../b", "/src/b", false}, // does not exist: cannot be checked
		{dir + "/d/", dir + "/d", true},
		{dir + "/link/", dir + "/d/sub", true},
		{dir + "/link/.", dir + "/d/sub", true},
		{dir + "/link/", dir + "/link", false}, // the symlink, not where it leads
		{dir + "/link/../f", dir + "/d/f", true},
		{dir + "/link/../f", dir + "/f", false}, // ".." taken lexically
		{dir + "/e/../f", dir + "/f", true},
		{dir + "/e/f", dir + "/f", false},
	} {
		if got := answers(tc.path, tc.got); got != tc.ok {
			t.Errorf("answers(%q, %q) = %v, want %v", tc.path, tc.got, got, tc.ok)
		}
	}
}

// TestTooOld: a narhashd that ignores view=git (as one older than it
// does) answers with the whole tree's hash; the client drops it, saying
// to restart narhashd.
func TestTooOld(t *testing.T) {
	sock := serveStub(t) // its View is always the tree
	c := &Client{Socket: sock}
	ctx := context.Background()
	if _, err := c.HashView(ctx, "/src", ViewTree, "", false); err != nil {
		t.Errorf("the whole tree's hash: %v", err)
	}
	_, err := c.HashView(ctx, "/src", ViewGit, "", false)
	err2 := c.SubscribeView(ctx, "/src", ViewGit, "", func(HashResult) error { return errors.New("passed on") })
	for _, err := range []error{err, err2} {
		if !errors.Is(err, ErrTooOld) || !strings.Contains(err.Error(), "restart narhashd") || !strings.Contains(err.Error(), sock) {
			t.Errorf("the git view asked, the whole tree's hash answered: %v; want ErrTooOld naming %s, saying to restart narhashd", err, sock)
		}
	}
}

// serveStub serves stubBackend on a new socket until the test ends.
func serveStub(t *testing.T) (socket string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "s.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: NewHandler(stubBackend{}), ConnContext: ConnContext}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return sock
}
