// Package cache keeps narhashd's results in an embedded bbolt database:
// for each path, its NAR hash, NAR size, the stat fingerprint of its tree
// and when and how fast it was computed, with the checkpoints of the hash
// that computed it (see Item.Checkpoints: a few hundred bytes per MiB of
// archive, at most about 1.5 MiB per root); and the set of watched roots.
//
// A Store has no goroutines of its own: the daemon batches results and
// commits them with Update, one transaction per batch.
//
// Caveats:
//   - Open waits at most Options.Timeout for the file lock; another
//     narhashd holding the file gives ErrLocked, naming it.
//   - Open reads the whole file (about 20 ms for 100,000 entries). A
//     damaged file (truncated, garbage, a page that bbolt's checks or the
//     entries' decoding refuse) is moved aside as <file>.damaged-<time>
//     and a new database is created; Store.Recovered says so. The lost
//     entries are recomputed. Damage that happens while the Store is open
//     fails the reads that meet it with ErrCorrupt until the next Open.
//   - A failure of the system (a lock refused, as on NFS without a lock
//     daemon; a mapping refused; a failing or full disk) is returned,
//     naming the file, which is left as it is. So is a bbolt file that is
//     not narhash's: Open refuses it rather than adopt it.
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
	if err == nil || !errors.Is(err, ErrCorrupt) {
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

// boltOpen is bolt.Open; tests make it fail as the system can.
var boltOpen = bolt.Open

// open opens the file at path. Its error matches ErrCorrupt only if the
// file is damaged.
func open(path string, timeout time.Duration) (s *Store, err error) {
	// A truncated file makes bbolt read past the end of its mapping:
	// SIGBUS, which this turns into a panic to recover from.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	var db *bolt.DB
	defer func() {
		if err != nil {
			s = nil
			if db != nil {
				db.Close()
			}
		}
	}()
	defer recoverCorrupt(&err)
	db, err = boltOpen(path, 0o600, &bolt.Options{Timeout: timeout})
	switch {
	case errors.Is(err, bolterrors.ErrTimeout):
		return nil, fmt.Errorf("cache: %s: %w (waited %v): stop the other narhashd, or give this one another --db", path, ErrLocked, timeout)
	case err != nil && damaged(err):
		return nil, fmt.Errorf("cache: %s: %w: %v", path, ErrCorrupt, err)
	case err != nil:
		return nil, failed(path, err)
	}
	s = &Store{db: db, path: path}
	// bbolt holds the file locked from Open: the file at path now is the
	// one it opened.
	if s.file, err = os.Stat(path); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	// Whose file it is comes first: a database of a newer narhashd, or
	// another program's, is refused as it is, not read record by record
	// as this one's and moved aside as damaged.
	fresh, err := s.schema()
	if err != nil {
		return nil, err
	}
	if err := s.verify(); err != nil {
		return nil, err
	}
	if err := s.init(fresh); err != nil {
		return nil, err
	}
	return s, nil
}

// schema checks, without writing, that the file is narhash's at
// SchemaVersion, or holds no bucket at all (fresh).
func (s *Store) schema() (fresh bool, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			// Another program's bbolt file, not one to adopt.
			if name, _ := tx.Cursor().First(); name != nil {
				return s.foreign(fmt.Sprintf("buckets (%q…) but no %q", name, bucketMeta))
			}
			fresh = true
			return nil
		}
		v := meta.Get(keySchema)
		if v == nil {
			return s.foreign(fmt.Sprintf("a bucket %q without a schema version", bucketMeta))
		}
		if len(v) != 4 {
			return fmt.Errorf("%w: bad schema version record", ErrCorrupt)
		}
		if got := binary.BigEndian.Uint32(v); got != SchemaVersion {
			return fmt.Errorf("cache: %s has schema version %d and this narhashd knows %d: use the narhashd that wrote it, or another --db", s.path, got, SchemaVersion)
		}
		return nil
	})
	return fresh, err
}

// init writes the schema version into a fresh file, and creates the
// buckets it lacks.
func (s *Store) init(fresh bool) error {
	err := s.update(func(tx *bolt.Tx) error {
		if fresh {
			meta, err := tx.CreateBucket(bucketMeta)
			if err != nil {
				return err
			}
			if err := meta.Put(keySchema, binary.BigEndian.AppendUint32(nil, SchemaVersion)); err != nil {
				return err
			}
		}
		for _, b := range [][]byte{bucketEntries, bucketRoots, bucketCheckpoints} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil || errors.Is(err, ErrCorrupt) {
		return err
	}
	return failed(s.path, err) // writing the buckets
}

// foreign is the error for a bbolt file at s.path that is not narhash's:
// it holds what.
func (s *Store) foreign(what string) error {
	return fmt.Errorf("cache: %s is not narhash's database (it holds %s): give narhashd another --db (or, if narhashd wrote it, remove it)", s.path, what)
}

// Path returns the database file's path.
func (s *Store) Path() string { return s.path }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Get returns the entry for path, if there is one.
func (s *Store) Get(path string) (e Entry, ok bool, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		b, err := bucket(tx, bucketEntries)
		if err != nil {
			return err
		}
		v := b.Get([]byte(path))
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

// An Item is a path and its entry, for Update.
type Item struct {
	Path  string
	Entry Entry
	// Checkpoints, if not nil, are those of the dump that computed the
	// entry (nar.Checkpoints.MarshalBinary), kept with it by Update;
	// nil removes those kept before, which the entry replaces.
	Checkpoints []byte
}

// Update stores items and removes the entries of paths, in one transaction.
func (s *Store) Update(items []Item, remove []string) error {
	return s.update(func(tx *bolt.Tx) error {
		b, err := bucket(tx, bucketEntries)
		if err != nil {
			return err
		}
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

// Roots returns the watched roots, sorted by path.
func (s *Store) Roots() ([]Root, error) {
	var roots []Root
	err := s.view(func(tx *bolt.Tx) error {
		b, err := bucket(tx, bucketRoots)
		if err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
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
	return s.update(func(tx *bolt.Tx) error {
		b, err := bucket(tx, bucketRoots)
		if err != nil {
			return err
		}
		return b.Put([]byte(r.Path), v)
	})
}

// RemoveRoot forgets a watched root.
func (s *Store) RemoveRoot(path string) error {
	return s.update(func(tx *bolt.Tx) error {
		b, err := bucket(tx, bucketRoots)
		if err != nil {
			return err
		}
		return b.Delete([]byte(path))
	})
}

// view and update run a transaction, turning a panic of bbolt on a
// damaged page into ErrCorrupt (see recoverCorrupt).
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
