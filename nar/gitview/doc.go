// Package gitview reads the git view of a directory: the files a git
// worktree tracks, which Nix copies to its store, and hashes, for a flake
// or a git+file input instead of the whole directory.
//
// [Open] finds the worktree (a .git directory or file in the directory or
// a parent), reads its index with [ParseIndex] and returns a [View] whose
// nar.Selection restricts a dump of the directory to the tracked entries.
// Dump the View's Dir with it (nar.DumpOptions.Select, or
// hasher.Options.Select) to get the NAR Nix makes, then check
// [View.Changed]: a git add during the dump makes it a mix of two states.
//
// Caveats:
//   - A split or sparse index, or one with an extension this package does
//     not know that git says readers must understand, is listed by running
//     git ls-files; so is nothing else. The view of a worktree with
//     submodules also runs git (to find out whether it is clean).
//   - Nix versions disagree on a few cases, and the view follows current
//     Nix except for submodules (see Open): a tracked file deleted from the
//     worktree is not in the view, and neither is a directory left holding
//     only deleted files (Nix 2.8 copies such a directory, empty). Nix 2.8
//     copies a clean worktree from git archive, which applies
//     export-ignore and export-subst from .gitattributes and holds
//     skip-worktree files and submodule directories missing from the
//     worktree; the view reads the worktree (as current Nix does for
//     flakes).
//   - Modes come from the worktree, as Nix reads them: with
//     core.fileMode=false a clean worktree's executable bits can differ
//     from the commit's, which Nix 2.8 (git archive) would use.
//   - GIT_DIR, GIT_WORK_TREE, core.worktree and bare repositories are not
//     looked at: the worktree is where the .git is.
package gitview
