package gittest

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Random fills the repository from seed with about n entries: files with
// awkward names (spaces, newlines, non-UTF-8 bytes), executable or not,
// symlinks (relative, absolute, dangling, to a directory), directories
// empty or not, ignored files; it stages them all, commits them or not,
// and then edits at random: changes contents and modes, stages new files,
// leaves others untracked, force-adds ignored ones, unstages some
// (rm --cached), turns files into symlinks and deletes top-level ones.
// Deleted files are never the last of a directory (Nix versions disagree
// on what is left; see gitview's tests).
func Random(r *Repo, seed uint64, n int) {
	r.T.Helper()
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	r.Write(".gitignore", "*.o\nbuild/\nresult\n", 0o644)
	dirs := []string{"."}
	var files []string
	for i := range n {
		name := path.Join(dirs[rng.IntN(len(dirs))], randomName(rng, i))
		switch k := rng.IntN(20); {
		case k < 3:
			if err := os.Mkdir(filepath.Join(r.Dir, name), 0o755); err != nil {
				r.T.Fatal(err)
			}
			dirs = append(dirs, name)
		case k < 5:
			targets := []string{"/etc/hostname", "dangling", ".", ".."}
			if len(files) > 0 {
				targets = append(targets, path.Base(files[rng.IntN(len(files))]))
			}
			r.Symlink(targets[rng.IntN(len(targets))], name)
			files = append(files, name)
		case k < 6:
			r.Write(name+".o", "ignored", 0o644)
		default:
			r.Write(name, content(rng), mode(rng))
			files = append(files, name)
		}
	}
	r.Write("build/out", "ignored", 0o755)
	r.Symlink("/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-result", "result")
	r.Git("add", "-A")
	if rng.IntN(3) > 0 {
		r.Git("commit", "-qm", "random")
	}
	for i := range 1 + rng.IntN(10) {
		if len(files) == 0 {
			break
		}
		j := rng.IntN(len(files))
		f := files[j]
		p := filepath.Join(r.Dir, f)
		fi, err := os.Lstat(p)
		if err != nil {
			r.T.Fatal(err)
		}
		regular := fi.Mode().IsRegular()
		switch rng.IntN(8) {
		case 0:
			if regular {
				r.Write(f, content(rng), fi.Mode().Perm())
			}
		case 1:
			if regular {
				if err := os.Chmod(p, fi.Mode().Perm()^0o111); err != nil {
					r.T.Fatal(err)
				}
			}
		case 2:
			name := fmt.Sprintf("staged %d\n", i)
			r.Write(name, content(rng), mode(rng))
			r.Git("add", "--", name)
		case 3:
			r.Write(path.Join(path.Dir(f), fmt.Sprintf("untracked-%d", i)), content(rng), 0o644)
		case 4:
			name := fmt.Sprintf("forced-%d.o", i)
			r.Write(name, content(rng), 0o644)
			r.Git("add", "-f", "--", name)
		case 5:
			r.Git("rm", "-q", "--cached", "--", f)
			files = append(files[:j], files[j+1:]...)
		case 6:
			if err := os.Remove(p); err != nil {
				r.T.Fatal(err)
			}
			r.Symlink("was a file", f)
		case 7:
			if !strings.Contains(f, "/") {
				if err := os.Remove(p); err != nil {
					r.T.Fatal(err)
				}
				files = append(files[:j], files[j+1:]...)
			}
		}
	}
}

func content(rng *rand.Rand) string {
	b := make([]byte, rng.IntN(200))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return string(b)
}

func mode(rng *rand.Rand) os.FileMode {
	if rng.IntN(4) == 0 {
		return 0o755
	}
	return 0o644
}

func randomName(rng *rand.Rand, i int) string {
	const chars = "abcXYZ_-. 019\n\t\xc3\xa9\xff"
	var sb strings.Builder
	for range 1 + rng.IntN(8) {
		sb.WriteByte(chars[rng.IntN(len(chars))])
	}
	fmt.Fprintf(&sb, "%d", i) // unique, and never . or ..
	return sb.String()
}
