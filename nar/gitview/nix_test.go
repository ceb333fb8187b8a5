package gitview_test

// Differential tests: the git view's NAR hash and store path against
// nix flake metadata on repositories built in code. They skip without git
// or nix; CI installs both.

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/narhash/narhash/hasher"
	"github.com/narhash/narhash/nar"
	"github.com/narhash/narhash/nar/gitview"
	"github.com/narhash/narhash/nar/gitview/gittest"
	"github.com/narhash/narhash/nar/nartest"
)

// viewOf returns the NAR hash (SRI) and store path (name source) of the
// git view of dir.
func viewOf(t *testing.T, dir string) gittest.Locked {
	t.Helper()
	v, err := gitview.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if _, err := nar.Dump(context.Background(), h, v.Dir, &nar.DumpOptions{Select: v.Select}); err != nil {
		t.Fatal(err)
	}
	sum := hasher.Hash{Algo: hasher.SHA256, Digest: h.Sum(nil)}
	p, err := hasher.StorePath("/nix/store", "source", sum, true)
	if err != nil {
		t.Fatal(err)
	}
	return gittest.Locked{NARHash: sum.Format(hasher.SRI), Path: p}
}

// agree checks that the view of the repository at dir is what Nix
// copies of it.
func agree(t *testing.T, r *gittest.Repo) {
	t.Helper()
	want := gittest.Metadata(t, r.Dir, r.Env)
	if got := viewOf(t, r.Dir); got != want {
		t.Errorf("git view %s %s, nix flake metadata %s %s", got.NARHash, got.Path, want.NARHash, want.Path)
	}
}

// base fills a repository with a few tracked files and commits them.
func base(r *gittest.Repo) {
	r.Write("README", "hello\n", 0o644)
	r.Write("src/main.go", "package main\n", 0o644)
	r.Write("src/lib/util.go", "package lib\n", 0o644)
	r.Write("run.sh", "#!/bin/sh\n", 0o755)
	r.Git("add", "-A")
	r.Git("commit", "-qm", "base")
}

var cases = []struct {
	name  string
	build func(t *testing.T, r *gittest.Repo)
}{
	{"clean", func(t *testing.T, r *gittest.Repo) { base(r) }},
	{"dirty", func(t *testing.T, r *gittest.Repo) {
		base(r)
		r.Write("src/main.go", "package main // changed\n", 0o644)
	}},
	{"staged", func(t *testing.T, r *gittest.Repo) {
		base(r)
		r.Write("new/file", "staged\n", 0o644)
		r.Git("add", "new/file")
	}},
	{"no commit", func(t *testing.T, r *gittest.Repo) {
		r.Write("a", "a\n", 0o644)
		r.Git("add", "a")
	}},
	{"untracked", func(t *testing.T, r *gittest.Repo) {
		base(r)
		r.Write("untracked", "u\n", 0o644)
		r.Write("src/untracked/deep", "u\n", 0o644)
		must(t, os.Mkdir(filepath.Join(r.Dir, "emptydir"), 0o755))
	}},
	{"ignored", func(t *testing.T, r *gittest.Repo) {
		base(r)
		r.Write(".gitignore", "target/\nresult\n*.o\n", 0o644)
		r.Git("add", ".gitignore")
		r.Write("target/debug/app", "bin\n", 0o755)
		r.Write("src/x.o", "obj\n", 0o644)
		r.Symlink("/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-x", "result")
	}},
	{"force-added ignored", func(t *testing.T, r *gittest.Repo) {
		base(r)
		r.Write(".gitignore", "*.o\n", 0o644)
		r.Write("keep.o", "kept\n", 0o644)
		r.Write("drop.o", "dropped\n", 0o644)
		r.Git("add", ".gitignore")
		r.Git("add", "-f", "keep.o")
	}},
	{"chmod", func(t *testing.T, r *gittest.Repo) {
		base(r)
		must(t, os.Chmod(filepath.Join(r.Dir, "README"), 0o755))
		must(t, os.Chmod(filepath.Join(r.Dir, "run.sh"), 0o644))
	}},
	{"symlinks", func(t *testing.T, r *gittest.Repo) {
		base(r)
		r.Symlink("../README", "src/rel")
		r.Symlink("/etc/hostname", "abs")
		r.Symlink("does/not/exist", "dangling")
		r.Symlink("src/lib", "todir")
		r.Git("add", "-A")
		r.Git("commit", "-qm", "links")
	}},
	{"symlinks dirty", func(t *testing.T, r *gittest.Repo) {
		base(r)
		r.Symlink("src/lib", "todir")
		r.Symlink("nowhere", "dangling")
		r.Git("add", "-A")
	}},
	{"awkward names", func(t *testing.T, r *gittest.Repo) {
		base(r)
		for _, n := range []string{"with space", "new\nline", "caf\xc3\xa9", "raw\xff\xfe", "-dash", "tab\tx", "a-b", "a/b", "a.b", "\"quoted\""} {
			r.Write(n, n, 0o644)
		}
		r.Git("add", "-A")
	}},
	{"deep nesting", func(t *testing.T, r *gittest.Repo) {
		base(r)
		r.Write(strings.Repeat("d/", 60)+"leaf", "deep\n", 0o644)
		r.Git("add", "-A")
		r.Git("commit", "-qm", "deep")
	}},
	{"nested repository", func(t *testing.T, r *gittest.Repo) {
		base(r)
		inner := &gittest.Repo{T: t, Dir: filepath.Join(r.Dir, "inner"), Env: r.Env}
		must(t, os.Mkdir(inner.Dir, 0o755))
		inner.Git("init", "-q")
		inner.Write("file", "inner\n", 0o644)
		inner.Git("add", "file")
		inner.Git("commit", "-qm", "inner")
		// A tracked directory that became a repository of its own.
		r.Git("-C", "src", "init", "-q")
	}},
	{"type changed", func(t *testing.T, r *gittest.Repo) {
		base(r)
		must(t, os.Remove(filepath.Join(r.Dir, "README")))
		r.Symlink("run.sh", "README")
		must(t, os.Remove(filepath.Join(r.Dir, "src/main.go")))
		r.Write("src/main.go/now-a-dir", "x\n", 0o644)
	}},
	{"deleted", func(t *testing.T, r *gittest.Repo) {
		base(r)
		must(t, os.Remove(filepath.Join(r.Dir, "src/main.go")))
		must(t, os.RemoveAll(filepath.Join(r.Dir, "src/lib")))
		must(t, os.Remove(filepath.Join(r.Dir, "src")))
	}},
	{"deleted, parent holds more", func(t *testing.T, r *gittest.Repo) {
		base(r)
		must(t, os.Remove(filepath.Join(r.Dir, "src/main.go")))
	}},
	{"rm --cached", func(t *testing.T, r *gittest.Repo) {
		base(r)
		r.Git("rm", "-q", "--cached", "README")
	}},
	{"intent to add", func(t *testing.T, r *gittest.Repo) {
		base(r)
		r.Write("later", "intent\n", 0o644)
		r.Git("add", "-N", "later")
	}},
	{"merge conflict", func(t *testing.T, r *gittest.Repo) {
		base(r)
		r.Git("checkout", "-qb", "other")
		r.Write("README", "other\n", 0o644)
		r.Git("commit", "-qam", "other")
		r.Git("checkout", "-q", "main")
		r.Write("README", "main\n", 0o644)
		r.Git("commit", "-qam", "main")
		cmdFails(t, r, "merge", "-q", "other")
	}},
	{"index v4", func(t *testing.T, r *gittest.Repo) {
		base(r)
		r.Write("src/lib/util_test.go", "package lib\n", 0o644)
		r.Git("add", "-A")
		r.Git("update-index", "--index-version", "4")
	}},
	{"skip-worktree", func(t *testing.T, r *gittest.Repo) {
		base(r)
		r.Git("update-index", "--skip-worktree", "src/main.go")
		must(t, os.Remove(filepath.Join(r.Dir, "src/main.go")))
		r.Write("README", "dirty\n", 0o644) // see TestNix28Differs
	}},
	{"split index", func(t *testing.T, r *gittest.Repo) {
		base(r)
		r.Git("update-index", "--split-index")
		r.Write("after-split", "x\n", 0o644)
		r.Git("add", "after-split")
		assertIndex(t, r, "link")
	}},
	{"sparse index", func(t *testing.T, r *gittest.Repo) {
		base(r)
		r.Write("docs/guide", "outside the cone\n", 0o644)
		r.Git("add", "docs")
		r.Git("commit", "-qm", "docs")
		r.Git("sparse-checkout", "init", "--cone", "--sparse-index")
		r.Git("sparse-checkout", "set", "src")
		r.Write("README", "dirty\n", 0o644) // see TestNix28Differs
		assertIndex(t, r, "sdir")
	}},
}

func TestAgreesWithNix(t *testing.T) {
	gittest.NeedNix(t)
	home := t.TempDir()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := gittest.Init(t, filepath.Join(nartest.TempDir(t), "repo"), home)
			c.build(t, r)
			agree(t, r)
		})
	}
}

// TestNix28Differs shows the cases where the view follows current Nix
// and Nix 2.8 (the Nix the tests run) copies something else, and that
// each differs from Nix 2.8 in that alone.
func TestNix28Differs(t *testing.T) {
	gittest.NeedNix(t)
	home := t.TempDir()
	for _, c := range []struct {
		name       string
		build, fix func(t *testing.T, r *gittest.Repo)
	}{{
		// Current Nix leaves out what git status calls deleted, and the
		// directories that then hold nothing; Nix 2.8 filters a dump of
		// the worktree by git ls-files, which still lists the deleted
		// file and so keeps its directory, empty.
		name: "deleted file leaves an empty directory",
		build: func(t *testing.T, r *gittest.Repo) {
			base(r)
			must(t, os.Remove(filepath.Join(r.Dir, "src/lib/util.go")))
			must(t, os.Remove(filepath.Join(r.Dir, "src/main.go")))
		},
		fix: func(t *testing.T, r *gittest.Repo) {
			must(t, os.Remove(filepath.Join(r.Dir, "src/lib")))
			must(t, os.Remove(filepath.Join(r.Dir, "src")))
		},
	}, {
		// git diff counts a skip-worktree file as unchanged, so Nix 2.8
		// finds the tree clean and copies the commit (git archive),
		// files outside the sparse checkout included.
		name: "clean sparse checkout",
		build: func(t *testing.T, r *gittest.Repo) {
			base(r)
			r.Git("update-index", "--skip-worktree", "src/main.go")
			must(t, os.Remove(filepath.Join(r.Dir, "src/main.go")))
		},
		fix: func(t *testing.T, r *gittest.Repo) { r.Write("README", "dirty\n", 0o644) },
	}, {
		// Nix 2.8 copies a clean tree from git archive, which leaves
		// out export-ignore paths; current Nix does not for flakes.
		name: "clean export-ignore",
		build: func(t *testing.T, r *gittest.Repo) {
			base(r)
			r.Write(".gitattributes", "secret export-ignore\n", 0o644)
			r.Write("secret", "s\n", 0o644)
			r.Git("add", "-A")
			r.Git("commit", "-qm", "attributes")
		},
		fix: func(t *testing.T, r *gittest.Repo) { r.Write("README", "dirty\n", 0o644) },
	}, {
		// A clean worktree whose submodule's directory is gone: git
		// archive still has it, empty; the view, which reads the
		// worktree, cannot (current Nix never has it).
		name: "clean, submodule directory removed",
		build: func(t *testing.T, r *gittest.Repo) {
			base(r)
			inner := gittest.Init(t, filepath.Join(filepath.Dir(r.Dir), "inner"), filepath.Join(filepath.Dir(r.Dir), "home"))
			inner.Git("commit", "-qm", "inner")
			r.Git("-c", "protocol.file.allow=always", "submodule", "-q", "add", "../inner", "vendor/inner")
			r.Git("commit", "-qm", "submodule")
			must(t, os.RemoveAll(filepath.Join(r.Dir, "vendor/inner")))
		},
		fix: func(t *testing.T, r *gittest.Repo) { r.Write("README", "dirty\n", 0o644) },
	}} {
		t.Run(c.name, func(t *testing.T) {
			r := gittest.Init(t, filepath.Join(nartest.TempDir(t), "repo"), home)
			c.build(t, r)
			if got, nix := viewOf(t, r.Dir), gittest.Metadata(t, r.Dir, r.Env); got == nix {
				t.Errorf("git view and Nix 2.8 agree (%s): the difference documented here is gone", got.NARHash)
			}
			c.fix(t, r)
			agree(t, r)
		})
	}
}

// assertIndex checks that the repository's index has an extension.
func assertIndex(t *testing.T, r *gittest.Repo, ext string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.Dir, ".git/index"))
	must(t, err)
	if !strings.Contains(string(b), ext) {
		t.Fatalf("the index has no %q extension", ext)
	}
	if _, err := gitview.ParseIndex(b, 20); !errors.Is(err, gitview.ErrUnsupportedIndex) {
		t.Fatalf("ParseIndex of an index with %q: got %v, want ErrUnsupportedIndex", ext, err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// cmdFails runs a git command that is expected to fail (a merge with a
// conflict).
func cmdFails(t *testing.T, r *gittest.Repo, args ...string) {
	t.Helper()
	cmd := gittest.Command(r.Dir, r.Env, "git", args...)
	if err := cmd.Run(); err == nil {
		t.Fatalf("git %q succeeded", args)
	}
}

func TestSubmodulesAgreeWithNix(t *testing.T) {
	gittest.NeedNix(t)
	home := t.TempDir()
	for _, c := range []struct {
		name, at string
		dirty    bool
	}{
		{"clean", "sub", false},
		{"clean, nested", "libs/sub", false},
		{"dirty", "sub", true},
		{"dirty, nested", "libs/sub", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			tmp := nartest.TempDir(t)
			inner := gittest.Init(t, filepath.Join(tmp, "inner"), home)
			inner.Write("file", "inner\n", 0o644)
			inner.Git("add", "-A")
			inner.Git("commit", "-qm", "inner")
			r := gittest.Init(t, filepath.Join(tmp, "repo"), home)
			base(r)
			r.Git("-c", "protocol.file.allow=always", "submodule", "-q", "add", "../inner", c.at)
			r.Git("commit", "-qm", "submodule")
			if c.dirty {
				r.Write("README", "dirty\n", 0o644)
			}
			agree(t, r)
		})
	}
}

func TestLinkedWorktreeAgreesWithNix(t *testing.T) {
	gittest.NeedNix(t)
	tmp := nartest.TempDir(t)
	r := gittest.Init(t, filepath.Join(tmp, "repo"), t.TempDir())
	base(r)
	r.Git("worktree", "add", "-q", "-b", "linked", "../linked")
	linked := &gittest.Repo{T: t, Dir: filepath.Join(tmp, "linked"), Env: r.Env}
	linked.Write("only-here", "staged in the linked worktree\n", 0o644)
	linked.Git("add", "only-here")
	agree(t, linked)
	agree(t, r)
}

// TestSubdirectoryAgreesWithNix: the view of a directory inside the
// worktree is that directory inside the source Nix copies; and nix flake
// metadata of a flake in that directory hashes the whole worktree.
func TestSubdirectoryAgreesWithNix(t *testing.T) {
	gittest.NeedNix(t)
	r := gittest.Init(t, filepath.Join(nartest.TempDir(t), "repo"), t.TempDir())
	base(r)
	r.Write("src/untracked", "u\n", 0o644)
	r.Write("src/staged", "s\n", 0o644)
	r.Write("src/flake.nix", "{ outputs = { self }: { }; }\n", 0o644)
	r.Git("add", "src/staged", "src/flake.nix")
	src := gittest.Metadata(t, r.Dir, r.Env).Path
	want := strings.TrimSpace(gittest.Run(t, r.Dir, r.Env, "nix", "--extra-experimental-features", "nix-command",
		"hash", "path", "--type", "sha256", filepath.Join(src, "src")))
	wantPath := strings.TrimSpace(gittest.Run(t, r.Dir, r.Env, "nix-store", "--print-fixed-path", "--recursive", "sha256", want, "source"))
	for _, dir := range []string{filepath.Join(r.Dir, "src"), filepath.Join(r.Dir, "src/")} {
		if got := viewOf(t, dir); got.NARHash != want || got.Path != wantPath {
			t.Errorf("git view of %s: %s %s, Nix's copy of it %s %s", dir, got.NARHash, got.Path, want, wantPath)
		}
	}
	if sub, top := gittest.Metadata(t, filepath.Join(r.Dir, "src"), r.Env), viewOf(t, r.Dir); sub != top {
		t.Errorf("nix flake metadata src: %s %s, the git view of the worktree's top: %s %s", sub.NARHash, sub.Path, top.NARHash, top.Path)
	}
}

// TestRandomAgreeWithNix builds repositories at random, from seeds: trees
// of awkward names, modes and symlinks, .gitignore, a commit or not, then
// random edits and git operations.
func TestRandomAgreeWithNix(t *testing.T) {
	gittest.NeedNix(t)
	home := t.TempDir()
	for seed := range uint64(8) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := gittest.Init(t, filepath.Join(nartest.TempDir(t), "repo"), home)
			gittest.Random(r, seed, 120)
			agree(t, r)
		})
	}
}
