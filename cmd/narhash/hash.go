package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/spf13/cobra"

	"github.com/narhash/narhash/hasher"
	"github.com/narhash/narhash/nar"
)

func hashCmd(sio *stdio) *cobra.Command {
	o := &hashOpts{}
	c := command("hash", "hash [flags] PATH...", "Print the NAR hash of each PATH, like nix-hash --type sha256 --base32",
		func(cmd *cobra.Command, args []string) error { return runHash(cmd.Context(), sio, o, args) })
	c.Long = `Prints the NAR hash (SHA-256 unless --type) of each PATH, one per line, in
argument order. Paths are hashed in parallel. A tree that changes while it is
read is hashed again; a hash of a torn read is never printed.

Nix's spellings work: --base32 --base16 --base64 --sri (nix hash path),
--type (nix-hash), --algo and --mode flat|nar (newer nix hash path).

--json prints one object per line:
  {"path":"src","hash":"1b8m…","algo":"sha256","format":"nix32","narSize":1234,
   "files":10,"dirs":2,"symlinks":0}
With --flat, "size" (the file's size) stands for "narSize".
` + gitHelp
	c.Example = `  narhash hash ./src                 # = nix-hash --type sha256 --base32 ./src
  narhash hash --sri ./src           # = nix hash path ./src
  narhash hash --git --sri .         # = locked.narHash of nix flake metadata --json .
  narhash hash --flat --base16 file.tar.gz   # = nix hash file --base16 file.tar.gz`
	c.Args = args(1, -1, "PATH")
	c.ValidArgsFunction = paths
	formatFlags(c, &o.format)
	algoFlags(c, &o.algo, "the hash `ALGO`: sha256, sha512, sha1 or md5")
	c.Flags().BoolVar(&o.flat, "flat", false, "hash each file's contents instead of its NAR (like nix hash file, nix-hash --flat)")
	modeFlag(c, &o.mode)
	c.Flags().BoolVar(&o.json, "json", false, "print one JSON object per path")
	gitFlag(c, &o.git)
	return c
}

func verifyCmd(sio *stdio) *cobra.Command {
	o := &verifyOpts{}
	c := command("hash", "verify [flags] PATH HASH", "Check that PATH has the NAR hash HASH (any format); exit 1 on mismatch",
		func(cmd *cobra.Command, args []string) error { return runVerify(cmd.Context(), sio, o, args) })
	c.Long = `On a match it prints "PATH: OK" and exits 0. On a mismatch it prints both
hashes (in the format HASH was given in, and SRI) and exits 1. HASH may be in
any format (nix32, base16, base64, SRI, algo:hash, multibase); its algorithm
is the one hashed with.
` + gitHelp
	c.Example = `  narhash verify ./src sha256-CkMIecJm+LV/QJKg+TXPP6zUi7zN5XYNR0jKQFFx6Wk=`
	c.Args = args(2, 2, "PATH HASH")
	c.ValidArgsFunction = firstArgPath
	c.Flags().BoolVar(&o.flat, "flat", false, "compare the hash of the file's contents, not of its NAR")
	modeFlag(c, &o.mode)
	gitFlag(c, &o.git)
	return c
}

func storePathCmd(sio *stdio) *cobra.Command {
	o := &storePathOpts{}
	c := command("hash", "store-path [flags] PATH", "Print the store path nix-store --add would give PATH, without a store",
		func(cmd *cobra.Command, args []string) error { return runStorePath(cmd.Context(), sio, o, args) })
	c.Long = `The name defaults to PATH's base name ("source" with --git). With --flat,
the path of nix-store --add-fixed sha256 PATH (a file's flat hash) instead.
` + gitHelp
	c.Example = `  narhash store-path --name source ./src
  narhash store-path --git .         # = path of nix flake metadata --json .`
	c.Args = args(1, 1, "one PATH")
	c.ValidArgsFunction = paths
	fs := c.Flags()
	stringVar(fs, &o.name, "name", "", "the store path's `NAME` (default: PATH's base name)")
	stringVar(fs, &o.storeDir, "store-dir", hasher.DefaultStoreDir(), "the store `DIR` (default from NIX_STORE_DIR, else NIX_STORE)")
	fs.BoolVar(&o.flat, "flat", false, "a fixed-output path of the file's flat SHA-256 (nix-store --add-fixed)")
	modeFlag(c, &o.mode)
	gitFlag(c, &o.git)
	c.RegisterFlagCompletionFunc("name", cobra.NoFileCompletions)
	c.RegisterFlagCompletionFunc("store-dir", dirs)
	return c
}

// modeFlag adds newer Nix's --mode nar|flat, another spelling of --flat.
func modeFlag(c *cobra.Command, mode *string) {
	stringVar(c.Flags(), mode, "mode", "nar", "what to hash, `MODE`: nar, or flat for --flat (as newer nix hash path --mode)")
	c.RegisterFlagCompletionFunc("mode", fixed([]string{"nar", "flat"}))
}

// isFlat reports whether --flat or --mode flat was given.
func isFlat(flat bool, mode string) (bool, error) {
	switch mode {
	case "nar":
		return flat, nil
	case "flat":
		return true, nil
	}
	return false, usagef("unknown --mode %q: narhash hashes nar (the default) and flat", mode)
}

type hashOpts struct {
	format, algo, mode string
	flat, json, git    bool
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

func runHash(ctx context.Context, sio *stdio, opts *hashOpts, args []string) error {
	flat, err := isFlat(opts.flat, opts.mode)
	if err != nil {
		return err
	}
	if err := notFlat(opts.git, flat); err != nil {
		return err
	}
	format, err := hasher.ParseFormat(opts.format)
	if err != nil {
		return usagef("%v", err)
	}
	algo, err := hasher.ParseAlgo(opts.algo)
	if err != nil {
		return usagef("%v", err)
	}
	var progress *nar.Progress
	var line *progressLine
	if f, ok := sio.err.(*os.File); ok && isTerminal(f) && !flat {
		progress = new(nar.Progress)
		line = showProgress(f, progress, len(args))
		defer line.stop()
	}
	results := hashAll(ctx, args, func(ctx context.Context, path string, readers int) hashResult {
		return hashOne(ctx, path, opts.git, flat, algo, format, readers, progress)
	})
	failed := false
	enc := json.NewEncoder(sio.out)
	for i := range args {
		r := <-results[i]
		line.clear()
		if r.err != nil {
			printFailure(sio.err, r.err)
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

func hashOne(ctx context.Context, path string, git, flat bool, algo hasher.Algo, format hasher.Format, readers int, progress *nar.Progress) hashResult {
	r := hashResult{Path: path, Algo: algo.String(), Format: format.String()}
	if flat {
		h, size, err := hasher.HashFile(ctx, path, algo)
		if err != nil {
			r.err = subject("hash "+path, err)
			return r
		}
		r.Hash, r.Size = h.Format(format), &size
		return r
	}
	res, err := hashSource(ctx, path, git, hasher.Options{Readers: readers, Algo: algo, Progress: progress, ColdProcs: nar.DefaultColdProcs})
	if err != nil {
		r.err = err
		return r
	}
	r.Hash, r.NARSize = res.Hash.Format(format), &res.NARSize
	r.Files, r.Dirs, r.Symlinks = &res.Stats.Files, &res.Stats.Dirs, &res.Stats.Symlinks
	return r
}

// computeHash returns the NAR hash (of its git view with git; with flat,
// the hash of the contents) of path, in algorithm algo.
func computeHash(ctx context.Context, path string, git, flat bool, algo hasher.Algo) (hasher.Hash, error) {
	if flat {
		h, _, err := hasher.HashFile(ctx, path, algo)
		return h, subject("hash "+path, err)
	}
	res, err := hashSource(ctx, path, git, hasher.Options{Algo: algo, ColdProcs: nar.DefaultColdProcs})
	return res.Hash, err
}

type verifyOpts struct {
	flat, git bool
	mode      string
}

func runVerify(ctx context.Context, sio *stdio, opts *verifyOpts, args []string) error {
	flat, err := isFlat(opts.flat, opts.mode)
	if err != nil {
		return err
	}
	if err := notFlat(opts.git, flat); err != nil {
		return err
	}
	path, given := args[0], args[1]
	want, format, err := hasher.ParseWithFormat(given, hasher.SHA256)
	if err != nil {
		return usagef("%v", err)
	}
	got, err := computeHash(ctx, path, opts.git, flat, want.Algo)
	if err != nil {
		return err
	}
	if !got.Equal(want) {
		show := func(h hasher.Hash) string {
			if format == hasher.SRI {
				return h.Format(hasher.SRI)
			}
			return h.Format(format) + "  (" + h.Format(hasher.SRI) + ")"
		}
		fmt.Fprintf(sio.err, "narhash: verify %s: hash mismatch\n  expected: %s\n  actual:   %s\n", path, show(want), show(got))
		return errSilent
	}
	fmt.Fprintf(sio.out, "%s: OK\n", path)
	return nil
}

type storePathOpts struct {
	name, storeDir, mode string
	flat, git            bool
}

func runStorePath(ctx context.Context, sio *stdio, opts *storePathOpts, args []string) error {
	flat, err := isFlat(opts.flat, opts.mode)
	if err != nil {
		return err
	}
	if err := notFlat(opts.git, flat); err != nil {
		return err
	}
	path := args[0]
	name := opts.name
	switch {
	case name != "":
	case opts.git:
		name = "source" // what flakes and fetchGit name it
	default:
		name = filepath.Base(filepath.Clean(path))
	}
	if err := hasher.CheckName(name); err != nil {
		if opts.name == "" {
			return usagef("%v: the name comes from the path's last element; give another with --name", err)
		}
		return usagef("--name: %v", err)
	}
	h, err := computeHash(ctx, path, opts.git, flat, hasher.SHA256)
	if err != nil {
		return err
	}
	sp, err := hasher.StorePath(opts.storeDir, name, h, !flat)
	if err != nil {
		return err
	}
	fmt.Fprintln(sio.out, sp)
	return nil
}
