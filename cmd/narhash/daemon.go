package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/narhash/narhash/api"
	"github.com/narhash/narhash/hasher"
)

func watchCmd(sio *stdio) *cobra.Command {
	var socket string
	var asJSON, validate bool
	c := &cobra.Command{Use: "watch", GroupID: "daemon",
		Short: "Add, remove or list narhashd's watched roots (remembered across restarts)"}
	parent(c, sio)
	stringVar(c.PersistentFlags(), &socket, "socket", "", "the daemon's `SOCKET` (default $NARHASHD_SOCKET, else the per-user default)")
	client := func() *api.Client { return &api.Client{Socket: socket} }
	add := command("", "add [flags] PATH...", "Watch each PATH", func(cmd *cobra.Command, args []string) error {
		return runWatchAdd(cmd.Context(), sio, client(), args, api.RootOptions{Validate: validate})
	})
	add.Flags().BoolVar(&validate, "validate", false, "check PATH by a stat walk on every query: for changes inotify cannot see (hard links edited from outside, writes through a shared mmap)")
	add.Args = args(1, -1, "PATH")
	add.ValidArgsFunction = dirs
	rm := command("", "rm [flags] PATH...", "Stop watching each PATH", func(cmd *cobra.Command, args []string) error {
		return runWatchRm(cmd.Context(), sio, client(), args)
	})
	rm.Args = args(1, -1, "PATH")
	rm.ValidArgsFunction = dirs
	ls := command("", "ls [flags]", "List the watched roots", func(cmd *cobra.Command, _ []string) error {
		return runWatchLs(cmd.Context(), sio, client(), asJSON)
	})
	ls.Args = args(0, 0, "no arguments")
	ls.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	c.AddCommand(add, rm, ls)
	return c
}

func statusCmd(sio *stdio) *cobra.Command {
	o := &queryOpts{}
	c := command("daemon", "status [flags]", "Show narhashd's version, roots, their state and last hash, pending work and warnings",
		func(cmd *cobra.Command, _ []string) error { return runStatus(cmd.Context(), sio, o) })
	c.Long = `Exits 0 when the daemon is up, 1 when it is not. When the daemon's version is
not this narhash's, a warning on standard error says so (restart narhashd
after an upgrade).`
	c.Args = args(0, 0, "no arguments")
	c.Flags().BoolVar(&o.json, "json", false, "print the daemon's JSON status")
	socketFlag(c, &o.socket)
	return c
}

func subscribeCmd(sio *stdio) *cobra.Command {
	o := &queryOpts{}
	c := command("daemon", "subscribe [flags] PATH", "Print PATH's hash, then a line each time it changes (PATH in a watched root)",
		func(cmd *cobra.Command, args []string) error { return runSubscribe(cmd.Context(), sio, o, args[0]) })
	c.Long = `For editors and scripts that follow a tree: the first line is the current
hash, then one line per new hash, until interrupted or the daemon stops
(exit 1).

When a change leaves PATH impossible to hash (a FIFO appeared in it, a file
cannot be read), the line is "failed: " and why: the hash before no longer
describes PATH. The next hash follows once a change mends it, even if it
is the same as before. With --json that line is {"path":…,"failed":…}.`
	c.Example = `  narhash subscribe --sri ~/src/project
  narhash subscribe --git --sri ~/src/project   # follows the flake's narHash`
	c.Args = args(1, 1, "one PATH")
	c.ValidArgsFunction = paths
	formatFlags(c, &o.format)
	c.Flags().BoolVar(&o.json, "json", false, "print the daemon's JSON answers, one per line")
	gitFlag(c, &o.git)
	socketFlag(c, &o.socket)
	return c
}

type queryOpts struct {
	format, socket  string
	json, watch     bool
	daemonOnly, git bool
}

// view is the view --git asks for.
func (o *queryOpts) view() api.View {
	if o.git {
		return api.ViewGit
	}
	return api.ViewTree
}

func absPaths(args []string) ([]string, error) {
	out := make([]string, len(args))
	for i, a := range args {
		p, err := filepath.Abs(a)
		if err != nil {
			return nil, err
		}
		out[i] = p
	}
	return out, nil
}

// queryPaths makes each argument absolute, as the kernel reads it: a
// relative one is joined to the working directory and not cleaned, for
// ".." after a symlink is the parent of its target, and a trailing slash
// follows a symlink. The daemon and hashOffline read them so, as
// 'narhash hash' does.
func queryPaths(args []string) ([]string, error) {
	out := make([]string, len(args))
	wd := ""
	for i, a := range args {
		if !filepath.IsAbs(a) {
			if wd == "" {
				var err error
				if wd, err = os.Getwd(); err != nil {
					return nil, err
				}
			}
			a = strings.TrimSuffix(wd, "/") + "/" + a
		}
		out[i] = a
	}
	return out, nil
}

func runWatchAdd(ctx context.Context, sio *stdio, c *api.Client, args []string, opt api.RootOptions) error {
	paths, err := absPaths(args)
	if err != nil {
		return err
	}
	for _, p := range paths {
		r, err := c.AddRootWith(ctx, p, opt)
		if err != nil {
			return err // the daemon's message names the path
		}
		fmt.Fprintf(sio.out, "watching %s (%s)\n", r.Path, watchedWhat(r))
		if r.Warning != "" {
			fmt.Fprintf(sio.err, "narhash: watch %s: %s\n", r.Path, r.Warning)
		}
	}
	return nil
}

// watchedWhat says what a new root is: its directories, or, for a
// symlink or a file, that its hash is of that alone. A symlink's NAR is
// the link's, as nix-hash gives it, which surprises whoever meant the
// tree it points to.
func watchedWhat(r api.Root) string {
	fi, err := os.Lstat(r.Path)
	switch {
	case err != nil || fi.IsDir():
		return fmt.Sprintf("%d directories", r.Watches)
	case fi.Mode()&fs.ModeSymlink != 0:
		if target, err := filepath.EvalSymlinks(r.Path); err == nil {
			return "a symlink: its hash is the link's own, as nix-hash gives it; to follow the tree it points to, watch " + target
		}
		return "a symlink: its hash is the link's own, as nix-hash gives it"
	}
	return "a file"
}

func runWatchRm(ctx context.Context, sio *stdio, c *api.Client, args []string) error {
	paths, err := absPaths(args)
	if err != nil {
		return err
	}
	for _, p := range paths {
		if err := c.RemoveRoot(ctx, p); err != nil {
			return err
		}
		fmt.Fprintf(sio.out, "no longer watching %s\n", p)
	}
	return nil
}

func runWatchLs(ctx context.Context, sio *stdio, c *api.Client, asJSON bool) error {
	roots, err := c.Roots(ctx)
	if err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(sio.out).Encode(roots)
	}
	for _, r := range roots {
		fmt.Fprintln(sio.out, r.Path)
	}
	return nil
}

func runStatus(ctx context.Context, sio *stdio, opts *queryOpts) error {
	st, err := (&api.Client{Socket: opts.socket}).Status(ctx)
	if err != nil {
		return err
	}
	if mine := api.Version(); st.Version != mine {
		fmt.Fprintf(sio.err, "narhash: warning: narhashd is version %s, this narhash is %s: restart narhashd after an upgrade\n", orUnknown(st.Version), mine)
	}
	if opts.json {
		return json.NewEncoder(sio.out).Encode(st)
	}
	fmt.Fprintf(sio.out, "narhashd %s, pid %d, up %s, %d workers\n  socket %s\n  database %s\n",
		orUnknown(st.Version), st.PID, time.Since(st.Started).Round(time.Second), st.Workers, st.Socket, st.DB)
	fmt.Fprintf(sio.out, "  pending jobs %d, epoch %d, overflows %d\n", st.Pending, st.Epoch, st.Overflows)
	fmt.Fprintf(sio.out, "  checkpoints %d KiB, hashes resumed %d\n", (st.Checkpoints+1023)/1024, st.Resumed)
	fmt.Fprintf(sio.out, "  tracked paths %d, %d KiB\n", st.Tracked, (st.TrackingBytes+1023)/1024)
	if len(st.Roots) == 0 {
		fmt.Fprintln(sio.out, "no roots: add one with 'narhash watch add PATH'")
	}
	for _, r := range st.Roots {
		fmt.Fprintf(sio.out, "%s\n  state %s, %d watched directories", r.Path, r.State, r.Watches)
		if r.Degraded {
			fmt.Fprint(sio.out, ", degraded")
		}
		fmt.Fprintln(sio.out)
		if r.Hash != "" {
			fmt.Fprintf(sio.out, "  hash %s, NAR %d bytes, computed %s in %.1f ms\n", r.Hash, r.NARSize, r.Computed.Format(time.RFC3339), r.TookMS)
		}
		if r.Error != "" {
			fmt.Fprintf(sio.out, "  error: %s\n", r.Error)
		}
	}
	for _, w := range st.Warnings {
		fmt.Fprintf(sio.out, "warning: %s\n", w)
	}
	return nil
}

func runSubscribe(ctx context.Context, sio *stdio, opts *queryOpts, path string) error {
	if _, err := hasher.ParseFormat(opts.format); err != nil {
		return usagef("%v", err)
	}
	abs, err := queryPaths([]string{path})
	if err != nil {
		return err
	}
	enc := json.NewEncoder(sio.out)
	err = (&api.Client{Socket: opts.socket}).SubscribeView(ctx, abs[0], opts.view(), opts.format, func(r api.HashResult) error {
		switch {
		case opts.json:
			return enc.Encode(r)
		case r.Failed != "":
			_, err := fmt.Fprintln(sio.out, "failed:", oneLine(r.Failed))
			return err
		}
		_, err := fmt.Fprintln(sio.out, r.Hash)
		return err
	})
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// oneLine keeps a message to one line of output: a path in it may hold a
// newline.
func oneLine(s string) string { return strings.ReplaceAll(s, "\n", `\n`) }

// orUnknown names a version an older daemon did not report.
func orUnknown(v string) string {
	if v == "" {
		return "unknown (older than this narhash)"
	}
	return v
}
