package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// benchGit measures the git view on a git repository made from a copy of
// GOROOT (about 15,000 files): narhash hash --git next to nix flake
// metadata (which hashes the same view and copies it to the store) and
// next to a plain narhash hash of a directory holding the same files
// without .git. The worktree is left dirty (an unstaged edit), so that
// Nix 2.8 reads and hashes it on every run instead of answering from its
// fetcher cache by commit.
func benchGit(ctx context.Context, stdout, stderr io.Writer, dir, self, narhash string, rounds int) error {
	repo, plain := filepath.Join(dir, "goroot-git"), filepath.Join(dir, "goroot-files")
	if _, err := os.Stat(repo + ".ok"); err != nil {
		fmt.Fprintln(stderr, "generating goroot-git (a git repository of a copy of GOROOT)…")
		if err := makeGitRepo(ctx, repo, plain); err != nil {
			return err
		}
		os.WriteFile(repo+".ok", nil, 0o644)
	}
	nixArgs := []string{"nix", "--extra-experimental-features", "nix-command flakes", "flake", "metadata", "--json", repo}
	tools := []tool{
		{"narhash --git", func(string, int64) []string { return []string{narhash, "hash", "--git", "--format", "sri", repo} }},
		{"plain narhash", func(string, int64) []string { return []string{narhash, "hash", "--format", "sri", plain} }},
		{"nix flake metadata", func(string, int64) []string { return nixArgs }},
	}
	if _, err := exec.LookPath("nix"); err != nil {
		fmt.Fprintln(stderr, "benchmark: nix not found; the git rows are measured without it")
		tools = tools[:2]
	}
	samples := map[string][]sample{}
	for r := range rounds + 1 {
		order := slices.Clone(tools)
		for range r % len(order) {
			order = append(order[1:], order[0])
		}
		for _, tl := range order {
			s, err := measure(ctx, self, tl.cmd("", 0))
			if err != nil {
				return fmt.Errorf("%s: %w", tl.name, err)
			}
			if r > 0 {
				samples[tl.name] = append(samples[tl.name], s)
			}
		}
	}
	m := map[string]sample{}
	for _, tl := range tools {
		m[tl.name] = median(samples[tl.name])
	}
	files, err := exec.CommandContext(ctx, "git", "-C", repo, "ls-files", "-z").Output()
	if err != nil {
		return fmt.Errorf("git ls-files: %w", err)
	}
	agree := m["narhash --git"].out == m["plain narhash"].out
	if nix, ok := m["nix flake metadata"]; ok {
		var meta struct {
			Locked struct {
				NARHash string `json:"narHash"`
			} `json:"locked"`
		}
		if err := json.Unmarshal([]byte(nix.out), &meta); err != nil {
			return fmt.Errorf("nix flake metadata: %w", err)
		}
		agree = agree && meta.Locked.NARHash == m["narhash --git"].out
	}
	fmt.Fprintf(stdout, "\nThe git view: a git repository of a copy of GOROOT (%d tracked files, a staged and an unstaged change), %s:\n\n",
		strings.Count(string(files), "\x00"), strings.TrimSpace(goVersion()))
	fmt.Fprintln(stdout, "| command | median | peak RSS |")
	fmt.Fprintln(stdout, "|---|---|---|")
	rows := []struct{ name, label string }{
		{"narhash --git", "`narhash hash --git` of the repository"},
		{"nix flake metadata", "`nix flake metadata --json` of it (Nix 2.8 reads and hashes the same view, and copies it to the store; the warm-up round had copied it already)"},
		{"plain narhash", "`narhash hash` of a directory of the same files, without `.git`"},
	}
	for _, row := range rows {
		s, ok := m[row.name]
		if !ok {
			continue
		}
		fmt.Fprintf(stdout, "| %s | %.3f s | %.0f MiB |\n", row.label, s.wall.Seconds(), float64(s.rss)/1024)
	}
	fmt.Fprintf(stdout, "\nMedians of %d interleaved rounds. The three hashes agreed: %v.\n", rounds, agree)
	if !agree {
		return fmt.Errorf("the hashes differ: %v", m)
	}
	return nil
}

// makeGitRepo copies GOROOT to repo, commits it with a flake.nix, stages
// one change and leaves one unstaged, and makes plain: the same files
// without .git.
func makeGitRepo(ctx context.Context, repo, plain string) error {
	goroot, err := exec.CommandContext(ctx, "go", "env", "GOROOT").Output()
	if err != nil {
		return fmt.Errorf("go env GOROOT: %w", err)
	}
	os.RemoveAll(repo)
	os.RemoveAll(plain)
	env := append(os.Environ(), "GIT_AUTHOR_NAME=b", "GIT_AUTHOR_EMAIL=b@example.org",
		"GIT_COMMITTER_NAME=b", "GIT_COMMITTER_EMAIL=b@example.org", "GIT_CONFIG_NOSYSTEM=1")
	steps := [][]string{
		{"cp", "-a", strings.TrimSpace(string(goroot)), repo},
		{"sh", "-c", "rm -rf .git && echo '{ outputs = { self }: { }; }' > flake.nix"},
		{"git", "init", "-q"},
		{"git", "add", "-A"},
		{"git", "commit", "-qm", "GOROOT"},
		{"sh", "-c", "echo staged > STAGED && git add STAGED && echo '# unstaged' >> flake.nix"},
		{"sh", "-c", "mkdir " + plain + " && git ls-files -z | xargs -0 cp -a --parents -t " + plain},
	}
	for _, s := range steps {
		cmd := exec.CommandContext(ctx, s[0], s[1:]...)
		cmd.Env = env
		if s[0] != "cp" {
			cmd.Dir = repo
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%q: %v: %s", s, err, out)
		}
	}
	return nil
}

func goVersion() string {
	out, _ := exec.Command("go", "version").Output()
	return string(out)
}
