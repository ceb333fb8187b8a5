package nartest

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// EditKinds is the number of kinds of Edit.
const EditKinds = 10

// Entries lists the paths of every entry under root (root excluded),
// slash-separated and relative to it, in NAR order: name by name in
// byte order, a directory before its entries ("a/b" before "a-b").
func Entries(root string) ([]string, error) {
	var paths []string
	err := filepath.WalkDir(root, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != root {
			paths = append(paths, filepath.ToSlash(p[len(root)+1:]))
		}
		return nil
	})
	// With '/' as the lowest byte (names hold no NUL), string order is
	// NAR order.
	key := func(p string) string { return strings.ReplaceAll(p, "/", "\x00") }
	slices.SortFunc(paths, func(a, b string) int { return strings.Compare(key(a), key(b)) })
	return paths, err
}

// Edit changes the tree at root in one of EditKinds ways an editor, a
// build or git does, at a position chosen by rng: 0 the first entry, 1
// the last file, 2 a file's contents, 3 a directory added, 4 one
// removed, 5 a rename across directories, 6 an executable bit, 7 a
// symlink retargeted, 8 a file become a directory, 9 a file added whose
// name sorts right after an existing entry's. It returns the paths it
// changed (relative, slash-separated) and what it did.
func Edit(rng *rand.Rand, root string, kind int) (changed []string, what string, err error) {
	all, err := Entries(root)
	if err != nil || len(all) == 0 {
		return nil, "", fmt.Errorf("edit %s: %v entries, %v", root, len(all), err)
	}
	var files, dirs, links []string
	for _, p := range all {
		fi, err := os.Lstat(filepath.Join(root, p))
		if err != nil {
			return nil, "", err
		}
		switch {
		case fi.Mode().IsRegular():
			files = append(files, p)
		case fi.IsDir():
			dirs = append(dirs, p)
		case fi.Mode()&os.ModeSymlink != 0:
			links = append(links, p)
		}
	}
	if len(files) == 0 {
		kind = 3
	}
	pick := func(from []string) string {
		if len(from) == 0 {
			return ""
		}
		return from[rng.IntN(len(from))]
	}
	abs := func(p string) string { return filepath.Join(root, p) }
	parent := func() string { // a directory, or "" for the root
		if d := pick(dirs); d != "" && rng.IntN(4) != 0 {
			return d + "/"
		}
		return ""
	}
	name := fmt.Sprintf("new-%x", rng.Uint64())
	switch kind {
	case 0:
		p := all[0]
		if fi, _ := os.Lstat(abs(p)); fi.Mode().IsRegular() {
			return []string{p}, "the first entry " + p + " appended to", AppendTo(abs(p), "first")
		}
		return []string{p}, "the first entry " + p + " removed", os.RemoveAll(abs(p))
	case 1:
		p := files[len(files)-1]
		for i := len(all) - 1; i >= 0; i-- {
			if slices.Contains(files, all[i]) {
				p = all[i]
				break
			}
		}
		return []string{p}, "the last file " + p + " appended to", AppendTo(abs(p), "last")
	case 2:
		p := pick(files)
		return []string{p}, "the contents of " + p, os.WriteFile(abs(p), Bytes(rng, rng.IntN(3000)), 0o644)
	case 3:
		p := parent() + name
		err := os.Mkdir(abs(p), 0o755)
		if err == nil {
			err = os.WriteFile(abs(p+"/f"), []byte("in a new directory"), 0o644)
		}
		return []string{p}, "a new directory " + p, err
	case 4:
		p := pick(dirs)
		if p == "" {
			return Edit(rng, root, 3)
		}
		return []string{p}, "the directory " + p + " removed", os.RemoveAll(abs(p))
	case 5:
		p := pick(append(files, links...))
		to := parent() + name
		return []string{p, to}, "a rename of " + p + " to " + to, os.Rename(abs(p), abs(to))
	case 6:
		p := pick(files)
		fi, err := os.Stat(abs(p))
		if err != nil {
			return nil, "", err
		}
		return []string{p}, "the executable bit of " + p, os.Chmod(abs(p), fi.Mode().Perm()^0o100)
	case 7:
		p := pick(links)
		if p == "" {
			return Edit(rng, root, 2)
		}
		err := os.Remove(abs(p))
		if err == nil {
			err = os.Symlink("retargeted/"+name, abs(p))
		}
		return []string{p}, "the target of " + p, err
	case 8:
		p := pick(files)
		err := os.Remove(abs(p))
		if err == nil {
			err = os.Mkdir(abs(p), 0o755)
		}
		if err == nil {
			err = os.WriteFile(abs(p+"/was-a-file"), []byte("x"), 0o644)
		}
		return []string{p}, p + " a file become a directory", err
	case 9:
		p := pick(all)
		q := p + "-"
		if rng.IntN(2) == 0 {
			q = p + "\x01"
		}
		for _, err := os.Lstat(abs(q)); err == nil; _, err = os.Lstat(abs(q)) {
			q += "-"
		}
		return []string{q}, "a new file " + q, os.WriteFile(abs(q), []byte("sorts close"), 0o644)
	}
	return nil, "", fmt.Errorf("no edit of kind %d", kind)
}

// AppendTo appends s to the existing file at path, as an editor's save
// of a longer file would change it.
func AppendTo(path, s string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(s)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
