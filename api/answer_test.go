package api

import (
	"context"
	"errors"
	"net/http"
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
		{"status", `{"version":"v1","pid":7}`, func() error { _, err := c.Status(ctx); return err }, ""},
		{"empty status", `{}`, func() error { _, err := c.Status(ctx); return err }, "without narhashd's process ID"},
		{"roots", `[{"path":"/src","state":"clean"}]`, func() error { _, err := c.Roots(ctx); return err }, ""},
		{"relative root", `[{"path":"src"}]`, func() error { _, err := c.Roots(ctx); return err }, "a root whose path is not absolute"},
		{"subscription", "{}\n", func() error {
			return c.Subscribe(ctx, "/src", "", func(HashResult) error { return errors.New("passed on") })
		}, `GET /v1/subscribe with a hash that is not one`},
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
