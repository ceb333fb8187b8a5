package gitview

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/narhash/narhash/nar"
)

// A View is the git view of a directory: the tracked entries under it, as
// of one read of the index. Dump Dir with Select to get the NAR Nix
// makes of it.
type View struct {
	Dir    string // the directory, absolute, with symlinks resolved
	Repo   Repo
	Prefix string         // Dir relative to Repo.Worktree ("" at its top), slash-separated
	Select *nar.Selection // the view's entries, relative to Dir
	// Entries counts the tracked paths in the view, Submodules the
	// submodules (gitlinks) among them.
	Entries, Submodules int
	stamp               stamp // of the index and HEAD it was read from
}

// Open reads the git view of path, a directory in a git worktree: the
// paths of the worktree's index below it (staged new files included),
// without .git, untracked or ignored files. Their contents, modes and
// symlink targets are whatever the worktree holds when it is dumped, and
// a directory is in the view when it holds a tracked entry that exists:
// what current Nix (libgit2's status, then an allow-list over the
// worktree) and Nix 2.8 (git ls-files -z, then a filter) copy to the store
// for the flake or git+file input at the worktree's top.
//
// Submodules are treated as Nix 2.8 does without ?submodules=1: none of
// their files, but when the worktree is clean (git diff HEAD --quiet
// --ignore-submodules) an empty directory stands for each, as in the git
// archive Nix 2.8 copies then, and when it is dirty the directories that
// hold one are kept, even if otherwise empty. Current Nix leaves
// submodules out entirely. Finding out whether the worktree is clean runs
// git, only when the view has a submodule.
//
// Below the top, the view is that of the top restricted to path and
// rooted there: what Nix copies for a subdirectory of a flake's source.
func Open(ctx context.Context, path string) (*View, error) {
	dir, err := filepath.Abs(path)
	if err == nil {
		dir, err = filepath.EvalSymlinks(dir)
	}
	if err != nil {
		return nil, fmt.Errorf("gitview: %w", err)
	}
	if fi, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("gitview: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("gitview: %s: not a directory: the git view is of a worktree or a directory in one", path)
	}
	repo, err := FindRepo(dir)
	if err != nil {
		return nil, err
	}
	prefix, err := filepath.Rel(repo.Worktree, dir)
	if err != nil {
		return nil, fmt.Errorf("gitview: %w", err)
	}
	prefix = filepath.ToSlash(prefix)
	if prefix == "." {
		prefix = ""
	}
	if hasDotGit([]byte(prefix)) {
		return nil, fmt.Errorf("gitview: %s: inside the git directory, which the view never holds", path)
	}
	// The index is read between two stats of it, which must agree.
	var entries []Entry
	before := stampOf(repo)
	for try := 1; ; try++ {
		if entries, err = readIndex(ctx, repo); err != nil {
			return nil, err
		}
		after := stampOf(repo)
		if after == before {
			break
		}
		if try == 3 {
			return nil, fmt.Errorf("gitview: index of %s: %w (git kept rewriting it)", repo.Worktree, nar.ErrChanged)
		}
		before = after
	}
	v := &View{Dir: dir, Repo: repo, Prefix: prefix, Select: nar.NewSelection(), stamp: before}
	// The view's paths, cut from one string: the Selection keeps them.
	var all []byte
	var ends []int
	var gitlinks []string
	for i, e := range entries {
		rel, ok := under(e.Path, prefix)
		if !ok || hasDotGit(rel) {
			continue
		}
		if i > 0 && bytes.Equal(e.Path, entries[i-1].Path) {
			continue // another side of a merge conflict: the path is there once
		}
		v.Entries++
		if e.Mode&modeType == ModeGitlink {
			gitlinks = append(gitlinks, string(rel))
			continue
		}
		all = append(all, rel...)
		ends = append(ends, len(all))
	}
	paths, start := string(all), 0
	for _, end := range ends {
		if err := v.Select.Add(paths[start:end]); err != nil {
			return nil, fmt.Errorf("gitview: index of %s: %w", repo.Worktree, err)
		}
		start = end
	}
	v.Submodules = len(gitlinks)
	if len(gitlinks) > 0 {
		if err := v.submodules(ctx, gitlinks); err != nil {
			return nil, err
		}
	}
	if prefix != "" && v.Entries == 0 {
		return nil, fmt.Errorf("gitview: %s: git tracks nothing under it, so the view of the worktree %s does not hold it", path, repo.Worktree)
	}
	return v, nil
}

// submodules keeps, as Nix 2.8 does, each submodule's directory if the
// worktree is clean, else the directories holding one.
func (v *View) submodules(ctx context.Context, gitlinks []string) error {
	ok, err := clean(ctx, v.Repo.Worktree)
	if err != nil {
		return err
	}
	for _, g := range gitlinks {
		if !ok {
			i := strings.LastIndexByte(g, '/')
			if i < 0 {
				continue // the root is there anyway
			}
			g = g[:i]
		}
		if err := v.Select.Keep(g); err != nil {
			return fmt.Errorf("gitview: index of %s: %w", v.Repo.Worktree, err)
		}
	}
	return nil
}

// readIndex reads the worktree's index, or asks git ls-files for one that
// ParseIndex does not read. A worktree without an index tracks nothing.
func readIndex(ctx context.Context, repo Repo) ([]Entry, error) {
	path := filepath.Join(repo.GitDir, "index")
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("gitview: %w", err)
	}
	size, err := repo.hashSize()
	if err != nil {
		return nil, err
	}
	entries, err := ParseIndex(data, size)
	if errors.Is(err, ErrUnsupportedIndex) {
		return lsFiles(ctx, repo.Worktree)
	}
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, path)
	}
	return entries, nil
}

// under returns path relative to prefix, if it is below it.
func under(path []byte, prefix string) ([]byte, bool) {
	if prefix == "" {
		return path, true
	}
	if len(path) <= len(prefix) || path[len(prefix)] != '/' || string(path[:len(prefix)]) != prefix {
		return nil, false
	}
	return path[len(prefix)+1:], true
}

// hasDotGit reports whether a path has a component ".git", which git
// never tracks and the view never holds.
func hasDotGit(path []byte) bool {
	if !bytes.Contains(path, []byte(".git")) {
		return false
	}
	for rest := path; len(rest) > 0; {
		var name []byte
		name, rest, _ = bytes.Cut(rest, []byte{'/'})
		if string(name) == ".git" {
			return true
		}
	}
	return false
}
