package gitview

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ErrNotWorktree matches the error for a path that is in no git worktree.
var ErrNotWorktree = errors.New("not in a git worktree")

// A Repo is where a worktree keeps its git data.
type Repo struct {
	// Worktree is the worktree's top directory, the one holding .git.
	Worktree string
	// GitDir is its git directory: Worktree/.git, or for a linked
	// worktree or a submodule the directory its .git file names
	// (.git/worktrees/NAME, .git/modules/NAME). The index and HEAD are
	// there.
	GitDir string
	// CommonDir holds what linked worktrees share: config, refs,
	// packed-refs, objects. It is GitDir unless GitDir/commondir says.
	CommonDir string
}

// FindRepo finds the worktree holding dir, an absolute directory, as git
// does without GIT_DIR: the nearest of dir and its parents that holds a
// .git directory (or a symlink to one), or a .git file ("gitdir: PATH").
func FindRepo(dir string) (Repo, error) {
	for d := dir; ; {
		dotgit := filepath.Join(d, ".git")
		fi, err := os.Stat(dotgit)
		switch {
		case err == nil && fi.IsDir():
			return repoAt(d, dotgit)
		case err == nil && fi.Mode().IsRegular():
			gitdir, err := readGitFile(dotgit)
			if err != nil {
				return Repo{}, err
			}
			return repoAt(d, gitdir)
		case err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, fs.ErrPermission):
			return Repo{}, fmt.Errorf("gitview: %w", err)
		}
		if bareRepo(d) {
			return Repo{}, fmt.Errorf("gitview: %s: %w: %s is a bare git repository, which has no worktree to hash; hash a clone's worktree, or the directory without --git", dir, ErrNotWorktree, d)
		}
		parent := filepath.Dir(d)
		if parent == d {
			return Repo{}, fmt.Errorf("gitview: %s: %w (no .git in it or any parent): --git hashes what a git repository tracks; hash the directory without --git", dir, ErrNotWorktree)
		}
		d = parent
	}
}

// readGitFile reads a .git file, which names the git directory.
func readGitFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("gitview: %w", err)
	}
	rest, ok := bytes.CutPrefix(b, []byte("gitdir: "))
	if !ok {
		return "", fmt.Errorf("gitview: %s: not a gitdir file (it should read \"gitdir: PATH\")", path)
	}
	dir := strings.TrimRight(string(rest), "\r\n")
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(filepath.Dir(path), dir)
	}
	return dir, nil
}

func repoAt(worktree, gitDir string) (Repo, error) {
	if fi, err := os.Stat(filepath.Join(gitDir, "HEAD")); err != nil || !fi.Mode().IsRegular() {
		return Repo{}, fmt.Errorf("gitview: %s: a git directory without a HEAD file: the repository is broken or not yet set up", gitDir)
	}
	r := Repo{Worktree: worktree, GitDir: gitDir, CommonDir: gitDir}
	if b, err := os.ReadFile(filepath.Join(gitDir, "commondir")); err == nil {
		c := strings.TrimRight(string(b), "\r\n")
		if !filepath.IsAbs(c) {
			c = filepath.Join(gitDir, c)
		}
		r.CommonDir = filepath.Clean(c)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return Repo{}, fmt.Errorf("gitview: %w", err)
	}
	return r, nil
}

// hashSize is the size of the repository's object names: 32 bytes if its
// config sets extensions.objectFormat = sha256, else 20 (SHA-1).
func (r Repo) hashSize() (int, error) {
	v, err := configValue(filepath.Join(r.CommonDir, "config"), "extensions", "objectformat")
	if err != nil {
		return 0, err
	}
	if strings.ToLower(v) == "sha256" {
		return 32, nil
	}
	return 20, nil
}

// bareRepo reports whether dir is a bare repository's git directory: a
// HEAD file, objects and refs, and core.bare = true in its config (a
// worktree's .git says false).
func bareRepo(dir string) bool {
	for _, name := range []string{"objects", "refs"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || !fi.IsDir() {
			return false
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "HEAD")); err != nil || !fi.Mode().IsRegular() {
		return false
	}
	v, err := configValue(filepath.Join(dir, "config"), "core", "bare")
	return err == nil && strings.ToLower(v) == "true"
}

// configValue returns the value of key in section of the git config file
// path (the last one set; "" if none, or no such file). It reads only
// the simple form git writes: "[section]" then "key = value", names
// compared without case, a value's quotes dropped.
func configValue(path, section, key string) (string, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("gitview: %w", err)
	}
	defer f.Close()
	in, value := "", ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "[") {
			in, _, _ = strings.Cut(strings.ToLower(strings.Trim(line, "[]")), " ")
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if ok && in == section && strings.EqualFold(strings.TrimSpace(k), key) {
			value = strings.Trim(strings.TrimSpace(v), `"`)
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("gitview: read %s: %w", path, err)
	}
	return value, nil
}
