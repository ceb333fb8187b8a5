// Package api is narhashd's v1 protocol: HTTP and JSON over a Unix socket,
// so that `curl --unix-socket S http://narhashd/v1/status` works for anyone.
//
// Routes (all under /v1/):
//
//	GET    /v1/hash?path=P[&format=F][&watch=1][&view=git]  the NAR hash of P, fresh
//	GET    /v1/roots                             the watched roots
//	POST   /v1/roots        {"path": P[, "validate": true]}  watch P
//	DELETE /v1/roots?path=P                      stop watching P
//	GET    /v1/status                            the daemon's state
//	GET    /v1/subscribe?path=P[&format=F][&view=git]  NDJSON: a line per new hash of P
//
// view=git asks for the hash of P's git view (see package nar/gitview):
// what Nix hashes for a flake in a git worktree.
//
// Errors are {"error": "…"} with a 4xx or 5xx status. Only the daemon's
// own user and root may connect (SO_PEERCRED).
//
// The daemon implements Backend; NewHandler serves it; Client is the typed
// client the CLI uses; Listen creates the socket.
package api

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// A View is what of a path the daemon hashes.
type View string

const (
	ViewTree View = ""    // the whole tree, as nix-hash hashes it
	ViewGit  View = "git" // the files git tracks, as Nix copies a flake's source
)

// ParseView parses a view's name ("" or "tree", and "git").
func ParseView(s string) (View, error) {
	switch s {
	case "", "tree":
		return ViewTree, nil
	case "git":
		return ViewGit, nil
	}
	return "", Errorf(400, "unknown view %q: the views are tree (the default) and git", s)
}

// Hash is a path's NAR hash as the daemon knows it.
type Hash struct {
	Path     string
	View     View
	Root     string // the watched root P is in, or "" for a path hashed on demand
	Digest   [32]byte
	NARSize  int64
	Source   string // "cache", "computed" or "validated" (by a stat walk)
	Computed time.Time
	Took     time.Duration
	Epoch    uint64 // bumped whenever events were lost and everything rescanned
	Degraded bool   // the root is not watched (watch limit, or not inotify-capable): validated by stat walk
	// Failed, in a subscription only, says why the path's hash could
	// not be computed after a change (a FIFO appeared, say): the hash
	// sent before no longer describes the path, and there is none now
	// (Digest is zero) until a change lets it be hashed again.
	Failed string
}

// HashResult is Hash on the wire. A hash always has every field but
// view, root, degraded and failed; a subscription's line that says the
// path could not be hashed has only path, view, root, epoch, degraded and
// failed.
type HashResult struct {
	Path     string    `json:"path"`
	View     View      `json:"view,omitempty"`
	Hash     string    `json:"hash,omitempty"`
	Algo     string    `json:"algo,omitempty"`
	Format   string    `json:"format,omitempty"`
	NARSize  int64     `json:"narSize,omitempty"`
	Root     string    `json:"root,omitempty"`
	Source   string    `json:"source,omitempty"`
	Computed time.Time `json:"computedAt,omitzero"`
	TookMS   float64   `json:"tookMs,omitempty"`
	Epoch    uint64    `json:"epoch"`
	Degraded bool      `json:"degraded,omitempty"`
	Failed   string    `json:"failed,omitempty"`
}

// Root describes a watched root.
type Root struct {
	Path     string    `json:"path"`
	State    string    `json:"state"` // clean, dirty, hashing, unverified, failed
	Hash     string    `json:"hash,omitempty"`
	NARSize  int64     `json:"narSize,omitempty"`
	Computed time.Time `json:"computedAt,omitzero"`
	TookMS   float64   `json:"tookMs,omitempty"`
	Watches  int       `json:"watches"`
	Degraded bool      `json:"degraded,omitempty"`
	Warning  string    `json:"warning,omitempty"`
	Error    string    `json:"error,omitempty"`
	Validate bool      `json:"validate,omitempty"` // checked by stat walk on every query, as asked
}

// RootOptions are how a root is watched.
type RootOptions struct {
	// Validate checks the root by a stat walk on every query: for trees
	// changed in ways inotify cannot see (hard links edited from outside,
	// writes through a shared mmap).
	Validate bool `json:"validate,omitempty"`
}

// Status describes the daemon.
type Status struct {
	Version   string    `json:"version"` // the daemon's Version()
	PID       int       `json:"pid"`
	Started   time.Time `json:"started"`
	Socket    string    `json:"socket"`
	DB        string    `json:"db"`
	Workers   int       `json:"workers"`
	Roots     []Root    `json:"roots"`
	Pending   int       `json:"pending"` // hash jobs waiting or running
	Epoch     uint64    `json:"epoch"`
	Overflows int       `json:"overflows"`
	// Checkpoints is the memory the roots' saved hash states take, in
	// bytes (incremental rehash); Resumed counts the hashes that resumed
	// at one instead of starting over.
	Checkpoints int64 `json:"checkpointBytes"`
	Resumed     int   `json:"resumed"`
	// Tracked counts the roots, sub-paths and git views whose hashes the
	// daemon keeps; TrackingBytes estimates the memory they take besides
	// their checkpoints (idle sub-paths and git views are forgotten).
	Tracked       int      `json:"tracked"`
	TrackingBytes int64    `json:"trackingBytes"`
	Warnings      []string `json:"warnings,omitempty"`
}

// A Backend answers the requests; the daemon implements it.
type Backend interface {
	Hash(ctx context.Context, path string, view View, watch bool) (Hash, error)
	Roots(ctx context.Context) ([]Root, error)
	AddRoot(ctx context.Context, path string, opt RootOptions) (Root, error)
	RemoveRoot(ctx context.Context, path string) error
	Status(ctx context.Context) (Status, error)
	// Subscribe calls send with the current hash of path and then with
	// every new one, until ctx is done or send fails.
	Subscribe(ctx context.Context, path string, view View, send func(Hash) error) error
}

// An Error is an error with the HTTP status that reports it.
type Error struct {
	Code    int
	Message string
}

func (e *Error) Error() string { return e.Message }

// Errorf returns an *Error.
func Errorf(code int, format string, args ...any) error {
	return &Error{code, fmt.Sprintf(format, args...)}
}

// ErrNotRunning is matched by the client's error when nothing answers on
// the socket.
var ErrNotRunning = errors.New("narhashd is not running")

// ErrNotNarhashd is matched by the client's error when the server on the
// socket answers what narhashd never would: not its JSON, a hash that is
// not a SHA-256 digest in the format asked for, or the hash of another
// path than asked. The answer is dropped.
var ErrNotNarhashd = errors.New("not narhashd's answer")

// ErrTimeout is matched by the client's error when the daemon takes a
// request but does not answer it within the client's Timeout: it is
// stuck, or stopped (SIGSTOP).
var ErrTimeout = errors.New("narhashd did not answer")

// ErrTooOld is matched by the client's error when narhashd answers
// without what was asked, as a narhashd older than the client does: the
// hash of the whole tree when the git view was asked for. The answer is
// dropped; restarting narhashd, so that the one running is the binary
// installed, mends it.
var ErrTooOld = errors.New("narhashd is older than this narhash")

// DefaultSocket returns where narhashd listens unless told otherwise:
// $NARHASHD_SOCKET, else $XDG_RUNTIME_DIR/narhashd/narhashd.sock, else
// /tmp/narhashd-<uid>/narhashd.sock.
func DefaultSocket() string {
	if s := os.Getenv("NARHASHD_SOCKET"); s != "" {
		return s
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "narhashd", "narhashd.sock")
	}
	return filepath.Join(os.TempDir(), "narhashd-"+strconv.Itoa(os.Getuid()), "narhashd.sock")
}
