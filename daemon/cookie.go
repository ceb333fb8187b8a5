//go:build linux

package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// errBarrier means a query could not be sure the watcher had caught up:
// it must validate by a stat walk instead.
var errBarrier = errors.New("the watcher did not confirm the cookie")

// cookieJar runs the cookie barrier. inotify delivers the events of one
// instance in one ordered queue: once the event of a file created after a
// query arrived has come through, so have the events of every change made
// before it. A query publishes its need for a cookie and wakes the maker
// goroutine; every query that arrives before the maker takes the request
// shares the file it then creates, so a burst of queries costs one file.
type cookieJar struct {
	parent string // where the cookie directory is made
	mu     sync.Mutex
	dir    string // daemon-owned, watched by the same watcher, never inside a root
	wd     int32  // its watch
	next   *cookie
	// pending maps file names to cookies whose file was made.
	pending map[string]*cookie
	n       uint64
	kick    chan struct{}
	// fault says why the last cookie file could not be made; "" once
	// one is made again. For status.
	fault string
	log   *slog.Logger
}

type cookie struct {
	name string
	done chan struct{}
	lost bool // set before done is closed: the event may never come
}

// makeDir makes and watches a new cookie directory; on the loop.
func (d *Daemon) makeCookieDir() error {
	c := &d.cookies
	dir, err := os.MkdirTemp(c.parent, "cookies-")
	if err != nil {
		return fmt.Errorf("cookie directory: %w", err)
	}
	f, err := d.addWatch(dir)
	if err != nil || f == nil {
		os.RemoveAll(dir)
		return fmt.Errorf("watch cookie directory %s: %v", dir, err)
	}
	f.Close()
	w, _ := d.watchPaths.get(dir)
	c.mu.Lock()
	c.dir, c.wd = dir, w.wd
	if c.pending == nil {
		c.pending, c.kick = map[string]*cookie{}, make(chan struct{}, 1)
	}
	c.mu.Unlock()
	return nil
}

func (c *cookieJar) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	os.RemoveAll(c.dir)
}

// onCookieEvent is the loop's handling of the cookie directory's events.
func (d *Daemon) onCookieEvent(ev inEvent) {
	c := &d.cookies
	if ev.mask&unix.IN_CREATE != 0 && ev.name != "" {
		c.seen(ev.name)
		return
	}
	if ev.mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF|unix.IN_IGNORED) == 0 {
		return
	}
	// Someone removed or moved narhashd's cookie directory: make another,
	// and let the queries waiting on the old one validate by stat walk.
	if w := d.watches[ev.wd]; w != nil {
		d.dropWatch(w, ev.mask&unix.IN_IGNORED != 0)
	}
	c.failAll()
	if err := d.makeCookieDir(); err != nil {
		d.log.Error("cookie directory lost and not made anew: queries are checked by stat walk", "err", err)
		d.cookieFault = fmt.Sprintf("the cookie directory was removed and cannot be made again (%v): every query is checked by a stat walk; restart narhashd", err)
		return
	}
	d.log.Warn("cookie directory was removed: made a new one", "path", c.dir)
}

// maker creates the cookie files queries ask for, until ctx is done.
func (c *cookieJar) maker(ctx context.Context) {
	for {
		select {
		case <-c.kick:
		case <-ctx.Done():
			return
		}
		c.mu.Lock()
		k := c.next
		c.next = nil // later queries need a file created after they came
		if k != nil {
			c.pending[k.name] = k
		}
		dir := c.dir
		c.mu.Unlock()
		if k == nil {
			continue
		}
		f, err := os.OpenFile(filepath.Join(dir, k.name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err == nil {
			f.Close()
		}
		c.mu.Lock()
		was := c.fault
		if err != nil {
			c.drop(k) // its queries validate by stat walk
			c.fault = fmt.Sprintf("cannot make cookie files in narhashd's directory %s (%v): every query is checked by a stat walk until one can be made; check that directory (its permissions, free space)", dir, err)
		} else {
			c.fault = ""
		}
		c.mu.Unlock()
		// Logged without the lock, which the loop takes: a slow log
		// (journald pushing back) must not stall it.
		switch {
		case err != nil && was == "":
			c.log.Error("cannot make a cookie file: queries are checked by stat walk", "path", dir, "err", err)
		case err == nil && was != "":
			c.log.Info("cookie files can be made again", "path", dir)
		}
	}
}

// warning says, for status, why queries cannot rely on cookies; "" if
// they can.
func (c *cookieJar) warning() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fault
}

// wait returns once every change made before it was called has been
// applied by the loop, or errBarrier after timeout.
func (c *cookieJar) wait(ctx context.Context, timeout time.Duration) error {
	c.mu.Lock()
	k := c.next
	if k == nil {
		c.n++
		k = &cookie{name: strconv.FormatUint(c.n, 10), done: make(chan struct{})}
		c.next = k
	}
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default: // the maker is awake already and will see c.next
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-k.done:
		if k.lost {
			return errBarrier
		}
		return nil
	case <-t.C:
		return errBarrier
	case <-ctx.Done():
		return ctx.Err()
	}
}

// seen is called by the loop for a cookie file's event.
func (c *cookieJar) seen(name string) {
	c.mu.Lock()
	k := c.pending[name]
	delete(c.pending, name)
	dir := c.dir
	c.mu.Unlock()
	if k != nil {
		close(k.done)
		os.Remove(filepath.Join(dir, name))
	}
}

// failAll releases every waiting query to validate by stat walk: after an
// overflow their cookies' events may be lost.
func (c *cookieJar) failAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range c.pending {
		c.drop(k)
	}
}

// drop releases a cookie's queries as lost; c.mu is held.
func (c *cookieJar) drop(k *cookie) {
	if _, ok := c.pending[k.name]; !ok {
		return
	}
	delete(c.pending, k.name)
	k.lost = true
	close(k.done)
}
