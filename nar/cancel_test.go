//go:build linux

package nar

import (
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/narhash/narhash/nar/nartest"
	"golang.org/x/sys/unix"
)

// TestCancelRandom stops dumps at random points in every way: a context
// cancelled before, by the destination's Write, by another goroutine
// after a delay or at a Progress count, a deadline; a destination that
// fails or writes short. Plain, resumed and selected dumps, 1 to 8
// readers, some short of descriptors, some of a tree whose reads block.
// Each must fail with what stopped it, or, finished first, give the
// archive an unstopped dump gives; none may leave a goroutine or a file
// descriptor. The trees are new: the first dumps read files the careful
// way (stat, read, stat), those after a second or so the fast way.
// NARHASH_CANCEL_SEED replays a run (the seed is logged),
// NARHASH_CANCEL_ITER=i its iteration i; NARHASH_CANCEL_ROUNDS runs more.
func TestCancelRandom(t *testing.T) {
	rounds := uint64(120)
	if testing.Short() {
		rounds = 30
	}
	seed := cancelEnv(t, "NARHASH_CANCEL_SEED", rand.Uint64())
	rounds = cancelEnv(t, "NARHASH_CANCEL_ROUNDS", rounds)
	only := cancelEnv(t, "NARHASH_CANCEL_ITER", math.MaxUint64)
	t.Logf("seed %d, %d iterations (replay: NARHASH_CANCEL_SEED=%d)", seed, rounds, seed)
	trees := cancelTrees(t)
	goroutines, fds, procs := runtime.NumGoroutine(), openFDs(t), runtime.GOMAXPROCS(0)
	outcomes := map[string]int{}
	var parallel atomic.Int64 // streams read several chunks at once
	testHookParallel = func(started bool) {
		if started {
			parallel.Add(1)
		}
	}
	defer func() { testHookParallel = nil }()
	for i := range rounds {
		if only != math.MaxUint64 && i != only {
			continue
		}
		c := newCancelCase(rand.New(rand.NewPCG(seed, i)), trees)
		c.what = fmt.Sprintf("iteration %d: %s (replay: NARHASH_CANCEL_SEED=%d NARHASH_CANCEL_ITER=%d go test -race -run TestCancelRandom ./nar)",
			i, c, seed, i)
		outcome, err := c.run()
		if err != nil {
			t.Fatalf("%s: %v", c.what, err)
		}
		outcomes[c.stop.String()+": "+outcome]++
		checkReleased(t, c.what, goroutines, fds)
		if got := runtime.GOMAXPROCS(0); got != procs {
			t.Fatalf("%s: GOMAXPROCS is %d after the dump (DumpOptions.ColdProcs); want %d, as before", c.what, got, procs)
		}
	}
	t.Logf("outcomes: %v; %d streams read several chunks at once", outcomes, parallel.Load())
	if only == math.MaxUint64 && rounds >= 100 && parallel.Load() == 0 { // about 1 in 11 does
		t.Errorf("no stream was read several chunks at once: the test no longer stops such streams")
	}
}

// cancelEnv returns the value of the environment variable name, or def.
func cancelEnv(t *testing.T, name string, def uint64) uint64 {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("%s=%q: want a non-negative integer", name, s)
	}
	return v
}

// A cancelTree is a tree to dump and what an unstopped dump of it gives.
type cancelTree struct {
	name, root string
	want       cancelRef
	took       time.Duration // an unstopped dump's time, to spread delays over
	// Directories: an unstopped dump's checkpoints, the entries' paths
	// (to resume before) and selections.
	cps     *Checkpoints
	paths   []string
	sels    []*Selection
	selWant []cancelRef
	cold    bool // on the disk, its files evicted from the page cache before each dump
}

type cancelRef struct {
	sum  [sha256.Size]byte
	size int64
}

// cancelTrees builds the trees once: mixed (streamed files over 1 and 4
// MiB, 80 levels deep, symlinks, empty directories, executables), many
// small files for many batches, many directories for a walk that sends
// many batches early on (one per 32 directories, or per directory short
// of descriptors), a lone file of 22 chunks, and one whose reads block,
// with a file long enough to be read several chunks at once.
func cancelTrees(t *testing.T) []*cancelTree {
	base := nartest.TempDir(t)
	rng := rand.New(rand.NewPCG(2026, 10)) // the trees are fixed; the seed varies the stops
	// On the disk, with more batches of files than a dump keeps in
	// flight, written out so that cancelEvict drops them from the cache.
	cold := filepath.Join(t.TempDir(), "cold")
	b := &nartest.Builder{Root: cold}
	for i := range 240 {
		b.Dir(fmt.Sprintf("%d", i%4))
		b.File(fmt.Sprintf("%d/%03d", i%4, i), nartest.Bytes(rng, 1+rng.IntN(64<<10)), 0o644)
	}
	b.File("big", nartest.Bytes(rng, parallelFrom+3<<20+5), 0o644) // read several chunks at once
	must(t, b.Err)
	must(t, evictTree(cold, (*os.File).Sync))
	mixed, many, dirs := filepath.Join(base, "mixed"), filepath.Join(base, "many"), filepath.Join(base, "dirs")
	must(t, os.Mkdir(mixed, 0o755))
	must(t, nartest.Random(mixed, 10, 300))
	b = &nartest.Builder{Root: mixed}
	b.Dir("big")
	b.File("big/over1MiB", nartest.Bytes(rng, 1<<20+12345), 0o644)
	b.File("big/over4MiB", nartest.Bytes(rng, 9<<20+7), 0o755) // three chunks
	b.File("big/zz after", []byte("small, after the streamed ones"), 0o644)
	deep := strings.Repeat("deep/", 80) // deeper than the walk's window of open directories
	b.Dir(deep + "empty")
	b.File(deep+"bottom", []byte("#!/bin/sh\n"), 0o755)
	b.Symlink(strings.Repeat("../", 80)+"run.sh", deep+"up")
	b.Dir("empty/nested/empty")
	b.File("run.sh", []byte("#!/bin/sh\necho hi\n"), 0o755)
	b.Symlink("run.sh", "run-link")
	b.Symlink("nowhere", "dangling")
	b = &nartest.Builder{Root: many}
	for d := range 8 {
		b.Dir(fmt.Sprintf("%02d", d))
		for f := range 500 {
			b.File(fmt.Sprintf("%02d/%04x", d, f), nartest.Bytes(rng, rng.IntN(2000)), os.FileMode(0o644|0o111*(f%7/6)))
		}
	}
	b = &nartest.Builder{Root: dirs}
	for d := range 400 {
		b.Dir(fmt.Sprintf("%02d/%02d", d/20, d%20))
		b.File(fmt.Sprintf("%02d/%02d/f", d/20, d%20), []byte{byte(d)}, 0o644)
	}
	big := make([]byte, 21<<20+3) // more chunks than a reader sends ahead of the writer
	rand.NewChaCha8([32]byte{1}).Read(big)
	b = &nartest.Builder{Root: base}
	b.File("file", big, 0o644)
	must(t, b.Err)

	var trees []*cancelTree
	for _, tr := range []*cancelTree{{name: "mixed", root: mixed}, {name: "many", root: many}, {name: "dirs", root: dirs},
		{name: "file", root: filepath.Join(base, "file")}, {name: "cold", root: cold, cold: true}} {
		var opt DumpOptions
		if tr.name != "file" {
			tr.cps = &Checkpoints{Every: 64 << 10}
			opt.Checkpoints = tr.cps
			paths, err := nartest.Entries(tr.root)
			must(t, err)
			tr.paths = paths
		}
		start := time.Now()
		tr.want = cancelReference(t, tr.root, &opt)
		tr.took = time.Since(start)
		trees = append(trees, tr)
	}
	for range 2 { // about half the files and symlinks of the mixed tree, always with the large one
		sel := NewSelection()
		for _, p := range trees[0].paths {
			st, err := os.Lstat(filepath.Join(mixed, p))
			must(t, err)
			if !st.IsDir() && (rng.IntN(2) == 0 || p == "big/over4MiB") {
				must(t, sel.Add(p))
			}
		}
		trees[0].sels = append(trees[0].sels, sel)
		trees[0].selWant = append(trees[0].selWant, cancelReference(t, mixed, &DumpOptions{Select: sel}))
	}
	// Only files unchanged for racyMargin (2 s) are read the way that
	// tells a blocked read.
	nartest.WaitOlderThan(t, 2*time.Second, cold)
	return trees
}

// evictTree does f to every file under root, then drops its contents
// from the page cache.
func evictTree(root string, f func(*os.File) error) error {
	return filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		file, err := os.Open(p)
		if err != nil {
			return err
		}
		defer file.Close()
		if err := f(file); err != nil {
			return err
		}
		return unix.Fadvise(int(file.Fd()), 0, 0, unix.FADV_DONTNEED)
	})
}

// cancelReference dumps root unstopped. Nix, when installed, vouches for
// the whole trees' archives.
func cancelReference(t *testing.T, root string, opt *DumpOptions) cancelRef {
	t.Helper()
	h := sha256.New()
	res, err := Dump(context.Background(), h, root, opt)
	if err != nil {
		t.Fatalf("reference dump: %v", err)
	}
	ref := cancelRef{size: res.Size}
	h.Sum(ref.sum[:0])
	if nixHash, _ := exec.LookPath("nix-hash"); nixHash != "" && opt.Select == nil {
		out, err := exec.Command(nixHash, "--type", "sha256", root).Output()
		if got := strings.TrimSpace(string(out)); err != nil || got != hex.EncodeToString(ref.sum[:]) {
			t.Fatalf("reference dump of %s: sha256 %x, nix-hash says %s (%v)", root, ref.sum, got, err)
		}
	}
	return ref
}

// cancelStop is how a dump is stopped.
type cancelStop int

const (
	cancelEarly      cancelStop = iota // the context is cancelled before Dump
	cancelInWrite                      // the destination cancels after some bytes
	cancelAfterDelay                   // another goroutine cancels after a delay
	cancelAtProgress                   // another goroutine cancels once Progress reaches a count
	cancelDeadline                     // the context's deadline passes
	cancelWriteErr                     // the destination fails after some bytes
	cancelShortWrite                   // the destination writes short, with no error
	cancelStops
)

func (k cancelStop) String() string {
	return [...]string{"cancel before", "cancel in Write", "cancel after a delay", "cancel at a Progress",
		"deadline", "Write fails", "short write"}[k]
}

// cancelCase is one stopped dump.
type cancelCase struct {
	tree    *cancelTree
	stop    cancelStop
	cause   bool // the context is cancelled with a cause
	readers int
	from    *Checkpoint // resumed there
	cps     bool        // taking checkpoints
	sel     *Selection
	want    cancelRef // what an unstopped dump gives
	size    int64     // and how many bytes it writes
	point   int64     // where it stops: a delay in ns, or a count of entries or else bytes written
	entries bool
	yield   bool   // the destination yields its processor on every write
	fds     uint64 // if not 0, the RLIMIT_NOFILE during the dump
	// parallel: every stream long enough is read several chunks at once
	// (testColdStreams), not only those of the cold tree.
	parallel bool
	dst      *cancelWriter
	what     string // the case, for failures
}

func newCancelCase(rng *rand.Rand, trees []*cancelTree) *cancelCase {
	c := &cancelCase{tree: trees[rng.IntN(len(trees))], stop: cancelStop(rng.IntN(int(cancelStops))),
		cause: rng.IntN(2) == 0, readers: 1 + rng.IntN(8), yield: rng.IntN(4) == 0, parallel: rng.IntN(3) == 0}
	if rng.IntN(4) == 0 { // a walk keeps a few levels open, reopens the others through ".."
		c.fds = uint64(48 + rng.IntN(64))
	}
	c.want = c.tree.want
	if c.tree.cps != nil {
		switch rng.IntN(4) {
		case 0:
			p := c.tree.paths[rng.IntN(len(c.tree.paths))]
			c.from, c.cps = c.tree.cps.Before(p), true // nil before the first checkpoint: a full dump
		case 1:
			c.cps = true
		case 2:
			if len(c.tree.sels) > 0 {
				i := rng.IntN(len(c.tree.sels))
				c.sel, c.want = c.tree.sels[i], c.tree.selWant[i]
			}
		}
	}
	if c.size = c.want.size; c.from != nil {
		c.size -= c.from.Offset
	}
	// Stop points run up to a little past the end: some dumps finish first.
	c.entries = c.stop == cancelAtProgress && rng.IntN(3) == 0
	switch {
	case c.stop == cancelAfterDelay || c.stop == cancelDeadline:
		c.point = cancelPoint(rng, int64(c.tree.took))
	case c.entries:
		c.point = cancelPoint(rng, int64(len(c.tree.paths))+1)
	default:
		c.point = cancelPoint(rng, c.size+c.size/8)
	}
	return c
}

// cancelPoint returns a point in [0, n]: uniform, or as often in each
// halving of n down to a millionth, for the start of a dump, when the
// walk runs ahead of the writer, is where stops are hardest to handle.
func cancelPoint(rng *rand.Rand, n int64) int64 {
	if rng.IntN(2) == 0 {
		return rng.Int64N(n + 1)
	}
	return int64(float64(n) * math.Exp2(-20*rng.Float64()))
}

func (c *cancelCase) String() string {
	s := fmt.Sprintf("%s, %s tree, %d readers", c.stop, c.tree.name, c.readers)
	switch {
	case c.from != nil:
		s += fmt.Sprintf(", resumed at %q (offset %d)", c.from.Path, c.from.Offset)
	case c.cps:
		s += ", taking checkpoints"
	case c.sel != nil:
		s += ", a selection"
	}
	switch {
	case c.stop == cancelAfterDelay || c.stop == cancelDeadline:
		s += fmt.Sprintf(", after %v", time.Duration(c.point))
	case c.entries:
		s += fmt.Sprintf(", at %d entries", c.point)
	case c.stop != cancelEarly:
		s += fmt.Sprintf(", at %d bytes", c.point)
	}
	return s + fmt.Sprintf(", cause %v, yielding writer %v, RLIMIT_NOFILE %d (0: as it is), parallel streams forced %v", c.cause, c.yield, c.fds, c.parallel)
}

var errCancelTest = errors.New("the destination failed")

// cancelHang is how long a dump may take before the test takes it for
// hung: an unstopped one takes well under a second, even under -race.
const cancelHang = 30 * time.Second

// run dumps and checks the outcome: "stopped" or "finished".
func (c *cancelCase) run() (outcome string, err error) {
	ctx, cancel := context.Background(), context.CancelFunc(nil)
	cause := fmt.Errorf("stopped by the test: %s", c.stop)
	wantErr := context.Canceled
	switch {
	case c.stop == cancelDeadline && c.cause:
		ctx, cancel = context.WithTimeoutCause(ctx, time.Duration(c.point), cause)
		wantErr = cause
	case c.stop == cancelDeadline:
		ctx, cancel = context.WithTimeout(ctx, time.Duration(c.point))
		wantErr = context.DeadlineExceeded
	case c.cause:
		var cancelCause context.CancelCauseFunc
		ctx, cancelCause = context.WithCancelCause(ctx)
		cancel, wantErr = func() { cancelCause(cause) }, cause
	default:
		ctx, cancel = context.WithCancel(ctx)
	}
	defer cancel()
	var cancelled atomic.Bool // cancel was called, by the writer or the test
	stop := func() { cancelled.Store(true); cancel() }

	c.dst = &cancelWriter{cancelHash: sha256.New().(cancelHash), at: -1, yield: c.yield}
	switch c.stop {
	case cancelInWrite:
		c.dst.at, c.dst.cancel = c.point, stop
	case cancelWriteErr:
		c.dst.at, c.dst.fail, wantErr = c.point, errCancelTest, errCancelTest
	case cancelShortWrite:
		c.dst.at, c.dst.fail, wantErr = c.point, io.ErrShortWrite, io.ErrShortWrite
	}
	opt := &DumpOptions{Readers: c.readers, Progress: new(Progress), From: c.from, Select: c.sel, ColdProcs: DefaultColdProcs}
	if c.cps {
		opt.Checkpoints = c.tree.cps.Clone()
	}
	if c.tree.cold {
		if err := evictTree(c.tree.root, func(*os.File) error { return nil }); err != nil {
			return "", err
		}
	}
	testColdStreams = c.parallel
	defer func() { testColdStreams = false }()
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); c.fds != 0 && err == nil {
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: min(c.fds, lim.Max), Max: lim.Max}); err != nil {
			return "", err
		}
		defer unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	}
	done := make(chan struct{})
	var watcher sync.WaitGroup // joined before the leak check
	switch c.stop {
	case cancelEarly:
		stop()
	case cancelAfterDelay:
		defer time.AfterFunc(time.Duration(c.point), stop).Stop()
	case cancelAtProgress:
		watcher.Go(func() { cancelWatch(opt.Progress, c.entries, c.point, done, stop) })
	}
	// A dump that a stop does not end would hang the test until its
	// -timeout: fail sooner, saying which case and where everyone is.
	watchdog := time.AfterFunc(cancelHang, func() {
		panic(fmt.Sprintf("%s: Dump still running %v after it began:\n%s", c.what, cancelHang, allStacks()))
	})
	res, err := Dump(ctx, c.dst, c.tree.root, opt)
	watchdog.Stop()
	close(done)
	watcher.Wait()

	acted := c.dst.acted
	switch {
	case err == nil && (c.stop == cancelEarly || acted):
		return "", fmt.Errorf("the dump succeeded after it was stopped (acted %v)", acted)
	case err == nil:
		var sum [sha256.Size]byte
		c.dst.Sum(sum[:0])
		if sum != c.want.sum || res.Size != c.want.size || c.dst.n != c.size {
			return "", fmt.Errorf("the dump finished with sha256 %x, size %d, %d bytes written; an unstopped dump's is %x, size %d, %d bytes written",
				sum, res.Size, c.dst.n, c.want.sum, c.want.size, c.size)
		}
		return "finished", nil
	case !errors.Is(err, wantErr):
		return "", fmt.Errorf("got error %q, want %q", err, wantErr)
	case (c.stop == cancelInWrite || c.stop == cancelWriteErr || c.stop == cancelShortWrite) && !acted:
		return "", fmt.Errorf("got error %q before the destination stopped the dump", err)
	case c.dst.afterFail > 0:
		return "", fmt.Errorf("%d writes after the destination failed", c.dst.afterFail)
	case !cancelled.Load() && c.stop != cancelDeadline && c.dst.fail == nil:
		return "", fmt.Errorf("got error %q, but the context was not cancelled", err)
	}
	return "stopped", nil
}

// cancelWatch polls p until it reaches target entries or bytes, and then
// calls stop, or until done is closed.
func cancelWatch(p *Progress, entries bool, target int64, done <-chan struct{}, stop func()) {
	count := p.Bytes.Load
	if entries {
		count = p.Entries.Load
	}
	for count() < target {
		select {
		case <-done:
			return
		case <-time.After(50 * time.Microsecond):
		}
	}
	stop()
}

// cancelWriter hashes what a dump writes and, once the byte at is
// written, cancels the dump or fails. Its state can be saved and
// restored, as checkpoints need.
type cancelWriter struct {
	cancelHash
	n         int64 // bytes taken
	at        int64 // the byte at which to act; -1: never
	cancel    func()
	fail      error // returned, with the count of bytes before at, instead of cancelling
	yield     bool
	acted     bool
	afterFail int // writes after it failed
}

type cancelHash interface {
	hash.Hash
	encoding.BinaryMarshaler
	encoding.BinaryUnmarshaler
}

func (w *cancelWriter) Write(p []byte) (int, error) {
	if w.yield {
		runtime.Gosched()
	}
	if w.acted && w.fail != nil {
		w.afterFail++
	}
	k := len(p)
	if !w.acted && w.at >= 0 && w.n+int64(k) > w.at {
		w.acted = true
		if w.fail == nil {
			w.cancel()
		} else {
			k = int(w.at - w.n) // what it takes before failing
		}
	}
	w.cancelHash.Write(p[:k])
	w.n += int64(k)
	if k < len(p) && w.fail != io.ErrShortWrite { // a short count alone: Dump must see it
		return k, w.fail
	}
	return k, nil
}
