package nar

import (
	"os"
	"runtime"
	"sync"
)

// Processors for reads that block. Go runs goroutines on GOMAXPROCS
// processors, and a goroutine in a system call keeps its processor until
// it returns or the runtime's monitor takes the processor back, 20 µs or
// more later. A dump whose reads block has up to 80 goroutines in such
// calls (prefetch.go); with GOMAXPROCS=2 they wait for a processor more
// than for the device. Traced on 2 cores, cold, the prefetchers were ready
// to run but waiting for a processor for 53 % of a dump of the GOROOT
// copy, and 60 % of one of the synthetic src tree. So a dump given DumpOptions.ColdProcs raises GOMAXPROCS to
// that many once its reads block, until it ends (with several such dumps,
// until the last one ends).
//
// Measured on 2 cores, cold, medians of 5 (2026-11-22): the synthetic src
// tree (20,000 files) 688.8 ms -> 604.6 ms with 8 (4: 669 ms, 16: 640
// ms, in another run where 2 took 764 ms); GOROOT 465 ms -> 418 ms.
// A warm dump never raises it: there, more processors than cores only
// take the writer's core from it more often.

// DefaultColdProcs is the DumpOptions.ColdProcs the narhash commands and
// narhashd use.
const DefaultColdProcs = 8

var procs struct {
	sync.Mutex
	raised int // dumps that hold GOMAXPROCS raised
	saved  int // GOMAXPROCS before the first of them raised it
}

// raiseProcs raises GOMAXPROCS to at least n until restore is called.
func raiseProcs(n int) (restore func()) {
	procs.Lock()
	defer procs.Unlock()
	if procs.raised == 0 {
		if runtime.GOMAXPROCS(0) >= n {
			return func() {}
		}
		procs.saved = runtime.GOMAXPROCS(n)
	}
	procs.raised++
	return func() {
		procs.Lock()
		defer procs.Unlock()
		if procs.raised--; procs.raised > 0 {
			return
		}
		if os.Getenv("GOMAXPROCS") != "" {
			runtime.GOMAXPROCS(procs.saved)
			return
		}
		// The runtime's default, which it keeps up to date as the CPUs
		// the process may use change; setting GOMAXPROCS stopped that.
		runtime.SetDefaultGOMAXPROCS()
	}
}
