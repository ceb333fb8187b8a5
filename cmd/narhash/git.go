package main

import (
	"context"

	"github.com/spf13/cobra"

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
// restricts it: with git, PATH's git view.
func source(ctx context.Context, path string, git bool) (string, *nar.Selection, error) {
	if !git {
		return path, nil, nil
	}
	v, err := gitview.Open(ctx, path)
	if err != nil {
		return "", nil, err
	}
	return v.Dir, v.Select, nil
}

// notFlat is the usage error for --git with --flat.
func notFlat(git, flat bool) error {
	if git && flat {
		return usagef("--git reads a directory's git view, and --flat a file's contents: use one of them")
	}
	return nil
}
