package cache

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "cache.db")
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := Entry{NARSize: 1234, Computed: time.Unix(0, 1700000000123456789), Took: 42 * time.Millisecond}
	e.Hash[0], e.Hash[31] = 1, 2
	e.Fingerprint.Digest[5] = 9
	e.Fingerprint.Entries, e.Fingerprint.Newest = 7, 99
	if err := s.Update([]Item{{Path: "/a", Entry: e}, {Path: "/b"}}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.AddRoot(Root{Path: "/a", Added: time.Unix(5, 0)}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if st, _ := os.Stat(filepath.Dir(path)); st.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %v, want 0700", st.Mode().Perm())
	}
	s, err = Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, ok, err := s.Get("/a")
	if err != nil || !ok || got != e {
		t.Fatalf("got %+v %v %v, want %+v", got, ok, err, e)
	}
	if _, ok, _ := s.Get("/missing"); ok {
		t.Error("found a missing entry")
	}
	roots, err := s.Roots()
	if err != nil || len(roots) != 1 || roots[0].Path != "/a" {
		t.Fatalf("roots %+v %v", roots, err)
	}
	s.RemoveRoot("/a")
	s.Update(nil, []string{"/a"})
	if roots, _ := s.Roots(); len(roots) != 0 {
		t.Error("root not removed")
	}
	if _, ok, _ := s.Get("/a"); ok {
		t.Error("entry not deleted")
	}
}

func TestLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache.db")
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	_, err = Open(path, &Options{Timeout: 200 * time.Millisecond})
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), path) {
		t.Fatalf("second open: %v; want ErrLocked naming %s", err, path)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("second open took %v", d)
	}
}

// TestCannotOpen: a database path that cannot be opened or created fails
// naming it once, with what to do, and is not taken for a damaged file
// (nothing is moved aside).
func TestCannotOpen(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ path, want string }{
		{dir, "cache: open " + dir + ": is a directory: give narhashd a --db it can read and write"},
		{filepath.Join(file, "cache.db"), "cache: the database's directory: mkdir " + file + ": not a directory: give narhashd a --db where it can create one"},
	} {
		if _, err := Open(c.path, nil); err == nil || err.Error() != c.want {
			t.Errorf("Open(%s): %v; want %q", c.path, err, c.want)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("%d files in %s after the failed opens; want only %q", len(ents), dir, "file")
	}
}

func TestDamaged(t *testing.T) {
	good := filepath.Join(t.TempDir(), "good.db")
	s, err := Open(good, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Update([]Item{{Path: "/x", Entry: Entry{NARSize: 1}}}, nil)
	s.Close()
	whole, _ := os.ReadFile(good)
	for name, contents := range map[string][]byte{
		"garbage":   []byte(strings.Repeat("not a database ", 1000)),
		"truncated": whole[:len(whole)/3],
		"tiny":      whole[:100],
		"zeros":     make([]byte, 64<<10),
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "cache.db")
			os.WriteFile(path, contents, 0o600)
			s, err := Open(path, nil)
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			defer s.Close()
			if !strings.Contains(s.Recovered, "moved it to") {
				t.Errorf("Recovered = %q", s.Recovered)
			}
			if err := s.Update([]Item{{Path: "/y", Entry: Entry{NARSize: 2}}}, nil); err != nil {
				t.Errorf("the new database does not work: %v", err)
			}
			matches, _ := filepath.Glob(path + ".damaged-*")
			if len(matches) != 1 {
				t.Errorf("damaged copy not kept: %v", matches)
			}
		})
	}
}

func TestSchemaVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		b, _ := tx.CreateBucket(bucketMeta)
		if err := b.Put(keySchema, []byte{0, 0, 0, 9}); err != nil {
			return err
		}
		// Records of the newer schema, which this one cannot decode.
		e, _ := tx.CreateBucket(bucketEntries)
		return e.Put([]byte("/src"), []byte{9, 9, 9})
	})
	db.Close()
	before, _ := os.ReadFile(path)
	_, err = Open(path, nil)
	if err == nil || !strings.Contains(err.Error(), "schema version 9") {
		t.Fatalf("got %v, want a schema version error", err)
	}
	if after, serr := os.ReadFile(path); serr != nil || !bytes.Equal(after, before) {
		t.Errorf("a database of a newer schema must be left as it is, not moved aside or changed (%v)", serr)
	}
}

func TestCheckpointsKeptWithEntry(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	get := func(p string) string {
		t.Helper()
		b, err := s.Checkpoints(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.Update([]Item{{Path: "/a", Checkpoints: []byte("cps of a")}, {Path: "/b", Checkpoints: []byte("cps of b")}}, nil))
	if got := get("/a"); got != "cps of a" {
		t.Errorf("checkpoints of /a: %q", got)
	}
	must(s.Update([]Item{{Path: "/a"}}, []string{"/b"})) // a new entry without, and /b removed
	if got, got2 := get("/a"), get("/b"); got != "" || got2 != "" {
		t.Errorf("checkpoints left: /a %q, /b %q; want none", got, got2)
	}
}
