package nar

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/narhash/narhash/nar/nartest"
)

// refDump serialises the tree at path with a Writer, one call at a time and
// with no pipeline: the reference the dump must equal byte for byte. (The Writer itself is checked against Nix's archives.)
func refDump(t *testing.T, path string) []byte {
	t.Helper()
	var out bytes.Buffer
	w := NewWriter(&out)
	var node func(p string)
	node = func(p string) {
		fi, err := os.Lstat(p)
		must(t, err)
		switch {
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			must(t, err)
			w.File(fi.Mode()&0o100 != 0, int64(len(data)))
			w.Write(data)
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			must(t, err)
			w.Symlink(target)
		case fi.IsDir():
			f, err := os.Open(p)
			must(t, err)
			names, err := f.Readdirnames(-1)
			f.Close()
			must(t, err)
			slices.Sort(names) // Go compares strings bytewise
			w.Directory()
			for _, n := range names {
				w.Entry(n)
				node(filepath.Join(p, n))
			}
			w.EndDirectory()
		default:
			t.Fatalf("refDump: unexpected type of %s", p)
		}
	}
	node(path)
	must(t, w.Close())
	return out.Bytes()
}

// bothReadPaths runs f once as the files come (just written, so read
// between two stats), and once with every file old enough for the fast
// path (read, then one stat), which moves an executable file's contents
// in the arena to make room for its longer header.
func bothReadPaths(t *testing.T, f func(t *testing.T)) {
	t.Run("careful", f)
	t.Run("fast", func(t *testing.T) {
		defer func(m time.Duration) { racyMargin = m }(racyMargin)
		racyMargin = -time.Hour
		f(t)
	})
}

// arenaEdgeTree builds files whose contents land on and around the
// arena's limits: sizes just under, at and over the room a batch has
// left, executable or not; directories full of the longest names and the
// longest symlink targets, which fill a batch's room for names; and empty
// files and directories in between.
func arenaEdgeTree(t *testing.T) string {
	t.Helper()
	root := filepath.Join(nartest.TempDir(t), "arena")
	b := &nartest.Builder{Root: root}
	rng := rand.New(rand.NewPCG(7, 7))
	content := func(n int) []byte { return nartest.Bytes(rng, n) }
	for _, d := range []string{"sizes", "names", "links"} {
		b.Dir(d)
	}
	i := 0
	for _, size := range []int{
		arenaSize/2 - 1, arenaSize / 2, arenaSize/2 + 1,
		arenaSize - 200, arenaSize - 100, arenaSize - 72, arenaSize - 40, arenaSize - 1, arenaSize, arenaSize + 1,
		3 * arenaSize / 4, 5, 0, 7, 8, 9, 4095, 4096, 4097,
	} {
		for _, perm := range []os.FileMode{0o644, 0o755} {
			b.File(fmt.Sprintf("sizes/%03d", i), content(size), perm)
			i++
		}
	}
	long := strings.Repeat("n", MaxNameLen-4)
	for i := range 600 {
		b.File(fmt.Sprintf("names/%s%04d", long, i), content(i%50), os.FileMode(0o644|(i%2)*0o100))
	}
	target := strings.Repeat("t/", MaxTargetLen/2-4)
	for i := range 300 {
		b.Symlink(fmt.Sprintf("%s%04d", target, i), fmt.Sprintf("links/%s%04d", long, i))
	}
	for i := range 200 { // a file after each empty directory
		b.Dir(fmt.Sprintf("dirs/%03d/empty", i))
		b.File(fmt.Sprintf("dirs/%03d/file", i), content(i*997%5000), os.FileMode(0o644|(i%3/2)*0o100))
	}
	must(t, b.Err)
	return root
}

// sortTree builds a directory whose names order differently by their
// first 8 bytes than by the rest, or not at all: prefixes of each other
// around 8 bytes, bytes above 0x7f, and many names sharing 8 bytes.
func sortTree(t *testing.T) string {
	t.Helper()
	root := filepath.Join(nartest.TempDir(t), "names")
	b := &nartest.Builder{Root: root}
	names := []string{"a", "ab", "abcdefg", "abcdefgh", "abcdefgh0", "abcdefgh\xff", "abcdefghi",
		"abcdefgi", "abcdefg\x01", "B", "\x01", "\x7f", "\x80", "\xff", "\xffz", "\xff\xff\xff\xff\xff\xff\xff\xff",
		"\xff\xff\xff\xff\xff\xff\xff\xff\x01", "é", "e\u0301", "zzzzzzzz", "zzzzzzz", "zzzzzzzzz"}
	rng := rand.New(rand.NewPCG(8, 8))
	for i := range 300 {
		suffix := make([]byte, 1+rng.IntN(12))
		for j := range suffix {
			suffix[j] = byte(1 + rng.IntN(255))
			if suffix[j] == '/' {
				suffix[j] = 'x'
			}
		}
		names = append(names, fmt.Sprintf("prefix%02d", i%3)+string(suffix))
	}
	for i, n := range names {
		if i%7 == 0 {
			b.Dir(n + "/" + n)
		} else {
			b.File(n, []byte(n), 0o644)
		}
	}
	must(t, b.Err)
	return root
}

// TestNameKey checks that dent keys order names as bytes.Compare does
// wherever two keys differ.
func TestNameKey(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	name := func() []byte {
		n := make([]byte, 1+rng.IntN(12))
		for i := range n {
			n[i] = byte(1 + rng.IntN(255))
			if rng.IntN(2) == 0 {
				n[i] = "ab\x01\xff"[rng.IntN(4)]
			}
		}
		return n
	}
	for range 100000 {
		a, b := name(), name()
		if ka, kb := nameKey(a), nameKey(b); ka != kb && cmp.Compare(ka, kb) != bytes.Compare(a, b) {
			t.Fatalf("keys of %q and %q order as %d, names as %d", a, b, cmp.Compare(ka, kb), bytes.Compare(a, b))
		}
	}
}

func TestDumpMatchesWriter(t *testing.T) {
	trees := map[string]string{"edge": edgeTree(t), "arena": arenaEdgeTree(t), "names": sortTree(t)}
	for seed := range uint64(3) {
		root := filepath.Join(nartest.TempDir(t), "random")
		must(t, os.Mkdir(root, 0o755))
		must(t, nartest.Random(root, seed, 400))
		trees[fmt.Sprint("random", seed)] = root
	}
	// Roots that are files: a streamed file is then the batch's last
	// item, whose trailer the writer must still take.
	files := nartest.TempDir(t)
	b := &nartest.Builder{Root: files}
	b.File("big", bytes.Repeat([]byte("0123456789abcdef"), (5*arenaSize/2)/16+1), 0o755)
	b.File("small", []byte("x"), 0o644)
	b.File("empty", nil, 0o755)
	must(t, b.Err)
	for _, n := range []string{"big", "small", "empty"} {
		trees["file-"+n] = filepath.Join(files, n)
	}
	want := map[string][]byte{}
	for name, root := range trees {
		want[name] = refDump(t, root)
	}
	bothReadPaths(t, func(t *testing.T) {
		for name, root := range trees {
			for _, readers := range []int{1, 2, 3} {
				if got, _ := dumpBytes(t, root, readers); !bytes.Equal(got, want[name]) {
					t.Errorf("%s, %d readers: dump differs from the Writer's archive (%d bytes, want %d)", name, readers, len(got), len(want[name]))
				}
			}
		}
	})
}

// TestStreamReadyWithFirstChunk checks when the writer may take a streamed
// file: once its stream holds the first chunk (see stream), so that it
// never waits for the file's reader to begin reading it; also where the
// file is the archive's root, and the writer waits from the start.
func TestStreamReadyWithFirstChunk(t *testing.T) {
	files := nartest.TempDir(t)
	b := &nartest.Builder{Root: files}
	b.File("one chunk", nartest.Bytes(rand.New(rand.NewPCG(1, 1)), arenaSize+100), 0o644)
	b.File("chunks", nartest.Bytes(rand.New(rand.NewPCG(2, 2)), 3*chunkSize+5), 0o755)
	must(t, b.Err)
	roots := []string{arenaEdgeTree(t), filepath.Join(files, "one chunk"), filepath.Join(files, "chunks")}
	want := map[string][]byte{}
	for _, root := range roots {
		want[root] = refDump(t, root)
	}
	defer func() { testHookStream = nil }()
	bothReadPaths(t, func(t *testing.T) {
		for _, root := range roots {
			for _, readers := range []int{1, 2} {
				var streams, empty atomic.Int64
				testHookStream = func(stream chan chunk) {
					streams.Add(1)
					if len(stream) == 0 {
						empty.Add(1)
					}
				}
				if got, _ := dumpBytes(t, root, readers); !bytes.Equal(got, want[root]) {
					t.Errorf("%s, %d readers: dump differs from the Writer's archive", root, readers)
				}
				testHookStream = nil
				if streams.Load() == 0 {
					t.Fatalf("%s: no file was streamed; the test needs one", root)
				}
				if n := empty.Load(); n > 0 {
					t.Errorf("%s, %d readers: the writer took %d of %d streamed files before their first chunk", root, readers, n, streams.Load())
				}
			}
		}
	})
}

// TestParallelStream dumps files long enough to be read several chunks at
// once (coldstream.go), forced as if they were not cached, and checks the
// archive, that one stream at a time reads in parallel, and that a file
// changed before its last chunk fails the dump.
func TestParallelStream(t *testing.T) {
	files := nartest.TempDir(t)
	b := &nartest.Builder{Root: files}
	rng := rand.New(rand.NewPCG(3, 3))
	b.File("one", nartest.Bytes(rng, parallelFrom+3*chunkSize+5), 0o755)
	b.Dir("dir")
	b.File("dir/a", nartest.Bytes(rng, parallelFrom+chunkSize/2), 0o644)
	dirB := nartest.Bytes(rng, 2*parallelFrom+17)
	b.File("dir/b", dirB, 0o644)
	b.File("dir/c", []byte("after them"), 0o644)
	must(t, b.Err)
	roots := map[string]int{filepath.Join(files, "one"): 1, filepath.Join(files, "dir"): 2} // their parallel streams
	want := map[string][]byte{}
	for root := range roots {
		want[root] = refDump(t, root)
	}
	testColdStreams = true
	defer func() { testColdStreams, testHookParallel, testHookRead = false, nil, nil }()
	bothReadPaths(t, func(t *testing.T) {
		for root, n := range roots {
			for _, readers := range []int{1, 2, 3} {
				var started, running, most atomic.Int64
				testHookParallel = func(start bool) {
					if !start {
						running.Add(-1)
						return
					}
					started.Add(1)
					r := running.Add(1)
					for m := most.Load(); r > m && !most.CompareAndSwap(m, r); m = most.Load() {
					}
				}
				if got, _ := dumpBytes(t, root, readers); !bytes.Equal(got, want[root]) {
					t.Errorf("%s, %d readers: dump differs from the Writer's archive", root, readers)
				}
				testHookParallel = nil
				// With several readers, a stream that finds another
				// reading in parallel reads on its own.
				if s := started.Load(); s < 1 || s > int64(n) || (readers == 1 && s != int64(n)) {
					t.Errorf("%s, %d readers: %d streams read in parallel; want %d (1 to %d with several readers)", root, readers, s, n, n)
				}
				if m := most.Load(); m != 1 {
					t.Errorf("%s, %d readers: %d streams read in parallel at once; want 1", root, readers, m)
				}
			}
		}
		// Changed once all of it was read (the hook's second call, after
		// its first read and its rest), before its last chunk is sent:
		// the dump must fail.
		target, calls := filepath.Join(files, "dir", "b"), 0
		testHookRead = func(path string) {
			if path != target {
				return
			}
			if calls++; calls == 2 {
				must(t, writeAt(path, "XXXXXXXX", parallelFrom))
			}
		}
		_, err := Dump(context.Background(), io.Discard, filepath.Dir(target), nil)
		testHookRead = nil
		if calls != 2 || !errors.Is(err, ErrChanged) {
			t.Errorf("a file changed while it was read in parallel (hook ran %d times; want 2): %v; want ErrChanged", calls, err)
		}
		must(t, os.WriteFile(target, dirB, 0o644)) // as it was, for the other read path
	})
}
