// Package nartest builds filesystem trees for tests and benchmarks of NAR
// code: the edge cases Nix's serialisation has to get right, random trees
// from a seed, and the benchmark trees. Everything is deterministic.
package nartest

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Builder creates files under a root and stops at the first error.
type Builder struct {
	Root string
	Err  error
}

func (b *Builder) path(rel string) string { return filepath.Join(b.Root, rel) }

// File writes a file with the given contents and permission bits.
func (b *Builder) File(rel string, contents []byte, perm os.FileMode) {
	if b.Err != nil {
		return
	}
	if b.Err = os.WriteFile(b.path(rel), contents, 0o600); b.Err == nil {
		b.Err = os.Chmod(b.path(rel), perm) // Chmod: WriteFile's mode passes the umask
	}
}

// Dir creates a directory and its parents.
func (b *Builder) Dir(rel string) {
	if b.Err == nil {
		b.Err = os.MkdirAll(b.path(rel), 0o755)
	}
}

// Symlink creates a symlink at rel pointing at target, stored as it is.
func (b *Builder) Symlink(target, rel string) {
	if b.Err == nil {
		b.Err = os.Symlink(target, b.path(rel))
	}
}

// Link creates a hard link at rel to the existing file old.
func (b *Builder) Link(old, rel string) {
	if b.Err == nil {
		b.Err = os.Link(b.path(old), b.path(rel))
	}
}

// Fifo creates a named pipe, which no NAR can hold.
func (b *Builder) Fifo(rel string) {
	if b.Err == nil {
		b.Err = unix.Mkfifo(b.path(rel), 0o644)
	}
}

// Sparse creates a file of size bytes that is a hole but for one byte.
func (b *Builder) Sparse(rel string, size int64) {
	if b.Err != nil {
		return
	}
	f, err := os.Create(b.path(rel))
	if err != nil {
		b.Err = err
		return
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte{'!'}, size/2); err != nil {
		b.Err = err
		return
	}
	b.Err = f.Truncate(size)
}

// Bytes returns n deterministic pseudo-random bytes.
func Bytes(rng *rand.Rand, n int) []byte {
	p := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			p[i+j] = byte(v >> (8 * j))
		}
	}
	return p
}

// EdgeCases builds, under root (which must exist), a tree with every case
// the serialisation must get right: names that sort by bytes, non-UTF-8
// names, names with newlines and spaces, 255-byte names, file sizes
// around multiples of 8, every kind of mode, symlinks of every kind, empty
// and nested empty directories, nesting deeper than 64, hard links, a
// sparse file, a file larger than the dump's streaming threshold and a
// wide directory. It holds no FIFO: see Fifo.
func EdgeCases(root string) error {
	b := &Builder{Root: root}
	rng := rand.New(rand.NewPCG(64, 8))
	b.Dir("names")
	for _, n := range []string{"B", "Z", "_", "a", "z", "\xc3\xa9", "\xff\xfe", "sp ace", "new\nline", "tab\there",
		"\x01ctl", "quote\"back\\slash", "-dash", ".hidden", "...", strings.Repeat("L", 255), strings.Repeat("\xe2\x82\xac", 85)} {
		b.File("names/"+n, []byte(n), 0o644)
	}
	b.Dir("sizes")
	for _, n := range []int{0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 4095, 4096, 4097, 65535, 65536, 65537} {
		b.File(fmt.Sprintf("sizes/%06d", n), Bytes(rng, n), 0o644)
	}
	b.File("sizes/big", Bytes(rng, 1<<20+3), 0o644)
	b.File("sizes/bigexec", Bytes(rng, 600<<10+1), 0o755)
	b.Sparse("sizes/sparse", 3<<20+5)
	b.Dir("modes")
	for _, m := range []os.FileMode{0o744, 0o654, 0o645, 0o755, 0o644, 0o700, 0o400, 0o100, 0o000, 0o777} {
		b.File(fmt.Sprintf("modes/%04o", m), []byte("mode"), m)
	}
	b.File("modes/setuid", []byte("setuid"), 0o755|os.ModeSetuid)
	b.File("modes/setgid", []byte("setgid"), 0o644|os.ModeSetgid)
	b.File("modes/sticky", []byte("sticky"), 0o644|os.ModeSticky)
	b.Dir("links")
	b.Symlink("../names/a", "links/relative")
	b.Symlink("/etc/hostname", "links/absolute")
	b.Symlink("nowhere/at/all", "links/dangling")
	b.Symlink("loop", "links/loop")
	b.Symlink("links", "links/self")
	b.Symlink(strings.Repeat("x/", 2000)+"y", "links/long")
	b.Symlink("\xff\xfetarget", "links/raw")
	b.Dir("empty")
	b.Dir("nested/empty/dirs/all/the/way")
	b.Dir(strings.Repeat("d/", 70))
	b.File(strings.Repeat("d/", 70)+"bottom", []byte("deep"), 0o644)
	b.Dir("hard")
	b.File("hard/one", []byte("shared contents"), 0o755)
	b.Link("hard/one", "hard/two")
	b.Dir("wide")
	for i := range 3000 {
		b.File(fmt.Sprintf("wide/%x", i*7919), nil, 0o644)
	}
	return b.Err
}

// Random builds a random tree of about n entries under root, from seed.
func Random(root string, seed uint64, n int) error {
	b := &Builder{Root: root}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	dirs := []string{"."}
	for i := range n {
		parent := dirs[rng.IntN(len(dirs))]
		name := filepath.Join(parent, randomName(rng, i))
		switch k := rng.IntN(20); {
		case k < 3:
			b.Dir(name)
			dirs = append(dirs, name)
		case k < 5:
			b.Symlink(randomName(rng, i), name)
		default:
			size := rng.IntN(300)
			if rng.IntN(30) == 0 {
				size = rng.IntN(1 << 20)
			}
			perm := os.FileMode(0o644)
			if rng.IntN(4) == 0 {
				perm = 0o755
			}
			b.File(name, Bytes(rng, size), perm)
		}
	}
	return b.Err
}

func randomName(rng *rand.Rand, i int) string {
	const chars = "abcXYZ_-. 019\xc3\xa9\xff"
	var sb strings.Builder
	for range 1 + rng.IntN(10) {
		sb.WriteByte(chars[rng.IntN(len(chars))])
	}
	fmt.Fprintf(&sb, "%d", i) // unique, and never . or ..
	return sb.String()
}

// WaitOlderThan polls until every entry under paths (a file or a whole
// tree) last changed, by ctime and mtime, more than d ago: old enough, say,
// for a dump's fast read. It fails t if that takes d plus 10 seconds.
func WaitOlderThan(t testing.TB, d time.Duration, paths ...string) {
	t.Helper()
	var newest time.Time
	for _, p := range paths {
		err := filepath.WalkDir(p, func(path string, _ os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			var st unix.Stat_t
			if err := unix.Lstat(path, &st); err != nil {
				return err
			}
			for _, ts := range []unix.Timespec{st.Ctim, st.Mtim} {
				if tm := time.Unix(ts.Sec, ts.Nsec); tm.After(newest) {
					newest = tm
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(d + 10*time.Second)
	for time.Since(newest) <= d {
		if time.Now().After(deadline) {
			t.Fatalf("%v never became older than %v", paths, d)
		}
		time.Sleep(min(d/4, 100*time.Millisecond))
	}
}

// TempDir returns a new directory that is removed when the test ends. It
// is on tmpfs (/dev/shm) when the machine has one: creating files there
// can be a hundred times cheaper than on a disk filesystem mounted with
// discard, which keeps tests that build large trees quick.
func TempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "nartest-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() {
		filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				os.Chmod(p, 0o755) // so that RemoveAll can enter it
			}
			return nil
		})
		os.RemoveAll(dir)
	})
	return dir
}
