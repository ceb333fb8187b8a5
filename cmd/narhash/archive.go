package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/narhash/narhash/nar"
)

func dumpCmd(sio *stdio) *cobra.Command {
	var git bool
	c := command("nar", "dump [flags] PATH", "Write the NAR of PATH to standard output, like nix-store --dump",
		func(cmd *cobra.Command, args []string) error { return runDump(cmd.Context(), sio, args[0], git) })
	c.Long = `Refuses to write to a terminal. If the tree changes while it is read,
the dump fails (exit 1) rather than produce a torn archive.
` + gitHelp
	c.Example = `  narhash dump ./src > src.nar
  narhash dump --git . > source.nar   # = nix-store --dump of the flake's source`
	c.Args = args(1, 1, "one PATH")
	c.ValidArgsFunction = paths
	gitFlag(c, &git)
	return c
}

func restoreCmd(sio *stdio) *cobra.Command {
	from := "-"
	c := command("nar", "restore [flags] DEST", "Unpack a NAR from standard input (or FILE) into the new path DEST",
		func(cmd *cobra.Command, args []string) error { return runRestore(cmd.Context(), sio, from, args[0]) })
	c.Long = `Like nix-store --restore DEST. DEST must not exist. The archive is unpacked
into a temporary sibling and renamed to DEST only once all of it has been
read and checked, so on any error (a malformed or truncated archive, data
after its end, a full disk, Ctrl-C) DEST does not exist and nothing is left
behind. Refuses to read from a terminal.`
	c.Example = `  narhash restore --from src.nar ./src-copy
  narhash dump ./src | narhash restore ./src-copy`
	c.Args = args(1, 1, "one DEST")
	c.ValidArgsFunction = paths
	stringVar(c.Flags(), &from, "from", "-", "read the archive from `FILE` (- is standard input)")
	c.RegisterFlagCompletionFunc("from", narFiles)
	return c
}

func lsCmd(sio *stdio) *cobra.Command {
	o := &lsOpts{}
	c := command("nar", "ls [flags] NARFILE|- [PATH]", "List PATH (default: the root) inside a NAR file, like nix nar ls",
		func(cmd *cobra.Command, args []string) error { return runLs(cmd.Context(), sio, o, args) })
	c.Long = `The whole archive is checked first: a malformed one is an error (exit 1)
naming the byte offset, the file or directory there and the broken rule.
With -, the archive is read from standard input, which must not be a
terminal.

--json prints what nix nar ls --json prints, but always valid JSON: a byte of
a name or symlink target that is not valid UTF-8 is written as \udcXX (the
lone surrogate U+DC00+byte, Python's "surrogateescape"). In Python,
json.loads(out) and name.encode("utf-8", "surrogateescape") give the raw
bytes back. Valid UTF-8 names print as they are.

PATH may omit the leading slash; repeated and trailing slashes are ignored.`
	c.Example = `  narhash ls -lR src.nar
  narhash ls --json -R src.nar /bin`
	c.Args = argsEmptyFrom(1, 2, "NARFILE [PATH]", 1)
	c.ValidArgsFunction = narPaths
	fs := c.Flags()
	fs.BoolVarP(&o.long, "long", "l", false, "long listing: type and mode, size, name, symlink target")
	fs.BoolVarP(&o.recursive, "recursive", "R", false, "list directories recursively")
	fs.BoolVarP(&o.directory, "directory", "d", false, "list a directory itself, not its entries")
	fs.BoolVar(&o.json, "json", false, "print the listing as JSON (with narOffset)")
	return c
}

func catCmd(sio *stdio) *cobra.Command {
	c := command("nar", "cat NARFILE|- PATH", "Print the contents of the regular file PATH inside a NAR file, like nix nar cat",
		func(cmd *cobra.Command, args []string) error { return runCat(cmd.Context(), sio, args) })
	c.Long = `The whole archive is checked before anything is printed when NARFILE is a
regular file; from a pipe, the contents stream and a later error still exits 1.
With -, the archive is read from standard input, which must not be a
terminal. PATH may omit the leading slash; repeated and trailing slashes are
ignored.`
	c.Example = `  narhash cat src.nar /README.md
  narhash dump ./src | narhash cat - /README.md`
	c.Args = argsEmptyFrom(2, 2, "NARFILE PATH", 1)
	c.ValidArgsFunction = narPaths
	return c
}

func runDump(ctx context.Context, sio *stdio, path string, git bool) error {
	if isTerminal(sio.out) {
		return usagef("standard output is a terminal: redirect it to a file or a pipe")
	}
	dir, sel, v, err := source(ctx, path, git)
	if err != nil {
		return err
	}
	out := bufio.NewWriterSize(sio.out, 256<<10)
	dumpGC()
	if _, err := nar.Dump(ctx, out, dir, &nar.DumpOptions{Select: sel, ColdProcs: nar.DefaultColdProcs}); err != nil {
		return fmt.Errorf("dump %s: %w (the archive written so far is incomplete)", path, err)
	}
	if v != nil && v.Changed() {
		return fmt.Errorf("dump %s: %w (git's index changed while it was read): the archive may mix two states; dump it again", path, nar.ErrChanged)
	}
	if err := out.Flush(); err != nil {
		return fmt.Errorf("dump %s: %w", path, err)
	}
	return nil
}

func runRestore(ctx context.Context, sio *stdio, from, dest string) error {
	var in io.Reader
	if from == "-" {
		var err error
		if in, err = stdinArchive(ctx, sio, "give --from FILE"); err != nil {
			return err
		}
	} else {
		f, err := os.Open(from)
		if err != nil {
			return fmt.Errorf("restore %s: %w", dest, err)
		}
		defer f.Close()
		in = interruptible(ctx, f)
	}
	return subject("restore "+filepath.Clean(dest), nar.Restore(in, dest))
}

// stdinArchive returns standard input, to read an archive from, for
// restore, and ls and cat given "-". A terminal is refused: the command
// would wait on it for an archive no one types; or names the other way
// to give one.
func stdinArchive(ctx context.Context, sio *stdio, or string) (io.Reader, error) {
	if isTerminal(sio.in) {
		return nil, usagef("standard input is a terminal: redirect it from a NAR file or a pipe, or %s", or)
	}
	return interruptible(ctx, sio.in), nil
}

type lsOpts struct{ recursive, long, directory, json bool }

// openListing lists the archive in the file path, or "-": standard input.
func openListing(ctx context.Context, sio *stdio, path string) (*nar.Listing, error) {
	var r io.Reader
	if path == "-" {
		in, err := stdinArchive(ctx, sio, "name the NAR file instead of -")
		if err != nil {
			return nil, err
		}
		r = in
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = interruptible(ctx, f)
	}
	l, err := nar.List(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return l, nil
}

func runLs(ctx context.Context, sio *stdio, opts *lsOpts, args []string) error {
	if opts.json && opts.directory {
		return usagef("-d does nothing with --json")
	}
	path := "/"
	if len(args) == 2 {
		path = args[1]
	}
	root, err := openListing(ctx, sio, args[0])
	if err != nil {
		return err
	}
	l, err := root.Lookup(path)
	if err != nil {
		return fmt.Errorf("%s: %w", args[0], err)
	}
	out := bufio.NewWriter(sio.out)
	if opts.json {
		// Nix ends the JSON without a newline; add one only for a person.
		b := l.AppendJSON(nil, opts.recursive)
		if isTerminal(sio.out) {
			b = append(b, '\n')
		}
		out.Write(b)
		return out.Flush()
	}
	rel := "."
	if l.Type != nar.TypeDirectory {
		rel = baseName(path)
	}
	lsPath(out, l, []byte(rel), opts, opts.directory)
	return out.Flush()
}

// lsPath prints like nix nar ls: a directory's entries (or, with -d, the
// directory itself), recursing with -R. The path grows in one buffer, so a
// deep tree costs memory linear in its depth, not the sum of its paths.
func lsPath(w io.Writer, l *nar.Listing, rel []byte, opts *lsOpts, showDir bool) {
	if l.Type == nar.TypeDirectory && !showDir {
		n := len(rel)
		for _, e := range l.Entries {
			rel = append(append(rel[:n], '/'), e.Name...)
			lsFile(w, e.Listing, rel, opts)
		}
		return
	}
	lsFile(w, l, rel, opts)
}

// lsFile prints one line of the listing. The path goes out with Write, not
// through fmt: fmt formats into a buffer of its own that it does not keep
// past 64 KiB, so a deep tree's long paths would cost their length in
// allocation on every line.
func lsFile(w io.Writer, l *nar.Listing, rel []byte, opts *lsOpts) {
	if opts.long {
		mode := "dr-xr-xr-x"
		switch {
		case l.Type == nar.TypeRegular && l.Executable:
			mode = "-r-xr-xr-x"
		case l.Type == nar.TypeRegular:
			mode = "-r--r--r--"
		case l.Type == nar.TypeSymlink:
			mode = "lrwxrwxrwx"
		}
		fmt.Fprintf(w, "%s %20d ", mode, l.Size)
		w.Write(rel)
		if l.Type == nar.TypeSymlink {
			io.WriteString(w, " -> ")
			io.WriteString(w, l.Target)
		}
	} else {
		w.Write(rel)
	}
	io.WriteString(w, "\n")
	if opts.recursive && l.Type == nar.TypeDirectory {
		lsPath(w, l, rel, opts, false)
	}
}

func baseName(path string) string {
	path = strings.TrimRight(path, "/")
	return path[strings.LastIndexByte(path, '/')+1:]
}

func runCat(ctx context.Context, sio *stdio, args []string) error {
	if args[0] == "-" {
		in, err := stdinArchive(ctx, sio, "name the NAR file instead of -")
		if err != nil {
			return err
		}
		return catStream(ctx, sio, in, args)
	}
	f, err := os.Open(args[0])
	if err != nil {
		return err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
		// Check the whole archive first, then copy the contents from
		// their offset.
		root, err := nar.List(f)
		if err != nil {
			return fmt.Errorf("%s: %w", args[0], err)
		}
		l, err := root.Lookup(args[1])
		if err != nil {
			return fmt.Errorf("%s: %w", args[0], err)
		}
		if l.Type != nar.TypeRegular {
			return fmt.Errorf("%s: path '%s' is a %s, not a regular file", args[0], args[1], l.Type)
		}
		_, err = copyContext(ctx, sio.out, io.NewSectionReader(f, l.Offset, l.Size))
		return err
	}
	return catStream(ctx, sio, interruptible(ctx, f), args)
}

// catStream finds PATH in an archive read once, from a pipe.
func catStream(ctx context.Context, sio *stdio, r io.Reader, args []string) error {
	want := nar.CleanPath(args[1]) // as Lookup takes it, for a file
	nr := nar.NewReader(r)
	found := false
	for {
		hdr, err := nr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: %w", args[0], err)
		}
		if hdr.Path != want {
			continue
		}
		if hdr.Type != nar.TypeRegular {
			return fmt.Errorf("%s: path '%s' is a %s, not a regular file", args[0], args[1], hdr.Type)
		}
		found = true
		if _, err := copyContext(ctx, sio.out, nr); err != nil {
			return fmt.Errorf("%s: %w", args[0], err)
		}
	}
	if !found {
		return fmt.Errorf("%s: path '%s' does not exist in the archive", args[0], args[1])
	}
	return nil
}

func copyContext(ctx context.Context, w io.Writer, r io.Reader) (int64, error) {
	return io.Copy(w, ctxReader{ctx, r})
}

// errInterrupted is what reads return once the command is cancelled
// (Ctrl-C, SIGTERM).
var errInterrupted = errors.New("interrupted")

// ctxReader stops a long copy when its context is cancelled. It looks
// between reads: a read that waits (on a pipe) needs interruptible.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if c.ctx.Err() != nil {
		return 0, errInterrupted
	}
	return c.r.Read(p)
}

// interruptible returns r read so that cancelling ctx ends the command
// even while it waits for input: a regular file is read as it is, checked
// between reads; anything else (a pipe, a FIFO, a socket) through a
// cancelReader.
func interruptible(ctx context.Context, r io.Reader) io.Reader {
	if f, ok := r.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
			return ctxReader{ctx, r}
		}
	}
	return &cancelReader{ctx: ctx, r: r}
}

// cancelReadSize bounds one read of a cancelReader: a pipe's buffer.
const cancelReadSize = 64 << 10

// A cancelReader is a reader whose Read returns errInterrupted as soon as
// ctx is cancelled, even while the read below it waits for data that may
// never come (standard input is a pipe, and its writer is stuck). Each
// read of r runs on a goroutine of its own, into the cancelReader's buffer,
// and is copied to p only if ctx is not cancelled by then: nothing read
// after the cancel reaches the caller, and p is never written once Read
// has returned. The goroutine of a read cut short stays blocked in r until
// r sends or is closed; the command returns meanwhile, and the process
// exits.
type cancelReader struct {
	ctx  context.Context
	r    io.Reader
	buf  []byte
	done chan readResult
}

type readResult struct {
	n   int
	err error
}

func (c *cancelReader) Read(p []byte) (int, error) {
	if c.ctx.Err() != nil {
		return 0, errInterrupted // and c.buf may still be in use
	}
	if len(p) == 0 {
		return 0, nil
	}
	if c.buf == nil {
		c.buf, c.done = make([]byte, cancelReadSize), make(chan readResult, 1)
	}
	r, buf, done := c.r, c.buf[:min(len(p), len(c.buf))], c.done
	go func() {
		n, err := r.Read(buf)
		done <- readResult{n, err}
	}()
	select {
	case res := <-done:
		if c.ctx.Err() != nil {
			return 0, errInterrupted
		}
		return copy(p, buf[:res.n]), res.err
	case <-c.ctx.Done():
		return 0, errInterrupted
	}
}

// narFiles completes the names of NAR files (and directories, to reach
// them).
func narFiles(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
	return []cobra.Completion{"nar"}, cobra.ShellCompDirectiveFilterFileExt
}

// narPaths completes ls's and cat's arguments: a NAR file, then the paths
// inside it, a directory at a time.
func narPaths(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) == 0 {
		return narFiles(cmd, args, toComplete)
	}
	none := cobra.ShellCompDirectiveNoFileComp
	if len(args) > 1 || args[0] == "-" {
		return nil, none
	}
	f, err := os.Open(args[0])
	if err != nil {
		return nil, none
	}
	defer f.Close()
	root, err := nar.List(f)
	if err != nil {
		return nil, none
	}
	// The directory typed so far, spelt as typed (with or without the
	// leading slash): the shell keeps the completions it starts.
	typed := toComplete[:strings.LastIndexByte(toComplete, '/')+1]
	l, err := root.Lookup("/" + strings.Trim(typed, "/"))
	if err != nil || l.Type != nar.TypeDirectory {
		return nil, none
	}
	var out []cobra.Completion
	for _, e := range l.Entries {
		p := typed + e.Name
		if e.Type == nar.TypeDirectory {
			p += "/"
		}
		out = append(out, p)
	}
	return out, none | cobra.ShellCompDirectiveNoSpace
}
