package main

import (
	"os"
	"runtime"
	"runtime/debug"
	"sync"
)

// The garbage collector in a command that dumps trees.
//
// A dump's memory is its pipeline's buffers (nar/pipeline.go: 30 MiB with
// two readers warm, at most 128 MiB cold), allocated as it starts and
// reused to its end; besides them it makes little garbage. With the
// default GOGC, the collector runs three times in a dump's first 10 ms,
// while the heap grows to hold those buffers (at 4, 7 and 13 MB), and
// never again in a warm dump of a large tree. Off, `narhash hash` took
// 1-5 % less time warm in 8 of 9 comparisons on this project's 2-core VM
// (binaries or GOGC settings taking turns, medians of 30 or 40 runs each,
// 2026-11-22): GOROOT's copy 217.2 → 214.6 and 209.7 → 206.6 ms, the
// tiny tree 216.1 → 210.5 ms, /usr/share/doc 117.4 → 114.4 ms (with
// GOGC=off: GOROOT 232.9 → 223.4 ms, tiny 265.4 → 257.9 ms, /usr/share/doc
// 116.1 → 110.4 and 109.9 → 107.3 ms, the VM slower then); the ninth,
// tiny, took 2 % more (219.7 → 223.6 ms). Peak RSS stayed as it was (37
// MB on GOROOT, 47 MB on /usr's 5.3 GB): the collections freed next to
// nothing.
//
// So this process, which ends when its command does, keeps the
// collector off while it dumps, with a memory limit as the safety net:
// past the limit the collector runs again. The limit leaves room for a
// cold dump's buffers on every P (hash runs up to GOMAXPROCS paths at
// once) and a git index besides. GOGC or GOMEMLIMIT in the environment
// leave the collector to the user. narhashd, which runs for days, does
// not do this, nor do tests, which run commands in one long process
// (cliProcess is set by main only).

// cliProcess is true in the narhash process proper, false in tests.
var cliProcess bool

var dumpGCOnce sync.Once

// dumpGC turns the collector off, with a memory limit, before a dump.
func dumpGC() {
	if !cliProcess {
		return
	}
	dumpGCOnce.Do(func() {
		if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
			return
		}
		debug.SetMemoryLimit(dumpGCLimit(runtime.GOMAXPROCS(0)))
		debug.SetGCPercent(-1)
	})
}

// dumpGCLimit is the memory limit while dumps run on procs Ps: 128 MiB
// (a cold dump's buffers, rounded up) for each, and 512 MiB besides.
func dumpGCLimit(procs int) int64 {
	return 512<<20 + int64(procs)*128<<20
}
