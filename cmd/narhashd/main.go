//go:build linux

// Command narhashd watches trees and keeps their Nix NAR hashes fresh, for
// `narhash query` and any client of its Unix socket (see package api).
//
//	narhashd [--watch PATH]... [--socket PATH] [--db PATH] [--workers N] [--log-level LEVEL]
//	narhashd install-units [--dir DIR]
//	narhashd --version
//
// It runs in the foreground, logs to standard error, and stops cleanly on
// SIGINT or SIGTERM. Under systemd (narhashd.socket and narhashd.service
// beside this file, installed by `narhashd install-units`) it serves the
// socket systemd passes it (LISTEN_FDS) and reports readiness and shutdown
// on $NOTIFY_SOCKET (Type=notify).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/narhash/narhash/api"
	"github.com/narhash/narhash/daemon"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `Usage: narhashd [flags]
       narhashd install-units [--dir DIR]

narhashd watches trees and keeps their Nix NAR hashes fresh. Ask it with
'narhash query PATH', or over its socket:
  curl --unix-socket SOCKET 'http://narhashd/v1/hash?path=/abs/path'

It runs in the foreground and stops on SIGINT or SIGTERM. Under systemd it
serves the socket systemd passes it (socket activation) and tells systemd
when it is ready (Type=notify); 'narhashd install-units' writes the units.

Flags:
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "install-units" {
		return installUnits(args[1:], stdout, stderr)
	}
	fs := pflag.NewFlagSet("narhashd", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	var cfg daemon.Config
	var watch []string
	fs.StringArrayVar(&watch, "watch", nil, "watch `PATH` (repeatable; roots added by clients are remembered too)")
	fs.StringVar(&cfg.Socket, "socket", api.DefaultSocket(), "the Unix `SOCKET` to listen on ($NARHASHD_SOCKET); ignored under socket activation")
	fs.StringVar(&cfg.DB, "db", daemon.DefaultDB(), "the `DATABASE` file")
	fs.IntVar(&cfg.Workers, "workers", 0, "run `N` hash jobs at once (default: the number of CPUs)")
	level := fs.String("log-level", "info", "log `LEVEL`: debug, info, warn or error")
	version := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fmt.Fprint(stdout, usage, fs.FlagUsages())
			return 0
		}
		fmt.Fprintf(stderr, "narhashd: %v\nRun 'narhashd -h' for help.\n", err)
		return 2
	}
	if *version {
		fmt.Fprintf(stdout, "narhashd %s\n", api.Version())
		return 0
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "narhashd: unexpected argument %q (did you mean --watch %s?)\n", fs.Arg(0), fs.Arg(0))
		return 2
	}
	if slices.Contains(watch, "") {
		// Made absolute, it would be the working directory: most often
		// an unset variable in a unit file or script.
		fmt.Fprintln(stderr, "narhashd: --watch: an empty PATH (an unset shell variable?)")
		return 2
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(stderr, "narhashd: --log-level: %v\n", err)
		return 2
	}
	cfg.Watch = watch
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
	if err := activate(&cfg); err != nil {
		fmt.Fprintf(stderr, "narhashd: %v\n", err)
		return 1
	}
	if err := daemon.Run(ctx, cfg); err != nil {
		fmt.Fprintf(stderr, "narhashd: %v\n", err)
		return 1
	}
	return 0
}

// activate takes the socket systemd passed, if any, and has the daemon
// tell systemd when it is ready and when it stops.
func activate(cfg *daemon.Config) error {
	l, err := api.Activated()
	if err != nil {
		return err
	}
	if l != nil {
		path := api.SocketPath(l)
		if path == "" {
			l.Close()
			return fmt.Errorf("the socket systemd passed (%s) has no file name: give narhashd.socket ListenStream=%%t/narhashd/narhashd.sock", l.Addr())
		}
		if path != cfg.Socket {
			cfg.Logger.Debug("serving the socket systemd passed", "path", path)
		}
		cfg.Socket, cfg.Listener = path, l
	}
	log := cfg.Logger
	cfg.Ready = func() {
		if err := notify("READY=1"); err != nil {
			log.Warn("cannot tell systemd narhashd is ready", "err", err)
		}
	}
	cfg.Stopping = func() {
		if err := notify("STOPPING=1"); err != nil {
			log.Warn("cannot tell systemd narhashd is stopping", "err", err)
		}
	}
	return nil
}
