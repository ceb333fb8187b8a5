package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"time"

	"github.com/narhash/narhash/api"
	"github.com/narhash/narhash/hasher"
)

func init() {
	commands = append(commands,
		&command{
			name: "query", args: "[--format F] [--json] [--watch] PATH...",
			summary: "Ask narhashd for the NAR hash of each PATH: fresh, and instant once cached.",
			help: `Prints what 'narhash hash' prints, from the daemon: a path in a watched root
is answered from memory once the daemon has seen every change made before the
query; any other path is checked against its cached entry by a stat walk.
--watch makes each PATH a watched root first.

The socket is $NARHASHD_SOCKET, else $XDG_RUNTIME_DIR/narhashd/narhashd.sock.

Example:
  narhashd --watch ~/src/project &
  narhash query ~/src/project`,
			flags: func(fs *flag.FlagSet) any {
				o := &queryOpts{}
				fs.StringVar(&o.format, "format", "nix32", "output `format`: nix32, base16, base64, sri or multibase")
				fs.BoolVar(&o.json, "json", false, "print the daemon's JSON answer, one object per path")
				fs.BoolVar(&o.watch, "watch", false, "make each PATH a watched root")
				fs.StringVar(&o.socket, "socket", "", "the daemon's `socket` (default $NARHASHD_SOCKET or the per-user default)")
				return o
			},
			run: runQuery,
		},
		&command{
			name: "watch", args: "add|rm|ls [PATH...]",
			summary: "Add, remove or list narhashd's watched roots (remembered across restarts).",
			flags: func(fs *flag.FlagSet) any {
				o := &queryOpts{}
				fs.BoolVar(&o.json, "json", false, "ls: print JSON")
				fs.StringVar(&o.socket, "socket", "", "the daemon's `socket`")
				return o
			},
			run: runWatch,
		},
		&command{
			name: "status", args: "[--json]",
			summary: "Show narhashd's roots, their state and last hash, pending work and warnings.",
			help:    "Exits 0 when the daemon is up, 1 when it is not.",
			flags: func(fs *flag.FlagSet) any {
				o := &queryOpts{}
				fs.BoolVar(&o.json, "json", false, "print the daemon's JSON status")
				fs.StringVar(&o.socket, "socket", "", "the daemon's `socket`")
				return o
			},
			run: runStatus,
		},
		&command{
			name: "subscribe", args: "[--format F] [--json] PATH",
			summary: "Print PATH's hash, then a line each time it changes (PATH in a watched root).",
			flags: func(fs *flag.FlagSet) any {
				o := &queryOpts{}
				fs.StringVar(&o.format, "format", "nix32", "output `format`")
				fs.BoolVar(&o.json, "json", false, "print JSON lines")
				fs.StringVar(&o.socket, "socket", "", "the daemon's `socket`")
				return o
			},
			run: runSubscribe,
		},
	)
}

type queryOpts struct {
	format, socket string
	json, watch    bool
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

func runQuery(ctx context.Context, sio *stdio, o any, args []string) error {
	opts := o.(*queryOpts)
	if _, err := hasher.ParseFormat(opts.format); err != nil {
		return usagef("%v", err)
	}
	if len(args) == 0 {
		return usagef("no PATH given")
	}
	paths, err := absPaths(args)
	if err != nil {
		return err
	}
	c := &api.Client{Socket: opts.socket}
	enc := json.NewEncoder(sio.out)
	failed := false
	for _, p := range paths {
		res, err := c.Hash(ctx, p, opts.format, opts.watch)
		if err != nil {
			if errors.Is(err, api.ErrNotRunning) {
				return err
			}
			fmt.Fprintf(sio.err, "narhash query: %v\n", err)
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

func runWatch(ctx context.Context, sio *stdio, o any, args []string) error {
	opts := o.(*queryOpts)
	if len(args) == 0 {
		return usagef("want add, rm or ls")
	}
	c := &api.Client{Socket: opts.socket}
	verb, paths := args[0], args[1:]
	abs, err := absPaths(paths)
	if err != nil {
		return err
	}
	switch verb {
	case "add":
		if len(abs) == 0 {
			return usagef("watch add needs a PATH")
		}
		for _, p := range abs {
			r, err := c.AddRoot(ctx, p)
			if err != nil {
				return err
			}
			fmt.Fprintf(sio.out, "watching %s (%d directories)\n", r.Path, r.Watches)
			if r.Warning != "" {
				fmt.Fprintf(sio.err, "narhash watch: %s: %s\n", r.Path, r.Warning)
			}
		}
	case "rm":
		if len(abs) == 0 {
			return usagef("watch rm needs a PATH")
		}
		for _, p := range abs {
			if err := c.RemoveRoot(ctx, p); err != nil {
				return err
			}
			fmt.Fprintf(sio.out, "no longer watching %s\n", p)
		}
	case "ls":
		roots, err := c.Roots(ctx)
		if err != nil {
			return err
		}
		if opts.json {
			return json.NewEncoder(sio.out).Encode(roots)
		}
		for _, r := range roots {
			fmt.Fprintln(sio.out, r.Path)
		}
	default:
		return usagef("unknown watch command %q: want add, rm or ls", verb)
	}
	return nil
}

func runStatus(ctx context.Context, sio *stdio, o any, args []string) error {
	opts := o.(*queryOpts)
	if len(args) != 0 {
		return usagef("status takes no arguments")
	}
	st, err := (&api.Client{Socket: opts.socket}).Status(ctx)
	if err != nil {
		return err
	}
	if opts.json {
		return json.NewEncoder(sio.out).Encode(st)
	}
	fmt.Fprintf(sio.out, "narhashd pid %d, up %s, %d workers\n  socket %s\n  database %s\n",
		st.PID, time.Since(st.Started).Round(time.Second), st.Workers, st.Socket, st.DB)
	fmt.Fprintf(sio.out, "  pending jobs %d, epoch %d, overflows %d\n", st.Pending, st.Epoch, st.Overflows)
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

func runSubscribe(ctx context.Context, sio *stdio, o any, args []string) error {
	opts := o.(*queryOpts)
	if len(args) != 1 {
		return usagef("want one PATH")
	}
	paths, err := absPaths(args)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(sio.out)
	err = (&api.Client{Socket: opts.socket}).Subscribe(ctx, paths[0], opts.format, func(r api.HashResult) error {
		if opts.json {
			return enc.Encode(r)
		}
		_, err := fmt.Fprintln(sio.out, r.Hash)
		return err
	})
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
