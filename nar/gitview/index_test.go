package gitview_test

import (
	"bytes"
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/narhash/narhash/nar/gitview"
	"github.com/narhash/narhash/nar/gitview/gittest"
	"github.com/narhash/narhash/nar/nartest"
)

// lsStage is git ls-files --stage -z, one line per entry, with the
// extended flags ls-files -t and --debug do not give.
func lsStage(t *testing.T, r *gittest.Repo) []string {
	t.Helper()
	out := r.Git("ls-files", "--stage", "-z")
	lines := strings.Split(strings.TrimSuffix(out, "\x00"), "\x00")
	for i, l := range lines { // drop the object name
		meta, path, _ := strings.Cut(l, "\t")
		f := strings.Fields(meta)
		lines[i] = f[0] + " " + f[2] + "\t" + path
	}
	return lines
}

func parsed(t *testing.T, r *gittest.Repo, hashSize int) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.Dir, ".git/index"))
	must(t, err)
	entries, err := gitview.ParseIndex(b, hashSize)
	must(t, err)
	var lines []string
	for _, e := range entries {
		lines = append(lines, fmt.Sprintf("%06o %d\t%s", e.Mode, e.Stage, e.Path))
	}
	return lines
}

// TestParseIndexVersions reads the same index written as versions 2, 3
// (with extended flags) and 4 (prefix-compressed paths), in SHA-1 and
// SHA-256 repositories, and compares with git ls-files.
func TestParseIndexVersions(t *testing.T) {
	gittest.NeedGit(t)
	for _, format := range []string{"sha1", "sha256"} {
		r := &gittest.Repo{T: t, Dir: filepath.Join(nartest.TempDir(t), "repo"), Env: gittest.Env(t.TempDir())}
		must(t, os.Mkdir(r.Dir, 0o755))
		r.Git("init", "-q", "--object-format="+format)
		gittest.Random(r, 11, 300)
		r.Write("later", "x", 0o644)
		r.Git("add", "-A")
		size := map[string]int{"sha1": 20, "sha256": 32}[format]
		for _, v := range []string{"2", "3", "4"} {
			r.Git("update-index", "--index-version", v)
			if v == "3" {
				r.Git("update-index", "--skip-worktree", "later")
			}
			got, want := parsed(t, r, size), lsStage(t, r)
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("%s, version %s: ParseIndex gave\n%q\ngit ls-files\n%q", format, v, got, want)
			}
		}
	}
}

// TestParseIndexFlags: skip-worktree and intent-to-add are read.
func TestParseIndexFlags(t *testing.T) {
	gittest.NeedGit(t)
	r := gittest.Init(t, filepath.Join(nartest.TempDir(t), "repo"), t.TempDir())
	r.Write("a", "a", 0o644)
	r.Write("b", "b", 0o644)
	r.Git("add", "a")
	r.Git("add", "-N", "b")
	r.Git("update-index", "--skip-worktree", "a")
	b, err := os.ReadFile(filepath.Join(r.Dir, ".git/index"))
	must(t, err)
	entries, err := gitview.ParseIndex(b, 20)
	must(t, err)
	flags := map[string][2]bool{}
	for _, e := range entries {
		flags[string(e.Path)] = [2]bool{e.SkipWorktree, e.IntentToAdd}
	}
	if flags["a"] != [2]bool{true, false} || flags["b"] != [2]bool{false, true} {
		t.Errorf("skip-worktree, intent-to-add: got %v", flags)
	}
}

func TestParseIndexCorrupt(t *testing.T) {
	gittest.NeedGit(t)
	r := gittest.Init(t, filepath.Join(nartest.TempDir(t), "repo"), t.TempDir())
	gittest.Random(r, 3, 40)
	r.Git("add", "-A")
	good, err := os.ReadFile(filepath.Join(r.Dir, ".git/index"))
	must(t, err)
	flip := bytes.Clone(good)
	flip[40] ^= 1
	for name, b := range map[string][]byte{
		"empty":     nil,
		"header":    []byte("DIRX\x00\x00\x00\x02\x00\x00\x00\x00" + strings.Repeat("\x00", 20)),
		"version 5": append([]byte("DIRC\x00\x00\x00\x05\x00\x00\x00\x00"), make([]byte, 20)...),
		"truncated": good[:len(good)/2],
		"checksum":  flip,
		"count":     append([]byte("DIRC\x00\x00\x00\x02\xff\xff\xff\xff"), make([]byte, 20)...),
	} {
		if _, err := gitview.ParseIndex(b, 20); err == nil {
			t.Errorf("%s: ParseIndex succeeded", name)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	gittest.NeedGit(t)
	tmp := nartest.TempDir(t)
	r := gittest.Init(t, filepath.Join(tmp, "repo"), t.TempDir())
	base(r)
	must(t, os.Mkdir(filepath.Join(r.Dir, "untracked"), 0o755))
	must(t, os.Mkdir(filepath.Join(tmp, "plain"), 0o755))
	bare := filepath.Join(tmp, "bare.git")
	if out, err := exec.Command("git", "init", "-q", "--bare", bare).CombinedOutput(); err != nil {
		t.Fatalf("git init --bare: %v: %s", err, out)
	}
	for _, c := range []struct{ path, want string }{
		{filepath.Join(tmp, "plain"), "not in a git worktree"},
		{bare, "is a bare git repository"},
		{filepath.Join(bare, "refs"), bare + " is a bare git repository"},
		{filepath.Join(r.Dir, "README"), "not a directory"},
		{filepath.Join(r.Dir, ".git"), "inside the git directory"},
		{filepath.Join(r.Dir, ".git/refs"), "inside the git directory"},
		{filepath.Join(r.Dir, "untracked"), "git tracks nothing under it"},
		{filepath.Join(r.Dir, "missing"), "no such file"},
	} {
		_, err := gitview.Open(context.Background(), c.path)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Open(%s): got %v, want an error saying %q", c.path, err, c.want)
		}
	}
	_, err := gitview.Open(context.Background(), filepath.Join(tmp, "plain"))
	if !errors.Is(err, gitview.ErrNotWorktree) {
		t.Errorf("outside a worktree: %v does not match ErrNotWorktree", err)
	}
}

// TestOpenFindsWorktreeUpwards: a directory deep inside the worktree
// finds it, and its view is the entries below it.
func TestOpenFindsWorktreeUpwards(t *testing.T) {
	gittest.NeedGit(t)
	r := gittest.Init(t, filepath.Join(nartest.TempDir(t), "repo"), t.TempDir())
	base(r)
	v, err := gitview.Open(context.Background(), filepath.Join(r.Dir, "src/lib"))
	must(t, err)
	if v.Repo.Worktree != r.Dir || v.Prefix != "src/lib" || v.Entries != 1 {
		t.Errorf("got worktree %s prefix %q entries %d, want %s src/lib 1", v.Repo.Worktree, v.Prefix, v.Entries, r.Dir)
	}
}

// FuzzIndex: ParseIndex never panics, and what it accepts is sorted and
// well formed.
func FuzzIndex(f *testing.F) {
	for _, v := range []string{"2", "3", "4"} {
		f.Add(seedIndex(f, v))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) >= sha1.Size { // a valid checksum, or the fuzzer never gets past it
			sum := sha1.Sum(b[:len(b)-sha1.Size])
			copy(b[len(b)-sha1.Size:], sum[:])
		}
		entries, err := gitview.ParseIndex(b, 20)
		if err != nil {
			return
		}
		for i, e := range entries {
			if len(e.Path) == 0 || i > 0 && bytes.Compare(entries[i-1].Path, e.Path) > 0 {
				t.Fatalf("entry %d: %q accepted", i, e.Path)
			}
		}
	})
}

// seedIndex returns an index of a small repository, in a version, made
// by git; without git, a hand-made empty index.
func seedIndex(f *testing.F, version string) []byte {
	empty := append([]byte("DIRC\x00\x00\x00\x02\x00\x00\x00\x00"), make([]byte, 20)...)
	if _, err := exec.LookPath("git"); err != nil {
		return empty
	}
	dir := f.TempDir()
	r := &gittest.Repo{T: f, Dir: dir, Env: gittest.Env(f.TempDir())}
	r.Git("init", "-q")
	r.Write("a/b", "x", 0o644)
	r.Write("a-b", "x", 0o755)
	r.Symlink("a", "link")
	r.Write("c\xff", "x", 0o644)
	r.Git("add", "-A")
	r.Git("update-index", "--index-version", version)
	b, err := os.ReadFile(filepath.Join(dir, ".git/index"))
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// TestChanged: a View knows when git's index or HEAD changed after it was
// read.
func TestChanged(t *testing.T) {
	gittest.NeedGit(t)
	r := gittest.Init(t, filepath.Join(nartest.TempDir(t), "repo"), t.TempDir())
	base(r)
	for _, op := range [][]string{{"add", "flake.nix"}, {"rm", "-q", "--cached", "README"}, {"checkout", "-q", "-b", "other"}} {
		v, err := gitview.Open(context.Background(), r.Dir)
		must(t, err)
		if v.Changed() {
			t.Fatal("a view just read says it changed")
		}
		r.Write("flake.nix", "{ outputs = { self }: { }; } # "+op[0]+"\n", 0o644)
		r.Git(op...)
		if !v.Changed() {
			t.Errorf("git %s: the view does not say it changed", op[0])
		}
	}
}

// TestOpenIgnoresGitEnv: the view is of the worktree's own repository
// and index whatever GIT_DIR, GIT_WORK_TREE and GIT_INDEX_FILE say (a
// hook sets them), also where it runs git (a split index is read by git
// ls-files).
func TestOpenIgnoresGitEnv(t *testing.T) {
	gittest.NeedGit(t)
	tmp := nartest.TempDir(t)
	r := gittest.Init(t, filepath.Join(tmp, "repo"), t.TempDir())
	base(r)
	r.Git("update-index", "--split-index")
	r.Write("after-split", "x\n", 0o644)
	r.Git("add", "after-split")
	assertIndex(t, r, "link")
	want, err := gitview.Open(context.Background(), r.Dir)
	must(t, err)
	other := gittest.Init(t, filepath.Join(tmp, "other"), t.TempDir())
	other.Write("only-in-other", "y\n", 0o644)
	other.Git("add", "-A")
	t.Setenv("GIT_DIR", filepath.Join(other.Dir, ".git"))
	t.Setenv("GIT_WORK_TREE", other.Dir)
	t.Setenv("GIT_INDEX_FILE", filepath.Join(other.Dir, ".git/index"))
	got, err := gitview.Open(context.Background(), r.Dir)
	if err != nil {
		t.Fatalf("Open with another repository's GIT_DIR in the environment: %v", err)
	}
	if got.Entries != want.Entries {
		t.Errorf("with another repository's GIT_DIR, GIT_WORK_TREE and GIT_INDEX_FILE: %d entries, want %d", got.Entries, want.Entries)
	}
}
