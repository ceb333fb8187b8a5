// Command narhash computes, checks and converts Nix NAR hashes, and reads
// and writes NAR archives, without Nix.
//
// Run `narhash help` for the commands and `narhash COMMAND -h` for each.
// The flags are GNU-style (spf13/cobra and spf13/pflag): long flags with
// two dashes, short ones combined (`ls -lR`), flags anywhere among the
// arguments up to a `--`. Nix's own spellings are accepted where Nix has
// them (`--base32`, `--sri`, `--type`, `--hash-algo`, `--from`, `--to`).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/narhash/narhash/api"
)

func main() {
	cliProcess = true
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The first signal cancels ctx: the command winds down (a restore
	// removes its partial tree) and returns, even from a read that waits
	// on standard input (see cancelReader). Then signals are no longer
	// caught: a second Ctrl-C kills at once.
	context.AfterFunc(ctx, stop)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func init() {
	// The commands are listed in the order they are added: hash first.
	cobra.EnableCommandSorting = false
}

// stdio is what a command reads and writes.
type stdio struct {
	in       io.Reader
	out, err io.Writer
}

// usageError is an error in how a command was called: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// failure is an error of a command that ran: exit status 1. Every other
// error cobra returns (a bad flag, an unknown command, wrong arguments) is
// one of usage.
type failure struct{ err error }

func (f failure) Error() string { return f.err.Error() }
func (f failure) Unwrap() error { return f.err }

// errSilent is a failure that the command has already reported.
var errSilent = errors.New("failed")

// run runs narhash with args and returns its exit status: 0 success,
// 1 failure, 2 wrong usage.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	sio := &stdio{stdin, stdout, stderr}
	root := newRoot(sio)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	var f failure
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errSilent):
		return 1
	case errors.As(err, &f):
		printFailure(stderr, f.err)
		return 1
	case errors.As(err, &ue) && ue.msg == "":
		return 2 // the usage has been printed
	}
	// A usage error: one line, naming the command, and where help is.
	if cmd == nil {
		cmd = root
	}
	fmt.Fprintf(stderr, "%s: %v (see '%s -h')\n", cmd.CommandPath(), err, cmd.CommandPath())
	return 2
}

// printFailure reports a command's failure on w: a line naming what failed
// and why, and another saying what to do if the cause is one the user can
// remove.
func printFailure(w io.Writer, err error) {
	fmt.Fprintf(w, "narhash: %v\n", err)
	if hint := failureHint(err); hint != "" {
		fmt.Fprintf(w, "narhash: %s\n", hint)
	}
}

// failureHint says what to do about err, or "".
func failureHint(err error) string {
	if errors.Is(err, syscall.EMFILE) {
		var lim syscall.Rlimit
		if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil {
			return fmt.Sprintf("this process may have only %d files open at once (ulimit -n); raise that limit, to 1024 or more, and run it again", lim.Cur)
		}
		return "this process may not open more files (ulimit -n); raise that limit, to 1024 or more, and run it again"
	}
	return ""
}

// Command groups, in the order narhash help lists them.
var groups = []*cobra.Group{
	{ID: "hash", Title: "Hashes:"},
	{ID: "nar", Title: "Archives:"},
	{ID: "daemon", Title: "Asking narhashd:"},
	{ID: "other", Title: "Other:"},
}

func newRoot(sio *stdio) *cobra.Command {
	root := &cobra.Command{
		Use:   "narhash",
		Short: "Nix NAR hashes and archives, byte-exact with Nix, without Nix",
		Long: `narhash: Nix NAR hashes and archives, byte-exact with Nix, without Nix.

Exit status: 0 success, 1 failure, 2 wrong usage.`,
		Version:       api.Version(),
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	parent(root, sio)
	root.SuggestionsMinimumDistance = 2
	root.SetIn(sio.in)
	root.SetOut(sio.out)
	root.SetErr(sio.err)
	root.SetVersionTemplate("narhash {{.Version}}\n")
	root.SetHelpTemplate(helpTemplate)
	root.SetUsageTemplate(helpTemplate)
	root.AddGroup(groups...)
	root.SetHelpCommandGroupID("other")
	root.SetCompletionCommandGroupID("other")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err.Error()} })

	for _, c := range []*cobra.Command{
		hashCmd(sio), storePathCmd(sio), verifyCmd(sio), convertCmd(sio),
		dumpCmd(sio), restoreCmd(sio), lsCmd(sio), catCmd(sio),
		queryCmd(sio), watchCmd(sio), statusCmd(sio), subscribeCmd(sio),
	} {
		root.AddCommand(c)
	}
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() == "completion" {
			c.Short = "Print the completion script for bash, zsh, fish or powershell"
			parent(c, sio)
		}
	}
	root.AddCommand(manCmd(root, sio), versionCmd(sio))
	root.SetHelpCommand(helpCmd(root))
	forEach(root, func(c *cobra.Command) {
		c.Flags().SortFlags = false
		c.DisableFlagsInUseLine = true
		c.SilenceErrors, c.SilenceUsage = true, true
		if f := c.RunE; f != nil && !c.HasSubCommands() {
			c.RunE = func(cmd *cobra.Command, args []string) error { return classify(f(cmd, args)) }
		}
	})
	return root
}

// helpTemplate is the help of every command, on standard output: usage,
// description, subcommands, flags, examples.
const helpTemplate = `Usage: {{if .HasAvailableSubCommands}}{{.CommandPath}} COMMAND [ARGS]{{else}}{{.UseLine}}{{end}}

{{or .Long .Short | trimTrailingWhitespaces}}
{{- if .HasAvailableSubCommands}}{{$cmds := .Commands}}{{if eq (len .Groups) 0}}

Commands:{{range $cmds}}{{if .IsAvailableCommand}}
  {{rpad .Name .NamePadding}} {{.Short}}{{end}}{{end}}{{else}}{{range $group := .Groups}}

{{.Title}}{{range $cmds}}{{if and (eq .GroupID $group.ID) (or .IsAvailableCommand (eq .Name "help"))}}
  {{rpad .Name .NamePadding}} {{.Short}}{{end}}{{end}}{{end}}{{end}}{{end}}
{{- if .HasAvailableLocalFlags}}

Flags:
{{.LocalFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}
{{- if .HasAvailableInheritedFlags}}

Flags of {{.Parent.CommandPath}}:
{{.InheritedFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}
{{- if .HasExample}}

Examples:
{{.Example}}{{end}}
{{- if .HasAvailableSubCommands}}

Run '{{.CommandPath}} COMMAND -h' for a command's flags and examples.{{end}}
`

// parent makes c a command of commands: an unknown one is a usage error,
// and c alone prints its help on standard error and exits 2.
func parent(c *cobra.Command, sio *stdio) {
	c.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return nil
		}
		msg := fmt.Sprintf("unknown command %q", args[0])
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += ": did you mean " + strings.Join(s, " or ") + "?"
		}
		return usageError{msg}
	}
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		cmd.SetOut(sio.err)
		cmd.Help()
		return usageError{}
	}
}

// classify marks the error of a command that ran as a failure, unless it
// is one of usage.
func classify(err error) error {
	var ue usageError
	if err == nil || errors.As(err, &ue) || errors.Is(err, errSilent) {
		return err
	}
	return failure{err}
}

func forEach(c *cobra.Command, fn func(*cobra.Command)) {
	fn(c)
	for _, sub := range c.Commands() {
		forEach(sub, fn)
	}
}

// args returns a positional-argument check: between lo and hi arguments
// (hi < 0: no limit), else the usage error want.
func args(lo, hi int, want string) cobra.PositionalArgs { return argsEmptyFrom(lo, hi, want, -1) }

// argsEmptyFrom is args, where the arguments from the index from on (-1:
// none) may be empty: a PATH inside an archive, where "" is its root.
// Any other empty argument is a usage error: most often it is an unset
// shell variable ("$SRC"), and a PATH made absolute would be the current
// directory, whose hash would then be printed as the answer.
func argsEmptyFrom(lo, hi int, want string, from int) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) < lo || hi >= 0 && len(args) > hi {
			if len(args) == 0 && lo == 1 && hi < 0 {
				return usagef("no %s given", want)
			}
			return usagef("want %s, got %d arguments", want, len(args))
		}
		for i, a := range args {
			if a == "" && (from < 0 || i < from) {
				return usagef("argument %d is empty (an unset shell variable?); want %s", i+1, want)
			}
		}
		return nil
	}
}

// command returns a command in group that runs fn; its flags and argument
// check are added by the caller.
func command(group, use, short string, fn func(cmd *cobra.Command, args []string) error) *cobra.Command {
	return &cobra.Command{Use: use, Short: short, GroupID: group, RunE: fn}
}

// helpCmd is "help [COMMAND...]": cobra's, but an unknown command is a
// usage error rather than a help page.
func helpCmd(root *cobra.Command) *cobra.Command {
	c := command("other", "help [COMMAND...]", "Print the help of narhash or of a command", func(_ *cobra.Command, args []string) error {
		cmd, rest, err := root.Find(args)
		if err != nil || len(rest) > 0 {
			return usagef("unknown command %q", strings.Join(args, " "))
		}
		cmd.InitDefaultHelpFlag() // as when cmd itself runs, for its Flags section
		cmd.InitDefaultVersionFlag()
		return cmd.Help()
	})
	c.ValidArgsFunction = func(_ *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		cmd, _, err := root.Find(args)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, sub := range cmd.Commands() {
			if sub.IsAvailableCommand() && strings.HasPrefix(sub.Name(), toComplete) {
				out = append(out, sub.Name())
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
	return c
}

func versionCmd(sio *stdio) *cobra.Command {
	c := command("other", "version", "Print narhash's version (from its build information)", func(*cobra.Command, []string) error {
		fmt.Fprintf(sio.out, "narhash %s\n", api.Version())
		return nil
	})
	c.Args = args(0, 0, "no arguments")
	c.Long = `Prints the version of narhash: the module version it was built as, else the
VCS revision it was built from, else "devel". 'narhash --version' prints the
same; 'narhash status' shows the daemon's.`
	return c
}

// subject returns err prefixed with "subject: ", unless it already starts
// with it (some errors from below name their subject, some do not), so
// that a message reads once: "hash x: lstat x: …", never "hash x: hash x: …".
func subject(subject string, err error) error {
	if err == nil || strings.HasPrefix(err.Error(), subject+": ") {
		return err
	}
	return fmt.Errorf("%s: %w", subject, err)
}
