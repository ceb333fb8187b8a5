package main

// Differential tests: every offline subcommand against real Nix on trees
// built in code. They skip when Nix is not installed; CI installs it.

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/narhash/narhash/nar/nartest"
)

func needNix(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"nix-hash", "nix-store", "nix"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found: these tests compare with real Nix; install it with 'apt-get install -y nix-bin'", tool)
		}
	}
}

// nixOut runs a Nix command and returns its standard output.
func nixOut(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	if name == "nix" {
		args = append([]string{"--extra-experimental-features", "nix-command"}, args...)
	}
	cmd := exec.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %q: %v: %s", name, args, err, stderr.String())
	}
	return out
}

// narhash runs the CLI in-process and returns its output and exit status.
func narhash(t *testing.T, stdin []byte, args ...string) (stdout, stderr []byte, code int) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(context.Background(), args, bytes.NewReader(stdin), &o, &e)
	return o.Bytes(), e.Bytes(), code
}

func narhashOK(t *testing.T, stdin []byte, args ...string) []byte {
	t.Helper()
	out, errOut, code := narhash(t, stdin, args...)
	if code != 0 {
		t.Fatalf("narhash %q: exit %d: %s", args, code, errOut)
	}
	return out
}

// trees returns the trees to compare, each a path under a fresh directory.
func trees(t *testing.T) map[string]string {
	t.Helper()
	base := nartest.TempDir(t)
	out := map[string]string{}
	mk := func(name string, build func(root string) error) {
		root := filepath.Join(base, name)
		if err := os.Mkdir(root, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := build(root); err != nil {
			t.Fatalf("build %s: %v", name, err)
		}
		out[name] = root
	}
	mk("edge", nartest.EdgeCases)
	for _, seed := range []uint64{1, 2, 3} {
		mk(fmt.Sprintf("random%d", seed), func(root string) error { return nartest.Random(root, seed, 300) })
	}
	mk("emptydir", func(string) error { return nil })
	mk("single", func(root string) error {
		b := &nartest.Builder{Root: root}
		b.File("exec", []byte("#!/bin/sh\n"), 0o744)
		b.File("plain", []byte("plain"), 0o654)
		b.File("empty", nil, 0o645)
		b.Symlink("exec", "link")
		b.Symlink("/", "rootlink")
		return b.Err
	})
	single := out["single"]
	out["root-exec-file"] = filepath.Join(single, "exec")
	out["root-plain-file"] = filepath.Join(single, "plain")
	out["root-empty-file"] = filepath.Join(single, "empty")
	out["root-symlink"] = filepath.Join(single, "link")
	out["root-symlink-to-root"] = filepath.Join(single, "rootlink")
	out["deep-subtree"] = filepath.Join(out["edge"], "d/d/d")
	// Spellings of a path: a symlink to a directory with a trailing slash
	// (followed, by Nix 2.8 too), "..", ".".
	if err := os.Symlink(filepath.Join(out["edge"], "names"), filepath.Join(base, "dirlink")); err != nil {
		t.Fatal(err)
	}
	out["symlink-slash"] = filepath.Join(base, "dirlink") + "/"
	out["dotdot"] = filepath.Join(out["edge"], "names") + "/../links"
	out["dot"] = filepath.Join(out["edge"], "modes") + "/./0744"
	return out
}

func TestHashMatchesNix(t *testing.T) {
	needNix(t)
	tr := trees(t)
	names := sortedKeys(tr)
	var paths []string
	for _, n := range names {
		paths = append(paths, tr[n])
	}
	// All at once, as nix-hash takes them: one line each, in order.
	got := narhashOK(t, nil, append([]string{"hash"}, paths...)...)
	want := nixOut(t, "nix-hash", append([]string{"--type", "sha256", "--base32"}, paths...)...)
	if !bytes.Equal(got, want) {
		t.Fatalf("narhash hash:\n%s\nnix-hash:\n%s", got, want)
	}
	for _, n := range names {
		p := tr[n]
		if got, want := narhashOK(t, nil, "hash", "--format", "base16", p), nixOut(t, "nix-hash", "--type", "sha256", p); !bytes.Equal(got, want) {
			t.Errorf("%s base16: got %s, nix-hash %s", n, got, want)
		}
		if got, want := narhashOK(t, nil, "hash", "--format", "sri", p), nixOut(t, "nix", "hash", "path", p); !bytes.Equal(got, want) {
			t.Errorf("%s sri: got %s, nix hash path %s", n, got, want)
		}
		for _, algo := range []string{"sha512", "sha1", "md5"} {
			if got, want := narhashOK(t, nil, "hash", "--type", algo, "--format", "nix32", p), nixOut(t, "nix-hash", "--type", algo, "--base32", p); !bytes.Equal(got, want) {
				t.Errorf("%s NAR %s: got %s, nix-hash %s", n, algo, got, want)
			}
		}
	}
}

// TestOldFilesMatchNix compares again once every file is old enough for
// narhash's fast read (read, then one stat; see nar.readFile), which the
// other tests, on files just written, do not take.
func TestOldFilesMatchNix(t *testing.T) {
	needNix(t)
	t.Parallel()
	tr := trees(t)
	names := sortedKeys(tr)
	var paths []string
	for _, n := range names {
		paths = append(paths, tr[n])
	}
	nartest.WaitOlderThan(t, 3*time.Second, paths...) // nar's margin is 2 s
	got := narhashOK(t, nil, append([]string{"hash"}, paths...)...)
	want := nixOut(t, "nix-hash", append([]string{"--type", "sha256", "--base32"}, paths...)...)
	if !bytes.Equal(got, want) {
		t.Fatalf("narhash hash:\n%s\nnix-hash:\n%s", got, want)
	}
	for _, n := range names {
		if got, want := narhashOK(t, nil, "dump", tr[n]), nixOut(t, "nix-store", "--dump", tr[n]); !bytes.Equal(got, want) {
			t.Errorf("%s: dump differs from nix-store --dump (%d vs %d bytes)", n, len(got), len(want))
		}
	}
}

func TestFlatHashMatchesNix(t *testing.T) {
	needNix(t)
	tr := trees(t)
	for _, p := range []string{tr["root-exec-file"], tr["root-empty-file"], filepath.Join(tr["edge"], "sizes/big")} {
		for _, algo := range []string{"sha256", "sha1", "sha512", "md5"} {
			got := narhashOK(t, nil, "hash", "--flat", "--type", algo, "--format", "base16", p)
			want := nixOut(t, "nix-hash", "--flat", "--type", algo, p)
			if !bytes.Equal(got, want) {
				t.Errorf("%s %s: got %s, nix-hash --flat %s", p, algo, got, want)
			}
		}
	}
}

func TestDumpMatchesNix(t *testing.T) {
	needNix(t)
	for name, p := range trees(t) {
		got := narhashOK(t, nil, "dump", p)
		if want := nixOut(t, "nix-store", "--dump", p); !bytes.Equal(got, want) {
			t.Errorf("%s: dump differs from nix-store --dump (%d vs %d bytes)", name, len(got), len(want))
		}
	}
}

func TestStorePathMatchesNix(t *testing.T) {
	needNix(t)
	for name, p := range trees(t) {
		nixHash := strings.TrimSpace(string(nixOut(t, "nix-hash", "--type", "sha256", "--base32", p)))
		want := nixOut(t, "nix-store", "--print-fixed-path", "--recursive", "sha256", nixHash, "some-name")
		if got := narhashOK(t, nil, "store-path", "--name", "some-name", p); !bytes.Equal(got, want) {
			t.Errorf("%s: store-path %s, Nix %s", name, got, want)
		}
	}
}

// TestRestoreMatchesNix restores Nix's dump with both tools and compares
// the results entry by entry: type, mode and contents.
func TestRestoreMatchesNix(t *testing.T) {
	needNix(t)
	dir := nartest.TempDir(t)
	for name, p := range trees(t) {
		archive := nixOut(t, "nix-store", "--dump", p)
		ours, theirs := filepath.Join(dir, name+".ours"), filepath.Join(dir, name+".nix")
		narhashOK(t, archive, "restore", ours)
		cmd := exec.Command("nix-store", "--restore", theirs)
		cmd.Stdin = bytes.NewReader(archive)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nix-store --restore: %v: %s", err, out)
		}
		if diff := compareTrees(ours, theirs); diff != "" {
			t.Errorf("%s: restored trees differ: %s", name, diff)
		}
		if got, want := narhashOK(t, nil, "hash", ours), nixOut(t, "nix-hash", "--type", "sha256", "--base32", p); !bytes.Equal(got, want) {
			t.Errorf("%s: restored tree hashes to %s, the original to %s", name, got, want)
		}
	}
}

// compareTrees walks two trees and describes the first difference.
func compareTrees(a, b string) string {
	var diff string
	filepath.WalkDir(a, func(pa string, d fs.DirEntry, err error) error {
		if err != nil || diff != "" {
			return err
		}
		rel, _ := filepath.Rel(a, pa)
		pb := filepath.Join(b, rel)
		var sa, sb syscall.Stat_t
		if err := syscall.Lstat(pa, &sa); err != nil {
			diff = err.Error()
			return nil
		}
		if err := syscall.Lstat(pb, &sb); err != nil {
			diff = err.Error()
			return nil
		}
		if sa.Mode != sb.Mode {
			diff = fmt.Sprintf("%s: mode %o, Nix %o", rel, sa.Mode, sb.Mode)
			return nil
		}
		switch sa.Mode & syscall.S_IFMT {
		case syscall.S_IFREG:
			ca, _ := os.ReadFile(pa)
			cb, _ := os.ReadFile(pb)
			if !bytes.Equal(ca, cb) {
				diff = rel + ": contents differ"
			}
		case syscall.S_IFLNK:
			ta, _ := os.Readlink(pa)
			tb, _ := os.Readlink(pb)
			if ta != tb {
				diff = fmt.Sprintf("%s: target %q, Nix %q", rel, ta, tb)
			}
		}
		return nil
	})
	return diff
}

func TestListAndCatMatchNix(t *testing.T) {
	needNix(t)
	dir := nartest.TempDir(t)
	tr := trees(t)
	for _, name := range []string{"edge", "random1", "single", "emptydir", "root-exec-file", "root-symlink"} {
		archive := filepath.Join(dir, name+".nar")
		if err := os.WriteFile(archive, nixOut(t, "nix-store", "--dump", tr[name]), 0o644); err != nil {
			t.Fatal(err)
		}
		paths := []string{"/"}
		if name == "edge" {
			paths = append(paths, "/names", "/sizes", "/links", "/sizes/big", "/links/dangling", "/modes/0744", "/empty")
		}
		for _, p := range paths {
			for _, flags := range [][]string{{"--json", "-R"}, {"--json"}, {"-R"}, {"-l", "-R"}, {"-lR"}, {"--long", "--recursive"}, {}, {"-d"}, {"-l", "-d"}, {"-ld"}} {
				args := append(append([]string{"ls"}, flags...), archive, p)
				got := narhashOK(t, nil, args...)
				want := nixOut(t, "nix", append(append([]string{"nar", "ls"}, flags...), archive, p)...)
				if slicesContain(flags, "--json") {
					got = []byte(unescapeSurrogates(string(got)))
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s: narhash %q:\n%s\nnix nar ls:\n%s", name, args, clip(got), clip(want))
				}
			}
		}
		// Every regular file's contents, by nix nar cat.
		l := narhashOK(t, nil, "ls", "-R", archive, "/")
		var files []string
		filepath.WalkDir(tr[name], func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() && len(files) < 40 {
				rel, _ := filepath.Rel(tr[name], p)
				files = append(files, "/"+rel)
			}
			return nil
		})
		if len(l) == 0 && name != "emptydir" {
			t.Errorf("%s: empty listing", name)
		}
		for _, f := range files {
			if f == "/." { // a root file: Nix's nar cat cannot name it ("path '/' does not exist"); ours can
				if got, want := narhashOK(t, nil, "cat", archive, "/"), mustRead(t, tr[name]); !bytes.Equal(got, want) {
					t.Errorf("%s: cat / differs from the file", name)
				}
				continue
			}
			got := narhashOK(t, nil, "cat", archive, f)
			if want := nixOut(t, "nix", "nar", "cat", archive, f); !bytes.Equal(got, want) {
				t.Errorf("%s: cat %q differs from nix nar cat", name, f)
			}
		}
	}
}

// TestFIFOFailsLikeNix: a FIFO anywhere in the tree fails the whole hash.
func TestFIFOFailsLikeNix(t *testing.T) {
	needNix(t)
	root := nartest.TempDir(t)
	b := &nartest.Builder{Root: root}
	b.Dir("sub")
	b.File("sub/a", []byte("a"), 0o644)
	b.Fifo("sub/fifo")
	if b.Err != nil {
		t.Fatal(b.Err)
	}
	if err := exec.Command("nix-hash", "--type", "sha256", root).Run(); err == nil {
		t.Fatal("nix-hash hashed a tree with a FIFO")
	}
	for _, cmd := range [][]string{{"hash", root}, {"dump", root}, {"store-path", root}, {"hash", filepath.Join(root, "sub/fifo")}} {
		_, stderr, code := narhash(t, nil, cmd...)
		if code != 1 || !strings.Contains(string(stderr), "sub/fifo") || !strings.Contains(string(stderr), "unsupported file type") {
			t.Errorf("narhash %q: exit %d, %s; want 1 and a message naming the FIFO", cmd, code, stderr)
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sortedKeys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	for i := 1; i < len(ks); i++ {
		for j := i; j > 0 && ks[j] < ks[j-1]; j-- {
			ks[j], ks[j-1] = ks[j-1], ks[j]
		}
	}
	return ks
}

func slicesContain(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func clip(b []byte) string {
	if len(b) > 2000 {
		return string(b[:2000]) + "…"
	}
	return string(b)
}

// unescapeSurrogates turns our \udcXX escapes back into the raw bytes Nix
// prints.
func unescapeSurrogates(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if strings.HasPrefix(s[i:], `\udc`) && i+6 <= len(s) {
			var v byte
			if _, err := fmt.Sscanf(s[i+4:i+6], "%02x", &v); err == nil {
				b.WriteByte(v)
				i += 5
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
