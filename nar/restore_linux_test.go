//go:build linux

package nar

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestRestoreWriteError: a write that fails (here past RLIMIT_FSIZE, as on
// a full disk) is reported once, with the file's path in the archive, and
// nothing is left behind.
func TestRestoreWriteError(t *testing.T) {
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
