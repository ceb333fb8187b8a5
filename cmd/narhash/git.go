package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/narhash/narhash/hasher"
	"github.com/narhash/narhash/nar"
	"github.com/narhash/narhash/nar/gitview"
)

// gitFlag adds --git to a command that reads a path.
func gitFlag(c *cobra.Command, git *bool) {
	c.Flags().BoolVar(git, "git", false, "read PATH's git view: only what git tracks, as Nix copies a flake's source")
}

// gitHelp is the help of --git, shown by the commands that have it.
const gitHelp = `
With --git, PATH is a git worktree, or a directory in one, and what is read
is its git view: the entries of git's index under PATH (staged new files
included) with their contents, modes and symlink targets from the worktree,
and the directories that hold them; never .git, untracked or ignored files.
That is what Nix copies to the store for a flake in a git repository, so
'narhash hash --git --sri DIR' prints the locked.narHash of
'nix flake metadata --json DIR' and 'narhash store-path --git DIR' its path
(name "source"). For a directory below the worktree's top, the view is the
top's restricted to it, rooted there.`

// source returns the directory to read for path and the selection that
// restricts it: with git, PATH's git view, returned too (else nil).
func source(ctx context.Context, path string, git bool) (string, *nar.Selection, *gitview.View, error) {
	if !git {
		return path, nil, nil, nil
	}
	v, err := gitview.Open(ctx, path)
	if err != nil {
		return "", nil, nil, err
	}
	return v.Dir, v.Select, v, nil
}

// hashSource is hasher.HashPath of path, or with git of its git view; a
// git view whose index changed while it was hashed is hashed again (3
// attempts), as a tree that changes is. Its errors name path.
func hashSource(ctx context.Context, path string, git bool, opt hasher.Options) (hasher.Result, error) {
	dumpGC()
	for try := 1; ; try++ {
		dir, sel, v, err := source(ctx, path, git)
		if err != nil {
			return hasher.Result{}, err
		}
		opt.Select = sel
		res, err := hasher.HashPath(ctx, dir, &opt)
		if err != nil {
			return hasher.Result{}, fmt.Errorf("hash %s: %w", path, err)
		}
		if v == nil || !v.Changed() {
			return res, nil
		}
		if try == 3 {
			return hasher.Result{}, fmt.Errorf("hash %s: %w (git's index changed while it was hashed, %d times): hash it again once it is quiet", path, nar.ErrChanged, try)
		}
	}
}

// notFlat is the usage error for --git with --flat.
func notFlat(git, flat bool) error {
	if git && flat {
		return usagef("--git reads a directory's git view, and --flat a file's contents: use one of them")
	}
	return nil
}
