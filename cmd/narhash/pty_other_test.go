//go:build !linux

package main

import (
	"os"
	"runtime"
	"testing"
)

// openPTY skips the test: pseudo-terminals are opened the Linux way.
func openPTY(t *testing.T) *os.File {
	t.Skipf("the test opens a pseudo-terminal the Linux way, not on %s", runtime.GOOS)
	return nil
}
