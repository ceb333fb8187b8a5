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
	"time"

	"golang.org/x/sys/unix"

	"github.com/narhash/narhash/nar/nartest"
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

// TestReplacedByFIFO: a file replaced, after the walk listed it, by a
// FIFO that a writer holds open (so that a read finds it empty, not at its
// end) must fail the dump with ErrChanged naming it, not make the reader
// wait for data, or spin: files are opened O_NONBLOCK, so that opening
// such a FIFO cannot block, and a read of it then fails with EAGAIN.
func TestReplacedByFIFO(t *testing.T) {
	root := nartest.TempDir(t)
	b := &nartest.Builder{Root: root}
	b.File("a", []byte("before a"), 0o644)
	b.File("target", []byte("a file"), 0o644)
	must(t, b.Err)
	target := filepath.Join(root, "target")
	var writer int
	testHookRead = func(path string) {
		if path != filepath.Join(root, "a") {
			return
		}
		must(t, os.Remove(target))
		must(t, unix.Mkfifo(target, 0o644))
		fd, err := unix.Open(target, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		must(t, err)
		writer = fd
	}
	defer func() { testHookRead = nil }()
	done := make(chan error, 1)
	go func() {
		_, err := Dump(context.Background(), io.Discard, root, &DumpOptions{Readers: 1})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrChanged) || !strings.Contains(err.Error(), target) {
			t.Errorf("got %v, want ErrChanged naming %s", err, target)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the dump of a file replaced by a FIFO did not end in 20 s")
	}
	if writer == 0 {
		t.Fatal("the hook did not replace the file: the test tested nothing")
	}
	unix.Close(writer)
}
