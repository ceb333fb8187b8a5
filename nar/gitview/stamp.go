package gitview

import (
	"golang.org/x/sys/unix"
	"path/filepath"
)

// stamp is the stat of the git files a view is read from: the index, and
// HEAD (which, with the refs, decides how submodules show). git replaces
// each by a rename, so any change gives it a new inode.
type stamp [2]fileID

type fileID struct {
	ino, size    int64
	mtime, ctime unix.Timespec
	exists       bool
}

func stampOf(r Repo) stamp {
	var s stamp
	for i, name := range []string{"index", "HEAD"} {
		var st unix.Stat_t
		if unix.Stat(filepath.Join(r.GitDir, name), &st) == nil {
			s[i] = fileID{int64(st.Ino), st.Size, st.Mtim, st.Ctim, true}
		}
	}
	return s
}

// Changed reports whether git's index or HEAD changed since the view was
// read: then a dump made with it may mix the old index with the new
// worktree, and should be made again from a new View.
func (v *View) Changed() bool { return stampOf(v.Repo) != v.stamp }
