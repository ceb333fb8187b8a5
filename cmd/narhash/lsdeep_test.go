package main

import (
	"io"
	"runtime"
	"testing"

	"github.com/narhash/narhash/nar"
)

// TestLsDeep: ls -R of a deep tree allocates memory linear in its depth
// (it built every path anew: 2.1 GB of RSS for 32,000 deep). Doubling the
// depth must not much more than double the allocation; quadratic growth
// quadruples it. A ratio, not a byte count, so that the race detector's
// own allocations do not decide the outcome.
func TestLsDeep(t *testing.T) {
	const depth = 10000
	small, large := lsAlloc(depth), lsAlloc(2*depth)
	if ratio := float64(large) / float64(small); ratio > 3 {
		t.Errorf("ls -R allocated %d KB at depth %d and %d KB at depth %d (%.1fx): growth is not linear in depth",
			small>>10, depth, large>>10, 2*depth, ratio)
	}
}

// lsAlloc returns the bytes allocated by ls -R of a chain of directories
// depth deep.
func lsAlloc(depth int) uint64 {
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
	return after.TotalAlloc - before.TotalAlloc
}
