//go:build linux

package nar

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
)

// A dump of files the user does not own asks for O_NOATIME, is refused,
// and stops asking: not two opens for every file. As root (who may ask
// for anything), the test runs itself again as nobody.
func TestNoatimeRefusedOnce(t *testing.T) {
	const readers = 2
	if dir := os.Getenv("NARHASH_NOATIME_DUMP"); dir != "" {
		fmt.Printf("refused %d\n", countRefused(t, dir, readers))
		return
	}
	if os.Geteuid() != 0 {
		// The Go toolchain's own sources, often installed by root.
		goroot, err := exec.Command("go", "env", "GOROOT").Output()
		dir := filepath.Join(strings.TrimSpace(string(goroot)), "src", "strings")
		var st syscall.Stat_t
		if err != nil || syscall.Stat(filepath.Join(dir, "strings.go"), &st) != nil || int(st.Uid) == os.Geteuid() {
			t.Skipf("needs root, or files owned by another user that we can read (GOROOT's, which are ours here)")
		}
		checkRefused(t, countRefused(t, dir, readers), readers)
		return
	}
	// Root: a tree and a copy of this test binary that nobody can read
	// and run, outside the 0700 directories of the build and t.TempDir.
	top, err := os.MkdirTemp("", "narhash-noatime-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(top) })
	if err := os.Chmod(top, 0o755); err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(top, "tree")
	if err := os.Mkdir(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 64 {
		if err := os.WriteFile(filepath.Join(tree, fmt.Sprintf("f%02d", i)), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	test := filepath.Join(top, "nar.test")
	if err := os.WriteFile(test, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(test, "-test.run=^TestNoatimeRefusedOnce$", "-test.count=1")
	cmd.Env = append(os.Environ(), "NARHASH_NOATIME_DUMP="+tree)
	cmd.Dir = top
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the test as nobody: %v\n%s", err, out)
	}
	var n int64
	if _, err := fmt.Sscanf(string(out), "refused %d", &n); err != nil {
		t.Fatalf("the test as nobody printed %q, not the count of refused opens", strings.TrimSpace(string(out)))
	}
	checkRefused(t, n, readers)
}

func countRefused(t *testing.T, dir string, readers int) int64 {
	var n atomic.Int64
	testHookNoatimeDenied = func() { n.Add(1) }
	defer func() { testHookNoatimeDenied = nil }()
	if _, err := Dump(context.Background(), io.Discard, dir, &DumpOptions{Readers: readers}); err != nil {
		t.Fatal(err)
	}
	return n.Load()
}

// checkRefused: at least one open was refused (so the files were not
// ours), and no more than one per reader (who may each have asked before
// any was refused).
func checkRefused(t *testing.T, n int64, readers int) {
	t.Helper()
	switch {
	case n == 0:
		t.Fatalf("no open with O_NOATIME was refused: were the files ours?")
	case n > int64(readers):
		t.Errorf("opens with O_NOATIME refused %d times in one dump; want at most one per reader (%d)", n, readers)
	}
}
