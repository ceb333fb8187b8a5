//go:build linux

package daemon

import "time"

// aggregator debounces the events of one tracked path: a rehash is due
// once the path has been quiet for quiet, or dirty for maxDelay, whichever
// comes first; so a checkout of thousands of files costs one rehash, and a
// file written to without pause still gets hashed. Times are given, never
// read, so that tests need no clock.
type aggregator struct {
	quiet, maxDelay time.Duration
	first, last     time.Time // of the events since the last rehash began; zero: clean
}

// touch records an event at now.
func (a *aggregator) touch(now time.Time) {
	if a.first.IsZero() {
		a.first = now
	}
	a.last = now
}

// dirty reports whether events are waiting for a rehash.
func (a *aggregator) dirty() bool { return !a.first.IsZero() }

// due returns when the rehash is due; ok is false when the path is clean.
func (a *aggregator) due() (at time.Time, ok bool) {
	if !a.dirty() {
		return time.Time{}, false
	}
	q, m := a.last.Add(a.quiet), a.first.Add(a.maxDelay)
	if m.Before(q) {
		return m, true
	}
	return q, true
}

// reset forgets the events: a rehash that will see them has begun.
func (a *aggregator) reset() { a.first, a.last = time.Time{}, time.Time{} }
