package main

import (
	"io"
	"runtime"
	"testing"

	"github.com/narhash/narhash/nar"
)

// TestLsDeep: ls -R of a tree 20,000 deep allocates memory linear in its
// depth (it built every path anew: 2.1 GB of RSS for 32,000 deep).
func TestLsDeep(t *testing.T) {
	const depth = 20000
	root := &nar.Listing{Type: nar.TypeDirectory}
	for l, i := root, 0; i < depth; i++ {
		next := &nar.Listing{Type: nar.TypeDirectory}
		l.Entries = []nar.Entry{{Name: "d", Listing: next}}
		l = next
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	lsPath(io.Discard, root, []byte(""), &lsOpts{recursive: true}, false)
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 64<<20 {
		t.Errorf("ls -R of a tree %d deep allocated %d MB", depth, got>>20)
	}
}
