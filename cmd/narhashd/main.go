// Command narhashd watches trees and keeps their Nix NAR hashes fresh, for
// `narhash query` and any client of its Unix socket (see package api).
//
//	narhashd [--watch PATH]... [--socket PATH] [--db PATH] [--workers N] [--log-level LEVEL]
//
// It runs in the foreground, logs to standard error, and stops cleanly on
// SIGINT or SIGTERM. narhashd.service beside this file runs it as a
// systemd user service.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/narhash/narhash/api"
	"github.com/narhash/narhash/daemon"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

func run(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("narhashd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg daemon.Config
	var watch multiFlag
	fs.Var(&watch, "watch", "watch `PATH` (repeatable; roots added by clients are remembered too)")
	fs.StringVar(&cfg.Socket, "socket", api.DefaultSocket(), "the Unix `socket` to listen on ($NARHASHD_SOCKET)")
	fs.StringVar(&cfg.DB, "db", daemon.DefaultDB(), "the `database` file")
	fs.IntVar(&cfg.Workers, "workers", 0, "hash jobs at once (default: the number of CPUs)")
	level := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: narhashd [flags]

narhashd watches trees and keeps their Nix NAR hashes fresh. Ask it with
'narhash query PATH', or over its socket:
  curl --unix-socket SOCKET 'http://narhashd/v1/hash?path=/abs/path'

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "narhashd: unexpected argument %q (did you mean --watch %s?)\n", fs.Arg(0), fs.Arg(0))
		return 2
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(stderr, "narhashd: --log-level: %v\n", err)
		return 2
	}
	cfg.Watch = watch
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
	if err := daemon.Run(ctx, cfg); err != nil {
		fmt.Fprintf(stderr, "narhashd: %v\n", err)
		return 1
	}
	return 0
}
