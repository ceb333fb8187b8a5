package nar

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// deepNAR is the archive of a chain of depth directories named "d", with
// a file at the bottom.
func deepNAR(t *testing.T, depth int) []byte {
	t.Helper()
	var b bytes.Buffer
	w := NewWriter(&b)
	for i := 0; i <= depth; i++ {
		if i > 0 {
			w.Entry("d")
		}
		w.Directory()
	}
	w.Entry("f")
	w.File(false, 2)
	w.Write([]byte("hi"))
	for i := 0; i <= depth; i++ {
		w.EndDirectory()
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestDeepList: listing a tree 30,000 deep keeps memory linear in the
// depth (it was quadratic: 2.1 GB for 32,000).
func TestDeepList(t *testing.T) {
	const depth = 30000
	nar := deepNAR(t, depth)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	l, err := List(bytes.NewReader(nar))
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	used := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	if limit := int64(depth * 512); used > limit {
		t.Errorf("the listing of a tree %d deep holds %d bytes, more than %d", depth, used, limit)
	}
	runtime.KeepAlive(l)
}

// TestDeepRestore: a tree 25,000 deep is restored with few descriptors,
// and a failure deep inside leaves nothing behind.
func TestDeepRestore(t *testing.T) {
	const depth = 25000
	nar := deepNAR(t, depth)
	var lim unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_NOFILE, &lim)
	low := lim
	low.Cur = 256
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	dest := filepath.Join(dir, "out")
	err := Restore(bytes.NewReader(nar), dest)
	// Cut short near the bottom: nothing may be left.
	dest2 := filepath.Join(dir, "cut")
	err2 := Restore(bytes.NewReader(nar[:len(nar)-40]), dest2)
	unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	if err != nil {
		t.Fatalf("restore %d deep: %v", depth, err)
	}
	// The chain is there, with the file at its bottom.
	fd := mustOpen(t, dest)
	for i := range depth {
		next, err := unix.Openat(fd, "d", unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if i > 0 {
			unix.Close(fd)
		}
		if err != nil {
			t.Fatalf("level %d of the restored tree: %v", i+1, err)
		}
		fd = next
	}
	f := os.NewFile(uintptr(fdOrNeg(unix.Openat(fd, "f", unix.O_RDONLY, 0))), "f")
	unix.Close(fd)
	if b, err := io.ReadAll(f); err != nil || string(b) != "hi" {
		t.Errorf("the file at the bottom holds %q, %v", b, err)
	}
	f.Close()
	if err = err2; err == nil {
		t.Fatal("a truncated archive restored")
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.Name() != "out" {
			t.Errorf("left behind: %.80s (%.200v)", e.Name(), err)
		}
	}
	if err := removeTree(mustOpen(t, dir), "out"); err != nil {
		t.Errorf("remove the deep tree: %v", err)
	}
}

func fdOrNeg(fd int, err error) int {
	if err != nil {
		return -1
	}
	return fd
}

func mustOpen(t *testing.T, dir string) int {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// TestRestoreLongName: a DEST name of 226 to 255 bytes restores, as with
// nix-store (the temporary name must fit in NAME_MAX too).
func TestRestoreLongName(t *testing.T) {
	nar := deepNAR(t, 2)
	dir := t.TempDir()
	for _, n := range []int{226, 240, 255} {
		dest := filepath.Join(dir, strings.Repeat("n", n))
		if err := Restore(bytes.NewReader(nar), dest); err != nil {
			t.Errorf("restore to a %d-byte name: %v", n, err)
		}
	}
	if err := Restore(bytes.NewReader(nar), filepath.Join(dir, strings.Repeat("n", 256))); err == nil || !errors.Is(err, unix.ENAMETOOLONG) {
		t.Errorf("a 256-byte name: %v, want ENAMETOOLONG", err)
	}
}
