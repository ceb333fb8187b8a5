//go:build linux

package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/narhash/narhash/api"
	"github.com/narhash/narhash/cache"
	"github.com/narhash/narhash/hasher"
	"github.com/narhash/narhash/nar/nartest"
	"golang.org/x/sys/unix"
)

// running is a daemon started for a test.
type running struct {
	d      *Daemon
	c      *api.Client
	cfg    Config
	cancel context.CancelFunc
	done   chan error
}

// start runs a daemon on fresh socket and database paths (unless cfg has
// them) and waits until it answers.
func start(t *testing.T, cfg Config, setup ...func(*Daemon)) *running {
	t.Helper()
	base := nartest.TempDir(t)
	if cfg.Socket == "" {
		cfg.Socket = filepath.Join(base, "run", "narhashd.sock")
	}
	if cfg.DB == "" {
		cfg.DB = filepath.Join(base, "state", "cache.db")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Quiet == 0 {
		cfg.Quiet = 5 * time.Millisecond
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range setup {
		f(d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{d: d, c: &api.Client{Socket: d.cfg.Socket}, cfg: d.cfg, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- d.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := r.c.Status(context.Background()); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("daemon did not come up")
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop shuts the daemon down and checks that it did so cleanly.
func (r *running) stop(t *testing.T) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("daemon did not stop")
	}
	if _, err := os.Lstat(r.cfg.Socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket %s left behind", r.cfg.Socket)
	}
}

func offline(t *testing.T, path string) string {
	t.Helper()
	res, err := hasher.HashPath(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return res.Hash.Format(hasher.Nix32)
}

func query(t *testing.T, c *api.Client, path string) api.HashResult {
	t.Helper()
	res, err := c.Hash(context.Background(), path, "", false)
	if err != nil {
		t.Fatalf("query %s: %v", path, err)
	}
	return res
}

func newTree(t *testing.T) string {
	t.Helper()
	root := filepath.Join(nartest.TempDir(t), "tree")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := nartest.Random(root, 7, 150); err != nil {
		t.Fatal(err)
	}
	return root
}

// edit makes one random change of the kinds an editor, a build or a VCS
// makes, and says what it did.
func edit(rng *rand.Rand, root string) string {
	var files, dirs, links []string
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		switch {
		case err != nil:
		case d.Type().IsRegular():
			files = append(files, p)
		case d.Type()&os.ModeSymlink != 0:
			links = append(links, p)
		case d.IsDir():
			dirs = append(dirs, p)
		}
		return nil
	})
	pick := func(s []string) string { return s[rng.IntN(len(s))] }
	n := rng.Uint32()
	switch k := rng.IntN(10); {
	case k == 0 && len(files) > 0:
		f := pick(files)
		os.WriteFile(f, nartest.Bytes(rng, rng.IntN(500)), 0o644)
		return "rewrite " + f
	case k == 1 && len(files) > 0:
		// Same size, old mtime restored: only ctime and inotify tell.
		f := pick(files)
		st, err := os.Stat(f)
		if err != nil {
			return "skip"
		}
		os.WriteFile(f, nartest.Bytes(rng, int(st.Size())), st.Mode())
		os.Chtimes(f, st.ModTime(), st.ModTime())
		return "same-size rewrite " + f
	case k == 2 && len(files) > 0:
		f := pick(files)
		fh, err := os.OpenFile(f, os.O_APPEND|os.O_WRONLY, 0)
		if err == nil {
			fh.Write([]byte("appended"))
			fh.Close()
		}
		return "append " + f
	case k == 3:
		p := filepath.Join(pick(dirs), fmt.Sprintf("new%d", n))
		os.WriteFile(p, []byte("new file"), 0o644)
		return "create " + p
	case k == 4 && len(files) > 1:
		f := pick(files)
		os.Remove(f)
		return "delete " + f
	case k == 5:
		p := filepath.Join(pick(dirs), fmt.Sprintf("nest%d/a/b", n))
		os.MkdirAll(p, 0o755)
		os.WriteFile(filepath.Join(p, "f"), []byte("deep"), 0o644)
		os.WriteFile(filepath.Join(filepath.Dir(p), "g"), []byte("mid"), 0o755)
		return "mkdir -p with files " + p
	case k == 6 && len(files) > 0:
		f := pick(files)
		os.Rename(f, filepath.Join(pick(dirs), fmt.Sprintf("moved%d", n)))
		return "rename " + f
	case k == 7 && len(dirs) > 1:
		d := pick(dirs[1:])
		os.Rename(d, filepath.Join(root, fmt.Sprintf("dirmoved%d", n)))
		return "rename dir " + d
	case k == 8 && len(files) > 0:
		f := pick(files)
		st, err := os.Stat(f)
		if err == nil {
			os.Chmod(f, st.Mode()^0o100)
		}
		return "chmod " + f
	case k == 9 && len(links) > 0:
		l := pick(links)
		os.Remove(l)
		os.Symlink(fmt.Sprintf("retargeted%d", n), l)
		return "retarget " + l
	}
	return "skip"
}

// TestQueryAfterEveryChange makes random changes, each followed at once
// by a query, which must equal the offline hash of the tree: no stale
// answer, ever.
func TestQueryAfterEveryChange(t *testing.T) {
	root := newTree(t)
	r := start(t, Config{Watch: []string{root}})
	rng := rand.New(rand.NewPCG(11, 12))
	n := 300
	if testing.Short() {
		n = 60
	}
	for i := range n {
		what := edit(rng, root)
		got := query(t, r.c, root)
		if want := offline(t, root); got.Hash != want {
			t.Fatalf("change %d (%s): daemon says %s (%s), the tree hashes to %s", i, what, got.Hash, got.Source, want)
		}
	}
	// A path inside the root is tracked like a root.
	sub := filepath.Join(root, "inner")
	os.MkdirAll(sub, 0o755)
	for i := range 20 {
		os.WriteFile(filepath.Join(sub, "f"), []byte(fmt.Sprint(i)), 0o644)
		if got, want := query(t, r.c, sub).Hash, offline(t, sub); got != want {
			t.Fatalf("sub-path, change %d: %s, want %s", i, got, want)
		}
	}
}

// TestRootRecreated: a root removed and made anew is watched again.
func TestRootRecreated(t *testing.T) {
	root := newTree(t)
	r := start(t, Config{Watch: []string{root}})
	query(t, r.c, root)
	os.RemoveAll(root)
	if _, err := r.c.Hash(context.Background(), root, "", false); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("query of a removed root: %v", err)
	}
	os.MkdirAll(filepath.Join(root, "again"), 0o755)
	os.WriteFile(filepath.Join(root, "again", "f"), []byte("1"), 0o644)
	if got, want := query(t, r.c, root), offline(t, root); got.Hash != want {
		t.Fatalf("recreated root: %s, want %s", got.Hash, want)
	}
	os.WriteFile(filepath.Join(root, "again", "f"), []byte("2"), 0o644)
	if got, want := query(t, r.c, root), offline(t, root); got.Hash != want {
		t.Fatalf("change in the recreated root: %s, want %s", got.Hash, want)
	}
}

// TestOutsideRoots: a path outside every root is hashed on demand and
// its cached entry is checked by a stat walk.
func TestOutsideRoots(t *testing.T) {
	r := start(t, Config{})
	dir := newTree(t)
	first := query(t, r.c, dir)
	if first.Hash != offline(t, dir) || first.Source != "computed" || first.Root != "" {
		t.Fatalf("first query: %+v", first)
	}
	os.WriteFile(filepath.Join(dir, "added"), []byte("x"), 0o644)
	if got := query(t, r.c, dir); got.Hash != offline(t, dir) {
		t.Fatalf("after a change: %s", got.Hash)
	}
	if _, err := r.c.Hash(context.Background(), filepath.Join(dir, "missing"), "", false); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing path: %v", err)
	}
	// --watch makes it a root, remembered in the database.
	if got, err := r.c.Hash(context.Background(), dir, "sri", true); err != nil || got.Root != dir || !strings.HasPrefix(got.Hash, "sha256-") {
		t.Fatalf("query --watch: %+v %v", got, err)
	}
	roots, _ := r.c.Roots(context.Background())
	if len(roots) != 1 || roots[0].Path != dir {
		t.Errorf("roots %+v", roots)
	}
}

// TestRestart: changes made while the daemon is down are seen, and
// unchanged cached entries are served after a stat walk.
func TestRestart(t *testing.T) {
	root := newTree(t)
	base := nartest.TempDir(t)
	cfg := Config{Watch: []string{root}, Socket: filepath.Join(base, "s.sock"), DB: filepath.Join(base, "cache.db")}
	r := start(t, cfg)
	h1 := query(t, r.c, root)
	r.stop(t)

	r = start(t, cfg)
	if got := query(t, r.c, root); got.Hash != h1.Hash {
		t.Fatalf("unchanged tree after restart: %s, want %s", got.Hash, h1.Hash)
	}
	r.stop(t)

	os.WriteFile(filepath.Join(root, "while-down"), []byte("x"), 0o644)
	r = start(t, Config{Socket: cfg.Socket, DB: cfg.DB}) // the root comes from the database
	if got, want := query(t, r.c, root), offline(t, root); got.Hash != want {
		t.Fatalf("change made while down: %s, want %s", got.Hash, want)
	}
}

func TestDamagedDatabase(t *testing.T) {
	base := nartest.TempDir(t)
	db := filepath.Join(base, "cache.db")
	os.WriteFile(db, []byte(strings.Repeat("garbage", 5000)), 0o600)
	root := newTree(t)
	r := start(t, Config{Watch: []string{root}, DB: db})
	if got := query(t, r.c, root); got.Hash != offline(t, root) {
		t.Fatal("wrong hash with a rebuilt database")
	}
	st, err := r.c.Status(context.Background())
	if err != nil || len(st.Warnings) == 0 || !strings.Contains(st.Warnings[0], "damaged") {
		t.Errorf("status warnings %q, %v", st.Warnings, err)
	}
}

func TestSecondDaemon(t *testing.T) {
	r := start(t, Config{})
	begin := time.Now()
	_, err := New(Config{DB: r.cfg.DB, Socket: r.cfg.Socket + "2"})
	if !errors.Is(err, cache.ErrLocked) || !strings.Contains(err.Error(), r.cfg.DB) {
		t.Fatalf("second daemon on the same database: %v", err)
	}
	if d := time.Since(begin); d > 3*time.Second {
		t.Errorf("took %v to fail", d)
	}
	// And on the same socket.
	d2, err := New(Config{DB: r.cfg.DB + "2", Socket: r.cfg.Socket, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := d2.Run(context.Background()); !errors.Is(err, api.ErrRunning) {
		t.Fatalf("second daemon on the same socket: %v", err)
	}
}

// TestStaleSocket: a socket file nothing answers on is replaced.
func TestStaleSocket(t *testing.T) {
	sock := filepath.Join(nartest.TempDir(t), "s.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	if _, err := os.Lstat(sock); err != nil {
		t.Fatal("no stale socket to test with")
	}
	r := start(t, Config{Socket: sock})
	if _, err := r.c.Status(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestOverflow: events lost to an overflow (here: a directory whose watch
// is dropped, then an injected overflow) lead to a rescan and correct
// answers, and status reports the new epoch.
func TestOverflow(t *testing.T) {
	root := newTree(t)
	r := start(t, Config{Watch: []string{root}})
	query(t, r.c, root)
	hidden := filepath.Join(root, "hidden")
	os.Mkdir(hidden, 0o755)
	query(t, r.c, root)
	r.d.call(context.Background(), func() {
		w, _ := r.d.watchPaths.get(hidden)
		r.d.dropWatch(w, false)
	})
	os.WriteFile(filepath.Join(hidden, "unseen"), []byte("lost event"), 0o644)
	r.d.inject <- []inEvent{{mask: unix.IN_Q_OVERFLOW}}
	if got, want := query(t, r.c, root), offline(t, root); got.Hash != want || got.Epoch != 1 {
		t.Fatalf("after overflow: %s epoch %d, want %s epoch 1", got.Hash, got.Epoch, want)
	}
	// The rescan watches the directory again.
	os.WriteFile(filepath.Join(hidden, "seen"), []byte("x"), 0o644)
	if got, want := query(t, r.c, root), offline(t, root); got.Hash != want {
		t.Fatalf("after rescan: %s, want %s", got.Hash, want)
	}
	st, _ := r.c.Status(context.Background())
	if st.Overflows != 1 || st.Epoch != 1 {
		t.Errorf("status: %d overflows, epoch %d", st.Overflows, st.Epoch)
	}
}

// TestConcurrentClients: 200 clients query while the tree changes; every
// answer must be the hash of a state the tree had at or after the moment
// the query was sent.
func TestConcurrentClients(t *testing.T) {
	root := newTree(t)
	file := filepath.Join(root, "churn")
	const versions = 40
	hashes := make([]string, versions)
	for v := range versions {
		os.WriteFile(file, []byte(fmt.Sprintf("version %d", v)), 0o644)
		hashes[v] = offline(t, root)
	}
	os.WriteFile(file, []byte("version 0"), 0o644)
	r := start(t, Config{Watch: []string{root}})
	var current atomic.Int64 // the version on disk; written before it is published
	stop := make(chan struct{})
	var churn sync.WaitGroup
	churn.Go(func() {
		for v := 1; v < versions; v++ {
			select {
			case <-stop:
				return
			case <-time.After(3 * time.Millisecond):
			}
			// Made beside the root and renamed in: the tree goes from one
			// version to the next, with no truncated file between (which
			// would be a state the daemon may rightly answer).
			tmp := filepath.Join(filepath.Dir(root), "churn.tmp")
			os.WriteFile(tmp, []byte(fmt.Sprintf("version %d", v)), 0o644)
			os.Rename(tmp, file)
			current.Store(int64(v))
		}
	})
	var wg sync.WaitGroup
	var bad atomic.Int64
	for range 200 {
		wg.Go(func() {
			for range 3 {
				before := int(current.Load())
				got, err := r.c.Hash(context.Background(), root, "", false)
				if err != nil {
					t.Error(err)
					bad.Add(1)
					return
				}
				ok := false
				for v := before; v < versions; v++ {
					ok = ok || got.Hash == hashes[v]
				}
				if !ok {
					t.Errorf("answer %s is not the hash of version %d or later", got.Hash, before)
					bad.Add(1)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	churn.Wait()
	if bad.Load() > 0 {
		t.Fatalf("%d bad answers", bad.Load())
	}
}

// subscription follows the hash lines of a path for a test, until stop
// or the test's end.
type subscription struct {
	t     *testing.T
	lines chan string
	stop  context.CancelFunc
}

func subscribe(t *testing.T, r *running, path string) *subscription {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s := &subscription{t: t, lines: make(chan string, 16), stop: cancel}
	go r.c.Subscribe(ctx, path, "", func(h api.HashResult) error {
		line := h.Hash
		if h.Failed != "" {
			line = "failed: " + h.Failed
		}
		select {
		case s.lines <- line:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	return s
}

// next returns the next line, failing the test if none comes in 10 s.
func (s *subscription) next() string {
	s.t.Helper()
	select {
	case h := <-s.lines:
		return h
	case <-time.After(10 * time.Second):
		s.t.Fatal("no update from the subscription in 10 s")
		return ""
	}
}

// until returns when the line want comes (lines of intermediate states
// are fine), failing the test, naming what, if it does not in 10 s.
func (s *subscription) until(want, what string) {
	s.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case h := <-s.lines:
			if h == want {
				return
			}
		case <-deadline:
			s.t.Fatalf("the subscriber did not hear of %s in 10 s", what)
		}
	}
}

// TestSubscribeFailure: a change that leaves the tree impossible to hash
// (a FIFO in it) is told to the subscriber, whose hash no longer
// describes the tree; once the change is undone, the hash follows, though
// it is the one sent before the failure.
func TestSubscribeFailure(t *testing.T) {
	root := newTree(t)
	r := start(t, Config{Watch: []string{root}})
	s := subscribe(t, r, root)
	before := offline(t, root)
	if h := s.next(); h != before {
		t.Fatalf("first line %s, want %s", h, before)
	}
	fifo := filepath.Join(root, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	if h := s.next(); !strings.HasPrefix(h, "failed: ") || !strings.Contains(h, "named pipe") {
		t.Fatalf("after a FIFO appeared: %q, want the failure", h)
	}
	if err := os.Remove(fifo); err != nil {
		t.Fatal(err)
	}
	if h := s.next(); h != before {
		t.Fatalf("after the FIFO went: %q, want %s again", h, before)
	}
}

func TestSubscribe(t *testing.T) {
	root := newTree(t)
	r := start(t, Config{Watch: []string{root}})
	s := subscribe(t, r, root)
	if h := s.next(); h != offline(t, root) {
		t.Fatalf("first line %s", h)
	}
	for i := range 3 {
		os.WriteFile(filepath.Join(root, "edited"), []byte(fmt.Sprint(i)), 0o644)
		s.until(offline(t, root), fmt.Sprintf("edit %d", i))
	}
	ctx := context.Background()
	if _, err := r.c.Hash(ctx, root, "", false); err != nil {
		t.Fatal(err)
	}
	err := r.c.Subscribe(ctx, "/nonexistent/outside", "", func(api.HashResult) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "not in a watched root") {
		t.Errorf("subscribe outside roots: %v", err)
	}
}
