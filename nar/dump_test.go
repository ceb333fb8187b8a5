package nar

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/narhash/narhash/nar/nartest"
)

func dumpBytes(t *testing.T, path string, readers int) ([]byte, DumpResult) {
	t.Helper()
	var b bytes.Buffer
	res, err := Dump(context.Background(), &b, path, &DumpOptions{Readers: readers})
	if err != nil {
		t.Fatal(err)
	}
	if res.Size != int64(b.Len()) {
		t.Errorf("result size %d, wrote %d", res.Size, b.Len())
	}
	return b.Bytes(), res
}

// TestDumpMatchesNixFixture rebuilds the tree gen.sh gave Nix and compares
// our dump with the archive Nix wrote.
func TestDumpMatchesNixFixture(t *testing.T) {
	root := filepath.Join(nartest.TempDir(t), "mixed")
	b := &nartest.Builder{Root: root}
	b.Dir("sub/deeper")
	b.File("run.sh", []byte("#!/bin/sh\necho hi\n"), 0o755)
	b.File("B", []byte("x"), 0o644)
	b.File("_", []byte("yy"), 0o644)
	b.File("a", nil, 0o644)
	b.File("sub/eight", []byte("12345678"), 0o644)
	b.File("sub/nine", []byte("123456789"), 0o644)
	b.Symlink("../run.sh", "sub/link")
	b.File("caf\xc3\xa9", []byte("caf\xc3\xa9"), 0o644)
	b.File("\xff\xfe", []byte("raw"), 0o644)
	must(t, b.Err)
	want, err := os.ReadFile("../testdata/mixed.nar")
	must(t, err)
	bothReadPaths(t, func(t *testing.T) {
		if got, _ := dumpBytes(t, root, 0); !bytes.Equal(got, want) {
			t.Fatalf("dump differs from Nix's mixed.nar")
		}
	})
}

func edgeTree(t *testing.T) string {
	t.Helper()
	root := filepath.Join(nartest.TempDir(t), "edge")
	must(t, os.Mkdir(root, 0o755))
	must(t, nartest.EdgeCases(root))
	return root
}

func TestDumpReadersAgree(t *testing.T) {
	root := edgeTree(t)
	want, res := dumpBytes(t, root, 1)
	for _, readers := range []int{2, 3, 8} {
		got, res2 := dumpBytes(t, root, readers)
		if !bytes.Equal(got, want) {
			t.Errorf("%d readers: archive differs from 1 reader's", readers)
		}
		if res2.Fingerprint != res.Fingerprint {
			t.Errorf("%d readers: fingerprint differs", readers)
		}
	}
	if out, err := copyArchive(want); err != nil || !bytes.Equal(out, want) {
		t.Errorf("dump does not read back: %v", err)
	}
}

func TestFingerprint(t *testing.T) {
	root := edgeTree(t)
	_, res := dumpBytes(t, root, 0)
	fp, stats, err := StatTree(context.Background(), root)
	must(t, err)
	if fp != res.Fingerprint || stats != res.DumpStats {
		t.Fatalf("StatTree %+v %+v, Dump %+v %+v", fp, stats, res.Fingerprint, res.DumpStats)
	}
	for _, change := range []func(){
		func() { os.WriteFile(filepath.Join(root, "names/a"), []byte("A"), 0o644) },
		func() { os.Chmod(filepath.Join(root, "modes/0644"), 0o755) },
		func() { os.Remove(filepath.Join(root, "links/loop")) },
		func() { os.Mkdir(filepath.Join(root, "empty/new"), 0o755) },
	} {
		change()
		fp2, _, err := StatTree(context.Background(), root)
		must(t, err)
		if fp2.Digest == fp.Digest {
			t.Errorf("fingerprint unchanged after a change")
		}
		fp = fp2
	}
}

// TestTornRead changes a file every time it has been read and before it
// is stat'ed again (the fast read, then the careful one): the dump must
// fail with ErrChanged, whatever the change.
func TestTornRead(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		change     func(path string) error
	}{
		{"append", "small", func(p string) error { return nartest.AppendTo(p, "more") }},
		{"same size, old mtime", "small", func(p string) error {
			st, _ := os.Stat(p)
			if err := os.WriteFile(p, []byte("XXXXXXXX"), 0o644); err != nil {
				return err
			}
			return os.Chtimes(p, st.ModTime(), st.ModTime())
		}},
		{"truncate", "small", func(p string) error { return os.Truncate(p, 1) }},
		{"replace", "small", func(p string) error {
			if err := os.WriteFile(p+".new", []byte("abcdefgh"), 0o644); err != nil {
				return err
			}
			return os.Rename(p+".new", p)
		}},
		{"delete", "small", func(p string) error {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			return nil
		}},
		{"chmod", "small", func(p string) error { return os.Chmod(p, 0o755) }},
		{"big append", "big", func(p string) error { return nartest.AppendTo(p, "more") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := nartest.TempDir(t)
			b := &nartest.Builder{Root: root}
			b.File("small", []byte("12345678"), 0o644)
			b.File("small.other", []byte("abcdefgh"), 0o644)
			b.File("big", make([]byte, 2*arenaSize+5), 0o644)
			must(t, b.Err)
			target := filepath.Join(root, tc.file)
			testHookRead = func(path string) {
				if path == target {
					if err := tc.change(path); err != nil {
						t.Error(err)
					}
				}
			}
			defer func() { testHookRead = nil }()
			_, err := Dump(context.Background(), io.Discard, root, nil)
			if !errors.Is(err, ErrChanged) || !strings.Contains(err.Error(), target) {
				t.Fatalf("got %v, want ErrChanged naming %s", err, target)
			}
		})
	}
}

// TestTornReadFastPath changes a file that is old enough to be read the
// fast way (read, then one stat), of each size that takes a path of its
// own: whole in its first read, larger than that but within the arena,
// and streamed.
//   - Changed after its first read: the dump must notice, read it the
//     careful way, and return the archive of the tree as it is after the
//     change, or fail with ErrChanged; never a mixture.
//   - Changed after the rest of a larger file was read (its first bytes in
//     the first read, before the stat, the rest after): the dump must fail
//     with ErrChanged.
func TestTornReadFastPath(t *testing.T) {
	defer func(m time.Duration) { racyMargin = m }(racyMargin)
	racyMargin = 20 * time.Millisecond
	for _, size := range []int{8, 3*firstRead + 1, 2*arenaSize + 5} {
		for _, at := range []int{1, 2} {
			if at == 2 && size <= firstRead {
				continue // read whole at once: there is no rest to read
			}
			for _, tc := range []struct {
				name   string
				change func(path string) error
			}{
				{"append", func(p string) error { return nartest.AppendTo(p, "more") }},
				{"same size", func(p string) error { return writeAt(p, "XXXXXXXX", int64(size/2)) }},
				{"truncate", func(p string) error { return os.Truncate(p, 1) }},
				{"chmod", func(p string) error { return os.Chmod(p, 0o755) }},
			} {
				t.Run(fmt.Sprintf("%d bytes/read %d/%s", size, at, tc.name), func(t *testing.T) {
					root := nartest.TempDir(t)
					b := &nartest.Builder{Root: root}
					b.File("a", []byte("before a"), 0o644)
					b.File("target", nartest.Bytes(rand.New(rand.NewPCG(uint64(size), 1)), size), 0o644)
					b.File("z", []byte("after z"), 0o644)
					must(t, b.Err)
					target := filepath.Join(root, "target")
					nartest.WaitOlderThan(t, 2*racyMargin, target)
					calls := 0
					testHookRead = func(path string) {
						if path == target {
							if calls++; calls == at {
								must(t, tc.change(path))
							}
						}
					}
					defer func() { testHookRead = nil }()
					var got bytes.Buffer
					_, err := Dump(context.Background(), &got, root, nil)
					testHookRead = nil
					if calls != 2 {
						t.Fatalf("hook ran %d times; want 2 (the first read, then the rest or the careful one)", calls)
					}
					if errors.Is(err, ErrChanged) {
						return
					}
					if at == 2 {
						t.Fatalf("got %v; want ErrChanged", err)
					}
					must(t, err)
					want, _ := dumpBytes(t, root, 0)
					if !bytes.Equal(got.Bytes(), want) {
						t.Fatal("dump is neither ErrChanged nor the archive of the changed tree")
					}
				})
			}
		}
	}
}

func writeAt(path, s string, off int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt([]byte(s), off); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func TestUnsupportedType(t *testing.T) {
	root := nartest.TempDir(t)
	b := &nartest.Builder{Root: root}
	b.Dir("a")
	b.File("a/file", []byte("x"), 0o644)
	b.Fifo("a/pipe")
	must(t, b.Err)
	for _, path := range []string{root, filepath.Join(root, "a/pipe")} {
		_, err := Dump(context.Background(), io.Discard, path, nil)
		if !errors.Is(err, ErrUnsupportedType) || !strings.Contains(err.Error(), filepath.Join(root, "a/pipe")) {
			t.Errorf("dump %s: got %v, want ErrUnsupportedType naming the FIFO", path, err)
		}
	}
}

func TestDumpMissing(t *testing.T) {
	_, err := Dump(context.Background(), io.Discard, "/nonexistent/path", nil)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %v, want ErrNotExist", err)
	}
}

// TestDumpReleasesEverything checks that success, failure and cancellation
// all leave no goroutine and no file descriptor behind.
func TestDumpReleasesEverything(t *testing.T) {
	root := edgeTree(t)
	fifoRoot := nartest.TempDir(t)
	must(t, nartest.Random(fifoRoot, 5, 400))
	b := &nartest.Builder{Root: fifoRoot}
	b.Fifo("zzz-pipe")
	must(t, b.Err)

	goroutines, fds := runtime.NumGoroutine(), openFDs(t)
	Dump(context.Background(), io.Discard, root, nil)
	Dump(context.Background(), io.Discard, fifoRoot, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Dump(ctx, io.Discard, root, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled dump: got %v", err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	_, err := Dump(ctx, cancelAfter{cancel, new(int), 3}, root, nil)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("dump cancelled midway: got %v", err)
	}
	checkReleased(t, "dumps", goroutines, fds)
}

// cancelAfter cancels its context on its nth write.
type cancelAfter struct {
	cancel func()
	n      *int
	at     int
}

func (c cancelAfter) Write(p []byte) (int, error) {
	if *c.n++; *c.n == c.at {
		c.cancel()
	}
	return len(p), nil
}

func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	must(t, err)
	return len(ents)
}

func TestRestoreRoundTrip(t *testing.T) {
	root := edgeTree(t)
	want, _ := dumpBytes(t, root, 0)
	dest := filepath.Join(nartest.TempDir(t), "copy")
	must(t, Restore(bytes.NewReader(want), dest))
	got, _ := dumpBytes(t, dest, 0)
	if !bytes.Equal(got, want) {
		t.Fatal("restored tree dumps differently")
	}
	if err := Restore(bytes.NewReader(want), dest); !errors.Is(err, ErrExist) {
		t.Errorf("restore over an existing path: got %v, want ErrExist", err)
	}
}

// TestRestoreAllOrNothing restores broken archives: each must fail and
// leave nothing behind, neither DEST nor a temporary sibling.
func TestRestoreAllOrNothing(t *testing.T) {
	root := edgeTree(t)
	good, _ := dumpBytes(t, root, 0)
	cases := map[string][]byte{"trailing": append(bytes.Clone(good), 0)}
	for _, cut := range []int{0, 1, 100, len(good) / 2, len(good) - 1} {
		cases["cut"+string(rune('0'+cut%10))+"/"+strings.Repeat("x", cut%3)] = good[:cut]
	}
	for _, tc := range malformed() {
		cases[tc.name] = []byte(tc.nar)
	}
	for name, b := range cases {
		parent := nartest.TempDir(t)
		dest := filepath.Join(parent, "dest")
		if err := Restore(bytes.NewReader(b), dest); err == nil {
			t.Errorf("%s: restore succeeded", name)
		}
		if ents, _ := os.ReadDir(parent); len(ents) != 0 {
			t.Errorf("%s: left %d entries behind, the first %q", name, len(ents), ents[0].Name())
		}
	}
}

// TestRacy: a recording within the racy margin of the newest change (a
// write and a hash in the same second, on a filesystem with 1-second
// timestamps) cannot be trusted by stat; one well after it can.
func TestRacy(t *testing.T) {
	newest := time.Unix(1000, 0).UnixNano()
	fp := Fingerprint{Newest: newest}
	for _, tc := range []struct {
		after time.Duration
		racy  bool
	}{{0, true}, {500 * time.Millisecond, true}, {racyMargin, true}, {racyMargin + time.Millisecond, false}, {time.Hour, false}} {
		if got := fp.Racy(newest + tc.after.Nanoseconds()); got != tc.racy {
			t.Errorf("recorded %v after the newest change: Racy = %v, want %v", tc.after, got, tc.racy)
		}
	}
}

// checkReleased fails t if more goroutines than before are running, once
// those on their way out have had a few seconds to finish, or more file
// descriptors are open than before: what a dump, however it ends, must
// not leave behind.
func checkReleased(t *testing.T, what string, goroutines, fds int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > goroutines {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d goroutines left running, had %d:\n%s", what, runtime.NumGoroutine(), goroutines, allStacks())
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
	if n := openFDs(t); n != fds {
		t.Fatalf("%s: %d file descriptors open, had %d:\n%s", what, n, fds, openFDTargets())
	}
}

func allStacks() []byte { buf := make([]byte, 1<<20); return buf[:runtime.Stack(buf, true)] }

// cancelFDs names what the process's descriptors are open on.
func openFDTargets() string {
	ents, _ := os.ReadDir("/proc/self/fd")
	var b strings.Builder
	for _, e := range ents {
		target, _ := os.Readlink("/proc/self/fd/" + e.Name())
		fmt.Fprintf(&b, "fd %s: %q\n", e.Name(), target)
	}
	return b.String()
}

// blockedWriter blocks every Write until release is closed.
type blockedWriter struct{ release chan struct{} }

func (w blockedWriter) Write(p []byte) (int, error) {
	<-w.release
	return len(p), nil
}

// TestReaderChunksBounded stops the writer at its first write and lets
// the readers stream files ahead of it as far as they can: a reader must
// then wait for its chunk buffers to come back, not take more.
func TestReaderChunksBounded(t *testing.T) {
	root := nartest.TempDir(t)
	b := &nartest.Builder{Root: root}
	for i := range 12 {
		b.File(fmt.Sprintf("f%02d", i), make([]byte, 2*chunkSize+7), 0o644)
	}
	must(t, b.Err)
	const readers = 2
	made, small := streamAheadOfStoppedWriter(t, root, readers)
	if made > readers*readerChunks {
		t.Errorf("%d readers took %d chunk buffers while the writer was stopped; want at most %d each", readers, made, readerChunks)
	}
	if small > readers*readerSmall {
		t.Errorf("%d readers took %d small chunk buffers while the writer was stopped; want at most %d each", readers, small, readerSmall)
	}
}

// TestSmallStreamsAhead stops the writer and fills the first batch's
// arena with its first file: the batch's other files, small, are streamed
// whole, each in a small chunk. A reader must get through them all ahead
// of the writer, not wait once readerChunks buffers are out.
func TestSmallStreamsAhead(t *testing.T) {
	root := nartest.TempDir(t)
	b := &nartest.Builder{Root: root}
	b.File("a", make([]byte, arenaSize-100), 0o644)
	const files = firstBatchFiles - 1
	for i := range files {
		b.File(fmt.Sprintf("b%02d", i), make([]byte, 1000+i), 0o644)
	}
	must(t, b.Err)
	made, small := streamAheadOfStoppedWriter(t, root, 1)
	if small != files {
		t.Errorf("the reader took %d small chunk buffers ahead of the stopped writer; want one for each of the %d small files streamed", small, files)
	}
	if made != 0 {
		t.Errorf("the reader took %d chunk buffers of %d bytes for files of about 1000", made, chunkSize)
	}
}

// streamAheadOfStoppedWriter dumps root with a writer that stops at its
// first write, waits until the readers have taken chunk buffers and none
// can go on (each waits for a chunk buffer, for the writer to take a
// chunk, or for a batch), and returns how many buffers of chunkSize and
// of smallChunk they took; then it lets the writer go and checks the dump.
func streamAheadOfStoppedWriter(t *testing.T, root string, readers int) (made, small int64) {
	t.Helper()
	var big, little atomic.Int64
	testHookChunkMade = func(isSmall bool) {
		if isSmall {
			little.Add(1)
		} else {
			big.Add(1)
		}
	}
	defer func() { testHookChunkMade = nil }()
	w := blockedWriter{make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := Dump(context.Background(), w, root, &DumpOptions{Readers: readers})
		done <- err
	}()
	for deadline := time.Now().Add(10 * time.Second); big.Load()+little.Load() == 0 || !readersWaiting(); {
		if time.Now().After(deadline) {
			close(w.release)
			t.Fatalf("the readers still run 10 s after the writer stopped (%d and %d small chunk buffers taken)", big.Load(), little.Load())
		}
		time.Sleep(time.Millisecond)
	}
	made, small = big.Load(), little.Load()
	close(w.release)
	must(t, <-done)
	return made, small
}

// readersWaiting reports whether every reader goroutine there is (if any
// is left) waits on a channel.
func readersWaiting() bool {
	for _, g := range strings.Split(string(allStacks()), "\n\n") {
		if !strings.Contains(g, "startReader") {
			continue
		}
		header, _, _ := strings.Cut(g, "\n")
		if !strings.Contains(header, "[select") && !strings.Contains(header, "[chan ") {
			return false
		}
	}
	return true
}
