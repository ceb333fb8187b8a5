package main

import (
	"os"
	"path/filepath"
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
