//go:build linux

package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// storeFaults remembers the database's last failure, for status: a full
// disk, say, loses results silently otherwise.
type storeFaults struct {
	mu    sync.Mutex
	count int
	last  error
	at    time.Time
}

func (f *storeFaults) record(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		f.last = nil // the database works again
		return
	}
	f.count++
	f.last, f.at = err, time.Now()
}

// warning describes the last failure, "" if the last write worked.
func (f *storeFaults) warning() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.last == nil {
		return ""
	}
	hint := ""
	if errors.Is(f.last, syscall.ENOSPC) {
		hint = " (the disk is full: free space; results are kept in memory meanwhile)"
	}
	return fmt.Sprintf("the database could not be written %d times, last at %s: %v%s", f.count, f.at.UTC().Format(time.RFC3339), f.last, hint)
}

// storeFault records a failed write made by the loop.
func (d *Daemon) storeFault(err error) { d.faults.record(err) }

// loopState is what the loop is doing, for the watchdog: a request that
// cannot get the loop's attention logs it, with every goroutine's stack.
type loopState struct {
	mu    sync.Mutex
	what  string
	since time.Time
}

func (s *loopState) busy(what string) {
	s.mu.Lock()
	s.what, s.since = what, time.Now()
	s.mu.Unlock()
}

func (s *loopState) idle() { s.busy("") }

func (s *loopState) report(log *slog.Logger) {
	s.mu.Lock()
	what, since := s.what, s.since
	s.mu.Unlock()
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	log.Error("watchdog: the event loop does not take requests", "busy", what, "dur", time.Since(since), "stacks", string(buf))
}
