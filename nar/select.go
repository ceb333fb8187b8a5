package nar

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// A Selection restricts a dump to some entries of a directory tree, for
// views such as a git worktree's tracked files. Files and symlinks are
// selected by their path; the directories that hold a selected entry are
// dumped with only their selected entries, and a directory holding none
// that exists is left out, unless it was kept (see [Selection.Keep]). The
// root is always dumped.
//
// What is on disk decides what a selected path is: a path selected as a
// file that is a directory on disk is left out (git calls the file
// deleted), and so is a path that only holds selected entries but is a
// file or symlink on disk. Entries selected but absent are left out.
//
// Build it with [NewSelection] and Add, then use it read-only: a
// Selection may be shared by concurrent dumps.
type Selection struct {
	root selNode
	slab []selNode // where new nodes come from, a chunk at a time
	// The previous path added and its directories' nodes: paths added
	// in sorted order share their directories with the one before.
	prev string
	dirs []*selNode
}

// selNode is one path of a Selection.
type selNode struct {
	children map[string]*selNode
	leaf     bool // selected as a file or symlink
	keep     bool // dumped as a directory even with no selected entry
}

// NewSelection returns an empty Selection: a dump with it holds only its
// root directory.
func NewSelection() *Selection { return &Selection{} }

// Add selects the file or symlink at path, relative to the tree's root,
// with slash-separated components ("src/main.go"). The Selection keeps
// substrings of path: cutting many paths from one string saves memory.
func (s *Selection) Add(path string) error {
	n, err := s.node(path)
	if err != nil {
		return err
	}
	n.leaf = true
	return nil
}

// Keep selects the directory at path to be dumped even when none of its
// entries is selected (then empty). Nix 2.8 does this for a git
// submodule of a clean worktree.
func (s *Selection) Keep(path string) error {
	n, err := s.node(path)
	if err != nil {
		return err
	}
	n.keep = true
	return nil
}

// node returns the node of path, making it and its parents.
func (s *Selection) node(path string) (*selNode, error) {
	n, rest, depth := &s.root, path, 0
	for i := 0; i < len(path) && i < len(s.prev) && path[i] == s.prev[i]; i++ {
		if path[i] == '/' {
			depth++
			n, rest = s.dirs[depth-1], path[i+1:]
		}
	}
	s.dirs, s.prev = s.dirs[:depth], ""
	for {
		name, tail, more := strings.Cut(rest, "/")
		if why := checkName(name); why != "" {
			return nil, fmt.Errorf("nar: select %q: %s", path, why)
		}
		if n.children == nil {
			n.children = map[string]*selNode{}
		}
		c := n.children[name]
		if c == nil {
			if len(s.slab) == 0 {
				s.slab = make([]selNode, 256)
			}
			c, s.slab = &s.slab[0], s.slab[1:]
			n.children[name] = c
		}
		n = c
		if !more {
			s.prev = path
			return n, nil
		}
		s.dirs = append(s.dirs, n)
		rest = tail
	}
}

// admits reports whether an entry of type typ (a d_type) selected by n is
// dumped: a directory if it may hold selected entries, anything else if
// it is selected itself.
func (n *selNode) admits(typ uint8) bool {
	if typ == unix.DT_DIR {
		return len(n.children) > 0 || n.keep
	}
	return n.leaf
}
