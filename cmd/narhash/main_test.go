package main

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestMain runs narhash itself instead of the tests when asked to by
// installNarhash: shells and scripts under test call it by name.
func TestMain(m *testing.M) {
	if os.Getenv("NARHASH_TEST_RUN_MAIN") == "1" {
		main()
	}
	os.Exit(m.Run())
}

// installNarhash puts a "narhash" that is this test binary running main
// first on the PATH of the commands the test starts.
func installNarhash(t *testing.T) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	if err := os.Symlink(exe, filepath.Join(bin, "narhash")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("NARHASH_TEST_RUN_MAIN", "1")
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
}

// TestFailureHint: running out of descriptors is reported with what to do
// about it, through any wrapping; other failures get no hint.
func TestFailureHint(t *testing.T) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	emfile := fmt.Errorf("hash /src: %w", &fs.PathError{Op: "open", Path: "/src/a", Err: syscall.EMFILE})
	var out bytes.Buffer
	printFailure(&out, emfile)
	want := fmt.Sprintf("narhash: hash /src: open /src/a: too many open files\nnarhash: this process may have only %d files open at once (ulimit -n); raise that limit, to 1024 or more, and run it again\n", lim.Cur)
	if out.String() != want {
		t.Errorf("printFailure(EMFILE) wrote\n%s\nwant\n%s", out.String(), want)
	}
	out.Reset()
	printFailure(&out, fmt.Errorf("hash /src: %w", &fs.PathError{Op: "open", Path: "/src/a", Err: syscall.ENOENT}))
	if want := "narhash: hash /src: open /src/a: no such file or directory\n"; out.String() != want {
		t.Errorf("printFailure(ENOENT) wrote %q, want %q", out.String(), want)
	}
}
