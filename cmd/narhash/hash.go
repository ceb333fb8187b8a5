package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/narhash/narhash/hasher"
	"github.com/narhash/narhash/nar"
)

func init() {
	commands = append(commands,
		&command{
			name: "hash", args: "[--format F] [--type ALGO] [--flat] [--json] PATH...",
			summary: "Print the NAR hash of each PATH, like nix-hash --type sha256 --base32.",
			help: `One hash per line, in argument order. Paths are hashed in parallel.
A tree that changes while it is read is hashed again; a hash of a torn read
is never printed.

--json prints one object per line:
  {"path":"src","hash":"1b8m…","algo":"sha256","format":"nix32","narSize":1234,
   "files":10,"dirs":2,"symlinks":0}
With --flat, "size" (the file's size) stands for "narSize".

Examples:
  narhash hash ./src                 # = nix-hash --type sha256 --base32 ./src
  narhash hash --format sri ./src    # = nix hash path ./src
  narhash hash --flat --format base16 file.tar.gz   # = nix hash file --base16`,
			flags: hashFlags,
			run:   runHash,
		},
		&command{
			name: "verify", args: "[--flat] PATH HASH",
			summary: "Check that PATH has the NAR hash HASH (any format); exit 1 on mismatch.",
			help: `On a match it prints "PATH: OK" and exits 0. On a mismatch it prints both
hashes (in the format HASH was given in, and SRI) and exits 1.

Example:
  narhash verify ./src sha256-CkMIecJm+LV/QJKg+TXPP6zUi7zN5XYNR0jKQFFx6Wk=`,
			flags: func(fs *flag.FlagSet) any {
				return fs.Bool("flat", false, "compare the hash of the file's contents, not of its NAR")
			},
			run: runVerify,
		},
		&command{
			name: "store-path", args: "[--name NAME] [--flat] PATH",
			summary: "Print the store path nix-store --add would give PATH, without a store.",
			help: `The name defaults to PATH's base name. With --flat, the path of
nix-store --add-fixed sha256 PATH (a file's flat hash) instead.

Example:
  narhash store-path --name source ./src`,
			flags: func(fs *flag.FlagSet) any {
				o := &storePathOpts{}
				fs.StringVar(&o.name, "name", "", "the store path's `name` (default: PATH's base name)")
				fs.StringVar(&o.storeDir, "store-dir", hasher.DefaultStoreDir(), "the store `directory` (default from NIX_STORE_DIR)")
				fs.BoolVar(&o.flat, "flat", false, "a fixed-output path of the file's flat SHA-256 (nix-store --add-fixed)")
				return o
			},
			run: runStorePath,
		},
		&command{
			name: "convert", args: "--to FORMAT HASH...",
			summary: "Convert hashes between nix32, base16, base64, sri and multibase.",
			help: `Input in any format is recognised (nix32, base16, base64, SRI, algo:hash,
multibase); hashes without an algorithm prefix are taken as --algo.

Example:
  narhash convert --to sri 0sg9f58l1jj88w6pdrfdpj5x9b1zrwszk84j81zvby36q9whhhqa`,
			flags: func(fs *flag.FlagSet) any {
				o := &convertOpts{}
				fs.StringVar(&o.to, "to", "", "the `format` to print: nix32, base16, base64, sri or multibase (required)")
				fs.StringVar(&o.algo, "algo", "sha256", "the `algorithm` of hashes that do not name one: sha256, sha512, sha1, md5")
				return o
			},
			run: runConvert,
		},
	)
}

type hashOpts struct {
	format string
	flat   bool
	json   bool
	algo   string
}

func hashFlags(fs *flag.FlagSet) any {
	o := &hashOpts{}
	fs.StringVar(&o.format, "format", "nix32", "output `format`: nix32, base16, base64, sri or multibase")
	fs.BoolVar(&o.flat, "flat", false, "hash each file's contents instead of its NAR (like nix hash file)")
	fs.BoolVar(&o.json, "json", false, "print one JSON object per path")
	fs.StringVar(&o.algo, "type", "sha256", "the hash `algorithm`: sha256, sha512, sha1, md5 (like nix-hash --type)")
	return o
}

type hashResult struct {
	Path     string `json:"path"`
	Hash     string `json:"hash"`
	Algo     string `json:"algo"`
	Format   string `json:"format"`
	NARSize  *int64 `json:"narSize,omitempty"`
	Size     *int64 `json:"size,omitempty"`
	Files    *int64 `json:"files,omitempty"`
	Dirs     *int64 `json:"dirs,omitempty"`
	Symlinks *int64 `json:"symlinks,omitempty"`
	err      error
}

func runHash(ctx context.Context, sio *stdio, o any, args []string) error {
	opts := o.(*hashOpts)
	format, err := hasher.ParseFormat(opts.format)
	if err != nil {
		return usagef("%v", err)
	}
	algo, err := hasher.ParseAlgo(opts.algo)
	if err != nil {
		return usagef("%v", err)
	}
	if len(args) == 0 {
		return usagef("no PATH given")
	}
	var progress *nar.Progress
	var line *progressLine
	if f, ok := sio.err.(*os.File); ok && isTerminal(f) && !opts.flat {
		progress = new(nar.Progress)
		line = showProgress(f, progress, len(args))
		defer line.stop()
	}
	results := hashAll(ctx, args, func(ctx context.Context, path string, readers int) hashResult {
		return hashOne(ctx, path, opts.flat, algo, format, readers, progress)
	})
	failed := false
	enc := json.NewEncoder(sio.out)
	for i := range args {
		r := <-results[i]
		line.clear()
		if r.err != nil {
			fmt.Fprintf(sio.err, "narhash hash: %v\n", r.err)
			failed = true
			continue
		}
		if opts.json {
			enc.Encode(r)
		} else {
			fmt.Fprintln(sio.out, r.Hash)
		}
	}
	if failed {
		return errSilent
	}
	return nil
}

// hashAll runs fn over paths, several at a time, and returns one channel
// per path that delivers its result, so that results print in order as
// soon as they are ready.
func hashAll(ctx context.Context, paths []string, fn func(ctx context.Context, path string, readers int) hashResult) []chan hashResult {
	procs := runtime.GOMAXPROCS(0)
	parallel := min(len(paths), procs)
	readers := max(1, procs/parallel)
	out := make([]chan hashResult, len(paths))
	for i := range out {
		out[i] = make(chan hashResult, 1)
	}
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	go func() {
		for i, p := range paths {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				out[i] <- fn(ctx, p, readers)
			})
		}
		wg.Wait()
	}()
	return out
}

func hashOne(ctx context.Context, path string, flat bool, algo hasher.Algo, format hasher.Format, readers int, progress *nar.Progress) hashResult {
	r := hashResult{Path: path, Algo: algo.String(), Format: format.String()}
	if flat {
		h, size, err := hasher.HashFile(ctx, path, algo)
		if err != nil {
			r.err = err
			return r
		}
		r.Hash, r.Size = h.Format(format), &size
		return r
	}
	res, err := hasher.HashPath(ctx, path, &hasher.Options{Readers: readers, Algo: algo, Progress: progress})
	if err != nil {
		r.err = fmt.Errorf("hash %s: %w", path, err)
		return r
	}
	r.Hash, r.NARSize = res.Hash.Format(format), &res.NARSize
	r.Files, r.Dirs, r.Symlinks = &res.Stats.Files, &res.Stats.Dirs, &res.Stats.Symlinks
	return r
}

// computeHash returns the NAR hash (or with flat, the SHA-256 of the
// contents) of path, in algorithm algo.
func computeHash(ctx context.Context, path string, flat bool, algo hasher.Algo) (hasher.Hash, error) {
	if flat {
		h, _, err := hasher.HashFile(ctx, path, algo)
		return h, err
	}
	res, err := hasher.HashPath(ctx, path, &hasher.Options{Algo: algo})
	if err != nil {
		return hasher.Hash{}, fmt.Errorf("hash %s: %w", path, err)
	}
	return res.Hash, nil
}

func runVerify(ctx context.Context, sio *stdio, o any, args []string) error {
	flat := *o.(*bool)
	if len(args) != 2 {
		return usagef("want PATH HASH, got %d arguments", len(args))
	}
	path, given := args[0], args[1]
	want, err := hasher.Parse(given, hasher.SHA256)
	if err != nil {
		return usagef("%v", err)
	}
	got, err := computeHash(ctx, path, flat, want.Algo)
	if err != nil {
		return err
	}
	if !got.Equal(want) {
		format := guessFormat(given)
		show := func(h hasher.Hash) string {
			if format == hasher.SRI {
				return h.Format(hasher.SRI)
			}
			return h.Format(format) + "  (" + h.Format(hasher.SRI) + ")"
		}
		fmt.Fprintf(sio.err, "narhash verify: %s: hash mismatch\n  expected: %s\n  actual:   %s\n", path, show(want), show(got))
		return errSilent
	}
	fmt.Fprintf(sio.out, "%s: OK\n", path)
	return nil
}

// guessFormat returns the format a parsed hash string was written in.
func guessFormat(s string) hasher.Format {
	for _, f := range []hasher.Format{hasher.SRI, hasher.Nix32, hasher.Base16, hasher.Base64, hasher.Multibase} {
		h, err := hasher.Parse(s, hasher.SHA256)
		if err == nil && (h.Format(f) == s || h.Algo.String()+":"+h.Format(f) == s) {
			return f
		}
	}
	return hasher.SRI
}

type storePathOpts struct {
	name, storeDir string
	flat           bool
}

func runStorePath(ctx context.Context, sio *stdio, o any, args []string) error {
	opts := o.(*storePathOpts)
	if len(args) != 1 {
		return usagef("want one PATH, got %d arguments", len(args))
	}
	path := args[0]
	name := opts.name
	if name == "" {
		name = filepath.Base(filepath.Clean(path))
	}
	if err := hasher.CheckName(name); err != nil {
		return usagef("%v", err)
	}
	h, err := computeHash(ctx, path, opts.flat, hasher.SHA256)
	if err != nil {
		return err
	}
	sp, err := hasher.StorePath(opts.storeDir, name, h, !opts.flat)
	if err != nil {
		return err
	}
	fmt.Fprintln(sio.out, sp)
	return nil
}

type convertOpts struct{ to, algo string }

func runConvert(ctx context.Context, sio *stdio, o any, args []string) error {
	opts := o.(*convertOpts)
	if opts.to == "" {
		return usagef("--to FORMAT is required (nix32, base16, base64, sri or multibase)")
	}
	format, err := hasher.ParseFormat(opts.to)
	if err != nil {
		return usagef("%v", err)
	}
	algo, err := hasher.ParseAlgo(opts.algo)
	if err != nil {
		return usagef("%v", err)
	}
	if len(args) == 0 {
		return usagef("no HASH given")
	}
	for _, s := range args {
		h, err := hasher.Parse(s, algo)
		if err != nil {
			return err
		}
		fmt.Fprintln(sio.out, h.Format(format))
	}
	return nil
}
