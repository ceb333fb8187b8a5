package main

import (
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// The values the completions offer.
var (
	formatNames = []string{"nix32", "base16", "base64", "sri", "multibase"}
	algoNames   = []string{"sha256", "sha512", "sha1", "md5"}
)

// formatFlags adds --format F and Nix's --base16, --base32, --base64 and
// --sri (nix hash path, newer nix-hash) to cmd, all setting *format; the
// last one given wins, as in Nix.
func formatFlags(cmd *cobra.Command, format *string) {
	fs := cmd.Flags()
	stringVar(fs, format, "format", "nix32", "output `FORMAT`: nix32, base16, base64, sri or multibase")
	for _, f := range []struct{ flag, format, usage string }{
		{"base32", "nix32", "print Nix's base 32 (nix32), as nix-hash --base32 does"},
		{"base16", "base16", "print base 16 (hex): --format base16"},
		{"base64", "base64", "print base 64: --format base64"},
		{"sri", "sri", "print SRI (sha256-…): --format sri"},
	} {
		fs.VarPF(formatSwitch{format, f.format}, f.flag, "", f.usage).NoOptDefVal = "true"
	}
	cmd.RegisterFlagCompletionFunc("format", fixed(formatNames))
}

// formatSwitch is a boolean flag that sets a format.
type formatSwitch struct {
	format *string
	name   string
}

func (s formatSwitch) String() string { return "false" }
func (s formatSwitch) Type() string   { return "bool" }
func (s formatSwitch) Set(v string) error {
	on, err := strconv.ParseBool(v)
	if on {
		*s.format = s.name
	}
	return err
}

// algoFlags adds --type ALGO (nix-hash, nix hash path) to cmd, and its
// other Nix spellings --algo (nix hash path ≥ 2.20) and --hash-algo (nix
// hash convert ≥ 2.19), all setting *algo.
func algoFlags(cmd *cobra.Command, algo *string, usage string) {
	fs := cmd.Flags()
	stringVar(fs, algo, "type", "sha256", usage+" (also --algo, --hash-algo)")
	for _, alias := range []string{"algo", "hash-algo"} {
		stringVar(fs, algo, alias, "sha256", usage)
		fs.MarkHidden(alias)
	}
	for _, name := range []string{"type", "algo", "hash-algo"} {
		cmd.RegisterFlagCompletionFunc(name, fixed(algoNames))
	}
}

// socketFlag adds --socket PATH to cmd.
func socketFlag(cmd *cobra.Command, socket *string) {
	stringVar(cmd.Flags(), socket, "socket", "", "the daemon's `SOCKET` (default $NARHASHD_SOCKET, else the per-user default)")
}

// fixed completes one of values, and no file names.
func fixed(values []string) cobra.CompletionFunc {
	return cobra.FixedCompletions(values, cobra.ShellCompDirectiveNoFileComp)
}

// paths completes file names, for the commands that take paths.
func paths(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
	return nil, cobra.ShellCompDirectiveDefault
}

// firstArgPath completes file names for the first argument only.
func firstArgPath(_ *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) == 0 {
		return nil, cobra.ShellCompDirectiveDefault
	}
	return nil, cobra.ShellCompDirectiveNoFileComp
}

// dirs completes directory names.
func dirs(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
	return nil, cobra.ShellCompDirectiveFilterDirs
}

// stringVar defines a string flag whose usage names its argument in
// backquotes, as the flag package does: "the `FORMAT` to print" shows as
// "--to FORMAT   the FORMAT to print". Unlike pflag's StringVar, the
// backquotes are not left in the usage, which the completion scripts
// show as a description.
func stringVar(fs *pflag.FlagSet, p *string, name, value, usage string) *pflag.Flag {
	metavar := "string"
	if _, rest, ok := strings.Cut(usage, "`"); ok {
		metavar, _, _ = strings.Cut(rest, "`")
		usage = strings.Replace(usage, "`", "", 2)
	}
	*p = value
	fs.Var(&argValue{p, metavar}, name, usage)
	return fs.Lookup(name)
}

// argValue is a string flag value whose type names its argument.
type argValue struct {
	p       *string
	metavar string
}

func (v *argValue) String() string     { return *v.p }
func (v *argValue) Set(s string) error { *v.p = s; return nil }
func (v *argValue) Type() string       { return v.metavar }
