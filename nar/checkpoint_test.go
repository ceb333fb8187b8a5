package nar

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"errors"
	"hash"
	"io"
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
	"golang.org/x/sys/unix"
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

// entries lists the paths of every entry under root, in NAR order.
func entries(t *testing.T, root string) []string {
	t.Helper()
	paths, err := nartest.Entries(root)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.IsSortedFunc(paths, ComparePaths) {
		t.Fatalf("nartest.Entries is not in NAR order")
	}
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

// edit makes nartest's edit of the given kind.
func edit(t *testing.T, rng *rand.Rand, root string, kind int) (changed []string, what string) {
	t.Helper()
	changed, what, err := nartest.Edit(rng, root, kind)
	if err != nil {
		t.Fatal(err)
	}
	return changed, what
}

const editKinds = nartest.EditKinds

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
	if err := nartest.AppendTo(filepath.Join(root, first), "x"); err != nil {
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

// cancellingHash is a SHA-256 that cancels the dump after some writes.
type cancellingHash struct {
	hash.Hash
	cancel func()
	left   int
}

func (c *cancellingHash) Write(p []byte) (int, error) {
	if c.left--; c.left == 0 {
		c.cancel()
	}
	return c.Hash.Write(p)
}

func (c *cancellingHash) MarshalBinary() ([]byte, error) {
	return c.Hash.(encoding.BinaryMarshaler).MarshalBinary()
}

// TestCheckpointsCancelled cancels dumps that take checkpoints at every
// point: each must fail with the cancellation, never take a checkpoint
// of bytes the readers skipped (a regression: a batch whose files were
// skipped was taken as complete, and a checkpoint's write of it
// panicked).
func TestCheckpointsCancelled(t *testing.T) {
	root := nartest.TempDir(t)
	if err := nartest.Random(root, 9, 2000); err != nil {
		t.Fatal(err)
	}
	for n := 1; n < 400; n += 3 {
		ctx, cancel := context.WithCancel(context.Background())
		h := &cancellingHash{Hash: sha256.New(), cancel: cancel, left: n}
		_, err := Dump(ctx, h, root, &DumpOptions{Checkpoints: &Checkpoints{Every: 256}, Readers: 2})
		cancel()
		if err == nil && h.left > 0 {
			continue // done before the n-th write
		}
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled after %d writes: %v, want context.Canceled", n, err)
		}
	}
}

// TestFillCancelled: a batch whose files a reader skipped because the
// dump was cancelled is failed, never taken as complete (the writer
// would emit, and a checkpoint save, contents that were never read).
func TestFillCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b := newBatch(arenaSize)
	d := &dirRef{fd: unix.AT_FDCWD, name: "."}
	d.refs.Store(2)
	b.names = append(b.names, "file\x00"...)
	b.items = append(b.items, item{op: opFile, dir: d, name: span{0, 4}})
	b.files = 1
	fill(ctx, &pipeline{}, newChunks(readerSmall), b)
	if done := int(b.done.Load()); done != len(b.items)+1 || !errors.Is(b.err, context.Canceled) {
		t.Errorf("a cancelled batch: done %d, err %v; want %d and context.Canceled", done, b.err, len(b.items)+1)
	}
}

// TestResumeDeep resumes dumps of a tree 100 directories deep, with files
// at every level, at every checkpoint: the walk holds only the innermost
// levels open (window.go), and a resumed walk must climb back out of the
// levels it reopened on its way down as a full walk does.
func TestResumeDeep(t *testing.T) {
	root := nartest.TempDir(t)
	b := &nartest.Builder{Root: root}
	rng := rand.New(rand.NewPCG(100, 1))
	dir := ""
	for range 100 {
		b.File(dir+"a-file", nartest.Bytes(rng, 700), 0o644)
		b.File(dir+"z-file", nartest.Bytes(rng, 300), 0o755)
		dir += "d/"
		b.Dir(dir)
	}
	if b.Err != nil {
		t.Fatal(b.Err)
	}
	cps := &Checkpoints{Every: 1 << 10}
	hashDump(t, root, cps, nil)
	deepest := 0
	for _, cp := range cps.list {
		deepest = max(deepest, strings.Count(cp.Path, "/"))
	}
	if cps.Len() < 50 || deepest < 80 {
		t.Fatalf("%d checkpoints, the deepest %d levels down: want many, some deeper than the 64 levels kept open", cps.Len(), deepest)
	}
	checkAll(t, root, cps, "a deep tree's")
	// A stat walk follows them all down and back up (none is racy:
	// the margin is shortened to nothing).
	defer func(m time.Duration) { racyMargin = m }(racyMargin)
	racyMargin = -time.Hour
	cps = &Checkpoints{Every: 1 << 10}
	hashDump(t, root, cps, nil)
	if _, _, last, err := StatCheckpoints(context.Background(), root, cps); err != nil || last != &cps.list[cps.Len()-1] {
		t.Fatalf("StatCheckpoints of the unchanged deep tree: %v, %v; want its last checkpoint", last, err)
	}
}

// TestResumeSince: a resumed dump's Since is its own start when no entry
// it or the dumps before it read was racy, and the first dump's start
// when one was: Fingerprint.Racy with it must not vouch for an entry a
// stat cannot.
func TestResumeSince(t *testing.T) {
	defer func(m time.Duration) { racyMargin = m }(racyMargin)
	root := nartest.TempDir(t)
	if err := nartest.Random(root, 12, 200); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		margin time.Duration
		racy   bool
	}{{-time.Hour, false}, {time.Hour, true}} {
		racyMargin = tc.margin
		cps := &Checkpoints{Every: 2 << 10}
		_, first := hashDump(t, root, cps, nil)
		from := &cps.list[cps.Len()/2]
		before := time.Now()
		_, res := hashDump(t, root, cps.Clone(), from)
		if tc.racy && !res.Since.Equal(first.Since) || !tc.racy && res.Since.Before(before) {
			t.Errorf("racy %v: a resumed dump begun at %v says Since %v (the first dump's %v)", tc.racy, before, res.Since, first.Since)
		}
	}
}

// TestResumeRefusedKeepsCheckpoints: a dump refused before it starts,
// because its From is not a checkpoint a dump took or dst cannot restore a
// hash state, leaves the caller's Checkpoints as they were.
func TestResumeRefusedKeepsCheckpoints(t *testing.T) {
	root := nartest.TempDir(t)
	if err := nartest.Random(root, 1, 50); err != nil {
		t.Fatal(err)
	}
	cps := &Checkpoints{Every: 512}
	hashDump(t, root, cps, nil)
	if cps.Len() < 3 {
		t.Fatalf("%d checkpoints: too few to see them cut", cps.Len())
	}
	before, err := cps.MarshalBinary()
	must(t, err)
	mid := cps.list[cps.Len()/2]
	forged := Checkpoint{Path: mid.Path, Offset: mid.Offset} // no hash state
	for _, tc := range []struct {
		what string
		dst  io.Writer
		from *Checkpoint
	}{
		{"a forged checkpoint", sha256.New(), &forged},
		{"a destination that cannot restore a hash", &onlyMarshals{sha256.New()}, &mid},
	} {
		if _, err := Dump(context.Background(), tc.dst, root, &DumpOptions{Checkpoints: cps, From: tc.from}); err == nil {
			t.Fatalf("resume from %s: no error", tc.what)
		}
		after, err := cps.MarshalBinary()
		must(t, err)
		if !bytes.Equal(before, after) {
			t.Errorf("resume from %s, refused, changed the checkpoints: %d now", tc.what, cps.Len())
		}
	}
}

// onlyMarshals is a hash whose state can be saved but not restored.
type onlyMarshals struct{ h hash.Hash }

func (o *onlyMarshals) Write(p []byte) (int, error) { return o.h.Write(p) }
func (o *onlyMarshals) MarshalBinary() ([]byte, error) {
	return o.h.(encoding.BinaryMarshaler).MarshalBinary()
}
