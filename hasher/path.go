package hasher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/narhash/narhash/nar"
	"golang.org/x/sys/unix"
)

// Options tune HashPath. The zero value is ready to use.
type Options struct {
	// Readers is the number of goroutines reading files ahead of the
	// hash; 0 means runtime.GOMAXPROCS(0).
	Readers int
	// Attempts is how many times a tree that changes while it is read is
	// hashed again before giving up; 0 means 3.
	Attempts int
	// Algo hashes the NAR; the zero value is SHA256, what Nix uses for
	// NAR hashes unless told otherwise (nix-hash --type).
	Algo Algo
	// Progress, if not nil, is added to as the NAR is hashed (see
	// nar.DumpOptions.Progress); an attempt that is retried counts twice.
	Progress *nar.Progress
	// Select, if not nil, restricts the NAR to the entries it selects
	// (see nar.DumpOptions.Select).
	Select *nar.Selection
	// Checkpoints and From: see nar.DumpOptions. Every attempt resumes
	// at From, and fills Checkpoints anew.
	Checkpoints *nar.Checkpoints
	From        *nar.Checkpoint
	// ColdProcs: see nar.DumpOptions.
	ColdProcs int
}

// A Result is the NAR hash of a path and what was learnt computing it.
type Result struct {
	Hash        Hash  // of the NAR, SHA-256 unless Options.Algo says otherwise
	NARSize     int64 // bytes of NAR hashed
	Fingerprint nar.Fingerprint
	Stats       nar.DumpStats
	Since       time.Time // see nar.DumpResult.Since
}

// HashPath returns the SHA-256 (or opt.Algo) of the NAR serialisation of
// path, what `nix-hash --type sha256 path` and `nix hash path` compute. The NAR is
// streamed into the hash, never held in memory. If the tree changes while
// it is read, it is hashed again, up to opt.Attempts times, and then the
// error matches nar.ErrChanged: a hash of a torn read is never returned.
func HashPath(ctx context.Context, path string, opt *Options) (Result, error) {
	attempts, algo, dopt := 3, SHA256, &nar.DumpOptions{}
	if opt != nil {
		if opt.Attempts > 0 {
			attempts = opt.Attempts
		}
		dopt.Readers, dopt.Progress, dopt.Select, algo = opt.Readers, opt.Progress, opt.Select, opt.Algo
		dopt.Checkpoints, dopt.From, dopt.ColdProcs = opt.Checkpoints, opt.From, opt.ColdProcs
	}
	h := algo.New()
	for try := 1; ; try++ {
		h.Reset()
		res, err := nar.Dump(ctx, h, path, dopt)
		if err == nil {
			return Result{Hash{algo, h.Sum(nil)}, res.Size, res.Fingerprint, res.DumpStats, res.Since}, nil
		}
		if !errors.Is(err, nar.ErrChanged) || try >= attempts || ctx.Err() != nil {
			if errors.Is(err, nar.ErrChanged) {
				return Result{}, fmt.Errorf("%w; gave up after %d attempts: hash it again once it is quiet", err, try)
			}
			return Result{}, err
		}
	}
}

// HashFile returns the hash of the contents of the file at path (following
// symlinks), what `nix hash file` computes, and its size. It fails with
// nar.ErrChanged if the file changed while it was read.
func HashFile(ctx context.Context, path string, algo Algo) (Hash, int64, error) {
	// O_NONBLOCK: opening a FIFO (or a device) must not wait for a
	// writer; its type is checked right after, and only a regular file,
	// for which the flag means nothing, is read.
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return Hash{}, 0, err
	}
	defer f.Close()
	var before unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &before); err != nil {
		return Hash{}, 0, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	if before.Mode&unix.S_IFMT != unix.S_IFREG {
		return Hash{}, 0, fmt.Errorf("hash %s: not a regular file: --flat hashes a file's contents", path)
	}
	h := algo.New()
	n, err := io.Copy(h, ctxReader{ctx, f})
	if err != nil {
		return Hash{}, 0, fmt.Errorf("hash %s: %w", path, err)
	}
	var after unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &after); err != nil {
		return Hash{}, 0, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	if n != before.Size || nar.StatChanged(&before, &after) {
		return Hash{}, 0, fmt.Errorf("hash %s: %w", path, nar.ErrChanged)
	}
	return Hash{algo, h.Sum(nil)}, n, nil
}

// ctxReader stops a long copy when its context is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
