package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/narhash/narhash/api"
	"github.com/narhash/narhash/hasher"
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
