//go:build linux

package nar

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/narhash/narhash/nar/nartest"
)

// withBlockedReads runs f with every read counted as blocked, so that
// prefetchers start as they do in a cold dump, and returns how many files
// they warmed.
func withBlockedReads(t *testing.T, f func()) int64 {
	var warmed atomic.Int64
	testBlockedReads, testHookPrefetched = true, func() { warmed.Add(1) }
	defer func() { testBlockedReads, testHookPrefetched = false, nil }()
	f()
	return warmed.Load()
}

// TestPrefetchMatchesWriter: with prefetchers running, the archive is
// still the Writer's, and they did warm files.
func TestPrefetchMatchesWriter(t *testing.T) {
	trees := map[string]string{"edge": edgeTree(t), "arena": arenaEdgeTree(t)}
	root := filepath.Join(nartest.TempDir(t), "random")
	must(t, os.Mkdir(root, 0o755))
	must(t, nartest.Random(root, 11, 1500))
	trees["random"] = root
	want := map[string][]byte{}
	for name, root := range trees {
		want[name] = refDump(t, root)
	}
	warmed := withBlockedReads(t, func() {
		bothReadPaths(t, func(t *testing.T) {
			for name, root := range trees {
				for _, readers := range []int{1, 3} {
					if got, _ := dumpBytes(t, root, readers); !bytes.Equal(got, want[name]) {
						t.Errorf("%s, %d readers, prefetching: dump differs from the Writer's archive", name, readers)
					}
				}
			}
		})
	})
	if warmed == 0 {
		t.Errorf("no prefetcher warmed a file, though every read counted as blocked")
	}
}

// TestPrefetchReleasesEverything: dumps with prefetchers, finished,
// failed and cancelled at many points, leave no goroutine and no file
// descriptor behind (a prefetcher holds a directory reference per file).
func TestPrefetchReleasesEverything(t *testing.T) {
	root := filepath.Join(nartest.TempDir(t), "random")
	must(t, os.Mkdir(root, 0o755))
	must(t, nartest.Random(root, 12, 3000))
	goroutines, fds := runtime.NumGoroutine(), openFDs(t)
	withBlockedReads(t, func() {
		for n := 1; n < 40; n += 3 {
			ctx, cancel := context.WithCancel(context.Background())
			_, err := Dump(ctx, cancelAfter{cancel, new(int), n}, root, &DumpOptions{Readers: 1 + n%3})
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("cancelled after %d writes: %v", n, err)
			}
			cancel()
		}
		if _, err := Dump(context.Background(), failAfter{new(int), 5}, root, nil); err == nil || !errors.Is(err, errFailed) {
			t.Errorf("a failing destination: got %v", err)
		}
	})
	checkReleased(t, "dumps with prefetchers", goroutines, fds)
}

var errFailed = errors.New("destination failed")

// failAfter fails on its nth write.
type failAfter struct {
	n    *int
	fail int
}

func (f failAfter) Write(p []byte) (int, error) {
	if *f.n++; *f.n == f.fail {
		return 0, errFailed
	}
	return len(p), nil
}

// TestColdDumpPrefetches evicts a tree on the disk from the page cache
// and dumps it: the readers must find files not cached, prefetchers must
// start and warm files, and the archive must be the Writer's.
func TestColdDumpPrefetches(t *testing.T) {
	root := filepath.Join(t.TempDir(), "cold") // on the disk, unlike nartest.TempDir
	must(t, os.Mkdir(root, 0o755))
	var fs unix.Statfs_t
	must(t, unix.Statfs(root, &fs))
	if fs.Type == unix.TMPFS_MAGIC {
		t.Skipf("%s is on tmpfs, whose reads never block: set TMPDIR to a disk filesystem", root)
	}
	must(t, nartest.Random(root, 13, 3000))
	want := refDump(t, root)
	must(t, evictTree(root, (*os.File).Sync)) // written back, then dropped
	var warmed, procs atomic.Int64
	testHookPrefetched = func() {
		warmed.Add(1)
		procs.Store(int64(runtime.GOMAXPROCS(0)))
	}
	defer func() { testHookPrefetched = nil }()
	defer func(m time.Duration) { racyMargin = m }(racyMargin)
	racyMargin = -time.Hour // the fast path, where reads must not block
	before := runtime.GOMAXPROCS(0)
	coldProcs := before + 3
	var b bytes.Buffer
	if _, err := Dump(context.Background(), &b, root, &DumpOptions{ColdProcs: coldProcs}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.Bytes(), want) {
		t.Errorf("cold dump differs from the Writer's archive")
	}
	if warmed.Load() == 0 {
		t.Fatalf("a dump of files not cached started no prefetcher: no read was seen to block")
	}
	if got := procs.Load(); got != int64(coldProcs) {
		t.Errorf("GOMAXPROCS was %d while the prefetchers ran; want DumpOptions.ColdProcs, %d", got, coldProcs)
	}
	if after := runtime.GOMAXPROCS(0); after != before {
		t.Errorf("GOMAXPROCS is %d after the dump; want %d, as before", after, before)
	}
}

// Dumps that raise GOMAXPROCS together restore it when the last ends.
func TestRaiseProcs(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	restore1 := raiseProcs(before + 2)
	restore2 := raiseProcs(before + 2)
	if got := runtime.GOMAXPROCS(0); got != before+2 {
		t.Fatalf("GOMAXPROCS %d after raiseProcs(%d)", got, before+2)
	}
	restore1()
	if got := runtime.GOMAXPROCS(0); got != before+2 {
		t.Errorf("GOMAXPROCS %d once one of two raises ended; want %d still", got, before+2)
	}
	restore2()
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Errorf("GOMAXPROCS %d once both ended; want %d", got, before)
	}
	raiseProcs(before)() // no raise: nothing to restore
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Errorf("GOMAXPROCS %d after raiseProcs(%d); want it unchanged", got, before)
	}
}

// prefetchedEntries runs a dump of root with every read counted as
// blocked, into a destination that takes nothing until the prefetchers
// have listed or lstat'ed every entry of want (or 10 s have passed), and
// returns the directories and symlinks they did, by name.
func prefetchedEntries(t *testing.T, root string, opt *DumpOptions, want []string) map[string]int {
	t.Helper()
	var mu sync.Mutex
	seen := map[string]int{}
	all := make(chan struct{})
	testHookPrefetchedEntry = func(_ uint8, name string) {
		mu.Lock()
		defer mu.Unlock()
		seen[name]++
		for _, w := range want {
			if seen[w] == 0 {
				return
			}
		}
		select {
		case <-all:
		default:
			close(all)
		}
	}
	// The walk waits after its first batch of files until a reader has
	// read one, so that the prefetchers start at its next batch, the
	// walk still inside the tree's first directory, however slowly the
	// readers start (under the race detector, on a loaded machine, the
	// walk had left it before, and the root's other entries were no
	// longer pending).
	read := make(chan struct{})
	var readOnce, waitOnce sync.Once
	testHookRead = func(string) { readOnce.Do(func() { close(read) }) }
	testHookSentFiles = func() {
		waitOnce.Do(func() {
			select {
			case <-read:
			case <-time.After(10 * time.Second):
				t.Error("no reader read a file within 10 s of the first batch")
			}
		})
	}
	defer func() { testHookPrefetchedEntry, testHookRead, testHookSentFiles = nil, nil, nil }()
	withBlockedReads(t, func() {
		dst := gatedWriter{gate: all, deadline: time.After(10 * time.Second)}
		if _, err := Dump(context.Background(), &dst, root, opt); err != nil {
			t.Fatal(err)
		}
	})
	mu.Lock()
	defer mu.Unlock()
	return maps.Clone(seen)
}

// gatedWriter takes its first write once gate is closed or deadline
// passed, whichever comes first, and everything at once after that.
type gatedWriter struct {
	gate     <-chan struct{}
	deadline <-chan time.Time
	open     bool
}

func (w *gatedWriter) Write(p []byte) (int, error) {
	if !w.open {
		select {
		case <-w.gate:
		case <-w.deadline:
		}
		w.open = true
	}
	return len(p), nil
}

// pendingTree makes a tree whose walk starts the prefetchers from inside
// its first directory, "a": a holds 300 directories of one file each, so
// the walk sends about 9 batches from inside it (a batch takes files
// from 32 directories at most), and the packer starts the prefetchers at
// the first of them sent after a reader read a file. The root's other
// entries are then listed but not yet walked.
func pendingTree(t *testing.T, root string) {
	t.Helper()
	for i := range 300 {
		d := filepath.Join(root, "a", fmt.Sprintf("s%03d", i))
		must(t, os.MkdirAll(d, 0o755))
		must(t, os.WriteFile(filepath.Join(d, "f"), []byte("x"), 0o644))
	}
}

// TestPrefetchPending: the prefetchers, once started, list the
// directories and lstat the symlinks that the walk listed before they
// started and has not reached yet: here the root's, listed first.
func TestPrefetchPending(t *testing.T) {
	root := filepath.Join(nartest.TempDir(t), "pending")
	pendingTree(t, root)
	var want []string
	for i := range 8 {
		d := fmt.Sprintf("d%02d", i)
		must(t, os.MkdirAll(filepath.Join(root, d, "sub"), 0o755))
		must(t, os.Symlink("target", filepath.Join(root, "l"+d)))
		want = append(want, d, "l"+d)
	}
	seen := prefetchedEntries(t, root, nil, want)
	for _, name := range want {
		if seen[name] == 0 {
			t.Errorf("the prefetchers never warmed %s, an entry of the root that the walk had listed but not reached when they started", name)
		}
	}
	if seen["sub"] == 0 {
		t.Errorf("the prefetchers never listed d*/sub, which they found listing d*")
	}
}

// TestPrefetchSelection: with a Selection, the prefetchers list only
// directories the dump walks, as deep as they go, and lstat only the
// symlinks it holds; never an untracked tree, which may be large.
func TestPrefetchSelection(t *testing.T) {
	root := filepath.Join(nartest.TempDir(t), "sel")
	pendingTree(t, root)
	sel := NewSelection()
	for i := range 300 {
		must(t, sel.Add(fmt.Sprintf("a/s%03d/f", i)))
	}
	for _, d := range []string{"b/keep/deep", "b/skip/deep", "skip/deep"} {
		must(t, os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	must(t, os.WriteFile(filepath.Join(root, "b/keep/deep/f"), nil, 0o644))
	must(t, sel.Add("b/keep/deep/f"))
	must(t, os.Symlink("x", filepath.Join(root, "b/keep/link")))
	must(t, sel.Add("b/keep/link"))
	must(t, os.Symlink("x", filepath.Join(root, "b/keep/untracked-link")))
	seen := prefetchedEntries(t, root, &DumpOptions{Select: sel}, []string{"b", "keep", "deep", "link"})
	for _, name := range []string{"b", "keep", "deep", "link"} {
		if seen[name] == 0 {
			t.Errorf("the prefetchers never warmed %s, which the dump walks", name)
		}
	}
	for _, name := range []string{"skip", "untracked-link"} {
		if seen[name] != 0 {
			t.Errorf("the prefetchers warmed %s, which the Selection leaves out", name)
		}
	}
}

// wideTree makes a tree like botocore's data: one directory of 400
// subdirectories, each with two of its own holding a file. A prefetcher
// listing one of the 400 holds it open until its two are warmed.
func wideTree(t *testing.T, root string) {
	t.Helper()
	for i := range 400 {
		for _, v := range []string{"v1", "v2"} {
			d := filepath.Join(root, "a", fmt.Sprintf("s%03d", i), v)
			must(t, os.MkdirAll(d, 0o755))
			must(t, os.WriteFile(filepath.Join(d, "f"), []byte(v), 0o644))
		}
	}
}

// TestColdDumpFDLimit: a dump whose reads block keeps to a low
// RLIMIT_NOFILE, as a warm one does, with its readers, prefetchers and
// what they hold; it failed with EMFILE under 1024 on a real tree
// (pyenv's, which holds botocore), and under 256 on Go's module cache.
func TestColdDumpFDLimit(t *testing.T) {
	root := filepath.Join(nartest.TempDir(t), "wide")
	wideTree(t, root)
	want := refDump(t, root)
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	for _, n := range []uint64{64, 128} {
		if n > lim.Max {
			t.Skipf("RLIMIT_NOFILE's hard limit is %d, under %d", lim.Max, n)
		}
		warmed := withBlockedReads(t, func() {
			for range 3 {
				must(t, unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: n, Max: lim.Max}))
				var b bytes.Buffer
				_, err := Dump(context.Background(), &b, root, &DumpOptions{Readers: 2})
				must(t, unix.Setrlimit(unix.RLIMIT_NOFILE, &lim))
				if err != nil {
					t.Fatalf("cold dump under RLIMIT_NOFILE %d: %v", n, err)
				}
				if !bytes.Equal(b.Bytes(), want) {
					t.Fatalf("cold dump under RLIMIT_NOFILE %d differs from the Writer's archive", n)
				}
			}
		})
		if warmed == 0 {
			t.Errorf("under RLIMIT_NOFILE %d, no prefetcher warmed a file: the test did not test a cold dump", n)
		}
	}
}

// TestFDSizes: under any RLIMIT_NOFILE from 32 up, the walk's worst case
// (its window, and the directories of the batches in flight) and what a
// cold dump adds (a descriptor per reader and prefetcher, and the
// directories the prefetch queue holds open) each stay within a quarter
// of it; under a high one, nothing is cut.
func TestFDSizes(t *testing.T) {
	for limit := uint64(32); limit < 80000; limit += 1 + limit/64 {
		s := fdSizesFor(limit)
		if walk := s.window + s.batches*s.perBatch; uint64(walk) > limit/4 {
			t.Errorf("limit %d: the walk may hold %d descriptors (window %d, %d batches of %d directories), over a quarter", limit, walk, s.window, s.batches, s.perBatch)
		}
		readers := min(s.readers, 256) // warm, GOMAXPROCS as high as 256
		if cold := readers + s.prefetchers + s.pinned; uint64(cold) > limit/4 {
			t.Errorf("limit %d: a cold dump may add %d descriptors (%d readers, %d prefetchers, %d queued directories), over a quarter", limit, cold, readers, s.prefetchers, s.pinned)
		}
		if s.batches < 2 || s.readers < 1 || s.prefetchers < 1 || s.pinned < 1 || s.window < 2 {
			t.Errorf("limit %d: %+v leaves a stage nothing to work with", limit, s)
		}
	}
	full := fdSizes{window: 64, perBatch: 32, batches: coldBatches, readers: 1 << 30, prefetchers: maxPrefetchers, pinned: aheadFiles}
	if s := fdSizesFor(1 << 20); s != full {
		t.Errorf("under a limit of 2^20: %+v, want the full sizes %+v", s, full)
	}
}

// TestFewBatches: a dump whose descriptor budget allows only two or three
// batches in flight (RLIMIT_NOFILE shared by many concurrent dumps) must
// finish. Its batches hold only symlinks, so none waits for a reader, and
// the writer, which gathers written batches before giving them back,
// never has to wait: if it may gather all of them, the walker waits
// forever for one.
func TestFewBatches(t *testing.T) {
	root := t.TempDir()
	for i := range 3 * batchItems {
		must(t, os.Symlink("target", filepath.Join(root, fmt.Sprintf("l%05d", i))))
	}
	want := refDump(t, root)
	var lim unix.Rlimit
	must(t, unix.Getrlimit(unix.RLIMIT_NOFILE, &lim))
	for _, perDump := range []uint64{8, 20} { // 2 and 3 batches
		if n := fdSizesFor(perDump).batches; n > 3 {
			t.Fatalf("a dump under %d descriptors may have %d batches: the test no longer tests a dump with few", perDump, n)
		}
		others := int32(min(lim.Cur/perDump, 1<<30))
		activeDumps.Add(others - 1) // with the dump itself, lim.Cur/perDump
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		var b bytes.Buffer
		_, err := Dump(ctx, &b, root, &DumpOptions{Readers: 1})
		cancel()
		activeDumps.Add(1 - others)
		if err != nil {
			t.Fatalf("dump with %d batches in flight (%d descriptors a dump): %v", fdSizesFor(perDump).batches, perDump, err)
		}
		if !bytes.Equal(b.Bytes(), want) {
			t.Fatalf("dump with %d descriptors a dump differs from the Writer's archive", perDump)
		}
	}
}
