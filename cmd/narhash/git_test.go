package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/narhash/narhash/nar/gitview/gittest"
	"github.com/narhash/narhash/nar/nartest"
)

// TestGitAgreesWithNix runs exactly the commands that Nix's answers are
// checked with, narhash hash --git --format sri DIR and narhash
// store-path --git DIR, on random repositories, and compares them with
// nix flake metadata --json DIR; then dump --git with nix-store --dump of
// that store path, and verify --git.
func TestGitAgreesWithNix(t *testing.T) {
	gittest.NeedNix(t)
	home := t.TempDir()
	for seed := range uint64(4) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := gittest.Init(t, filepath.Join(nartest.TempDir(t), "repo"), home)
			gittest.Random(r, 100+seed, 80)
			want := gittest.Metadata(t, r.Dir, r.Env)
			got := strings.TrimSpace(string(narhashOK(t, nil, "hash", "--git", "--format", "sri", r.Dir)))
			if got != want.NARHash {
				t.Errorf("hash --git --format sri: %s, nix flake metadata: %s", got, want.NARHash)
			}
			path := strings.TrimSpace(string(narhashOK(t, nil, "store-path", "--git", r.Dir)))
			if path != want.Path {
				t.Errorf("store-path --git: %s, nix flake metadata: %s", path, want.Path)
			}
			dump := narhashOK(t, nil, "dump", "--git", r.Dir)
			if nixDump := nixOut(t, "nix-store", "--dump", want.Path); !bytes.Equal(dump, nixDump) {
				t.Errorf("dump --git differs from nix-store --dump %s", want.Path)
			}
			narhashOK(t, nil, "verify", "--git", r.Dir, want.NARHash)
			if _, _, code := narhash(t, nil, "verify", r.Dir, want.NARHash); code != 1 {
				t.Errorf("verify without --git: exit %d, want 1 (the whole directory has another hash)", code)
			}
		})
	}
}

// TestGitSubdirectory: hash --git of a directory inside the worktree, in
// every output form, is that directory inside Nix's copy.
func TestGitSubdirectory(t *testing.T) {
	gittest.NeedNix(t)
	r := gittest.Init(t, filepath.Join(nartest.TempDir(t), "repo"), t.TempDir())
	r.Write("sub/a", "a\n", 0o644)
	r.Write("sub/deeper/b", "b\n", 0o755)
	r.Write("sub/untracked", "u\n", 0o644)
	r.Git("add", "flake.nix", "sub/a", "sub/deeper/b")
	src := gittest.Metadata(t, r.Dir, r.Env).Path
	want := strings.TrimSpace(string(nixOut(t, "nix-hash", "--type", "sha256", "--base32", filepath.Join(src, "sub"))))
	if got := strings.TrimSpace(string(narhashOK(t, nil, "hash", "--git", filepath.Join(r.Dir, "sub")))); got != want {
		t.Errorf("hash --git sub: %s, nix-hash of sub in Nix's copy: %s", got, want)
	}
}

func TestGitErrors(t *testing.T) {
	gittest.NeedGit(t)
	plain := t.TempDir()
	if err := os.WriteFile(filepath.Join(plain, "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"hash", "--git", plain}, 1, "not in a git worktree"},
		{[]string{"store-path", "--git", plain}, 1, "not in a git worktree"},
		{[]string{"dump", "--git", plain}, 1, "not in a git worktree"},
		{[]string{"hash", "--git", filepath.Join(plain, "f")}, 1, "not a directory"},
		{[]string{"hash", "--git", "--flat", plain}, 2, "--git"},
		{[]string{"verify", "--git", "--flat", plain, "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="}, 2, "--git"},
	} {
		_, stderr, code := narhash(t, nil, c.args...)
		if code != c.code || !strings.Contains(string(stderr), c.want) {
			t.Errorf("narhash %q: exit %d, %q; want exit %d saying %q", c.args, code, stderr, c.code, c.want)
		}
	}
}

// TestQueryGitOffline: query --git without a daemon hashes the git view
// here, as hash --git does.
func TestQueryGitOffline(t *testing.T) {
	gittest.NeedGit(t)
	r := gittest.Init(t, filepath.Join(nartest.TempDir(t), "repo"), t.TempDir())
	r.Write("untracked", "u\n", 0o644)
	sock := filepath.Join(nartest.TempDir(t), "none.sock")
	got := narhashOK(t, nil, "query", "--git", "--socket", sock, r.Dir)
	if want := narhashOK(t, nil, "hash", "--git", r.Dir); !bytes.Equal(got, want) {
		t.Errorf("query --git offline: %s, hash --git: %s", got, want)
	}
	if plain := narhashOK(t, nil, "hash", r.Dir); bytes.Equal(got, plain) {
		t.Error("query --git gave the hash of the whole directory")
	}
}

// TestPathFlakeIsPlainHash: nix flake metadata path:DIR hashes the whole
// directory, .git included, as plain narhash hash does (the README says
// so next to --git).
func TestPathFlakeIsPlainHash(t *testing.T) {
	gittest.NeedNix(t)
	r := gittest.Init(t, filepath.Join(nartest.TempDir(t), "repo"), t.TempDir())
	r.Write("untracked", "u\n", 0o644)
	out := gittest.Run(t, r.Dir, r.Env, "nix", "--extra-experimental-features", "nix-command flakes", "flake", "metadata", "--json", "path:"+r.Dir)
	got := strings.TrimSpace(string(narhashOK(t, nil, "hash", "--sri", r.Dir)))
	if !strings.Contains(out, `"narHash":"`+got+`"`) {
		t.Errorf("narhash hash %s, nix flake metadata path: %s", got, out)
	}
}
