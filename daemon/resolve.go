//go:build linux

package daemon

import (
	"os"
	"path/filepath"
	"strings"
)

// resolveQuery returns the path a query names as the kernel, and so Nix,
// reads it: ".." after a symlink goes up from the symlink's target, not
// lexically; a trailing slash follows a symlink. Other paths are only
// cleaned, the last name left unfollowed.
func resolveQuery(p string) (string, error) {
	dotdot := false
	for _, c := range strings.Split(p, "/") {
		dotdot = dotdot || c == ".."
	}
	c := filepath.Clean(p)
	trailing := strings.HasSuffix(p, "/") && c != "/"
	if !dotdot && !trailing {
		return c, nil
	}
	if !dotdot {
		if st, err := os.Lstat(c); err != nil || st.Mode()&os.ModeSymlink == 0 {
			return c, nil
		}
		return filepath.EvalSymlinks(c)
	}
	i := strings.LastIndexByte(strings.TrimRight(p, "/"), '/')
	last := strings.TrimRight(p, "/")[i+1:]
	if last == ".." || last == "." || trailing {
		return filepath.EvalSymlinks(p)
	}
	dir, err := filepath.EvalSymlinks(p[:i+1])
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, last), nil
}

// throughSymlink reports whether a directory on the way from the root r
// to p (r itself included, p excluded) is not a plain directory now: a
// symlink there leads out of what r's watches see. On the loop.
func throughSymlink(r *root, p string) bool {
	if p == r.path {
		return false
	}
	dir := r.path
	for {
		st, err := os.Lstat(dir)
		if err != nil || !st.IsDir() {
			return err == nil // a missing directory: the query says so
		}
		rest := strings.TrimPrefix(p, dir)
		rest = strings.TrimPrefix(rest, "/")
		name, _, more := strings.Cut(rest, "/")
		if !more {
			return false
		}
		dir = filepath.Join(dir, name)
	}
}
