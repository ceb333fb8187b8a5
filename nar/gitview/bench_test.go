package gitview_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/narhash/narhash/nar/gitview"
	"github.com/narhash/narhash/nar/gitview/gittest"
)

// benchRepo is the repository the benchmarks read: $GITVIEW_BENCH_REPO
// (the README's numbers are of a git repository of a copy of GOROOT), or
// a random one.
func benchRepo(b *testing.B) string {
	if dir := os.Getenv("GITVIEW_BENCH_REPO"); dir != "" {
		return dir
	}
	gittest.NeedGit(b)
	r := gittest.Init(b, filepath.Join(b.TempDir(), "repo"), b.TempDir())
	gittest.Random(r, 1, 3000)
	r.Git("add", "-A")
	return r.Dir
}

// BenchmarkParseIndex reads and parses the index.
func BenchmarkParseIndex(b *testing.B) {
	dir := benchRepo(b)
	b.ReportAllocs()
	for b.Loop() {
		data, err := os.ReadFile(filepath.Join(dir, ".git/index"))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := gitview.ParseIndex(data, 20); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpen finds the repository, parses the index and builds the
// selection: all the view costs before the dump.
func BenchmarkOpen(b *testing.B) {
	dir := benchRepo(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := gitview.Open(context.Background(), dir); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLsFiles runs git ls-files -z, the alternative to ParseIndex.
func BenchmarkLsFiles(b *testing.B) {
	dir := benchRepo(b)
	for b.Loop() {
		if err := exec.Command("git", "-C", dir, "ls-files", "-z").Run(); err != nil {
			b.Fatal(err)
		}
	}
}
