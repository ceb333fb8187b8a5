//go:build linux

package daemon

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/narhash/narhash/nar/nartest"
)

// TestRandomTrials makes random changes of the kinds that broke narhashd
// (directories made, moved within, out of and into the root, removed;
// the root replaced; symlinks retargeted to outside; files edited through
// a symlink that leads outside), each followed by queries of the root and
// of a random path in it, each compared with an offline hash (or error).
func TestRandomTrials(t *testing.T) {
	base := nartest.TempDir(t)
	root, outside := filepath.Join(base, "root"), filepath.Join(base, "outside")
	os.MkdirAll(filepath.Join(root, "a", "s"), 0o755)
	os.MkdirAll(filepath.Join(outside, "o"), 0o755)
	write(t, filepath.Join(outside, "o", "f"), "out")
	r := start(t, Config{Watch: []string{root}})
	seed := uint64(3)
	if s := os.Getenv("NARHASH_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	rng := rand.New(rand.NewPCG(seed, 4))
	n := 300
	if testing.Short() {
		n = 60
	}
	var dirs []string
	list := func() {
		dirs = dirs[:0]
		filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	pick := func() string {
		list()
		if len(dirs) == 0 {
			return root
		}
		return dirs[rng.IntN(len(dirs))]
	}
	for i := range n {
		var what string
		switch op := rng.IntN(10); op {
		case 0:
			p := filepath.Join(pick(), fmt.Sprint("m", i), "x", "y")
			os.MkdirAll(p, 0o755)
			write(t, filepath.Join(p, "f"), fmt.Sprint(i))
			what = "mkdir -p " + p
		case 1:
			from := pick()
			to := filepath.Join(root, fmt.Sprint("mv", i))
			if from != root && !strings.HasPrefix(to, from+"/") {
				os.Rename(from, to)
			}
			what = "mv " + from + " " + to
		case 2:
			if p := pick(); p != root {
				os.RemoveAll(p)
				what = "rm -rf " + p
			}
		case 3: // out of the root and back in, changed meanwhile
			if p := pick(); p != root {
				away := filepath.Join(base, "away")
				os.RemoveAll(away)
				os.Rename(p, away)
				write(t, filepath.Join(away, "changed"), fmt.Sprint(i))
				os.Rename(away, p)
				what = "out and back " + p
			}
		case 4:
			l := filepath.Join(root, "link")
			os.Remove(l)
			os.Symlink(filepath.Join(outside, "o"), l)
			write(t, filepath.Join(outside, "o", "f"), fmt.Sprint(i))
			p := filepath.Join(l, "f")
			if got, want := query(t, r.c, p), offline(t, p); got.Hash != want {
				t.Fatalf("op %d: through a symlink out of the root: %s, want %s", i, got.Hash, want)
			}
			what = "edit through a symlink"
		case 5:
			p := filepath.Join(pick(), "file")
			write(t, p, fmt.Sprint(i))
			what = "write " + p
		case 6:
			if rng.IntN(4) == 0 { // the root replaced, now and then
				os.RemoveAll(root)
				os.MkdirAll(filepath.Join(root, "a", "s"), 0o755)
				what = "root made anew"
			}
		case 7: // a mv cycle as in the deadlock
			a, b := filepath.Join(root, "dl-a"), filepath.Join(root, "dl-b")
			os.MkdirAll(filepath.Join(a, "s"), 0o755)
			os.Rename(a, b)
			os.RemoveAll(b)
			what = "mkdir, mv, rm -rf"
		case 8:
			p := pick()
			q := filepath.Join(p, fmt.Sprint("n", i))
			os.Mkdir(q, 0o755)
			write(t, filepath.Join(q, "f"), "new")
			write(t, filepath.Join(q, "f"), "newer")
			what = "new directory, file written twice " + q
		case 9:
			p := pick()
			os.Chmod(p, 0o700)
			os.Chmod(p, 0o755)
			what = "chmod " + p
		}
		fresh(t, r.c, root, fmt.Sprintf("op %d (%s), the root", i, what))
		if p := pick(); p != root {
			fresh(t, r.c, p, fmt.Sprintf("op %d (%s), %s", i, what, p))
		}
	}
}
