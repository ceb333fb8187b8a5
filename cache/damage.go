package cache

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"reflect"
	"runtime"
	"strings"
	"syscall"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// damaged tells bbolt's errors from Open that mean a bad file (no valid
// meta page, meta pages of another bbolt format, a file shorter than its
// two meta pages) from failures of the system, which moving the file aside
// would not cure: bbolt returns the errors of flock (ENOLCK on NFS without
// a lock daemon), mmap (ENOMEM, ENODEV) and fdatasync (EIO, EDQUOT) bare
// or in a fmt.Errorf of its own, never as an *os.PathError.
func damaged(err error) bool {
	return errors.Is(err, bolterrors.ErrInvalid) ||
		errors.Is(err, bolterrors.ErrChecksum) ||
		errors.Is(err, bolterrors.ErrVersionMismatch) ||
		// bbolt's mmap has no sentinel for this one.
		strings.HasPrefix(err.Error(), "file size too small")
}

// failed describes an error of the system (not of the file) opening,
// locking, mapping or writing the database at path: the file is left as
// it is.
func failed(path string, err error) error {
	what := "give narhashd a --db it can read and write"
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err // open's or write's, which names path already
	} else {
		what = "the file is left as it is: fix the cause, or give narhashd a --db on another filesystem"
	}
	switch {
	case errors.Is(err, syscall.ENOLCK):
		what = "its filesystem cannot lock files (NFS without a lock daemon?): give narhashd a --db on a local filesystem"
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		what = "the disk or the quota is full: free some space, or give narhashd a --db on another filesystem"
	case errors.Is(err, syscall.ENOMEM):
		what = "there was not enough memory to map it: free some, or raise the limit on address space (ulimit -v)"
	}
	return fmt.Errorf("cache: open %s: %w: %s", path, err, what)
}

// verify reads the whole file, so that a damaged page is found by Open,
// which moves the file aside, and not by every later read: it reads every
// record of every bucket, decodes the entries and the roots, then runs
// bbolt's own check (page links, the freelist, the order of keys). bbolt
// keeps no checksum of its pages: a garbled record that still decodes is
// not found. About 20 ms for 100,000 entries (BenchmarkVerify).
func (s *Store) verify() error {
	return s.view(func(tx *bolt.Tx) error {
		err := tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			return walk(b, string(name))
		})
		if err != nil {
			return err
		}
		// The walk has read every page bbolt's check reads, here in a
		// goroutine of bbolt's own where a fault would not be a panic.
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		if len(errs) > 0 {
			return fmt.Errorf("cache: %w: bbolt's check found %d problems, the first: %v", ErrCorrupt, len(errs), errs[0])
		}
		return nil
	})
}

// walk reads every record of b, a bucket named name, and of the buckets
// in it. A record that points out of the file faults, a panic
// (SetPanicOnFault) that view turns into ErrCorrupt.
func walk(b *bolt.Bucket, name string) error {
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v == nil {
			if in := b.Bucket(k); in != nil { // a bucket in this one
				if err := walk(in, name+"/"+string(k)); err != nil {
					return err
				}
				continue
			}
		}
		// Read every byte, with crc32 because it is fast: there is
		// no checksum to compare its sum with.
		crc32.Update(crc32.ChecksumIEEE(k), crc32.IEEETable, v)
		var err error
		switch name {
		case string(bucketEntries):
			_, err = decodeEntry(v)
		case string(bucketRoots):
			err = json.Unmarshal(v, new(Root))
		}
		if err != nil {
			return fmt.Errorf("cache: %w: %s %q: %v", ErrCorrupt, name, k, err)
		}
	}
	return nil
}

// recoverCorrupt, deferred, turns a panic of bbolt reading a damaged page
// into ErrCorrupt. Any other panic, a bug of narhash's, goes on.
func recoverCorrupt(err *error) {
	r := recover()
	if r == nil {
		return
	}
	if !badPage(r) {
		panic(r)
	}
	*err = fmt.Errorf("cache: %w: %s", ErrCorrupt, crashed(r))
}

// crashed describes bbolt's panic r on a damaged file, recovered: a
// fault or a runtime error says only that reading it failed.
func crashed(r any) string {
	return fmt.Sprintf("reading it crashed bbolt (%v)", r)
}

// badPage tells, in a deferred function, a panic r that a damaged file
// causes from a bug of narhash's own, which must not be taken for damage
// (the file would be moved aside) nor hidden. A damaged page makes bbolt
// panic with a string of its own checks ("assertion failed: Page expected
// to be: …", "invalid page type: …"), with a runtime error (an index out
// of range in bbolt's decoding of a page), or with a fault reading past
// the file, in bbolt's code or in the callback reading a record. The type
// of r cannot tell these from narhash's bugs, which are runtime errors
// too, but where the panic was raised can. Whatever the place, a fault at
// a non-nil address (with SetPanicOnFault, a runtime.Error with an Addr
// method) is a read of the mapped file, and a nil dereference (no Addr)
// is a bug: no page is at nil, but a missing bucket is, in bbolt's
// methods called on it.
func badPage(r any) bool {
	if e, ok := r.(runtime.Error); ok {
		if _, ok := e.(interface{ Addr() uintptr }); ok {
			return true
		}
		if strings.HasSuffix(e.Error(), "nil pointer dereference") {
			return false
		}
	}
	return raisedInBolt()
}

// bucket returns tx's bucket name, which init made: a file without it is
// damaged.
func bucket(tx *bolt.Tx, name []byte) (*bolt.Bucket, error) {
	if b := tx.Bucket(name); b != nil {
		return b, nil
	}
	return nil, fmt.Errorf("cache: %w: no bucket %q", ErrCorrupt, name)
}

// raisedInBolt reports whether the panic under way was raised in bbolt's
// code rather than in this package's: the first frame below
// runtime.gopanic in either, skipping the runtime and the standard
// library between them (bytes, sort).
func raisedInBolt() bool {
	pcs := make([]uintptr, 64)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs)])
	panicking := false
	for {
		f, more := frames.Next()
		switch {
		case f.Function == "runtime.gopanic":
			panicking = true
		case !panicking:
		case strings.HasPrefix(f.Function, "go.etcd.io/bbolt"):
			return true
		case strings.HasPrefix(f.Function, ownPkg+"."):
			return false
		}
		if !more {
			return false
		}
	}
}

// ownPkg is this package's import path.
var ownPkg = reflect.TypeFor[Store]().PkgPath()
