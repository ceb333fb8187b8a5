package gitview

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// git runs git in the worktree, as Nix does (with the user's config, in
// the C locale), and returns its standard output. The variables that point
// git at another repository, index or object store are left out: the
// view is of the worktree's own, whatever the caller's environment (a
// hook runs with GIT_DIR and GIT_INDEX_FILE set; vcsh and yadm set
// GIT_WORK_TREE), as libgit2 in current Nix reads it.
func git(ctx context.Context, worktree string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", worktree}, args...)...)
	cmd.Env = append(gitEnv(os.Environ()), "LC_ALL=C", "GIT_OPTIONAL_LOCKS=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, &gitError{args: args, err: err, stderr: bytes.TrimSpace(stderr.Bytes())}
	}
	return out, nil
}

// repoEnv are the variables of git's local_repo_env (git rev-parse
// --local-env-vars) that choose a repository, its index, objects or refs,
// which git unsets itself before it runs in another repository; the ones
// carrying configuration (GIT_CONFIG_PARAMETERS, GIT_CONFIG_COUNT) stay.
var repoEnv = map[string]bool{
	"GIT_DIR": true, "GIT_WORK_TREE": true, "GIT_IMPLICIT_WORK_TREE": true,
	"GIT_INDEX_FILE": true, "GIT_COMMON_DIR": true, "GIT_OBJECT_DIRECTORY": true,
	"GIT_ALTERNATE_OBJECT_DIRECTORIES": true, "GIT_GRAFT_FILE": true,
	"GIT_SHALLOW_FILE": true, "GIT_NO_REPLACE_OBJECTS": true,
	"GIT_REPLACE_REF_BASE": true, "GIT_NAMESPACE": true, "GIT_PREFIX": true,
	"GIT_INTERNAL_SUPER_PREFIX": true,
}

// gitEnv is env without repoEnv's variables.
func gitEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); !repoEnv[k] {
			out = append(out, kv)
		}
	}
	return out
}

type gitError struct {
	args   []string
	err    error
	stderr []byte
}

func (e *gitError) Error() string {
	if len(e.stderr) > 0 {
		return fmt.Sprintf("git %s: %v: %s", e.args[0], e.err, e.stderr)
	}
	return fmt.Sprintf("git %s: %v", e.args[0], e.err)
}

func (e *gitError) Unwrap() error { return e.err }

// lsFiles lists the index with git ls-files --stage, for the indexes
// ParseIndex does not read (git expands a sparse index for it, and reads
// a split one). Its lines are "MODE OID STAGE\tPATH", NUL-terminated.
func lsFiles(ctx context.Context, worktree string) ([]Entry, error) {
	out, err := git(ctx, worktree, "ls-files", "-z", "--stage")
	if err != nil {
		return nil, fmt.Errorf("gitview: %w", err)
	}
	var entries []Entry
	for len(out) > 0 {
		line, rest, ok := bytes.Cut(out, []byte{0})
		if !ok {
			return nil, errors.New("gitview: git ls-files: output not NUL-terminated")
		}
		out = rest
		meta, path, ok := bytes.Cut(line, []byte{'\t'})
		f := bytes.Fields(meta)
		if !ok || len(f) != 3 || len(path) == 0 {
			return nil, fmt.Errorf("gitview: git ls-files: unexpected line %q", line)
		}
		mode, err1 := strconv.ParseUint(string(f[0]), 8, 32)
		stage, err2 := strconv.ParseUint(string(f[2]), 10, 2)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("gitview: git ls-files: unexpected line %q", line)
		}
		entries = append(entries, Entry{Path: path, Mode: uint32(mode), Stage: uint8(stage)})
	}
	return entries, nil
}

// clean reports whether the worktree's tracked files equal its HEAD
// commit, as Nix 2.8 decides it (git diff HEAD --quiet
// --ignore-submodules): false without a commit.
func clean(ctx context.Context, worktree string) (bool, error) {
	if _, err := git(ctx, worktree, "rev-parse", "--verify", "--quiet", "HEAD^{commit}"); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == 1 {
			return false, nil // no commit yet
		}
		return false, fmt.Errorf("gitview: %w", err)
	}
	_, err := git(ctx, worktree, "diff", "HEAD", "--quiet", "--ignore-submodules", "--")
	var ee *exec.ExitError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &ee) && ee.ExitCode() == 1:
		return false, nil
	}
	return false, fmt.Errorf("gitview: %w", err)
}
