package nar

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// makeChain builds under dir a chain of depth directories named "d",
// each holding the files "a" and "f" (and the bottom one only those):
// "a" is walked before the level's subdirectory, "f" after it. It
// creates each level relative to the one above: the paths are longer
// than PATH_MAX.
func makeChain(t *testing.T, dir string, depth int) {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { unix.Close(fd) }()
	for i := 0; ; i++ {
		for _, name := range []string{"a", "f"} {
			f, err := unix.Openat(fd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o644)
			if err != nil {
				t.Fatalf("level %d: create %s: %v", i, name, err)
			}
			unix.Write(f, []byte(name))
			unix.Close(f)
		}
		if i == depth {
			return
		}
		if err := unix.Mkdirat(fd, "d", 0o755); err != nil {
			t.Fatalf("level %d: mkdir: %v", i, err)
		}
		next, err := unix.Openat(fd, "d", unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			t.Fatalf("level %d: open: %v", i, err)
		}
		unix.Close(fd)
		fd = next
	}
}

// chainHash is the SHA-256 of the archive of makeChain's tree, written
// with a Writer.
func chainHash(t *testing.T, depth int) string {
	t.Helper()
	h := sha256.New()
	w := NewWriter(h)
	file := func(name string) {
		w.Entry(name)
		w.File(false, 1)
		w.Write([]byte(name))
	}
	for i := 0; i <= depth; i++ {
		if i > 0 {
			w.Entry("d")
		}
		w.Directory()
		file("a")
	}
	for i := 0; i <= depth; i++ {
		file("f")
		w.EndDirectory()
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// removeChain removes makeChain's tree at dir/d, which os.RemoveAll
// cannot (it nests past PATH_MAX).
func removeChain(t *testing.T, dir string) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := removeTree(fd, "d"); err != nil {
		t.Errorf("remove the deep tree: %v", err)
	}
}

// TestDeepDump: a tree 25,000 deep, with files before and after each
// subdirectory, is dumped and stat'ed under an RLIMIT_NOFILE of 256 (it
// took one descriptor per level, and failed with EMFILE), with the hash
// of its archive written by a Writer.
func TestDeepDump(t *testing.T) {
	const depth = 25000
	dir := t.TempDir()
	makeChain(t, dir, depth)
	defer removeChain(t, dir)
	want := chainHash(t, depth)

	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	low := lim
	low.Cur = 256
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	res, err := Dump(context.Background(), h, dir, nil)
	fp, count, statErr := StatTree(context.Background(), dir)
	unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	if err != nil {
		t.Fatalf("dump %d deep: %.300v", depth, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		t.Errorf("dump %d deep: got %s, want %s (a Writer's)", depth, got, want)
	}
	if statErr != nil {
		t.Fatalf("stat %d deep: %.300v", depth, statErr)
	}
	if fp != res.Fingerprint || count != res.DumpStats {
		t.Errorf("stat walk: got %v %+v, want the dump's %v %+v", fp, count, res.Fingerprint, res.DumpStats)
	}
	if count.Dirs != depth+1 || count.Files != 2*(depth+1) {
		t.Errorf("counted %+v, want %d directories and %d files", count, depth+1, 2*(depth+1))
	}
}

// TestChainHashIsNix ties chainHash to Nix on a chain Nix can hash (its
// paths fit in PATH_MAX) and deeper than the walk's window of open
// directories.
func TestChainHashIsNix(t *testing.T) {
	nixHash, err := exec.LookPath("nix-hash")
	if err != nil {
		t.Skip("nix-hash not found: install Nix to compare with it")
	}
	const depth = 150
	dir := t.TempDir()
	makeChain(t, dir, depth)
	out, err := exec.Command(nixHash, "--type", "sha256", dir).Output()
	if err != nil {
		t.Fatalf("nix-hash: %v", err)
	}
	want := strings.TrimSpace(string(out))
	if got := chainHash(t, depth); got != want {
		t.Fatalf("a Writer's archive: %s, nix-hash %s", got, want)
	}
	h := sha256.New()
	if _, err := Dump(context.Background(), h, dir, nil); err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		t.Errorf("dump: %s, nix-hash %s", got, want)
	}
}

// TestDeepWalkMemory: what a walk allocates grows linearly with the
// depth, by little per level (it kept a 32 KiB buffer and the full path
// of every level: 523 MB at 25,000 deep).
func TestDeepWalkMemory(t *testing.T) {
	const n = 2000
	alloc := func(depth int) float64 {
		dir := t.TempDir()
		makeChain(t, dir, depth)
		defer removeChain(t, dir)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		if _, _, err := StatTree(context.Background(), dir); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		return float64(after.TotalAlloc - before.TotalAlloc)
	}
	a1, a2, a4 := alloc(n), alloc(2*n), alloc(4*n)
	// Per level, from n to 2n deep and from 2n to 4n: the same if memory
	// is linear in the depth, twice as much if it is quadratic.
	slope1, slope2 := (a2-a1)/n, (a4-a2)/(2*n)
	t.Logf("allocated %.0f, %.0f, %.0f bytes at %d, %d, %d deep: %.0f and %.0f bytes per level", a1, a2, a4, n, 2*n, 4*n, slope1, slope2)
	if slope2 > 1.5*slope1 {
		t.Errorf("memory grows faster than the depth: %.0f bytes per level from %d deep, %.0f from %d", slope1, n, slope2, 2*n)
	}
	// The level, its directory's name, its entries' names: a few hundred
	// bytes (a getdents buffer of its own was 32 KiB).
	if slope2 > 2048 {
		t.Errorf("%.0f bytes per level, want at most 2 KiB", slope2)
	}
}
