package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/narhash/narhash/api"
	"github.com/narhash/narhash/nar/nartest"
)

// allCommands is every command path, in the order narhash help lists them.
var allCommands = []string{"hash", "store-path", "verify", "convert", "dump", "restore", "ls", "cat",
	"query", "watch", "status", "subscribe", "completion", "man", "version"}

// TestHelpOnStdout: -h, --help and help COMMAND print the command's help on
// standard output (so that `narhash hash -h | less` shows it) and exit 0.
func TestHelpOnStdout(t *testing.T) {
	for _, name := range append(allCommands, "watch add", "completion bash") {
		words := strings.Fields(name)
		for _, args := range [][]string{append(words, "-h"), append(words, "--help"), append([]string{"help"}, words...)} {
			out, errOut, code := narhash(t, nil, args...)
			if want := "Usage: narhash " + name; code != 0 || !strings.HasPrefix(string(out), want) || len(errOut) != 0 {
				t.Errorf("narhash %q: exit %d, stdout %.40q, stderr %q; want exit 0 and stdout starting %q", args, code, out, errOut, want)
			}
		}
	}
}

// TestHelpOrder: narhash help lists hash first and the commands in the
// order of allCommands, in groups.
func TestHelpOrder(t *testing.T) {
	out := string(narhashOK(t, nil, "help"))
	last := -1
	for _, name := range allCommands {
		i := strings.Index(out, "\n  "+name+" ")
		if i < 0 || i < last {
			t.Fatalf("narhash help: %q missing or out of order:\n%s", name, out)
		}
		last = i
	}
	for _, g := range groups {
		if !strings.Contains(out, "\n"+g.Title+"\n") {
			t.Errorf("narhash help: no group %q", g.Title)
		}
	}
	// Flags show with two dashes, as the README spells them.
	if help := string(narhashOK(t, nil, "hash", "-h")); !strings.Contains(help, "      --flat ") || strings.Contains(help, " -flat") {
		t.Errorf("hash -h does not spell --flat:\n%s", help)
	}
}

// TestErrorsReadOnce: a failure is one line, "narhash: " and then each
// subject once; a usage error is one line naming the command and its -h.
func TestErrorsReadOnce(t *testing.T) {
	dir := nartest.TempDir(t)
	t.Chdir(dir)
	os.WriteFile("f", []byte("x"), 0o644)
	os.Mkdir("exists", 0o755)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"hash", "nonexist"}, "narhash: hash nonexist: lstat nonexist: no such file or directory"},
		{[]string{"hash", "--flat", "nonexist"}, "narhash: hash nonexist: open nonexist: no such file or directory"},
		{[]string{"hash", "--flat", "."}, "narhash: hash .: not a regular file"},
		{[]string{"verify", "nonexist", "sha256-CkMIecJm+LV/QJKg+TXPP6zUi7zN5XYNR0jKQFFx6Wk="}, "narhash: hash nonexist: lstat nonexist: no such file or directory"},
		{[]string{"store-path", "--flat", "nonexist"}, "narhash: hash nonexist: open nonexist: no such file or directory"},
		{[]string{"dump", "nonexist"}, "narhash: dump nonexist: lstat nonexist: no such file or directory"},
		{[]string{"restore", "--from", "nonexist.nar", "dest"}, "narhash: restore dest: open nonexist.nar: no such file or directory"},
		{[]string{"restore", "--from", "f", "exists"}, "narhash: restore exists: file already exists"},
		{[]string{"ls", "nonexist.nar"}, "narhash: open nonexist.nar: no such file or directory"},
		{[]string{"cat", "f", "/x"}, "narhash: f: nar: invalid archive at byte "},
		{[]string{"convert", "--from", "base16", "sha256-CkMIecJm+LV/QJKg+TXPP6zUi7zN5XYNR0jKQFFx6Wk="}, `narhash: convert: hash "sha256-CkMIecJm+LV/QJKg+TXPP6zUi7zN5XYNR0jKQFFx6Wk=" is in format sri, but --from base16 was given`},
		{[]string{"query", "--socket", "none.sock", "nonexist"}, "narhash: hash " + filepath.Join(dir, "nonexist") + ": lstat " + filepath.Join(dir, "nonexist") + ": no such file or directory"},
		{[]string{"hash", "--bogus", "f"}, "narhash hash: unknown flag: --bogus (see 'narhash hash -h')"},
		{[]string{"ls", "-lq", "f"}, "narhash ls: unknown shorthand flag: 'q' in -q (see 'narhash ls -h')"},
		{[]string{"watch", "add", "--socket"}, "narhash watch add: flag needs an argument: --socket (see 'narhash watch add -h')"},
	} {
		_, errOut, code := narhash(t, nil, tc.args...)
		lines := strings.Split(strings.TrimSuffix(string(errOut), "\n"), "\n")
		last := lines[len(lines)-1] // query's first line is the note that it hashes here
		if code == 0 || len(lines) > 2 || len(lines) == 2 && tc.args[0] != "query" || !strings.HasPrefix(last, tc.want) {
			t.Errorf("narhash %q: exit %d, stderr %q; want one line starting %q", tc.args, code, errOut, tc.want)
		}
		seen := map[string]bool{}
		for _, part := range strings.Split(last, ": ") {
			if seen[part] {
				t.Errorf("narhash %q: %q says %q twice", tc.args, last, part)
			}
			seen[part] = true
		}
	}
}

// TestDumpToDevNull: /dev/null is a character device but not a terminal,
// so a dump to it runs; a dump to a real terminal is refused.
func TestDumpToDevNull(t *testing.T) {
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	var errOut strings.Builder
	if code := run(t.Context(), []string{"dump", "."}, nil, devnull, &errOut); code != 0 {
		t.Errorf("narhash dump . > /dev/null: exit %d, %s", code, errOut.String())
	}

	tty := openPTY(t)
	errOut.Reset()
	if code := run(t.Context(), []string{"dump", "."}, nil, tty, &errOut); code != 2 || !strings.Contains(errOut.String(), "standard output is a terminal") {
		t.Errorf("narhash dump . > a terminal: exit %d, %q; want 2 and a refusal", code, errOut.String())
	}
}

func TestVersion(t *testing.T) {
	want := "narhash " + api.Version() + "\n"
	for _, args := range [][]string{{"--version"}, {"version"}} {
		if got := string(narhashOK(t, nil, args...)); got != want {
			t.Errorf("narhash %q = %q, want %q", args, got, want)
		}
	}
}
