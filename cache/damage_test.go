package cache

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// filled makes a database of n entries at a new path, written in one
// transaction (so that no freed page holds an older copy of a record).
func filled(t testing.TB, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cache.db")
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	items := make([]Item, n)
	for i := range items {
		items[i] = Item{Path: entryPath(i), Entry: Entry{NARSize: int64(i)}}
	}
	if err := s.Update(items, nil); err != nil {
		t.Fatal(err)
	}
	return path
}

func entryPath(i int) string { return fmt.Sprintf("/home/someone/src/project-%06d", i) }

// leafOf returns the offset in the file at path of the leaf page that
// holds key, and the page size: found by the bytes of key, in a page that
// bbolt says is a leaf in use.
func leafOf(t *testing.T, path, key string) (off, size int) {
	t.Helper()
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	size = db.Info().PageSize
	for at := 0; ; at++ {
		i := bytes.Index(file[at:], []byte(key))
		if i < 0 {
			t.Fatalf("no leaf page of %s holds %q", path, key)
		}
		at += i
		off = at / size * size
		var typ string
		db.View(func(tx *bolt.Tx) error {
			info, err := tx.Page(off / size)
			if err == nil && info != nil {
				typ = info.Type
			}
			return err
		})
		if typ == "leaf" {
			return off, size
		}
	}
}

// garble writes b at off in the file at path, in place.
func garble(t *testing.T, path string, off int, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, int64(off)); err != nil {
		t.Fatal(err)
	}
}

func noise(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// TestDamagedPage: damage in a data page, which bolt.Open does not read,
// is found by Open, which moves the file aside and starts a new one.
func TestDamagedPage(t *testing.T) {
	key := entryPath(1000)
	for _, c := range []struct {
		name   string
		damage func(t *testing.T, path string)
	}{
		{"whole page", func(t *testing.T, path string) {
			off, size := leafOf(t, path, key)
			garble(t, path, off, noise(size))
		}},
		{"records", func(t *testing.T, path string) { // the page header kept
			off, size := leafOf(t, path, key)
			garble(t, path, off+16, noise(size-16))
		}},
		{"one entry's record", func(t *testing.T, path string) {
			off, size := leafOf(t, path, key)
			page := make([]byte, size)
			f, _ := os.Open(path)
			f.ReadAt(page, int64(off))
			f.Close()
			// A leaf keeps each value right after its key.
			garble(t, path, off+bytes.Index(page, []byte(key))+len(key), []byte{0xff})
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filled(t, 5000)
			c.damage(t, path)
			s, err := Open(path, nil)
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			defer s.Close()
			if !strings.Contains(s.Recovered, path+" was damaged") || !strings.Contains(s.Recovered, "moved it to "+path+".damaged-") {
				t.Errorf("Recovered = %q, want it to say %s was damaged and moved aside", s.Recovered, path)
			}
			if matches, _ := filepath.Glob(path + ".damaged-*"); len(matches) != 1 {
				t.Errorf("damaged copy not kept: %v", matches)
			}
			for _, p := range []string{key, entryPath(0)} {
				if _, ok, err := s.Get(p); ok || err != nil {
					t.Errorf("Get(%s) in the new database: %v %v, want nothing", p, ok, err)
				}
			}
			if err := s.Update([]Item{{Path: key}}, nil); err != nil {
				t.Errorf("the new database does not work: %v", err)
			}
		})
	}
}

// TestDamagedWhileOpen: a page damaged under an open Store fails the read
// that meets it with ErrCorrupt, and does not crash.
func TestDamagedWhileOpen(t *testing.T) {
	path := filled(t, 5000)
	key := entryPath(1000)
	off, size := leafOf(t, path, key)
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	garble(t, path, off, noise(size)) // the mapping is shared: bbolt sees it
	if _, _, err := s.Get(key); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Get(%s) on a damaged page: %v, want ErrCorrupt", key, err)
	}
}

// TestDamagedErrors: bbolt's errors for a bad file, made by bbolt on
// damaged files, count as damage; the system's errors, as bbolt returns
// them (bare, or in a fmt.Errorf of its own), do not.
func TestDamagedErrors(t *testing.T) {
	good := filled(t, 10)
	whole, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	size := int(binary.LittleEndian.Uint32(whole[24:])) // meta: after the 16-byte page header, magic, version
	both := func(off int, v uint32) []byte {
		b := bytes.Clone(whole)
		for _, page := range []int{0, size} {
			binary.LittleEndian.PutUint32(b[page+16+off:], v)
		}
		return b
	}
	bad := map[string][]byte{
		"garbage":   []byte(strings.Repeat("not a database ", 1000)),
		"checksums": both(56, 12345), // low half of the checksum
		"version":   both(4, 99),
		"one page":  whole[:size],
	}
	for name, contents := range bad {
		path := filepath.Join(t.TempDir(), "cache.db")
		if err := os.WriteFile(path, contents, 0o600); err != nil {
			t.Fatal(err)
		}
		db, err := bolt.Open(path, 0o600, nil)
		if err == nil {
			db.Close()
			t.Errorf("%s: bbolt opened it", name)
			continue
		}
		if !damaged(err) {
			t.Errorf("%s: damaged(%v) = false, want true", name, err)
		}
	}
	for _, err := range []error{
		syscall.ENOLCK, // flock on NFS without a lock daemon
		syscall.ENOMEM, // mmap
		syscall.ENODEV,
		syscall.EIO, // fdatasync
		syscall.EDQUOT,
		fmt.Errorf("madvise: %s", syscall.EINVAL),
		fmt.Errorf("file sync error: %s", syscall.EIO),
		fmt.Errorf("file stat error: %w", &os.PathError{Op: "stat", Path: good, Err: syscall.EIO}),
		errors.New("mmap too large"),
	} {
		if damaged(err) {
			t.Errorf("damaged(%v) = true, want false", err)
		}
	}
}

// TestSystemError: Open failing for a reason of the system (here bbolt's
// Open returning flock's or mmap's errno) reports it, naming the file and
// what to do, and leaves the file where and as it is.
func TestSystemError(t *testing.T) {
	defer func(f func(string, os.FileMode, *bolt.Options) (*bolt.DB, error)) { boltOpen = f }(boltOpen)
	for _, c := range []struct {
		err  syscall.Errno
		want string
	}{
		{syscall.ENOLCK, "cannot lock files"},
		{syscall.ENOMEM, "not enough memory"},
		{syscall.EDQUOT, "quota is full"},
		{syscall.EIO, "the file is left as it is"},
	} {
		path := filled(t, 10)
		before, _ := os.ReadFile(path)
		boltOpen = func(string, os.FileMode, *bolt.Options) (*bolt.DB, error) { return nil, c.err }
		_, err := Open(path, nil)
		boltOpen = bolt.Open
		if err == nil || errors.Is(err, ErrCorrupt) || !errors.Is(err, c.err) {
			t.Errorf("%v: Open: %v, want %v and not ErrCorrupt", c.err, err, c.err)
		} else if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, c.want) {
			t.Errorf("%v: Open: %q, want it to name %s and say %q", c.err, msg, path, c.want)
		}
		if matches, _ := filepath.Glob(path + ".damaged-*"); len(matches) != 0 {
			t.Errorf("%v: the file was moved aside: %v", c.err, matches)
		}
		if after, _ := os.ReadFile(path); !bytes.Equal(after, before) {
			t.Errorf("%v: the file was changed", c.err)
		}
	}
}

// TestForeign: a bbolt file of another program is refused, named, and
// left as it is: not adopted, not moved aside.
func TestForeign(t *testing.T) {
	for name, fill := range map[string]func(*bolt.Tx) error{
		"other buckets": func(tx *bolt.Tx) error {
			b, err := tx.CreateBucket([]byte("sessions"))
			if err != nil {
				return err
			}
			if _, err := b.CreateBucket([]byte("nested")); err != nil {
				return err
			}
			if err := b.Put([]byte("empty"), nil); err != nil {
				return err
			}
			return b.Put([]byte("k"), []byte("v"))
		},
		"an entries bucket of its own": func(tx *bolt.Tx) error {
			b, err := tx.CreateBucket(bucketEntries)
			if err != nil {
				return err
			}
			return b.Put([]byte("k"), []byte("not one of narhash's records"))
		},
		"a meta bucket without a schema": func(tx *bolt.Tx) error {
			b, err := tx.CreateBucket(bucketMeta)
			if err != nil {
				return err
			}
			return b.Put([]byte("owner"), []byte("someone else"))
		},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "other.db")
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Update(fill); err != nil {
				t.Fatal(err)
			}
			db.Close()
			before, _ := os.ReadFile(path)
			s, err := Open(path, nil)
			if err == nil {
				s.Close()
			}
			if err == nil || errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path+" is not narhash's database") {
				t.Errorf("Open: %v, want it to say %s is not narhash's database", err, path)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(after, before) {
				t.Error("the file was changed")
			}
			if matches, _ := filepath.Glob(path + ".damaged-*"); len(matches) != 0 {
				t.Errorf("the file was moved aside: %v", matches)
			}
		})
	}
}

// TestEmptyBoltFile: a bbolt file with no bucket at all is taken.
func TestEmptyBoltFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Update([]Item{{Path: "/a"}}, nil); err != nil {
		t.Error(err)
	}
}

// TestOwnPanic: a panic of narhash's own code in a transaction is a bug,
// not a damaged file: it goes on, and is not turned into ErrCorrupt.
func TestOwnPanic(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "cache.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var m map[string]int
	var idx []int
	for name, run := range map[string]func() error{
		"update, nil map": func() error {
			return s.update(func(*bolt.Tx) error { m["x"]++; return nil })
		},
		"view, index out of range": func() error {
			return s.view(func(*bolt.Tx) error { return fmt.Errorf("%d", idx[len(m)]) })
		},
		"view, nil dereference": func() error {
			return s.view(func(tx *bolt.Tx) error { return tx.Bucket([]byte("none")).Put(nil, nil) })
		},
	} {
		var err error
		r := func() (r any) {
			defer func() { r = recover() }()
			err = run()
			return nil
		}()
		if r == nil {
			t.Errorf("%s: no panic, and %v", name, err)
		}
	}
	if _, _, err := s.Get("/a"); err != nil {
		t.Errorf("the store after the panics: %v", err)
	}
}

// BenchmarkVerify measures what reading the whole file costs Open, on a
// database of 100,000 entries.
func BenchmarkVerify(b *testing.B) {
	path := filled(b, 100_000)
	s, err := Open(path, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	st, _ := os.Stat(path)
	b.SetBytes(st.Size())
	b.ReportAllocs()
	for b.Loop() {
		if err := s.verify(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpen measures Open and Close of a database of 100,000 entries.
func BenchmarkOpen(b *testing.B) {
	path := filled(b, 100_000)
	b.ReportAllocs()
	for b.Loop() {
		s, err := Open(path, nil)
		if err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}
