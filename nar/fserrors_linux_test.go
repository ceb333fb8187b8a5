//go:build linux

package nar

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Failures of the filesystem under a dump or a restore, Linux only.

// TestRestoreWriteError: a write that fails (here past RLIMIT_FSIZE, as on
// a full disk) is reported once, with the file's path in the archive, and
// nothing is left behind.
//
// The limit is the process's: the trial runs in a child process of its
// own, or every other test writing a file meanwhile fails too (CI once
// failed with "testing: can't write …/testlog.txt: file too large").
func TestRestoreWriteError(t *testing.T) {
	if os.Getenv("NARHASH_FSIZE_TRIAL") == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestRestoreWriteError$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), "NARHASH_FSIZE_TRIAL=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte("--- PASS: TestRestoreWriteError")) {
			t.Fatalf("the trial in its own process: %v\n%s", err, out)
		}
		return
	}
	var b bytes.Buffer
	w := NewWriter(&b)
	must(t, w.Directory())
	must(t, w.Entry("big"))
	must(t, w.File(false, 64<<10))
	if _, err := w.Write(make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	must(t, w.EndDirectory())
	must(t, w.Close())

	var lim unix.Rlimit
	must(t, unix.Getrlimit(unix.RLIMIT_FSIZE, &lim))
	must(t, unix.Setrlimit(unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: 4096, Max: lim.Max}))
	dest := filepath.Join(t.TempDir(), "out")
	err := Restore(bytes.NewReader(b.Bytes()), dest)
	must(t, unix.Setrlimit(unix.RLIMIT_FSIZE, &lim))
	if err == nil {
		t.Fatal("restore past RLIMIT_FSIZE succeeded")
	}
	if msg := err.Error(); !strings.Contains(msg, "write file /big: ") || strings.Count(msg, "/big") != 1 {
		t.Errorf("restore past RLIMIT_FSIZE: %q, want the file named once, after \"write file\"", msg)
	}
	if err := unix.Lstat(dest, new(unix.Stat_t)); err == nil {
		t.Errorf("restore failed but left %s", dest)
	}
}

// TestPseudoFile: a sysfs file says it holds 4096 bytes and gives fewer:
// the dump fails at once saying so, not as a change to retry ("hash it
// again once it is quiet", after three attempts).
func TestPseudoFile(t *testing.T) {
	const dir = "/sys/kernel/mm/transparent_hugepage"
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil || uint32(st.Type) != unix.SYSFS_MAGIC {
		t.Skipf("no sysfs at %s to read", dir)
	}
	_, err := Dump(context.Background(), io.Discard, dir, nil)
	if err == nil || errors.Is(err, ErrChanged) || !strings.Contains(err.Error(), "a sysfs file, whose size") {
		t.Errorf("dump of %s: %v, want the error of a sysfs file, not ErrChanged", dir, err)
	}
}
