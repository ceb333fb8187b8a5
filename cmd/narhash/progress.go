package main

import (
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/narhash/narhash/nar"
)

// progressLine shows the progress of a long hash on a terminal, once it
// has run for a second.
type progressLine struct {
	w     *os.File
	p     *nar.Progress
	paths int
	mu    sync.Mutex
	shown bool
	done  chan struct{}
	wg    sync.WaitGroup
}

func showProgress(w *os.File, p *nar.Progress, paths int) *progressLine {
	l := &progressLine{w: w, p: p, paths: paths, done: make(chan struct{})}
	l.wg.Go(func() {
		start := time.Now()
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-l.done:
				l.clear()
				return
			case <-tick.C:
				if time.Since(start) < time.Second {
					continue
				}
				l.mu.Lock()
				fmt.Fprint(w, "\r\033[K"+progressText(l.paths, p.Entries.Load(), p.Bytes.Load(), time.Since(start)))
				l.shown = true
				l.mu.Unlock()
			}
		}
	})
	return l
}

// progressText is the progress line of paths hashed at once, entries and
// bytes of NAR into them after elapsed.
func progressText(paths int, entries, bytes int64, elapsed time.Duration) string {
	what := "hashing"
	if paths > 1 {
		what = fmt.Sprintf("hashing %d paths", paths)
	}
	mb := float64(bytes) / 1e6
	return fmt.Sprintf("narhash: %s: %d entries, %.0f MB of NAR, %.0f MB/s", what, entries, mb, mb/elapsed.Seconds())
}

// clear erases the line, before other output; the next tick redraws it.
func (l *progressLine) clear() {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.shown {
		fmt.Fprint(l.w, "\r\033[K")
		l.shown = false
	}
}

// stop erases the line for good.
func (l *progressLine) stop() {
	if l != nil {
		close(l.done)
		l.wg.Wait()
	}
}
