package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/narhash/narhash/api"
	"github.com/narhash/narhash/hasher"
	"github.com/narhash/narhash/nar"
)

func queryCmd(sio *stdio) *cobra.Command {
	o := &queryOpts{}
	c := command("daemon", "query [flags] PATH...", "The NAR hash of each PATH: from narhashd when it runs, else computed here",
		func(cmd *cobra.Command, args []string) error { return runQuery(cmd.Context(), sio, o, args) })
	c.Long = `The one command for scripts and editors: instant when narhashd runs, correct
when it does not.

It prints what 'narhash hash' prints. When narhashd answers, the hash comes
from it: a path in a watched root is answered from memory once the daemon has
seen every change made before the query; any other path is checked against
its cached entry by a stat walk. When nothing answers on the socket, query
says so in one line on standard error and hashes each PATH here, in full,
exactly as 'narhash hash' does (--daemon-only makes that an error instead).
So it does too, after a warning, when the daemon cannot be used: it does not
answer in time (stuck or stopped), the socket is not trusted, what answers
is not narhashd, or narhashd is too old for what is asked.
Either way the hash is that of PATH as it is now; with --json, "source" says
where it came from: "cache", "computed" or "validated" from the daemon,
"offline" from this process.

--watch makes each PATH a watched root first (when the daemon runs).
The socket is $NARHASHD_SOCKET, else $XDG_RUNTIME_DIR/narhashd/narhashd.sock.

--git asks for the hash of each PATH's git view, fresh when files change and
when git's index does (git add, rm --cached, commit, checkout).
` + gitHelp
	c.Example = `  narhashd --watch ~/src/project &
  narhash query ~/src/project
  narhash query --json --sri ~/src/project
  narhash query --git --sri ~/src/project   # = locked.narHash of nix flake metadata`
	c.Args = args(1, -1, "PATH")
	c.ValidArgsFunction = paths
	formatFlags(c, &o.format)
	fs := c.Flags()
	fs.BoolVar(&o.json, "json", false, "print one JSON object per path (the daemon's answer, or the same fields)")
	fs.BoolVar(&o.watch, "watch", false, "make each PATH a watched root")
	fs.BoolVar(&o.daemonOnly, "daemon-only", false, "fail when narhashd does not answer, instead of hashing here")
	gitFlag(c, &o.git)
	socketFlag(c, &o.socket)
	return c
}

func runQuery(ctx context.Context, sio *stdio, opts *queryOpts, args []string) error {
	format, err := hasher.ParseFormat(opts.format)
	if err != nil {
		return usagef("%v", err)
	}
	paths, err := queryPaths(args)
	if err != nil {
		return err
	}
	c := &api.Client{Socket: opts.socket, Timeout: queryTimeout}
	enc := json.NewEncoder(sio.out)
	failed, offline := false, false
	for _, p := range paths {
		var res api.HashResult
		if !offline {
			res, err = c.HashView(ctx, p, opts.view(), opts.format, opts.watch)
			unusable := daemonUnusable(err) && ctx.Err() == nil
			switch {
			case unusable && opts.daemonOnly:
				return err
			case unusable && errors.Is(err, api.ErrNotRunning):
				sock := opts.socket
				if sock == "" {
					sock = api.DefaultSocket()
				}
				fmt.Fprintf(sio.err, "narhash: narhashd does not answer on %s: hashing here (start narhashd for instant answers)\n", sock)
				offline = true
			case unusable:
				fmt.Fprintf(sio.err, "narhash: warning: %v; hashing here instead\n", err)
				offline = true
			}
		}
		if offline {
			res, err = hashOffline(ctx, p, opts.git, format)
		}
		if err != nil {
			printFailure(sio.err, err)
			failed = true
			continue
		}
		if opts.json {
			enc.Encode(res)
		} else {
			fmt.Fprintln(sio.out, res.Hash)
		}
	}
	if failed {
		return errSilent
	}
	return nil
}

// queryTimeout bounds each query to the daemon (0: the client's default);
// tests shorten it.
var queryTimeout time.Duration

// daemonUnusable reports whether err, from a query, says that the daemon
// cannot answer any: nothing answers, it does not answer in time, the
// socket is not trusted, what answers is not narhashd, or narhashd is
// too old. Then the paths are hashed here (unless --daemon-only).
func daemonUnusable(err error) bool {
	for _, e := range []error{api.ErrNotRunning, api.ErrTimeout, api.ErrUntrusted, api.ErrNotNarhashd, api.ErrTooOld} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// hashOffline is query's answer without the daemon: a full hash of the
// absolute path, as 'narhash hash' computes it, with source "offline".
func hashOffline(ctx context.Context, path string, git bool, format hasher.Format) (api.HashResult, error) {
	start := time.Now()
	res, err := hashSource(ctx, path, git, hasher.Options{ColdProcs: nar.DefaultColdProcs})
	if err != nil {
		return api.HashResult{}, err
	}
	view := api.ViewTree
	if git {
		view = api.ViewGit
	}
	return api.HashResult{
		Path: path, View: view, Hash: res.Hash.Format(format), Algo: res.Hash.Algo.String(), Format: format.String(),
		NARSize: res.NARSize, Source: "offline", Computed: start,
		TookMS: float64(time.Since(start).Microseconds()) / 1000,
	}, nil
}
