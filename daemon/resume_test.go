//go:build linux

package daemon

import (
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/narhash/narhash/nar/nartest"
)

// resumeTree builds a random tree for the resume tests, and makes the
// roots' checkpoints dense enough that every edit has several before it.
func resumeTree(t *testing.T, seed uint64) string {
	t.Helper()
	old := rootCheckpointEvery
	rootCheckpointEvery = 2 << 10
	t.Cleanup(func() { rootCheckpointEvery = old })
	root := filepath.Join(nartest.TempDir(t), "tree")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := nartest.Random(root, seed, 300); err != nil {
		t.Fatal(err)
	}
	return root
}

// resumedCount reads how many hashes the daemon resumed.
func (r *running) resumedCount(t *testing.T) int {
	t.Helper()
	n := -1
	if !r.d.call(context.Background(), func() { n = r.d.resumed }) {
		t.Fatal("the daemon's loop did not answer")
	}
	return n
}

// nixHash returns nix-hash's hash of path in nix32, or "" without Nix.
func nixHash(t *testing.T, path string) string {
	t.Helper()
	if _, err := exec.LookPath("nix-hash"); err != nil {
		return ""
	}
	out, err := exec.Command("nix-hash", "--type", "sha256", "--base32", path).Output()
	if err != nil {
		t.Fatalf("nix-hash %s: %v", path, err)
	}
	return strings.TrimSpace(string(out))
}

// TestResumeEdits edits a watched tree at random positions, in every way
// nartest.Edit knows, and queries right after each edit: every answer
// must be the full hash of the tree (and nix-hash's), and most must come
// from a resumed hash.
func TestResumeEdits(t *testing.T) {
	if _, err := exec.LookPath("nix-hash"); err != nil {
		t.Log("nix-hash not found: comparing with full hashes only (install Nix to compare with it too)")
	}
	root := resumeTree(t, 21)
	r := start(t, Config{Watch: []string{root}})
	if got, want := query(t, r.c, root).Hash, offline(t, root); got != want {
		t.Fatalf("first answer %s, want %s", got, want)
	}
	rng := rand.New(rand.NewPCG(21, 2))
	const edits = 4 * nartest.EditKinds
	for i := range edits {
		kind := i % nartest.EditKinds
		if i >= 2*nartest.EditKinds {
			kind = rng.IntN(nartest.EditKinds)
		}
		_, what, err := nartest.Edit(rng, root, kind)
		if err != nil {
			t.Fatal(err)
		}
		got := query(t, r.c, root)
		if want := offline(t, root); got.Hash != want {
			t.Fatalf("edit %d (%s): the daemon says %s (%s), a full hash %s", i, what, got.Hash, got.Source, want)
		}
		if i%nartest.EditKinds == 0 {
			if nix := nixHash(t, root); nix != "" && nix != got.Hash {
				t.Fatalf("edit %d (%s): the daemon says %s, nix-hash %s", i, what, got.Hash, nix)
			}
		}
	}
	n := r.resumedCount(t)
	t.Logf("%d of %d hashes resumed", n, edits)
	if n < edits/2 {
		t.Errorf("%d of %d hashes resumed at a checkpoint: want most", n, edits)
	}
}

// TestResumeAfterRestart edits a tree while narhashd is down, one to
// three edits at random positions each time: after the restart, the
// first answer must be the tree's full hash, computed from the last
// checkpoint the tree still matched. Every other round restarts at once,
// with the edits too recent for a stat walk to vouch for what they
// touched: the answer must still be right.
func TestResumeAfterRestart(t *testing.T) {
	root := resumeTree(t, 22)
	base := nartest.TempDir(t)
	cfg := Config{Watch: []string{root}, Socket: filepath.Join(base, "s.sock"), DB: filepath.Join(base, "cache.db")}
	rng := rand.New(rand.NewPCG(22, 3))
	resumed := 0
	const rounds = 8
	for i := range rounds + 1 {
		if i%2 == 0 {
			// Checkpoints are trusted by stat only for entries older
			// than the racy margin when they were read.
			nartest.WaitOlderThan(t, 2*time.Second, root)
		}
		r := start(t, cfg)
		if got, want := query(t, r.c, root).Hash, offline(t, root); got != want {
			t.Fatalf("round %d: after the restart the daemon says %s, a full hash %s", i, got, want)
		}
		if r.resumedCount(t) > 0 {
			resumed++
		}
		r.stop(t)
		if i == rounds {
			break
		}
		for range 1 + rng.IntN(3) {
			if _, _, err := nartest.Edit(rng, root, rng.IntN(nartest.EditKinds)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// An edit of the archive's first entry, or of one the hash before
	// read too soon after it changed, leaves no checkpoint to resume at:
	// with this seed, four rounds of eight.
	t.Logf("%d of %d restarts after edits resumed", resumed, rounds)
	if resumed < 3 {
		t.Errorf("%d of %d restarts after edits resumed at a checkpoint: want at least 3", resumed, rounds)
	}
}

// TestResumeSubPath: a sub-path of a root, a separate archive, resumes
// as a root does once its archive is large enough to pay.
func TestResumeSubPath(t *testing.T) {
	root := resumeTree(t, 23)
	old := subPathCheckpointsFrom
	subPathCheckpointsFrom = 1
	t.Cleanup(func() { subPathCheckpointsFrom = old })
	sub := filepath.Join(root, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := nartest.Random(sub, 24, 300); err != nil {
		t.Fatal(err)
	}
	r := start(t, Config{Watch: []string{root}})
	rng := rand.New(rand.NewPCG(23, 4))
	const edits = 2 * nartest.EditKinds
	for i := range edits + 1 {
		if got, want := query(t, r.c, sub).Hash, offline(t, sub); got != want {
			t.Fatalf("edit %d: the daemon says %s, a full hash %s", i, got, want)
		}
		if got, want := query(t, r.c, root).Hash, offline(t, root); got != want {
			t.Fatalf("edit %d: the daemon says %s for the root, a full hash %s", i, got, want)
		}
		if i < edits {
			if _, _, err := nartest.Edit(rng, sub, i%nartest.EditKinds); err != nil {
				t.Fatal(err)
			}
		}
	}
	n := 0
	r.d.call(context.Background(), func() { n = r.d.tracked[sub].resumed })
	t.Logf("%d of %d hashes of the sub-path resumed", n, edits)
	if n < edits/2 {
		t.Errorf("%d of %d hashes of the sub-path resumed: want most", n, edits)
	}
}

// TestResumeUnderEdits edits a tree without pause while it is queried:
// hashes are resumed, cancelled and resumed again under the edits; once
// the edits stop, the answer and the saved entry must be the tree's full
// hash.
func TestResumeUnderEdits(t *testing.T) {
	root := resumeTree(t, 25)
	r := start(t, Config{Watch: []string{root}})
	query(t, r.c, root)
	done := make(chan error, 1)
	go func() {
		rng := rand.New(rand.NewPCG(25, 5))
		for i := range 150 {
			if _, _, err := nartest.Edit(rng, root, i%nartest.EditKinds); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for edits := true; edits; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			edits = false
		default:
			// A hash can fail while the tree changes under it three
			// times over (nar.ErrChanged): only the answer after the
			// edits is checked.
			if _, err := r.c.Hash(context.Background(), root, "", false); err != nil {
				t.Logf("query under edits: %v", err)
			}
		}
	}
	want := offline(t, root)
	if got := query(t, r.c, root); got.Hash != want {
		t.Fatalf("after the edits the daemon says %s (%s), a full hash %s", got.Hash, got.Source, want)
	}
	st, err := r.c.Status(context.Background())
	if err != nil || len(st.Roots) != 1 || st.Roots[0].Hash != want {
		t.Fatalf("status after the edits: %+v, %v; want the root clean with %s", st.Roots, err, want)
	}
	// How many hashes resumed depends on how the edits and the jobs
	// interleave (TestResumeEdits asserts it); checkpoints there are.
	t.Logf("%d hashes resumed", st.Resumed)
	if st.Checkpoints == 0 {
		t.Errorf("status: no checkpoints after the edits")
	}
}
