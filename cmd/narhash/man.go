package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/narhash/narhash/api"
)

func manCmd(root *cobra.Command, sio *stdio) *cobra.Command {
	c := command("other", "man DIR", "Write the manual pages, narhash.1 and narhash-COMMAND.1, into DIR",
		func(_ *cobra.Command, args []string) error { return writeManPages(sio, root, args[0]) })
	c.Long = `Writes a manual page for narhash and one for each command, made from the
same text as -h, into DIR (which must exist). Put them where man looks, for
example ~/.local/share/man/man1, then 'man narhash-hash'.`
	c.Example = `  mkdir -p ~/.local/share/man/man1 && narhash man ~/.local/share/man/man1`
	c.Args = args(1, 1, "one DIR")
	c.ValidArgsFunction = dirs
	return c
}

func writeManPages(sio *stdio, root *cobra.Command, dir string) error {
	var err error
	forEach(root, func(c *cobra.Command) {
		if err != nil || !c.IsAvailableCommand() && c != root {
			return
		}
		c.InitDefaultHelpFlag()
		name := strings.ReplaceAll(c.CommandPath(), " ", "-")
		file := filepath.Join(dir, name+".1")
		if werr := os.WriteFile(file, []byte(manPage(c)), 0o644); werr != nil {
			err = fmt.Errorf("man: %w", werr)
			return
		}
		fmt.Fprintln(sio.out, file)
	})
	return err
}

// manPage is c's help as a man(7) page.
func manPage(c *cobra.Command) string {
	var b strings.Builder
	name := strings.ReplaceAll(c.CommandPath(), " ", "-")
	fmt.Fprintf(&b, ".TH %s 1 \"\" \"narhash %s\" \"narhash manual\"\n", strings.ToUpper(name), roff(api.Version()))
	fmt.Fprintf(&b, ".SH NAME\n%s \\- %s\n", roff(name), roff(c.Short))
	b.WriteString(".SH SYNOPSIS\n")
	if c.HasAvailableSubCommands() {
		fmt.Fprintf(&b, ".B %s\nCOMMAND [ARGS]\n", roff(c.CommandPath()))
	} else {
		use := strings.TrimPrefix(c.UseLine(), c.CommandPath())
		fmt.Fprintf(&b, ".B %s\n%s\n", roff(c.CommandPath()), roff(strings.TrimSpace(use)))
	}
	b.WriteString(".SH DESCRIPTION\n")
	paragraphs(&b, c.Long, c.Short)
	if c.HasAvailableSubCommands() {
		b.WriteString(".SH COMMANDS\n")
		for _, sub := range c.Commands() {
			if sub.IsAvailableCommand() {
				fmt.Fprintf(&b, ".TP\n.BR %s (1)\n%s\n", strings.ReplaceAll(sub.CommandPath(), " ", "-"), roff(sub.Short))
			}
		}
	}
	if fs := c.NonInheritedFlags(); fs.HasAvailableFlags() {
		b.WriteString(".SH OPTIONS\n")
		fs.VisitAll(func(f *pflag.Flag) {
			if f.Hidden {
				return
			}
			arg, usage := pflag.UnquoteUsage(f)
			if f.NoOptDefVal != "" {
				arg = ""
			}
			b.WriteString(".TP\n")
			if f.Shorthand != "" {
				fmt.Fprintf(&b, "\\fB\\-%s\\fR, ", f.Shorthand)
			}
			fmt.Fprintf(&b, "\\fB\\-\\-%s\\fR", roff(f.Name))
			if arg != "" {
				fmt.Fprintf(&b, " \\fI%s\\fR", roff(arg))
			}
			b.WriteString("\n" + roff(usage))
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "[]" {
				fmt.Fprintf(&b, " (default: %s)", roff(f.DefValue))
			}
			b.WriteString("\n")
		})
	}
	if c.HasExample() {
		fmt.Fprintf(&b, ".SH EXAMPLES\n.nf\n%s\n.fi\n", roffLines(c.Example))
	}
	b.WriteString(".SH SEE ALSO\n")
	if c.HasParent() {
		fmt.Fprintf(&b, ".BR %s (1)\n", strings.ReplaceAll(c.Parent().CommandPath(), " ", "-"))
	} else {
		b.WriteString(".BR narhashd (1),\n.BR nix-hash (1)\n")
	}
	return b.String()
}

// paragraphs writes text as man paragraphs: a blank line starts a new
// one, and an indented line keeps its layout.
func paragraphs(b *strings.Builder, text, fallback string) {
	if text == "" {
		text = fallback
	}
	for i, p := range strings.Split(strings.TrimSpace(text), "\n\n") {
		if i > 0 {
			b.WriteString(".PP\n")
		}
		if strings.Contains(p, "\n ") || strings.HasPrefix(p, " ") {
			fmt.Fprintf(b, ".nf\n%s\n.fi\n", roffLines(p))
			continue
		}
		b.WriteString(roffLines(p) + "\n")
	}
}

// roff escapes text for a man page: backslashes; dashes, which groff
// would otherwise print as hyphens; and characters outside ASCII, as
// groff's \[uXXXX].
func roff(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\e`)
		case r == '-':
			b.WriteString(`\-`)
		case r > 0x7e:
			fmt.Fprintf(&b, `\[u%04X]`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// roffLines escapes each line, and keeps lines that start with a period
// or a quote from being read as requests.
func roffLines(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		l = roff(l)
		if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
			l = `\&` + l
		}
		lines[i] = l
	}
	return strings.Join(lines, "\n")
}
