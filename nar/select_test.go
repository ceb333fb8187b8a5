package nar

import (
	"bytes"
	"context"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/narhash/narhash/nar/nartest"
)

// TestSelection dumps random selections of a random tree and compares
// each with the dump of a copy that holds only what the selection takes:
// the selected files and symlinks that exist as such, the directories
// that hold one, and kept directories.
func TestSelection(t *testing.T) {
	base := nartest.TempDir(t)
	src := filepath.Join(base, "src")
	must(t, os.Mkdir(src, 0o755))
	must(t, nartest.Random(src, 7, 400))
	b := &nartest.Builder{Root: src}
	b.Dir("empty/deeper")
	b.Dir("kept")
	b.File("file-as-dir", []byte("x"), 0o644)
	must(t, b.Err)
	var files, dirs []string
	must(t, filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == src {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			dirs = append(dirs, rel)
		} else {
			files = append(files, rel)
		}
		return nil
	}))
	for seed := range uint64(6) {
		rng := rand.New(rand.NewPCG(seed, 1))
		sel := NewSelection()
		want := filepath.Join(base, "want", string(rune('a'+seed)))
		must(t, os.MkdirAll(want, 0o755))
		for _, f := range files {
			if rng.IntN(3) == 0 {
				continue
			}
			must(t, sel.Add(f))
			copyEntry(t, filepath.Join(src, f), filepath.Join(want, f))
		}
		// Left out: absent paths, a directory selected as a file, and
		// entries below a file.
		must(t, sel.Add("absent/file"))
		must(t, sel.Add(dirs[rng.IntN(len(dirs))]))
		must(t, sel.Add("file-as-dir/x"))
		must(t, sel.Add("empty/deeper/gone"))
		if seed%2 == 0 {
			must(t, sel.Keep("kept"))
			must(t, os.Mkdir(filepath.Join(want, "kept"), 0o755))
		}
		got := dumpSelected(t, src, sel)
		wantNAR, _ := dumpBytes(t, want, 0)
		if !bytes.Equal(got.nar, wantNAR) {
			t.Fatalf("seed %d: the dump of the selection differs from the dump of its copy", seed)
		}
		fp, stats, err := StatSelection(context.Background(), src, sel)
		must(t, err)
		if fp != got.res.Fingerprint || stats != got.res.DumpStats {
			t.Errorf("seed %d: StatSelection gave %v %+v, the dump %v %+v", seed, fp, stats, got.res.Fingerprint, got.res.DumpStats)
		}
	}
}

// TestSelectionEmpty: an empty selection dumps the root alone.
func TestSelectionEmpty(t *testing.T) {
	src := nartest.TempDir(t)
	must(t, nartest.Random(src, 3, 50))
	empty := t.TempDir()
	got := dumpSelected(t, src, NewSelection())
	want, _ := dumpBytes(t, empty, 0)
	if !bytes.Equal(got.nar, want) {
		t.Fatal("an empty selection does not dump an empty directory")
	}
}

func TestSelectionErrors(t *testing.T) {
	for _, p := range []string{"", "a//b", "a/", "/a", "a/../b", "a/./b", "a\x00b"} {
		if err := NewSelection().Add(p); err == nil {
			t.Errorf("Add(%q) succeeded", p)
		}
	}
	file := filepath.Join(t.TempDir(), "f")
	must(t, os.WriteFile(file, nil, 0o644))
	_, err := Dump(context.Background(), &bytes.Buffer{}, file, &DumpOptions{Select: NewSelection()})
	if err == nil {
		t.Error("a selection of a file's entries dumped")
	}
}

type selected struct {
	nar []byte
	res DumpResult
}

func dumpSelected(t *testing.T, root string, sel *Selection) selected {
	t.Helper()
	var b bytes.Buffer
	res, err := Dump(context.Background(), &b, root, &DumpOptions{Select: sel})
	if err != nil {
		t.Fatal(err)
	}
	return selected{b.Bytes(), res}
}

// copyEntry copies a file (with its mode) or a symlink, making its
// parents.
func copyEntry(t *testing.T, from, to string) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Dir(to), 0o755))
	fi, err := os.Lstat(from)
	must(t, err)
	if fi.Mode()&fs.ModeSymlink != 0 {
		target, err := os.Readlink(from)
		must(t, err)
		must(t, os.Symlink(target, to))
		return
	}
	data, err := os.ReadFile(from)
	must(t, err)
	must(t, os.WriteFile(to, data, fi.Mode().Perm()))
}
