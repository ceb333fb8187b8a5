// Package gittest builds git repositories for tests, and asks real Nix
// what it makes of them (nix flake metadata).
package gittest

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// NeedGit skips t unless git is installed.
func NeedGit(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not found: these tests build git repositories; install it with 'apt-get install -y git'")
	}
}

// NeedNix skips t unless git and nix are installed.
func NeedNix(t testing.TB) {
	t.Helper()
	NeedGit(t)
	if _, err := exec.LookPath("nix"); err != nil {
		t.Skip("nix not found: these tests compare with real Nix (nix flake metadata); install it with 'apt-get install -y nix-bin'")
	}
}

// Env is the environment git and nix run in: a HOME of their own (no
// user config, a fresh Nix fetcher cache) and a fixed identity.
func Env(home string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "GIT_") || k == "HOME" || strings.HasPrefix(k, "XDG_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+home, "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.org",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.org")
}

// A Repo is a git worktree being built.
type Repo struct {
	T   testing.TB
	Dir string
	Env []string
}

// Init makes a repository at dir (created if needed), with a tracked
// flake.nix so that nix flake metadata accepts it. home is the HOME of
// git and nix.
func Init(t testing.TB, dir, home string) *Repo {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r := &Repo{T: t, Dir: dir, Env: Env(home)}
	r.Git("init", "-q", "-b", "main")
	r.Write("flake.nix", "{ outputs = { self }: { }; }\n", 0o644)
	r.Git("add", "flake.nix")
	return r
}

// Git runs git in the repository and returns its output.
func (r *Repo) Git(args ...string) string {
	r.T.Helper()
	return Run(r.T, r.Dir, r.Env, "git", args...)
}

// Write writes a file, making its directories.
func (r *Repo) Write(rel, data string, perm os.FileMode) {
	r.T.Helper()
	p := filepath.Join(r.Dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.T.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), perm); err != nil {
		r.T.Fatal(err)
	}
	if err := os.Chmod(p, perm); err != nil {
		r.T.Fatal(err)
	}
}

// Symlink makes a symlink, making its directory.
func (r *Repo) Symlink(target, rel string) {
	r.T.Helper()
	p := filepath.Join(r.Dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.T.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		r.T.Fatal(err)
	}
}

// Run runs a command in dir and returns its standard output; it fails t
// with the standard error if the command fails.
func Run(t testing.TB, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := Command(dir, env, name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %q in %s: %v: %s", name, args, dir, err, stderr.String())
	}
	return string(out)
}

// Command returns a command to run in dir with env.
func Command(dir string, env []string, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir, cmd.Env = dir, env
	return cmd
}

// Locked is what nix flake metadata --json says of a flake's source.
type Locked struct {
	NARHash string // SRI, sha256-…
	Path    string // its store path, /nix/store/…-source
}

// Metadata runs nix flake metadata --json on the flake at dir.
func Metadata(t testing.TB, dir string, env []string) Locked {
	t.Helper()
	out := Run(t, dir, env, "nix", "--extra-experimental-features", "nix-command flakes",
		"flake", "metadata", "--json", dir)
	var m struct {
		Locked struct {
			NARHash string `json:"narHash"`
		} `json:"locked"`
		Path string `json:"path"`
	}
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("nix flake metadata %s: %v: %s", dir, err, out)
	}
	if m.Locked.NARHash == "" || m.Path == "" {
		t.Fatalf("nix flake metadata %s: no locked.narHash or path: %s", dir, out)
	}
	return Locked{m.Locked.NARHash, m.Path}
}
