package nartest

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
)

// The benchmark trees of issue 3, built deterministically from fixed seeds.
// Each is built under root, which must not exist yet.

// BenchBig builds one file of 1 GiB.
func BenchBig(root string) error {
	if err := os.Mkdir(root, 0o755); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(root, "big"))
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(1, 1))
	for range 1 << 10 {
		if _, err := f.Write(Bytes(rng, 1<<20)); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// BenchSrc builds a source-like tree: 20,000 files of 1 to 64 KiB (the
// smaller of two uniform draws, so about 22 KiB on average), 5% of them
// executable, in 1,111 directories (10 + 100 + 1,000 + the root), with 200
// symlinks.
func BenchSrc(root string) error {
	rng := rand.New(rand.NewPCG(2, 2))
	dirs := benchDirs(root)
	b := &Builder{Root: root}
	for _, d := range dirs {
		b.Dir(d)
	}
	for i := range 20_000 {
		size := 1<<10 + min(rng.IntN(63<<10), rng.IntN(63<<10))
		perm := os.FileMode(0o644)
		if rng.IntN(20) == 0 {
			perm = 0o755
		}
		b.File(fmt.Sprintf("%s/file%05d.c", dirs[rng.IntN(len(dirs))], i), Bytes(rng, size), perm)
	}
	for i := range 200 {
		b.Symlink(fmt.Sprintf("../file%05d.c", rng.IntN(20_000)), fmt.Sprintf("%s/link%03d", dirs[1+rng.IntN(len(dirs)-1)], i))
	}
	return b.Err
}

// BenchTiny builds 100,000 files of 10 to 200 bytes in 1,111 directories.
func BenchTiny(root string) error {
	rng := rand.New(rand.NewPCG(3, 3))
	dirs := benchDirs(root)
	b := &Builder{Root: root}
	for _, d := range dirs {
		b.Dir(d)
	}
	for i := range 100_000 {
		b.File(fmt.Sprintf("%s/f%06d", dirs[rng.IntN(len(dirs))], i), Bytes(rng, 10+rng.IntN(191)), 0o644)
	}
	return b.Err
}

// benchDirs returns ".", 10 directories, 100 below them and 1,000 below
// those: 1,111 in all.
func benchDirs(root string) []string {
	dirs := []string{"."}
	for i := range 10 {
		a := fmt.Sprintf("d%d", i)
		dirs = append(dirs, a)
		for j := range 10 {
			b := fmt.Sprintf("%s/d%d", a, j)
			dirs = append(dirs, b)
			for k := range 10 {
				dirs = append(dirs, fmt.Sprintf("%s/d%d", b, k))
			}
		}
	}
	return dirs
}
