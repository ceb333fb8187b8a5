package nar

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/narhash/narhash/nar/nartest"
)

func TestComparePaths(t *testing.T) {
	// In NAR order: name by name, a directory before its entries.
	sorted := []string{"a", "a/b", "a/b/c", "a/b-c", "a/bc", "a-b", "a.b", "a0", "b", "b/\xff", "b\x01"}
	for i, a := range sorted {
		for j, b := range sorted {
			got := ComparePaths(a, b)
			if got < 0 != (i < j) || got == 0 != (i == j) {
				t.Errorf("ComparePaths(%q, %q) = %d, want the sign of %d", a, b, got, i-j)
			}
		}
	}
}

// narOrder sorts paths as a dump visits them.
func narOrder(paths []string) {
	slices.SortFunc(paths, ComparePaths)
}

// entries lists the paths of every entry under root (not root), in NAR
// order.
func entries(t *testing.T, root string) []string {
	t.Helper()
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
	if err != nil {
		t.Fatal(err)
	}
	narOrder(paths)
	return paths
}

// hashDump dumps root into SHA-256, resumed at from if not nil, taking
// checkpoints into cps if not nil.
func hashDump(t *testing.T, root string, cps *Checkpoints, from *Checkpoint) (string, DumpResult) {
	t.Helper()
	h := sha256.New()
	res, err := Dump(context.Background(), h, root, &DumpOptions{Checkpoints: cps, From: from})
	if err != nil {
		t.Fatalf("dump %s (from %v): %v", root, from != nil, err)
	}
	return hex.EncodeToString(h.Sum(nil)), res
}

// edit changes the tree at root in one of the ways an editor, a build or
// git does, at a position chosen by rng, and returns the paths it changed
// and what it did.
func edit(t *testing.T, rng *rand.Rand, root string, kind int) (changed []string, what string) {
	t.Helper()
	all := entries(t, root)
	var files, dirs, links []string
	for _, p := range all {
		fi, err := os.Lstat(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
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
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	name := fmt.Sprintf("new-%x", rng.Uint64())
	switch kind {
	case 0: // the first entry's contents, or its removal if not a file
		p := all[0]
		if fi, _ := os.Lstat(abs(p)); fi.Mode().IsRegular() {
			must(appendFile(abs(p), "first"))
		} else {
			must(os.RemoveAll(abs(p)))
		}
		return []string{p}, "the first entry " + p
	case 1: // the last file
		p := files[len(files)-1]
		for i := len(all) - 1; i >= 0; i-- {
			if slices.Contains(files, all[i]) {
				p = all[i]
				break
			}
		}
		must(appendFile(abs(p), "last"))
		return []string{p}, "the last file " + p
	case 2: // a random file's contents
		p := pick(files)
		must(os.WriteFile(abs(p), nartest.Bytes(rng, rng.IntN(3000)), 0o644))
		return []string{p}, "the contents of " + p
	case 3: // a directory added, with a file
		p := parent() + name
		must(os.Mkdir(abs(p), 0o755))
		must(os.WriteFile(abs(p+"/f"), []byte("in a new directory"), 0o644))
		return []string{p}, "a new directory " + p
	case 4: // a directory removed
		p := pick(dirs)
		if p == "" {
			return edit(t, rng, root, 3)
		}
		must(os.RemoveAll(abs(p)))
		return []string{p}, "the directory " + p + " removed"
	case 5: // a rename across directories
		p := pick(append(files, links...))
		to := parent() + name
		must(os.Rename(abs(p), abs(to)))
		return []string{p, to}, "a rename of " + p + " to " + to
	case 6: // an executable bit
		p := pick(files)
		fi, err := os.Stat(abs(p))
		must(err)
		must(os.Chmod(abs(p), fi.Mode().Perm()^0o100))
		return []string{p}, "the executable bit of " + p
	case 7: // a symlink retargeted
		p := pick(links)
		if p == "" {
			return edit(t, rng, root, 2)
		}
		must(os.Remove(abs(p)))
		must(os.Symlink("retargeted/"+name, abs(p)))
		return []string{p}, "the target of " + p
	case 8: // a file that becomes a directory
		p := pick(files)
		must(os.Remove(abs(p)))
		must(os.Mkdir(abs(p), 0o755))
		must(os.WriteFile(abs(p+"/was-a-file"), []byte("x"), 0o644))
		return []string{p}, p + " a file become a directory"
	case 9: // a file added next to a random entry, named to sort
		// right after it
		p := pick(all)
		q := p + "-"
		if rng.IntN(2) == 0 {
			q = p + "\x01"
		}
		for _, err := os.Lstat(abs(q)); err == nil; _, err = os.Lstat(abs(q)) {
			q += "-"
		}
		must(os.WriteFile(abs(q), []byte("sorts close"), 0o644))
		return []string{q}, "a new file " + q
	}
	t.Fatalf("no edit %d", kind)
	return nil, ""
}

const editKinds = 10

// resumeAfter resumes a dump of root at the last checkpoint of cps at or
// before the first path of changed, as the daemon does.
func resumeAfter(cps *Checkpoints, changed []string) *Checkpoint {
	first := slices.MinFunc(changed, ComparePaths)
	return cps.Before(first)
}

// TestResumeMatchesFullDump edits random trees at random positions, in
// every way of edit, and resumes a dump at the checkpoint before the
// first change, chaining the checkpoints of each resumed dump into the
// next: every resumed dump must give the full dump's hash, size,
// fingerprint and counts, and nix-hash's hash.
func TestResumeMatchesFullDump(t *testing.T) {
	nixHash, _ := exec.LookPath("nix-hash")
	if nixHash == "" {
		t.Log("nix-hash not found: comparing with full dumps only (install Nix to compare with it too)")
	}
	resumed := 0
	for seed := range uint64(6) {
		root := nartest.TempDir(t)
		if err := nartest.Random(root, seed, 300); err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(seed, 99))
		cps := &Checkpoints{Every: int64(1+rng.IntN(8)) << 10}
		hashDump(t, root, cps, nil)
		for step := range 3 * editKinds {
			kind := step % editKinds
			if step >= editKinds {
				kind = rng.IntN(editKinds)
			}
			changed, what := edit(t, rng, root, kind)
			next := cps.Clone()
			from := resumeAfter(cps, changed)
			got, gotRes := hashDump(t, root, next, from)
			want, wantRes := hashDump(t, root, &Checkpoints{Every: cps.Every}, nil)
			if from != nil {
				resumed++
			}
			if got != want || gotRes.Size != wantRes.Size || gotRes.Fingerprint != wantRes.Fingerprint || gotRes.DumpStats != wantRes.DumpStats {
				t.Fatalf("seed %d, edit %d (%s), resumed at %v: got %s %+v, want %s %+v", seed, step, what, from, got, gotRes, want, wantRes)
			}
			if nixHash != "" && (step%editKinds == 0 || step == editKinds-1) {
				out, err := exec.Command(nixHash, "--type", "sha256", root).Output()
				if err != nil {
					t.Fatalf("nix-hash: %v", err)
				}
				if nix := strings.TrimSpace(string(out)); nix != got {
					t.Fatalf("seed %d, edit %d (%s): resumed dump %s, nix-hash %s", seed, step, what, got, nix)
				}
			}
			cps = next
		}
	}
	if resumed < 100 {
		t.Errorf("only %d of the dumps resumed: the test does not exercise resuming", resumed)
	}
}

// TestResumeAfterChangeIsWrong checks that the test above can fail: a
// dump resumed at a checkpoint after a change misses it.
func TestResumeAfterChangeIsWrong(t *testing.T) {
	root := nartest.TempDir(t)
	if err := nartest.Random(root, 7, 300); err != nil {
		t.Fatal(err)
	}
	cps := &Checkpoints{Every: 1 << 10}
	hashDump(t, root, cps, nil)
	if cps.Len() < 3 {
		t.Fatalf("%d checkpoints: want several", cps.Len())
	}
	// Change the first file, and resume at the last checkpoint.
	var first string
	for _, p := range entries(t, root) {
		if fi, _ := os.Lstat(filepath.Join(root, p)); fi.Mode().IsRegular() {
			first = p
			break
		}
	}
	if err := appendFile(filepath.Join(root, first), "x"); err != nil {
		t.Fatal(err)
	}
	got, _ := hashDump(t, root, nil, &cps.list[cps.Len()-1])
	right, _ := hashDump(t, root, nil, resumeAfter(cps, []string{first}))
	want, _ := hashDump(t, root, nil, nil)
	if got == want {
		t.Errorf("a dump resumed after the change gave the new hash")
	}
	if right != want {
		t.Errorf("a dump resumed before the change: %s, want %s", right, want)
	}
}

func TestCheckpointsSpacingAndEncoding(t *testing.T) {
	root := nartest.TempDir(t)
	if err := nartest.Random(root, 3, 500); err != nil {
		t.Fatal(err)
	}
	cps := &Checkpoints{Every: 4 << 10}
	_, res := hashDump(t, root, cps, nil)
	if cps.Len() < 20 {
		t.Errorf("%d checkpoints in %d bytes every %d: want more", cps.Len(), res.Size, cps.Every)
	}
	for i := 1; i < cps.Len(); i++ {
		if gap := cps.list[i].Offset - cps.list[i-1].Offset; gap < cps.Every {
			t.Errorf("checkpoints %d and %d are %d bytes apart, less than %d", i-1, i, gap, cps.Every)
		}
	}
	if !sort.SliceIsSorted(cps.list, func(i, j int) bool { return ComparePaths(cps.list[i].Path, cps.list[j].Path) < 0 }) {
		t.Errorf("checkpoints not in NAR order")
	}
	b, err := cps.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var back Checkpoints
	if err := back.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	b2, _ := back.MarshalBinary()
	if string(b) != string(b2) || back.Len() != cps.Len() {
		t.Fatalf("checkpoints changed in an encoding round trip")
	}
	// Every truncation and every flipped byte is refused: a damaged
	// checkpoint would resume a dump into a wrong hash.
	for i := range b {
		var c Checkpoints
		if c.UnmarshalBinary(b[:i]) == nil {
			t.Fatalf("a truncation to %d of %d bytes decoded", i, len(b))
		}
		flip := slices.Clone(b)
		flip[i] ^= 1 << (i % 8)
		if c.UnmarshalBinary(flip) == nil {
			t.Fatalf("byte %d of %d flipped: decoded", i, len(b))
		}
	}
	t.Logf("%d checkpoints, %d bytes encoded, %d in memory, for %d bytes of archive", cps.Len(), len(b), cps.Size(), res.Size)
}

func TestCheckpointsRefused(t *testing.T) {
	root := nartest.TempDir(t)
	if err := nartest.Random(root, 1, 50); err != nil {
		t.Fatal(err)
	}
	var buf strings.Builder
	if _, err := Dump(context.Background(), &buf, root, &DumpOptions{Checkpoints: &Checkpoints{}}); err == nil || !strings.Contains(err.Error(), "BinaryMarshaler") {
		t.Errorf("checkpoints into a strings.Builder: err %v, want one about BinaryMarshaler", err)
	}
	sel := NewSelection()
	if _, err := Dump(context.Background(), sha256.New(), root, &DumpOptions{Checkpoints: &Checkpoints{}, Select: sel}); err == nil {
		t.Errorf("checkpoints with a Selection: no error")
	}
	cps := &Checkpoints{Every: 512}
	hashDump(t, root, cps, nil)
	from := cps.list[cps.Len()-1]
	dir, _, _ := strings.Cut(from.Path, "/")
	if !strings.Contains(from.Path, "/") {
		t.Skip("the last checkpoint is not in a directory")
	}
	if err := os.RemoveAll(filepath.Join(root, dir)); err != nil {
		t.Fatal(err)
	}
	if _, err := Dump(context.Background(), sha256.New(), root, &DumpOptions{From: &from}); err == nil || !strings.Contains(err.Error(), "resume at") {
		t.Errorf("resume inside a removed directory: err %v, want one saying the dump cannot resume", err)
	}
}

// checkAll resumes a dump of the unchanged tree at each of cps: every
// one must give the full dump's hash.
func checkAll(t *testing.T, root string, cps *Checkpoints, what string) {
	t.Helper()
	want, wantRes := hashDump(t, root, nil, nil)
	for i := range cps.list {
		got, res := hashDump(t, root, nil, &cps.list[i])
		if got != want || res.Fingerprint != wantRes.Fingerprint {
			t.Fatalf("%s: resumed at checkpoint %d of %d (%q, offset %d): %s, want %s", what, i, cps.Len(), cps.list[i].Path, cps.list[i].Offset, got, want)
		}
	}
}

func TestResumeAtEveryCheckpoint(t *testing.T) {
	root := nartest.TempDir(t)
	if err := nartest.Random(root, 11, 300); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(11, 1))
	cps := &Checkpoints{Every: 2 << 10}
	hashDump(t, root, cps, nil)
	checkAll(t, root, cps, "a full dump's")
	for step := range 2 * editKinds {
		changed, what := edit(t, rng, root, step%editKinds)
		next := cps.Clone()
		hashDump(t, root, next, resumeAfter(cps, changed))
		checkAll(t, root, next, "after "+what)
		cps = next
	}
}

// TestStatCheckpoints edits a tree at random positions, as while a
// daemon was down, and finds by a stat walk the last checkpoint the tree
// still matches: it must not be after the first change, and a dump
// resumed there must give the full dump's hash.
func TestStatCheckpoints(t *testing.T) {
	defer func(m time.Duration) { racyMargin = m }(racyMargin)
	racyMargin = 50 * time.Millisecond
	ctx := context.Background()
	root := nartest.TempDir(t)
	if err := nartest.Random(root, 5, 300); err != nil {
		t.Fatal(err)
	}
	// Just made: every entry is racy, no checkpoint can be trusted.
	cps := &Checkpoints{Every: 2 << 10}
	hashDump(t, root, cps, nil)
	if _, _, last, err := StatCheckpoints(ctx, root, cps); err != nil || last != nil {
		t.Fatalf("StatCheckpoints of a tree just made: %v, %v; want no checkpoint", last, err)
	}
	rng := rand.New(rand.NewPCG(5, 5))
	matched := 0
	for step := range 2 * editKinds {
		nartest.WaitOlderThan(t, racyMargin, root)
		_, res := hashDump(t, root, cps, nil)
		fp, _, last, err := StatCheckpoints(ctx, root, cps)
		if err != nil {
			t.Fatal(err)
		}
		if fp != res.Fingerprint || last != &cps.list[cps.Len()-1] {
			t.Fatalf("unchanged tree: fingerprint %v (dump's %v), last checkpoint %v of %d", fp, res.Fingerprint, last, cps.Len())
		}
		changed, what := edit(t, rng, root, step%editKinds)
		_, _, last, err = StatCheckpoints(ctx, root, cps)
		if err != nil {
			t.Fatal(err)
		}
		first := slices.MinFunc(changed, ComparePaths)
		if last != nil && ComparePaths(last.Path, first) > 0 {
			t.Fatalf("after %s: the last checkpoint matched is %q, after the change", what, last.Path)
		}
		if last != nil {
			matched++
		}
		got, _ := hashDump(t, root, nil, last)
		want, _ := hashDump(t, root, nil, nil)
		if got != want {
			t.Fatalf("after %s, resumed at %v: %s, want %s", what, last, got, want)
		}
	}
	if matched < editKinds {
		t.Errorf("a checkpoint matched after only %d of %d edits", matched, 2*editKinds)
	}
}
