package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDumpGCOff runs `narhash hash` as its own process on a tree large
// enough for the dump's buffers to make the collector run with the
// default GOGC, and checks, by the runtime's gctrace, that it ran only
// where GOGC says so.
func TestDumpGCOff(t *testing.T) {
	dir := t.TempDir()
	buf := bytes.Repeat([]byte("narhash "), 32<<10) // 256 KiB
	for i := range 64 {
		if err := os.WriteFile(filepath.Join(dir, "f"+strings.Repeat("x", i)), buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	gcLine := regexp.MustCompile(`(?m)^gc \d+ @`)
	collections := func(env ...string) int {
		t.Helper()
		cmd := exec.Command(exe, "hash", dir)
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "GOGC=") && !strings.HasPrefix(kv, "GOMEMLIMIT=") && !strings.HasPrefix(kv, "GODEBUG=") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		cmd.Env = append(cmd.Env, append(env, "NARHASH_TEST_RUN_MAIN=1", "GODEBUG=gctrace=1")...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if out, err := cmd.Output(); err != nil || len(bytes.TrimSpace(out)) == 0 {
			t.Fatalf("narhash hash %s: %v, output %q\n%s", dir, err, out, stderr.Bytes())
		}
		return len(gcLine.FindAll(stderr.Bytes(), -1))
	}
	if n := collections("GOGC=100"); n == 0 {
		t.Fatal("with GOGC=100 the collector did not run: the tree is too small for this test to see it off")
	}
	if n := collections(); n != 0 {
		t.Errorf("the collector ran %d times in narhash hash; want it off while dumping", n)
	}
	if n := collections("GOMEMLIMIT=1GiB"); n == 0 {
		t.Error("with GOMEMLIMIT set the collector did not run: it must be the user's then")
	}
}
