package cache

import (
	"bytes"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// bucketCheckpoints holds, by path, the checkpoints of the dump that
// computed the path's entry (see Item.Checkpoints), so that after a
// restart a tree changed while narhashd was down is hashed again from the
// last checkpoint before the first change. A database without the bucket
// (written before it existed) gets it at Open; its entries have none.
var bucketCheckpoints = []byte("checkpoints")

// updateCheckpoints keeps the items' checkpoints, and drops those of
// items without and of removed paths.
func updateCheckpoints(tx *bolt.Tx, items []Item, remove []string) error {
	b, err := bucket(tx, bucketCheckpoints)
	if err != nil {
		return err
	}
	for _, it := range items {
		if it.Checkpoints != nil {
			err = b.Put([]byte(it.Path), it.Checkpoints)
		} else {
			err = b.Delete([]byte(it.Path))
		}
		if err != nil {
			return err
		}
	}
	for _, p := range remove {
		if err := b.Delete([]byte(p)); err != nil {
			return err
		}
	}
	return nil
}

// Checkpoints returns the checkpoints kept with path's entry, or nil.
// They are as Update was given them: decoding checks them.
func (s *Store) Checkpoints(path string) ([]byte, error) {
	var cps []byte
	err := s.view(func(tx *bolt.Tx) error {
		b, err := bucket(tx, bucketCheckpoints)
		if err != nil {
			return err
		}
		cps = bytes.Clone(b.Get([]byte(path)))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cache: checkpoints of %q: %w", path, err)
	}
	return cps, nil
}
