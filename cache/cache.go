// Package cache keeps narhashd's results in an embedded bbolt database:
// for each path, its NAR hash, NAR size, the stat fingerprint of its tree
// and when and how fast it was computed, with the checkpoints of the hash
// that computed it (see Item.Checkpoints: a few hundred bytes per MiB of
// archive, at most about 1.5 MiB per root); and the set of watched roots.
//
// A Store has no goroutines of its own: the daemon batches results and
// commits them with PutMany, one transaction per batch.
//
// Caveats:
//   - Open waits at most Options.Timeout for the file lock; another
//     narhashd holding the file gives ErrLocked, naming it.
//   - A damaged file (truncated, garbage, or a read that panics inside
//     bbolt) is moved aside as <file>.damaged-<time> and a new database is
//     created; Store.Recovered says so. The lost entries are recomputed.
//   - Entries are unverified after a restart: the daemon must match their
//     fingerprint with a stat walk before serving them.
package cache

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"time"

	"github.com/narhash/narhash/nar"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// SchemaVersion is the version of the layout this package reads and writes.
const SchemaVersion = 1

var (
	bucketMeta    = []byte("meta")
	bucketEntries = []byte("entries")
	bucketRoots   = []byte("roots")
	keySchema     = []byte("schema")
)

// ErrLocked means another process (another narhashd) holds the database.
var ErrLocked = errors.New("database is in use by another process")

// ErrCorrupt is matched by errors from a database found damaged while in use.
var ErrCorrupt = errors.New("database is damaged")

// Options tune Open.
type Options struct {
	// Timeout bounds the wait for the file lock; 0 means one second.
	Timeout time.Duration
}

// An Entry is what is known of one path.
type Entry struct {
	Hash        [32]byte // SHA-256 of the NAR
	NARSize     int64
	Fingerprint nar.Fingerprint
	Computed    time.Time     // when the hash was computed
	Took        time.Duration // how long computing it took
}

// A Root is a watched tree.
type Root struct {
	Path  string    `json:"path"`
	Added time.Time `json:"added"`
	// Validate asks for a stat walk on every query: for trees changed in
	// ways inotify cannot see (hard links edited from outside, writes
	// through a shared mmap).
	Validate bool `json:"validate,omitempty"`
}

// A Store is an open database.
type Store struct {
	db   *bolt.DB
	path string
	file os.FileInfo // the file opened, for Check
	// Recovered, if not empty, says that the file was damaged and where
	// the damaged copy was moved.
	Recovered string
}

// Open opens or creates the database at path (creating its directory,
// 0700), recovering from a damaged file.
func Open(path string, opt *Options) (*Store, error) {
	timeout := time.Second
	if opt != nil && opt.Timeout > 0 {
		timeout = opt.Timeout
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("cache: the database's directory: %w: give narhashd a --db where it can create one", err)
	}
	s, err := open(path, timeout)
	if err == nil || errors.Is(err, ErrLocked) || !damaged(err) {
		return s, err
	}
	aside := fmt.Sprintf("%s.damaged-%s", path, time.Now().UTC().Format("20060102T150405Z"))
	if rerr := os.Rename(path, aside); rerr != nil {
		return nil, fmt.Errorf("cache: %s is damaged (%v) and could not be moved aside: %w", path, err, rerr)
	}
	s, err2 := open(path, timeout)
	if err2 != nil {
		return nil, err2
	}
	s.Recovered = fmt.Sprintf("%s was damaged (%v); moved it to %s and started a new database", path, err, aside)
	return s, nil
}

// damaged tells errors of a bad file from other failures (permissions, a
// full disk) that moving the file aside would not cure.
func damaged(err error) bool { return errors.Is(err, ErrCorrupt) }

func open(path string, timeout time.Duration) (s *Store, err error) {
	// A truncated file makes bbolt read past the end of its mapping:
	// SIGBUS, which this turns into a panic to recover from.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("%w: %s", ErrCorrupt, crashed(r))
		}
	}()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("cache: %s: %w (waited %v): stop the other narhashd, or give this one another --db", path, ErrLocked, timeout)
	}
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			// bbolt's error is open's, which names path already.
			return nil, fmt.Errorf("cache: open %s: %w: give narhashd a --db it can read and write", path, pe.Err)
		}
		return nil, fmt.Errorf("cache: %s: %w: %v", path, ErrCorrupt, err)
	}
	s = &Store{db: db, path: path}
	// bbolt holds the file locked from Open: the file at path now is the
	// one it opened.
	if s.file, err = os.Stat(path); err != nil {
		db.Close()
		return nil, fmt.Errorf("cache: %w", err)
	}
	if err := s.init(); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// init creates the buckets, or checks the schema of an existing file.
func (s *Store) init() error {
	return s.update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			if tx.Bucket(bucketEntries) != nil || tx.Bucket(bucketRoots) != nil {
				return fmt.Errorf("%w: no schema version", ErrCorrupt)
			}
			var err error
			if meta, err = tx.CreateBucket(bucketMeta); err != nil {
				return err
			}
			if err := meta.Put(keySchema, binary.BigEndian.AppendUint32(nil, SchemaVersion)); err != nil {
				return err
			}
		}
		v := meta.Get(keySchema)
		if len(v) != 4 {
			return fmt.Errorf("%w: bad schema version record", ErrCorrupt)
		}
		if got := binary.BigEndian.Uint32(v); got != SchemaVersion {
			return fmt.Errorf("cache: %s has schema version %d and this narhashd knows %d: use the narhashd that wrote it, or another --db", s.path, got, SchemaVersion)
		}
		for _, b := range [][]byte{bucketEntries, bucketRoots, bucketCheckpoints} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
}

// Path returns the database file's path.
func (s *Store) Path() string { return s.path }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Get returns the entry for path, if there is one.
func (s *Store) Get(path string) (e Entry, ok bool, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketEntries).Get([]byte(path))
		if v == nil {
			return nil
		}
		if e, err = decodeEntry(v); err != nil {
			return fmt.Errorf("entry %q: %w", path, err)
		}
		ok = true
		return nil
	})
	return e, ok, err
}

// An Item is a path and its entry, for PutMany and Update.
type Item struct {
	Path  string
	Entry Entry
	// Checkpoints, if not nil, are those of the dump that computed the
	// entry (nar.Checkpoints.MarshalBinary), kept with it by Update;
	// nil removes those kept before, which the entry replaces.
	Checkpoints []byte
}

// PutMany stores the entries in one transaction.
func (s *Store) PutMany(items []Item) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEntries)
		for _, it := range items {
			if err := b.Put([]byte(it.Path), encodeEntry(it.Entry)); err != nil {
				return err
			}
		}
		return nil
	})
}

// Update stores items and removes the entries of paths, in one transaction.
func (s *Store) Update(items []Item, remove []string) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEntries)
		for _, it := range items {
			if err := b.Put([]byte(it.Path), encodeEntry(it.Entry)); err != nil {
				return err
			}
		}
		for _, p := range remove {
			if err := b.Delete([]byte(p)); err != nil {
				return err
			}
		}
		return updateCheckpoints(tx, items, remove)
	})
}

// Check reports an error if the file at the store's path is no longer the
// one open (deleted or replaced): what is written then is lost on restart.
func (s *Store) Check() error {
	now, err := os.Stat(s.path)
	if err != nil {
		return fmt.Errorf("cache: the database %s was removed while in use (%w): results and roots saved from now on are lost at the next start; restart narhashd to make a new one", s.path, err)
	}
	if !os.SameFile(s.file, now) {
		return fmt.Errorf("cache: the database %s was replaced by another file while in use: results and roots saved from now on are lost at the next start; restart narhashd", s.path)
	}
	return nil
}

// Delete removes the entry for path.
func (s *Store) Delete(path string) error {
	return s.update(func(tx *bolt.Tx) error { return tx.Bucket(bucketEntries).Delete([]byte(path)) })
}

// Roots returns the watched roots, sorted by path.
func (s *Store) Roots() ([]Root, error) {
	var roots []Root
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRoots).ForEach(func(k, v []byte) error {
			var r Root
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("%w: root %q: %v", ErrCorrupt, k, err)
			}
			roots = append(roots, r)
			return nil
		})
	})
	sort.Slice(roots, func(i, j int) bool { return roots[i].Path < roots[j].Path })
	return roots, err
}

// AddRoot records a watched root.
func (s *Store) AddRoot(r Root) error {
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error { return tx.Bucket(bucketRoots).Put([]byte(r.Path), v) })
}

// RemoveRoot forgets a watched root.
func (s *Store) RemoveRoot(path string) error {
	return s.update(func(tx *bolt.Tx) error { return tx.Bucket(bucketRoots).Delete([]byte(path)) })
}

// view and update run a transaction, turning a panic inside bbolt (a
// damaged page) into ErrCorrupt.
func (s *Store) view(fn func(*bolt.Tx) error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer recoverCorrupt(&err)
	return s.db.View(fn)
}

func (s *Store) update(fn func(*bolt.Tx) error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer recoverCorrupt(&err)
	return s.db.Update(fn)
}

func recoverCorrupt(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("cache: %w: %s", ErrCorrupt, crashed(r))
	}
}

// crashed describes bbolt's panic r on a damaged file, recovered: a
// fault or a runtime error says only that reading it failed.
func crashed(r any) string {
	return fmt.Sprintf("reading it crashed bbolt (%v)", r)
}

// The entry record: version 1, then fixed-size fields, big-endian.
const entryLen = 1 + 32 + 8 + 32 + 8 + 8 + 8 + 8

func encodeEntry(e Entry) []byte {
	b := make([]byte, 0, entryLen)
	b = append(b, 1)
	b = append(b, e.Hash[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(e.NARSize))
	b = append(b, e.Fingerprint.Digest[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(e.Fingerprint.Entries))
	b = binary.BigEndian.AppendUint64(b, uint64(e.Fingerprint.Newest))
	b = binary.BigEndian.AppendUint64(b, uint64(e.Computed.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, uint64(e.Took))
	return b
}

func decodeEntry(b []byte) (Entry, error) {
	if len(b) != entryLen || b[0] != 1 {
		return Entry{}, fmt.Errorf("%w: an entry record of %d bytes (want %d, version 1)", ErrCorrupt, len(b), entryLen)
	}
	var e Entry
	b = b[1:]
	copy(e.Hash[:], b[:32])
	b = b[32:]
	e.NARSize = int64(binary.BigEndian.Uint64(b))
	copy(e.Fingerprint.Digest[:], b[8:40])
	e.Fingerprint.Entries = int64(binary.BigEndian.Uint64(b[40:]))
	e.Fingerprint.Newest = int64(binary.BigEndian.Uint64(b[48:]))
	e.Computed = time.Unix(0, int64(binary.BigEndian.Uint64(b[56:])))
	e.Took = time.Duration(binary.BigEndian.Uint64(b[64:]))
	return e, nil
}
