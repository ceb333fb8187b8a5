// Command narhash computes, checks and converts Nix NAR hashes, and reads
// and writes NAR archives, without Nix.
//
// Run `narhash help` for the commands and `narhash COMMAND -h` for each.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], &stdio{os.Stdin, os.Stdout, os.Stderr})
	stop()
	os.Exit(code)
}

// stdio is what a command reads and writes.
type stdio struct {
	in       io.Reader
	out, err io.Writer
}

// A command is one subcommand of narhash.
type command struct {
	name, args, summary string
	help                string // the rest of -h, after the flags
	flags               func(*flag.FlagSet) any
	run                 func(ctx context.Context, sio *stdio, opts any, args []string) error
}

var commands []*command

// usageError is an error in how a command was called: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// run runs narhash with args and returns its exit status: 0 success,
// 1 failure, 2 wrong usage.
func run(ctx context.Context, args []string, sio *stdio) int {
	if len(args) == 0 {
		mainUsage(sio.err)
		return 2
	}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			if c := lookup(args[1]); c != nil {
				fs, _ := flagSet(c)
				commandUsage(sio.out, c, fs)
				return 0
			}
		}
		mainUsage(sio.out)
		return 0
	}
	c := lookup(name)
	if c == nil {
		fmt.Fprintf(sio.err, "narhash: unknown command %q\n\n", name)
		mainUsage(sio.err)
		return 2
	}
	fs, opts := flagSet(c)
	fs.SetOutput(sio.err)
	fs.Usage = func() { commandUsage(sio.err, c, fs) }
	rest, err := parseInterspersed(fs, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2 // the flag package has printed the error and the usage
	}
	err = c.run(ctx, sio, opts, rest)
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(sio.err, "narhash %s: %s\nRun 'narhash %s -h' for help.\n", c.name, ue.msg, c.name)
		return 2
	case errors.Is(err, errSilent):
		return 1
	}
	fmt.Fprintf(sio.err, "narhash %s: %v\n", c.name, err)
	return 1
}

// errSilent is a failure that the command has already reported.
var errSilent = errors.New("failed")

func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// flagSet returns the command's flags and the options they set.
func flagSet(c *command) (*flag.FlagSet, any) {
	fs := flag.NewFlagSet("narhash "+c.name, flag.ContinueOnError)
	var opts any
	if c.flags != nil {
		opts = c.flags(fs)
	}
	return fs, opts
}

// parseInterspersed parses flags wherever they stand among the arguments,
// up to a "--", and returns the other arguments in order.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		// Parse stops at the first argument that is not a flag, or just
		// after a "--", which it drops.
		if used := len(args) - fs.NArg(); used > 0 && args[used-1] == "--" {
			return append(rest, fs.Args()...), nil
		}
		args = fs.Args()
		if len(args) == 0 {
			return rest, nil
		}
		rest = append(rest, args[0])
		args = args[1:]
	}
}

func mainUsage(w io.Writer) {
	fmt.Fprint(w, `narhash: Nix NAR hashes and archives, byte-exact with Nix, without Nix.

Usage: narhash COMMAND [ARGS]

Commands:
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-11s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Run 'narhash COMMAND -h' for a command's flags and examples.
Exit status: 0 success, 1 failure, 2 wrong usage.
`)
}

func commandUsage(w io.Writer, c *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: narhash %s %s\n\n%s\n", c.name, c.args, c.summary)
	hasFlags := false
	fs.VisitAll(func(*flag.Flag) { hasFlags = true })
	if hasFlags {
		fmt.Fprint(w, "\nFlags:\n")
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
	if c.help != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(c.help))
	}
}
