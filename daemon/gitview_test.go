//go:build linux

package daemon

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/narhash/narhash/api"
	"github.com/narhash/narhash/hasher"
	"github.com/narhash/narhash/nar/gitview"
	"github.com/narhash/narhash/nar/gitview/gittest"
	"github.com/narhash/narhash/nar/nartest"
)

// offlineGit is narhash hash --git of path, computed here.
func offlineGit(t *testing.T, path string) string {
	t.Helper()
	v, err := gitview.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	res, err := hasher.HashPath(context.Background(), v.Dir, &hasher.Options{Select: v.Select})
	if err != nil {
		t.Fatal(err)
	}
	return res.Hash.Format(hasher.Nix32)
}

// gitOp makes one random change of a worktree: edit a tracked file, add
// a new one, git rm --cached one, commit, check out the other branch,
// rebase onto it, chmod, or change only what the view leaves out
// (untracked and ignored files, .git's objects by a git gc). It says what
// it did.
func gitOp(rng *rand.Rand, r *gittest.Repo, i int, branches [2]string) string {
	tracked := strings.Split(strings.TrimSuffix(r.Git("ls-files", "-z"), "\x00"), "\x00")
	f := tracked[rng.IntN(len(tracked))]
	switch rng.IntN(10) {
	case 0:
		data := fmt.Sprintf("edit %d\n", i)
		if f == "flake.nix" { // still a flake, for Nix
			data = fmt.Sprintf("{ outputs = { self }: { }; } # edit %d\n", i)
		}
		r.Write(f, data, 0o644)
		return "edit " + f
	case 1:
		name := fmt.Sprintf("dir%d/new %d", rng.IntN(3), i)
		r.Write(name, fmt.Sprintf("new %d\n", i), 0o644)
		r.Git("add", "--", name)
		return "add " + name
	case 2:
		if len(tracked) > 3 && f != "flake.nix" {
			r.Git("rm", "-q", "--cached", "--", f)
			return "rm --cached " + f
		}
		return "nothing"
	case 3:
		r.Git("add", "-A")
		r.Git("commit", "-qm", fmt.Sprint(i), "--allow-empty")
		return "commit"
	case 4:
		r.Git("add", "-A")
		r.Git("commit", "-qm", fmt.Sprint(i), "--allow-empty")
		branch := branches[0]
		if strings.TrimSpace(r.Git("branch", "--show-current")) == branch {
			branch = branches[1]
		}
		r.Git("checkout", "-q", branch)
		return "checkout " + branch
	case 5:
		p := filepath.Join(r.Dir, f)
		if fi, err := os.Lstat(p); err == nil && fi.Mode().IsRegular() {
			os.Chmod(p, fi.Mode().Perm()^0o100)
			return "chmod " + f
		}
		return "nothing"
	case 6:
		r.Write(fmt.Sprintf("untracked %d", i), "u\n", 0o644)
		return "untracked"
	case 7:
		r.Write(fmt.Sprintf("build/out %d", i), "ignored\n", 0o755)
		return "ignored"
	case 8:
		r.Git("add", "-A")
		r.Git("commit", "-qm", fmt.Sprint(i), "--allow-empty")
		other := branches[0]
		if strings.TrimSpace(r.Git("branch", "--show-current")) == other {
			other = branches[1]
		}
		if gittest.Command(r.Dir, r.Env, "git", "rebase", "-q", other).Run() != nil {
			r.Git("rebase", "--abort")
			return "rebase onto " + other + " (aborted: a conflict)"
		}
		return "rebase onto " + other
	default:
		r.Git("gc", "-q")
		return "gc"
	}
}

// newGitRepo makes a repository with two branches, a .gitignore and a
// few files, in a directory of its own.
func newGitRepo(t *testing.T) *gittest.Repo {
	t.Helper()
	gittest.NeedGit(t)
	r := gittest.Init(t, filepath.Join(nartest.TempDir(t), "repo"), t.TempDir())
	r.Write(".gitignore", "build/\n", 0o644)
	for i := range 5 {
		r.Write(fmt.Sprintf("dir%d/file%d", i%3, i), fmt.Sprintf("file %d\n", i), 0o644)
	}
	r.Git("add", "-A")
	r.Git("commit", "-qm", "base")
	r.Git("branch", "other")
	return r
}

// TestGitViewFreshness: after each of many random edits and git
// operations, the daemon's answer for a git view is the hash computed
// offline right after it, for the view of a worktree's top (its .git
// watched), and for two whose git directory is outside every root: a
// directory inside the worktree watched alone, and a linked worktree.
func TestGitViewFreshness(t *testing.T) {
	const trials = 150
	r := newGitRepo(t)
	linked := filepath.Join(filepath.Dir(r.Dir), "linked")
	r.Git("worktree", "add", "-q", "-b", "linked", linked)
	lr := &gittest.Repo{T: t, Dir: linked, Env: r.Env}
	lr.Git("branch", "linked-other")
	stale, nixChecks := 0, 0
	ops := map[string]int{} // what the trials did, by kind
	for _, c := range []struct {
		name     string
		repo     *gittest.Repo
		query    string
		branches [2]string
	}{
		{"top", r, r.Dir, [2]string{"main", "other"}},
		{"subdirectory", r, filepath.Join(r.Dir, "dir1"), [2]string{"main", "other"}},
		{"linked worktree", lr, linked, [2]string{"linked", "linked-other"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(len(c.name)), 8))
			c.repo.T = t
			d := start(t, Config{Watch: []string{c.query}})
			for i := range trials {
				if _, err := os.Stat(c.query); err != nil {
					os.MkdirAll(c.query, 0o755)
					c.repo.Write(filepath.Join(filepath.Base(c.query), "keep"), "keep\n", 0o644)
					c.repo.Git("add", "--", filepath.Join(filepath.Base(c.query), "keep"))
				}
				did := gitOp(rng, c.repo, i, c.branches)
				kind, _, _ := strings.Cut(did, " ")
				ops[kind]++
				got, err := d.c.HashView(context.Background(), c.query, api.ViewGit, "", false)
				if err != nil {
					if strings.Contains(err.Error(), "tracks nothing") {
						continue // the subdirectory's last file went
					}
					t.Fatalf("trial %d (%s): %v", i, did, err)
				}
				want := offlineGit(t, c.query)
				if got.Hash != want {
					stale++
					t.Errorf("trial %d, after %s: the daemon said %s (%s), the view is %s", i, did, got.Hash, got.Source, want)
				}
				if i%30 == 0 && c.query == c.repo.Dir && haveNix() {
					// A spot check against Nix itself.
					nix := gittest.Metadata(t, c.repo.Dir, c.repo.Env).NARHash
					if h, err := hasher.Parse(nix, hasher.SHA256); err != nil || h.Format(hasher.Nix32) != got.Hash {
						t.Errorf("trial %d, after %s: the daemon said %s, nix flake metadata %s", i, did, got.Hash, nix)
					}
					nixChecks++
				}
				if got.View != api.ViewGit {
					t.Errorf("answer for view %q", got.View)
				}
			}
		})
	}
	t.Logf("%d trials of each of 3 views (%v), %d stale answers; %d answers checked against nix flake metadata too", trials, ops, stale, nixChecks)
}

func haveNix() bool {
	_, err := exec.LookPath("nix")
	return err == nil
}

// TestGitViewSubscribe: a subscriber to a git view hears of a git add of
// a file that was already there, a change of the index alone, whether the
// git directory is in the watched root (the worktree's top) or not (a
// linked worktree watched alone).
func TestGitViewSubscribe(t *testing.T) {
	r := newGitRepo(t)
	linked := filepath.Join(filepath.Dir(r.Dir), "linked")
	r.Git("worktree", "add", "-q", "-b", "linked", linked)
	for _, dir := range []string{r.Dir, linked} {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			wt := &gittest.Repo{T: t, Dir: dir, Env: r.Env}
			wt.Write("later", "untracked for now\n", 0o644)
			d := start(t, Config{Watch: []string{dir}})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			got := make(chan string, 16)
			go d.c.SubscribeView(ctx, dir, api.ViewGit, "", func(h api.HashResult) error { got <- h.Hash; return nil })
			first := next(t, got)
			if want := offlineGit(t, dir); first != want {
				t.Fatalf("first line %s, want %s", first, want)
			}
			wt.Git("add", "later")
			want := offlineGit(t, dir)
			if want == first {
				t.Fatal("git add did not change the view")
			}
			if h := next(t, got); h != want {
				t.Errorf("after git add: %s, want %s", h, want)
			}
		})
	}
}

// next waits for a subscription's next line.
func next(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case h := <-ch:
		return h
	case <-time.After(10 * time.Second):
		t.Fatal("no line from the subscription in 10 s")
		return ""
	}
}

// TestGitViewOutsideRoots: a git view outside every root is checked
// against its saved entry by a stat walk on each query, and hashed again
// when the index or a file changed.
func TestGitViewOutsideRoots(t *testing.T) {
	r := newGitRepo(t)
	nartest.WaitOlderThan(t, 2100*time.Millisecond, r.Dir) // nar's racy margin is 2 s
	d := start(t, Config{})
	ask := func() api.HashResult {
		t.Helper()
		got, err := d.c.HashView(context.Background(), r.Dir, api.ViewGit, "", false)
		if err != nil {
			t.Fatal(err)
		}
		if want := offlineGit(t, r.Dir); got.Hash != want {
			t.Errorf("answer %s (%s), want %s", got.Hash, got.Source, want)
		}
		return got
	}
	if got := ask(); got.Source != "computed" {
		t.Errorf("first answer: source %s, want computed", got.Source)
	}
	if got := ask(); got.Source != "validated" {
		t.Errorf("second answer: source %s, want validated", got.Source)
	}
	r.Write("dir0/file0", "changed\n", 0o644) // a file
	ask()
	r.Git("rm", "-q", "--cached", "dir1/file1") // the index alone
	ask()
	var ae *api.Error
	if _, err := d.c.HashView(context.Background(), t.TempDir(), api.ViewGit, "", false); !errors.As(err, &ae) || ae.Code != 422 || !strings.Contains(err.Error(), "not in a git worktree") {
		t.Errorf("outside a worktree: %v, want a 422 saying so", err)
	}
}

// TestGitViewRestart: a git view's entry is saved; after a restart it is
// served once a stat walk has checked it, and an index changed while the
// daemon was down is seen.
func TestGitViewRestart(t *testing.T) {
	r := newGitRepo(t)
	r.Write("later", "untracked for now\n", 0o644)
	base := nartest.TempDir(t)
	cfg := Config{Watch: []string{r.Dir}, Socket: filepath.Join(base, "s.sock"), DB: filepath.Join(base, "cache.db")}
	ask := func(d *running) api.HashResult {
		t.Helper()
		got, err := d.c.HashView(context.Background(), r.Dir, api.ViewGit, "", false)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	// Old enough files, or the entry could not be trusted after a
	// restart (git's racy-timestamp rule).
	nartest.WaitOlderThan(t, 2100*time.Millisecond, r.Dir) // nar's racy margin is 2 s
	d := start(t, cfg)
	first := ask(d)
	d.stop(t)

	d = start(t, cfg)
	if got := ask(d); got.Hash != first.Hash || got.Source != "validated" {
		t.Errorf("unchanged after a restart: %s (%s), want %s validated", got.Hash, got.Source, first.Hash)
	}
	d.stop(t)

	r.Git("add", "later") // the index alone changes
	d = start(t, cfg)
	if got, want := ask(d), offlineGit(t, r.Dir); got.Hash != want || got.Hash == first.Hash {
		t.Errorf("after a git add while down: %s (%s), want %s", got.Hash, got.Source, want)
	}
}
