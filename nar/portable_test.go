package nar

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/narhash/narhash/nar/nartest"
)

// TestPortableDump: the portable dump (what Dump does off Linux) gives
// the fast dump's archive, Fingerprint and counts on random trees, the
// edge cases and random selections of them, and Nix's archives of the
// fixtures (restored, then dumped again).
func TestPortableDump(t *testing.T) {
	base := nartest.TempDir(t)
	var roots []string
	for seed := range uint64(4) {
		root := filepath.Join(base, "random", string(rune('a'+seed)))
		must(t, os.MkdirAll(root, 0o755))
		must(t, nartest.Random(root, seed, 300))
		roots = append(roots, root)
	}
	edge := filepath.Join(base, "edge")
	must(t, nartest.EdgeCases(edge))
	roots = append(roots, edge, filepath.Join(edge, "links", "relative"), filepath.Join(edge, "sizes", "big"))
	for _, root := range roots {
		comparePortable(t, root, nil)
	}
	for name, want := range fixtures(t) {
		root := filepath.Join(base, "fixture-"+name)
		must(t, Restore(bytes.NewReader(want), root))
		if got := comparePortable(t, root, nil); !bytes.Equal(got, want) {
			t.Errorf("%s: the portable dump of the restored fixture differs from Nix's archive (%d bytes, want %d)", name, len(got), len(want))
		}
	}
	for seed := range uint64(4) {
		root := roots[seed%uint64(len(roots)-2)]
		rng := rand.New(rand.NewPCG(seed, 9))
		sel := NewSelection()
		must(t, filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || p == root || rng.IntN(3) == 0 {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			if d.IsDir() && rng.IntN(4) == 0 {
				return sel.Keep(rel)
			}
			return sel.Add(rel)
		}))
		must(t, sel.Add("absent/file"))
		comparePortable(t, root, sel)
	}
}

// comparePortable dumps root with both dumps and stat walks, fails t if
// they differ, and returns the archive.
func comparePortable(t *testing.T, root string, sel *Selection) []byte {
	t.Helper()
	ctx := context.Background()
	var fast, slow bytes.Buffer
	want, err := Dump(ctx, &fast, root, &DumpOptions{Select: sel})
	must(t, err)
	got, err := portableDump(ctx, &slow, root, &DumpOptions{Select: sel})
	must(t, err)
	if !bytes.Equal(slow.Bytes(), fast.Bytes()) {
		t.Errorf("%s (selection %v): portable archive of %d bytes differs from the fast one of %d", root, sel != nil, slow.Len(), fast.Len())
	}
	if got.Size != want.Size || got.Fingerprint != want.Fingerprint || got.DumpStats != want.DumpStats {
		t.Errorf("%s (selection %v): portable dump got size %d, %+v, %+v; want %d, %+v, %+v", root, sel != nil,
			got.Size, got.Fingerprint, got.DumpStats, want.Size, want.Fingerprint, want.DumpStats)
	}
	fp, count, err := portableStat(ctx, root, sel)
	must(t, err)
	if fp != want.Fingerprint || count != want.DumpStats {
		t.Errorf("%s (selection %v): portable stat walk got %+v %+v, want %+v %+v", root, sel != nil, fp, count, want.Fingerprint, want.DumpStats)
	}
	return slow.Bytes()
}

// TestPortableDumpFails: the portable dump refuses what the fast one
// refuses: a FIFO, and checkpoints.
func TestPortableDumpFails(t *testing.T) {
	root := nartest.TempDir(t)
	b := &nartest.Builder{Root: root}
	b.File("a", []byte("a"), 0o644)
	b.Fifo("fifo")
	must(t, b.Err)
	var out bytes.Buffer
	if _, err := portableDump(context.Background(), &out, root, nil); !errors.Is(err, ErrUnsupportedType) {
		t.Errorf("a FIFO: got %v, want ErrUnsupportedType", err)
	}
	if _, err := portableDump(context.Background(), &out, filepath.Join(root, "a"), &DumpOptions{Checkpoints: &Checkpoints{}}); err == nil {
		t.Error("checkpoints: no error")
	}
}
