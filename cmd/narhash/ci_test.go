package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/narhash/narhash/nar/nartest"
)

// docBlock returns the fenced block of docs/ci.md that follows start.
func docBlock(t *testing.T, start string) string {
	t.Helper()
	doc, err := os.ReadFile("../../docs/ci.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), start)
	if !ok {
		t.Fatalf("docs/ci.md has no %q", start)
	}
	if !strings.HasPrefix(start, "```") { // skip to the block's opening fence
		_, rest, _ = strings.Cut(rest, "```")
	}
	_, rest, _ = strings.Cut(rest, "\n")
	block, _, ok := strings.Cut(rest, "\n```\n")
	if !ok {
		t.Fatalf("docs/ci.md: the block after %q does not end", start)
	}
	return block + "\n"
}

// ciTree makes dir/vendor and pins its hash, as Nix computes it, in
// dir/vendor.narhash.
func ciTree(t *testing.T) (dir string) {
	dir = nartest.TempDir(t)
	vendor := filepath.Join(dir, "vendor")
	if err := os.Mkdir(vendor, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := nartest.Random(vendor, 11, 60); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "vendor.narhash"), nixOut(t, "nix", "hash", "path", "--sri", vendor), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestCIRecipe runs the plain-shell recipe of docs/ci.md on a real tree
// whose pin Nix made: the key is Nix's hash, the cache hits the second
// time, and a change to the tree fails the check and changes the key.
func TestCIRecipe(t *testing.T) {
	needNix(t)
	installNarhash(t)
	dir := ciTree(t)
	script := filepath.Join(dir, "ci.sh")
	if err := os.WriteFile(script, []byte(docBlock(t, "<!-- ci-recipe -->")), 0o755); err != nil {
		t.Fatal(err)
	}
	recipe := func() (stdout, stderr string, code int) {
		cmd := exec.Command("sh", script)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CACHE_DIR="+filepath.Join(dir, "cache"))
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		if _, ok := err.(*exec.ExitError); err != nil && !ok {
			t.Fatal(err)
		}
		return o.String(), e.String(), cmd.ProcessState.ExitCode()
	}
	key := func() string {
		return "build-" + strings.TrimSpace(string(nixOut(t, "nix-hash", "--type", "sha256", "--base32", filepath.Join(dir, "vendor"))))
	}

	want := "vendor: OK\ncache miss: " + key() + "\n"
	if out, errOut, code := recipe(); code != 0 || out != want {
		t.Fatalf("first run: exit %d, stdout %q, stderr %q; want %q", code, out, errOut, want)
	}
	want = "vendor: OK\ncache hit: " + key() + "\n"
	if out, errOut, code := recipe(); code != 0 || out != want {
		t.Errorf("second run: exit %d, stdout %q, stderr %q; want %q", code, out, errOut, want)
	}

	// The tree drifts: the check fails, showing both hashes, and nothing is cached.
	if err := os.WriteFile(filepath.Join(dir, "vendor", "new-file"), []byte("drift"), 0o644); err != nil {
		t.Fatal(err)
	}
	pin := strings.TrimSpace(string(mustRead(t, filepath.Join(dir, "vendor.narhash"))))
	out, errOut, code := recipe()
	if code != 1 || out != "" || !strings.Contains(errOut, "hash mismatch") || !strings.Contains(errOut, "expected: "+pin) {
		t.Errorf("after a change: exit %d, stdout %q, stderr %q; want exit 1 and a mismatch against %s", code, out, errOut, pin)
	}
	// Pinned again (by Nix), the key is the new hash's.
	os.WriteFile(filepath.Join(dir, "vendor.narhash"), nixOut(t, "nix", "hash", "path", "--sri", filepath.Join(dir, "vendor")), 0o644)
	want = "vendor: OK\ncache miss: " + key() + "\n"
	if out, errOut, code := recipe(); code != 0 || out != want {
		t.Errorf("after pinning again: exit %d, stdout %q, stderr %q; want %q", code, out, errOut, want)
	}
}

// TestCIActionsSnippet runs the narhash steps of the GitHub Actions
// snippet of docs/ci.md as the runner would, with $GITHUB_OUTPUT.
func TestCIActionsSnippet(t *testing.T) {
	needNix(t)
	installNarhash(t)
	dir := ciTree(t)
	output := filepath.Join(dir, "github-output")
	ran := 0
	for _, line := range strings.Split(docBlock(t, "```yaml"), "\n") {
		run, ok := strings.CutPrefix(strings.TrimSpace(line), "run: ")
		if !ok || !strings.Contains(run, "narhash ") || strings.Contains(run, "go install") {
			continue
		}
		cmd := exec.Command("bash", "-e", "-c", run) // the runner's shell: bash -e
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GITHUB_OUTPUT="+output)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("step %q: %v\n%s", run, err, out)
		}
		ran++
	}
	want := "vendor=" + string(nixOut(t, "nix-hash", "--type", "sha256", "--base32", filepath.Join(dir, "vendor")))
	if got := string(mustRead(t, output)); ran != 2 || got != want {
		t.Errorf("ran %d steps; $GITHUB_OUTPUT = %q, want %q", ran, got, want)
	}
}
