package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/narhash/narhash/nar/nartest"
)

func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string // in stdout or stderr
	}{
		{nil, 2, "Usage: narhash COMMAND"},
		{[]string{"help"}, 0, "Hashes:\n  hash "},
		{[]string{"help", "hash"}, 0, "Usage: narhash hash"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"hsah"}, 2, `unknown command "hsah": did you mean hash?`},
		{[]string{"watch", "frob"}, 2, `narhash watch: unknown command "frob"`},
		{[]string{"help", "frob"}, 2, `narhash help: unknown command "frob"`},
		{[]string{"help"}, 0, "  -v, --version "},
		{[]string{"completion", "tcsh"}, 2, `narhash completion: unknown command "tcsh"`},
		{[]string{"hash"}, 2, "no PATH given"},
		{[]string{"hash", ".", ""}, 2, "narhash hash: argument 2 is empty (an unset shell variable?); want PATH"},
		{[]string{"query", "--daemon-only", ""}, 2, "narhash query: argument 1 is empty"},
		{[]string{"watch", "add", ""}, 2, "narhash watch add: argument 1 is empty"},
		{[]string{"store-path", "/no/such dir"}, 2, `name "such dir" contains ' ': only 0-9 a-z A-Z + - . _ ? = are allowed: the name comes from the path's last element; give another with --name`},
		{[]string{"store-path", "--name", "a b", "."}, 2, `narhash store-path: --name: store path name "a b" contains ' '`},
		{[]string{"hash", "-h"}, 0, "Usage: narhash hash"},
		{[]string{"hash", "--format", "base58", "."}, 2, `unknown hash format "base58"`},
		{[]string{"hash", "--no-such-flag", "."}, 2, "narhash hash: unknown flag: --no-such-flag (see 'narhash hash -h')\n"},
		{[]string{"ls", "-lZ", "x.nar"}, 2, "narhash ls: unknown shorthand flag: 'Z' in -Z (see 'narhash ls -h')\n"},
		{[]string{"hash", "--mode", "git", "."}, 2, `unknown --mode "git"`},
		{[]string{"hash", "--type", "sha3", "."}, 2, `unknown hash algorithm "sha3"`},
		{[]string{"verify", "."}, 2, "want PATH HASH"},
		{[]string{"verify", ".", "nothash"}, 2, "not a hash"},
		{[]string{"convert"}, 2, "no HASH given"},
		{[]string{"convert", "--to", "base58", "abc"}, 2, `--to: unknown hash format "base58"`},
		{[]string{"convert", "--to", "sri", "zzz"}, 1, "not a hash"},
		{[]string{"store-path", "--name", "bad name", "."}, 2, "contains ' '"},
		{[]string{"ls"}, 2, "want NARFILE [PATH]"},
		{[]string{"cat", "x"}, 2, "want NARFILE PATH"},
		{[]string{"restore"}, 2, "want one DEST"},
		{[]string{"hash", "/nonexistent/x"}, 1, "narhash: hash /nonexistent/x: lstat /nonexistent/x: no such file or directory\n"},
		{[]string{"ls", "/nonexistent.nar"}, 1, "narhash: open /nonexistent.nar: no such file or directory\n"},
	} {
		out, errOut, code := narhash(t, nil, tc.args...)
		if code != tc.code || !strings.Contains(string(out)+string(errOut), tc.want) {
			t.Errorf("narhash %q: exit %d, output %q%q; want exit %d and %q", tc.args, code, out, errOut, tc.code, tc.want)
		}
	}
}

func TestFlagsAnywhere(t *testing.T) {
	dir := nartest.TempDir(t)
	f := filepath.Join(dir, "f")
	os.WriteFile(f, []byte("hello"), 0o644)
	a := narhashOK(t, nil, "hash", "--format", "sri", f)
	b := narhashOK(t, nil, "hash", f, "--format", "sri")
	if !bytes.Equal(a, b) || string(a) != "sha256-CkMIecJm+LV/QJKg+TXPP6zUi7zN5XYNR0jKQFFx6Wk=\n" {
		t.Errorf("flags before and after the path: %q, %q", a, b)
	}
	// After "--", a path that looks like a flag.
	dash := filepath.Join(dir, "-x")
	os.WriteFile(dash, []byte("hello"), 0o644)
	t.Chdir(dir)
	if got := narhashOK(t, nil, "hash", "--format", "sri", "--", "-x"); !bytes.Equal(got, a) {
		t.Errorf("hash -- -x: %q", got)
	}
}

func TestVerifyAndConvert(t *testing.T) {
	dir := nartest.TempDir(t)
	f := filepath.Join(dir, "f")
	os.WriteFile(f, []byte("hello"), 0o644)
	const nix32 = "0sg9f58l1jj88w6pdrfdpj5x9b1zrwszk84j81zvby36q9whhhqa"
	for _, h := range []string{nix32, "sha256:" + nix32, "sha256-CkMIecJm+LV/QJKg+TXPP6zUi7zN5XYNR0jKQFFx6Wk=", "0a430879c266f8b57f4092a0f935cf3facd48bbccde5760d4748ca405171e969"} {
		if out := narhashOK(t, nil, "verify", f, h); string(out) != f+": OK\n" {
			t.Errorf("verify %s: %q", h, out)
		}
	}
	os.WriteFile(f, []byte("hellO"), 0o644)
	_, errOut, code := narhash(t, nil, "verify", f, nix32)
	if code != 1 || !strings.Contains(string(errOut), "expected: "+nix32) || !strings.Contains(string(errOut), "actual:") {
		t.Errorf("verify mismatch: exit %d, %s", code, errOut)
	}
	for _, to := range []string{"nix32", "base16", "base64", "sri", "multibase"} {
		conv := strings.TrimSpace(string(narhashOK(t, nil, "convert", "--to", to, nix32)))
		back := strings.TrimSpace(string(narhashOK(t, nil, "convert", "--to", "nix32", conv)))
		if back != nix32 {
			t.Errorf("nix32 -> %s %s -> nix32 %s", to, conv, back)
		}
	}
}

// TestMalformedArchives feeds broken archives to ls, cat and restore: each
// must exit 1 naming the offset, and restore must leave nothing behind.
func TestMalformedArchives(t *testing.T) {
	good, err := os.ReadFile("../../testdata/mixed.nar")
	if err != nil {
		t.Fatal(err)
	}
	var cases [][]byte
	for cut := 0; cut < len(good); cut += 37 {
		cases = append(cases, good[:cut])
	}
	cases = append(cases, append(bytes.Clone(good), "trailing"...))
	flipped := bytes.Clone(good)
	flipped[len("\x0d\x00\x00\x00\x00\x00\x00\x00nix-archive-1")] = 1 // padding after the magic
	cases = append(cases, flipped)
	unsorted := bytes.Replace(bytes.Clone(good), []byte("\x01\x00\x00\x00\x00\x00\x00\x00B"), []byte("\x01\x00\x00\x00\x00\x00\x00\x00b"), 1)
	cases = append(cases, unsorted)
	dir := nartest.TempDir(t)
	for i, c := range cases {
		archive := filepath.Join(dir, "bad.nar")
		os.WriteFile(archive, c, 0o644)
		for _, args := range [][]string{{"ls", "-R", archive}, {"cat", archive, "/run.sh"}, {"restore", "--from", archive, filepath.Join(dir, "dest")}} {
			_, errOut, code := narhash(t, nil, args...)
			if code != 1 || !strings.Contains(string(errOut), "invalid archive at byte") {
				t.Errorf("case %d (%d bytes): narhash %s: exit %d, %s", i, len(c), args[0], code, errOut)
			}
		}
		_, _, code := narhash(t, c, "restore", filepath.Join(dir, "dest"))
		if code != 1 {
			t.Errorf("case %d: restore from stdin: exit %d", i, code)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 1 {
			t.Fatalf("case %d: restore left %d entries in %s", i, len(ents)-1, dir)
		}
	}
	// The good archive restores, once.
	dest := filepath.Join(dir, "dest")
	narhashOK(t, good, "restore", dest)
	if _, errOut, code := narhash(t, good, "restore", dest); code != 1 || !strings.Contains(string(errOut), "exists") {
		t.Errorf("restore over an existing DEST: exit %d, %s", code, errOut)
	}
}

func TestProgressText(t *testing.T) {
	for _, tc := range []struct {
		paths int
		want  string
	}{
		{1, "narhash: hashing: 1500 entries, 300 MB of NAR, 150 MB/s"},
		{3, "narhash: hashing 3 paths: 1500 entries, 300 MB of NAR, 150 MB/s"},
	} {
		if got := progressText(tc.paths, 1500, 300e6, 2*time.Second); got != tc.want {
			t.Errorf("%d paths: %q, want %q", tc.paths, got, tc.want)
		}
	}
}
