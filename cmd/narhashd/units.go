//go:build linux

package main

import (
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/spf13/pflag"
)

var (
	//go:embed narhashd.service
	serviceUnit string
	//go:embed narhashd.socket
	socketUnit string
)

var execStart = regexp.MustCompile(`(?m)^ExecStart=narhashd$`)

// installUnits writes narhashd.socket and narhashd.service into the
// systemd user unit directory, with ExecStart naming this very binary:
// systemd looks a bare command name up in its own fixed path list, not
// in $PATH, so ~/go/bin/narhashd would not be found.
func installUnits(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("narhashd install-units", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dir := fs.String("dir", defaultUnitDir(), "write the units into `DIR`")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fmt.Fprint(stdout, `Usage: narhashd install-units [--dir DIR]

Writes narhashd.socket and narhashd.service into DIR, with ExecStart set to
this narhashd's own path. Then start it with:
  systemctl --user daemon-reload
  systemctl --user enable --now narhashd.socket

Flags:
`, fs.FlagUsages())
			return 0
		}
		fmt.Fprintf(stderr, "narhashd install-units: %v\nRun 'narhashd install-units -h' for help.\n", err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "narhashd install-units: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	bin, err := selfPath()
	if err != nil {
		fmt.Fprintf(stderr, "narhashd install-units: %v\n", err)
		return 1
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		fmt.Fprintf(stderr, "narhashd install-units: %v\n", err)
		return 1
	}
	service := execStart.ReplaceAllLiteralString(serviceUnit, "ExecStart="+quoteExec(bin))
	for _, u := range []struct{ name, text string }{{"narhashd.socket", socketUnit}, {"narhashd.service", service}} {
		p := filepath.Join(*dir, u.name)
		if err := writeFile(p, u.text); err != nil {
			fmt.Fprintf(stderr, "narhashd install-units: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "wrote %s\n", p)
	}
	fmt.Fprintf(stdout, "ExecStart=%s\nnow run:\n  systemctl --user daemon-reload\n  systemctl --user enable --now narhashd.socket\n", quoteExec(bin))
	return 0
}

// defaultUnitDir is where systemd --user reads the user's own units.
func defaultUnitDir() string {
	if d := os.Getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "systemd", "user")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(".config", "systemd", "user")
	}
	return filepath.Join(home, ".config", "systemd", "user")
}

// selfPath is the absolute, symlink-free path of the running binary,
// refused when it is a temporary build of 'go run' that will vanish.
func selfPath() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find this binary: %w", err)
	}
	if p, err := filepath.EvalSymlinks(exe); err == nil {
		exe = p
	}
	if strings.Contains(exe, string(filepath.Separator)+"go-build") {
		return "", fmt.Errorf("%s is a temporary build of 'go run': install narhashd first (go install ./cmd/narhashd) and run the installed one", exe)
	}
	return exe, nil
}

// quoteExec quotes the command path of ExecStart= if it needs it
// (systemd.syntax(7)): spaces and quotes are quoted, and % doubled so that
// it is not a specifier. $ is left alone: systemd substitutes variables in
// the arguments only, so it does not undouble $$ in the command path.
func quoteExec(p string) string {
	p = strings.ReplaceAll(p, "%", "%%")
	if !strings.ContainsAny(p, " \t\"'\\") {
		return p
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(p) + `"`
}

// writeFile replaces p with text at once, by a rename.
func writeFile(p, text string) error {
	tmp, err := os.CreateTemp(filepath.Dir(p), ".narhashd-unit-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(text); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}
