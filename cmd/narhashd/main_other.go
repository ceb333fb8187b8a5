//go:build !linux

package main

import (
	"fmt"
	"os"
	"runtime"
)

// main fails at once: the daemon watches trees with inotify.
func main() {
	fmt.Fprintf(os.Stderr, "narhashd runs on Linux only (it watches trees with inotify), not on %s; narhash hash and the other offline commands need no daemon\n", runtime.GOOS)
	os.Exit(1)
}
