//go:build linux

// Package daemon is narhashd: it watches trees (fsnotify), rehashes them
// in the background when they change (a bounded pool running
// hasher.HashPath), keeps the results in a cache.Store and answers
// api.Backend requests over the Unix socket.
//
// One goroutine, the loop, owns all state and applies watcher events in
// the order inotify delivers them. Every tracked path (a root, or a path
// inside one that was asked for) has a generation, bumped by every event
// that can change its NAR; a job's result is kept only if the generation
// did not move while it ran, so a hash of a tree that changed under the
// hasher is never stored. A query first passes a cookie barrier: it
// creates a file in a directory of the daemon's own, watched by the same
// watcher, and waits for that file's event; every change made before the
// query was sent has then been applied. The answer is the path's entry if
// its generation is current, or the result of a rehash it joins or starts.
// A rehash resumes at the last saved checkpoint of the SHA-256 state
// before the first change, and hashes only what follows (resume.go).
//
// Caveats: inotify sees nothing on NFS, FUSE and other remote
// filesystems, nor writes through a shared mmap; such roots, and roots
// beyond the inotify watch limit, are "degraded": each query validates
// them by a stat walk. After a restart, cached entries are served only once
// a stat walk has matched their fingerprint.
package daemon

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/narhash/narhash/api"
	"github.com/narhash/narhash/cache"
)

// Config is what narhashd is told.
type Config struct {
	Watch    []string // roots to watch, besides those kept in the database
	Socket   string   // "" means api.DefaultSocket()
	DB       string   // "" means DefaultDB()
	Workers  int      // hash jobs at once; 0 means the number of CPUs
	Logger   *slog.Logger
	Quiet    time.Duration // debounce: quiet period before a rehash (0: 50 ms)
	MaxDelay time.Duration // debounce: longest wait while events continue (0: 2 s)
	// CookieTimeout bounds a query's wait for the watcher to catch up;
	// past it the query validates by a stat walk (0: 2 s).
	CookieTimeout time.Duration
	// Listener, when set, is served instead of a socket Run creates at
	// Socket (socket activation); Socket must then be its file name, the
	// directory of which holds the daemon's cookies. Run closes it.
	Listener net.Listener
	// Ready, when set, is called once the socket answers and the roots
	// of Watch and the database are added: their listing may go on, off
	// the loop, and queries meanwhile wait for it or check by stat walk
	// (lister.go). Stopping is called when shutdown begins. narhashd
	// tells systemd (sd_notify) from them.
	Ready, Stopping func()
}

// DefaultDB returns $XDG_STATE_HOME/narhashd/cache.db, or
// ~/.local/state/narhashd/cache.db.
func DefaultDB() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "narhashd", "cache.db")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = os.TempDir()
	}
	return filepath.Join(home, ".local", "state", "narhashd", "cache.db")
}

func (c *Config) defaults() {
	if c.Socket == "" {
		c.Socket = api.DefaultSocket()
	}
	if c.DB == "" {
		c.DB = DefaultDB()
	}
	if c.Workers <= 0 {
		c.Workers = runtime.NumCPU()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if c.Quiet <= 0 {
		c.Quiet = 50 * time.Millisecond
	}
	if c.MaxDelay <= 0 {
		c.MaxDelay = 2 * time.Second
	}
	if c.CookieTimeout <= 0 {
		c.CookieTimeout = 2 * time.Second
	}
}

// Daemon is a running narhashd.
type Daemon struct {
	cfg     Config
	log     *slog.Logger
	store   *cache.Store
	in      *inotify
	mounts  mountTable
	started time.Time

	// Owned by the loop goroutine.
	roots      map[string]*root
	rootIdx    pathTrie[*root]
	links      map[string][]*root  // symlinks on the way to roots (watchLinks)
	tracked    map[string]*tracked // roots and the paths inside them that were asked for
	trackIdx   pathTrie[*tracked]
	gitTracked map[string]*tracked // git views asked for (gitview.go)
	gitIdx     pathTrie[*tracked]
	gitWatches map[string]int        // git directories watched for git views, and for how many
	dirty      map[*tracked]struct{} // waiting for their debounce
	maxTracked int
	maxGit     int // git views tracked at most (maxGitTracked; tests lower it)
	// Idle sub-paths and git views are forgotten (sweepIdle): after
	// idleAfter unasked, checked at most every sweepEvery, on activity.
	idleAfter   time.Duration
	lastSweep   time.Time
	now         func() time.Time // time.Now; tests move it (idle paths, debounce)
	watches     map[int32]*dirWatch
	watchPaths  pathTrie[*dirWatch]
	queue       []*tracked // waiting for a worker
	outq        []*job     // paths outside the roots, waiting for a worker
	running     int
	epoch       uint64
	overflows   int
	resumed     int // hashes resumed at a checkpoint (resume.go)
	warnings    []string
	cookieFault string
	// The listing of new directories (lister.go).
	listQ       []*listReq     // waiting for the lister
	listing     int            // listings asked for and not done
	listAsked   int            // listings asked for, ever
	listEnded   int            // listings done, ever
	early       []inEvent      // events of watches not yet recorded
	removed     map[int32]bool // watches removed while listings were under way
	listWaiters []listWaiter

	calls   chan func()     // closures to run on the loop
	stopped chan struct{}   // closed when the loop has exited
	jobs    chan *job       // loop -> workers
	results chan *job       // workers -> loop
	saves   chan cache.Item // loop -> store writer
	deletes chan string     // loop -> store writer: entries to forget
	inject  chan []inEvent  // tests: events as if from the watcher
	// loop <-> lister (lister.go)
	listReqs chan *listReq
	listed   chan listResult
	cookies  cookieJar
	faults   storeFaults
	loopAt   loopState
	// testHookAdd, when set, is called before each inotify watch is added
	// and can make it fail.
	testHookAdd func(path string) error
	// testHookDone, when set, runs on a worker after each job, before
	// its result goes to the loop; testHookWaits, on the loop, when a
	// query starts waiting for a job.
	testHookDone  func(path string)
	testHookWaits func(path string)
	testDrop      bool // tests: events are lost, as in an overflow
}

// New opens the database and the watcher; Run serves.
func New(cfg Config) (*Daemon, error) {
	cfg.defaults()
	store, err := cache.Open(cfg.DB, nil)
	if err != nil {
		return nil, err
	}
	if store.Recovered != "" {
		cfg.Logger.Warn("database recovered", "path", cfg.DB, "err", store.Recovered)
	}
	in, err := newInotify()
	if err != nil {
		store.Close()
		return nil, err
	}
	d := &Daemon{
		cfg: cfg, log: cfg.Logger, store: store, in: in, started: time.Now(),
		roots: map[string]*root{}, tracked: map[string]*tracked{}, gitTracked: map[string]*tracked{}, gitWatches: map[string]int{}, dirty: map[*tracked]struct{}{}, maxTracked: maxTracked, maxGit: maxGitTracked, idleAfter: idleAfter, now: time.Now,
		watches: map[int32]*dirWatch{}, links: map[string][]*root{},
		calls: make(chan func()), stopped: make(chan struct{}), jobs: make(chan *job), results: make(chan *job, cfg.Workers),
		saves: make(chan cache.Item, 1024), deletes: make(chan string, 1024), inject: make(chan []inEvent, 1),
		listReqs: make(chan *listReq), listed: make(chan listResult, 1),
	}
	if err := d.mounts.open(); err != nil {
		d.log.Warn("cannot read the mount table: mounts inside roots go unnoticed", "err", err)
	}
	if store.Recovered != "" {
		d.warnings = append(d.warnings, store.Recovered)
	}
	return d, nil
}

// Run serves until ctx is done, then shuts down cleanly: it stops
// accepting, cancels running jobs, flushes the database and removes the
// socket.
func Run(ctx context.Context, cfg Config) error {
	d, err := New(cfg)
	if err != nil {
		return err
	}
	return d.Run(ctx)
}

// Run serves until ctx is done. It returns within about a second of
// that, whatever the clients and jobs are doing.
func (d *Daemon) Run(ctx context.Context) error {
	stuck := false // the loop or a worker did not stop: leave what they may hold
	defer func() {
		if !stuck {
			d.store.Close()
		}
	}()
	defer d.mounts.close()
	defer d.in.close()
	l := d.cfg.Listener
	if l == nil {
		var err error
		if l, err = api.Listen(d.cfg.Socket); err != nil {
			return err
		}
	}
	defer l.Close()
	d.cookies.parent, d.cookies.log = filepath.Dir(d.cfg.Socket), d.log
	if err := d.makeCookieDir(); err != nil {
		return err
	}
	defer d.cookies.close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for range d.cfg.Workers {
		wg.Go(func() { d.worker(ctx) })
	}
	wg.Go(func() { d.cookies.maker(ctx) })
	wg.Go(func() { d.watchMounts(ctx) })
	wg.Go(func() { d.lister(ctx) })
	go d.in.read()
	saved := make(chan struct{})
	go func() { d.storeWriter(); close(saved) }()

	srv := api.NewServer(ctx, d)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()

	d.log.Info("narhashd started", "socket", d.cfg.Socket, "db", d.cfg.DB, "workers", d.cfg.Workers)
	loopDone := make(chan struct{})
	go func() { d.loop(ctx); close(d.stopped); close(loopDone) }()
	if d.call(ctx, func() { d.startup() }) && d.cfg.Ready != nil {
		// Ready without waiting for the roots to be listed: a large
		// tree on a cold disk would keep systemd waiting past its start
		// timeout. A change made meanwhile is not lost: a query of the
		// root waits for its listing, which ends by touching the whole
		// root (lister.go).
		d.cfg.Ready()
	}

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-served:
		cancel()
	}
	if d.cfg.Stopping != nil {
		d.cfg.Stopping()
	}
	// Requests see ctx done (their base context) and end: subscriptions
	// with a last line saying why. Past a second, connections are cut.
	shutCtx, stop := context.WithTimeout(context.Background(), time.Second)
	if srv.Shutdown(shutCtx) != nil {
		srv.Close()
	}
	stop()
	// Everything below ends at once unless a system call hangs (a dead
	// network filesystem): then narhashd exits anyway, after 2 s.
	workers := make(chan struct{})
	go func() { <-loopDone; wg.Wait(); close(d.saves); <-saved; close(workers) }()
	select {
	case <-workers:
	case <-time.After(2 * time.Second):
		stuck = true
		d.loopAt.report(d.log)
		return errors.New("the event loop or a hash job did not stop within 2 s (a hung filesystem?): exiting without flushing the database")
	}
	d.log.Info("narhashd stopped")
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return nil
}

// callTimeout bounds a request's wait for the loop to take its call: past
// it the loop is stuck, which is a bug, and the request fails saying so
// rather than hang.
var callTimeout = 10 * time.Second

// errStuck is the answer when the loop does not take a call.
func errStuck() error {
	return api.Errorf(http.StatusServiceUnavailable, "narhashd's event loop did not answer within %v (a bug: please report it with the daemon's log, which has the stacks); restart narhashd", callTimeout)
}

// call runs fn on the loop and waits for it; false if the daemon stopped,
// ctx ended or the loop is stuck (the watchdog logs it).
func (d *Daemon) call(ctx context.Context, fn func()) bool {
	return d.callErr(ctx, fn) == nil
}

func (d *Daemon) callErr(ctx context.Context, fn func()) error {
	done := make(chan struct{})
	stuck := time.NewTimer(callTimeout)
	defer stuck.Stop()
	select {
	case d.calls <- func() { fn(); close(done) }:
	case <-ctx.Done():
		return errStopped
	case <-d.stopped:
		return errStopped
	case <-stuck.C:
		d.loopAt.report(d.log)
		return errStuck()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return errStopped
	}
}

// loop applies watcher events, runs calls, dispatches jobs and takes
// their results, in one goroutine. It never waits for the watcher's
// reader: watches are added and removed by plain system calls.
func (d *Daemon) loop(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		d.armTimer(timer)
		d.loopAt.idle()
		var listReqs chan *listReq // nil (never ready) while none waits
		var next *listReq
		if len(d.listQ) > 0 {
			listReqs, next = d.listReqs, d.listQ[0]
		}
		select {
		case listReqs <- next:
			d.listQ = d.listQ[1:]
		case res := <-d.listed:
			d.loopAt.busy("a listing")
			d.onListed(res)
		case <-ctx.Done():
			d.shutdown()
			return
		case batch, ok := <-d.in.out:
			if ok {
				d.loopAt.busy("events")
				d.onEvents(batch)
			}
		case batch := <-d.inject:
			d.onEvents(batch)
		case fn := <-d.calls:
			d.loopAt.busy("a request")
			fn()
		case j := <-d.results:
			d.loopAt.busy("a result")
			d.onResult(j)
		case <-timer.C:
			d.startDue(d.now())
		}
		d.dispatch(ctx)
	}
}

// armTimer sets the timer to the earliest debounced rehash, or stops it.
func (d *Daemon) armTimer(timer *time.Timer) {
	var next time.Time
	for t := range d.dirty {
		at, ok := t.agg.due()
		if !ok {
			delete(d.dirty, t)
			continue
		}
		if t.job == nil && (next.IsZero() || at.Before(next)) {
			next = at
		}
	}
	timer.Stop()
	if !next.IsZero() {
		timer.Reset(max(0, next.Sub(d.now())))
	}
}

// shutdown cancels every job and tells every waiter, of plain and of
// git views.
func (d *Daemon) shutdown() {
	for _, m := range []map[string]*tracked{d.tracked, d.gitTracked} {
		for _, t := range m {
			if t.job != nil {
				t.job.cancel()
			}
			t.fail(errStopped)
		}
	}
}
