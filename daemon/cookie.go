package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// errBarrier means a query could not be sure the watcher had caught up:
// it must validate by a stat walk instead.
var errBarrier = errors.New("the watcher did not confirm the cookie")

// cookieJar runs the cookie barrier. inotify delivers the events of one
// instance in one ordered queue: once the event of a file created after a
// query arrived has come through, so have the events of every change made
// before it. Queries that arrive before the next cookie file exists share
// it, so a burst of queries costs one file.
type cookieJar struct {
	dir     string // daemon-owned, watched by the same watcher, never inside a root
	mu      sync.Mutex
	next    *cookie // joined by queries until its file is created
	pending map[string]*cookie
	n       uint64
}

type cookie struct {
	name string
	done chan struct{}
	lost bool // set before done is closed: the event may never come
}

func (c *cookieJar) init(parent string, w *fsnotify.Watcher) error {
	dir, err := os.MkdirTemp(parent, "cookies-")
	if err != nil {
		return fmt.Errorf("cookie directory: %w", err)
	}
	if err := w.Add(dir); err != nil {
		os.RemoveAll(dir)
		return fmt.Errorf("watch cookie directory %s: %w", dir, err)
	}
	c.dir, c.pending = dir, map[string]*cookie{}
	return nil
}

func (c *cookieJar) close() { os.RemoveAll(c.dir) }

// wait returns once every change made before it was called has been
// applied by the loop, or errBarrier after timeout.
func (c *cookieJar) wait(ctx context.Context, timeout time.Duration) error {
	c.mu.Lock()
	k, create := c.next, c.next == nil
	if create {
		c.n++
		k = &cookie{name: strconv.FormatUint(c.n, 10), done: make(chan struct{})}
		c.pending[k.name], c.next = k, k
	}
	c.mu.Unlock()
	if create {
		c.mu.Lock()
		c.next = nil // later queries need a file created after they came
		c.mu.Unlock()
		f, err := os.OpenFile(filepath.Join(c.dir, k.name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			c.mu.Lock()
			c.drop(k)
			c.mu.Unlock()
		} else {
			f.Close()
		}
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
	c.mu.Unlock()
	if k != nil {
		close(k.done)
		os.Remove(filepath.Join(c.dir, name))
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
	if c.next == k {
		c.next = nil
	}
	k.lost = true
	close(k.done)
}
