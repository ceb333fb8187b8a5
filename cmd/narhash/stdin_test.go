package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/narhash/narhash/nar"
	"github.com/narhash/narhash/nar/nartest"
)

// testArchive returns the NAR of a directory holding a/b ("hello") and
// f (100 bytes of "x"), and the offset in it of the middle of f's
// contents.
func testArchive(t *testing.T) (archive []byte, midF int) {
	t.Helper()
	var b bytes.Buffer
	w := nar.NewWriter(&b)
	w.Directory()
	w.Entry("a")
	w.Directory()
	w.Entry("b")
	w.File(false, 5)
	w.Write([]byte("hello"))
	w.EndDirectory()
	w.Entry("f")
	w.File(false, 100)
	midF = int(w.Offset()) + 50
	w.Write(bytes.Repeat([]byte("x"), 100))
	w.EndDirectory()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), midF
}

// TestCatPathSpellings: cat finds PATH however it is spelt, the same from
// a file, which it looks up in the listing, and from a pipe, which it
// streams.
func TestCatPathSpellings(t *testing.T) {
	archive, _ := testArchive(t)
	file := filepath.Join(nartest.TempDir(t), "t.nar")
	if err := os.WriteFile(file, archive, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/a/b", "a/b", "a//b", "//a//b//", "/a/b/"} {
		if got := narhashOK(t, nil, "cat", file, p); string(got) != "hello" {
			t.Errorf("cat FILE %q = %q, want hello", p, got)
		}
		if got := narhashOK(t, archive, "cat", "-", p); string(got) != "hello" {
			t.Errorf("cat - %q = %q, want hello", p, got)
		}
	}
	for _, p := range []string{"/a/./b", "/a/c"} {
		for _, from := range []string{file, "-"} {
			_, errOut, code := narhash(t, archive, "cat", from, p)
			if code != 1 || !strings.Contains(string(errOut), "path '"+p+"' does not exist in the archive") {
				t.Errorf("cat %s %q: exit %d, %s", from, p, code, errOut)
			}
		}
	}
}

// TestStdinTerminal: restore, ls - and cat - refuse a terminal as standard
// input, as dump refuses one as standard output, instead of waiting on it.
func TestStdinTerminal(t *testing.T) {
	tty := openPTY(t)
	dir := nartest.TempDir(t)
	dest := filepath.Join(dir, "dest")
	for _, args := range [][]string{{"restore", dest}, {"restore", "--from", "-", dest}, {"ls", "-"}, {"cat", "-", "/a/b"}} {
		code, errOut := runWithin(t, args, tty)
		if code != 2 || !strings.Contains(errOut, "standard input is a terminal: redirect it from a NAR file or a pipe") {
			t.Errorf("narhash %q < a terminal: exit %d, %q; want 2 and a refusal", args, code, errOut)
		}
	}
	if _, err := os.Lstat(dest); err == nil {
		t.Errorf("a refused restore made %s", dest)
	}

	// A terminal on standard input does not matter when the archive is
	// named.
	archive, _ := testArchive(t)
	file := filepath.Join(dir, "t.nar")
	if err := os.WriteFile(file, archive, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"restore", "--from", file, dest}, {"ls", file}, {"cat", file, "/a/b"}} {
		if code, errOut := runWithin(t, args, tty); code != 0 {
			t.Errorf("narhash %q < a terminal: exit %d, %s", args, code, errOut)
		}
	}
}

// runWithin runs narhash in-process and returns its exit status and
// standard error, failing the test if it still runs after 30s: it waits
// on stdin.
func runWithin(t *testing.T, args []string, stdin *os.File) (code int, stderr string) {
	t.Helper()
	var out, errOut syncBuffer
	exit := make(chan int, 1)
	go func() { exit <- run(t.Context(), args, stdin, &out, &errOut) }()
	select {
	case code := <-exit:
		return code, errOut.String()
	case <-time.After(30 * time.Second):
		t.Fatalf("narhash %q still runs after 30s: it waits on its standard input", args)
		return 0, ""
	}
}

// syncBuffer is a bytes.Buffer that a test may read while a command
// writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls cond until it holds, failing the test after a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting, after 30s, for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// watchedReader reads r and tells how much it has read and whether a
// Read is under way.
type watchedReader struct {
	r       io.Reader
	reading atomic.Bool
	n       atomic.Int64
}

func (w *watchedReader) Read(p []byte) (int, error) {
	w.reading.Store(true)
	n, err := w.r.Read(p)
	w.reading.Store(false) // before n grows: see waiting
	w.n.Add(int64(n))
	return n, err
}

// waiting reports whether a Read, begun after n bytes were read, is under
// way.
func (w *watchedReader) waiting(n int) bool { return w.reading.Load() && w.n.Load() == int64(n) }

// TestInterruptWaitingOnStdin: restore, ls - and cat - stop when the
// command is cancelled while they wait on a pipe that sends nothing more:
// exit 1, nothing written after the cancel, restore's partial tree gone.
func TestInterruptWaitingOnStdin(t *testing.T) {
	archive, mid := testArchive(t)
	for _, name := range []string{"restore", "ls", "cat"} {
		t.Run(name, func(t *testing.T) {
			dir := nartest.TempDir(t)
			args := map[string][]string{
				"restore": {"restore", filepath.Join(dir, "dest")},
				"ls":      {"ls", "-R", "-"},
				"cat":     {"cat", "-", "/f"},
			}[name]
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer pr.Close()
			defer pw.Close() // lets the read cut short end
			if _, err := pw.Write(archive[:mid]); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			var out, errOut syncBuffer
			exit := make(chan int, 1)
			in := &watchedReader{r: pr}
			go func() { exit <- run(ctx, args, in, &out, &errOut) }()

			// The command has read all that was sent and waits for more.
			waitFor(t, "the command to wait on the pipe", func() bool { return in.waiting(mid) })
			if name == "cat" {
				waitFor(t, "cat to print what it was sent", func() bool { return out.String() == strings.Repeat("x", 50) })
			}
			cancel()
			select {
			case code := <-exit:
				if code != 1 || !strings.Contains(errOut.String(), "interrupted") {
					t.Errorf("narhash %q cancelled: exit %d, %q; want 1 and interrupted", args, code, errOut.String())
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("narhash %q still waits on its pipe 30s after it was cancelled", args)
			}
			printed := out.String()

			// What comes after the cancel goes nowhere.
			if _, err := pw.Write(archive[mid:]); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the read cut short to end", func() bool { return in.n.Load() == int64(len(archive)) })
			if got := out.String(); got != printed {
				t.Errorf("narhash %q printed %q after it was cancelled", args, got[len(printed):])
			}
			if name == "restore" {
				if ents, _ := os.ReadDir(dir); len(ents) != 0 {
					t.Errorf("a cancelled restore left %q behind", ents[0].Name())
				}
			}
		})
	}
}

// gatedReader is a reader whose Read waits for release, then fills p.
type gatedReader struct{ started, release, finished chan struct{} }

func (g gatedReader) Read(p []byte) (int, error) {
	close(g.started)
	<-g.release
	n := copy(p, "late")
	close(g.finished)
	return n, nil
}

// TestCancelReader: a Read waiting on its source returns when the context
// is cancelled, and what the source gives after that never reaches the
// caller's buffer.
func TestCancelReader(t *testing.T) {
	g := gatedReader{make(chan struct{}), make(chan struct{}), make(chan struct{})}
	ctx, cancel := context.WithCancel(t.Context())
	r := interruptible(ctx, g)
	p := make([]byte, 8)
	type result struct {
		n   int
		err error
	}
	res := make(chan result, 1)
	go func() {
		n, err := r.Read(p)
		res <- result{n, err}
	}()
	<-g.started
	cancel()
	select {
	case got := <-res:
		if got.n != 0 || !errors.Is(got.err, errInterrupted) {
			t.Errorf("cancelled Read: %d, %v; want 0, interrupted", got.n, got.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Read still waits 30s after it was cancelled")
	}
	close(g.release)
	<-g.finished
	if !bytes.Equal(p, make([]byte, 8)) {
		t.Errorf("the source's late bytes reached the caller: %q", p)
	}
	if n, err := r.Read(p); n != 0 || !errors.Is(err, errInterrupted) {
		t.Errorf("Read after the cancel: %d, %v", n, err)
	}
}

// TestInterruptMain: in the narhash process itself, SIGINT stops a
// restore that waits on standard input, which removes its partial tree.
func TestInterruptMain(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	archive, mid := testArchive(t)
	dir := nartest.TempDir(t)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	cmd := exec.Command(exe, "restore", filepath.Join(dir, "dest"))
	cmd.Env = append(os.Environ(), "NARHASH_TEST_RUN_MAIN=1")
	cmd.Stdin = pr
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer cmd.Process.Kill()
	if _, err := pw.Write(archive[:mid]); err != nil {
		t.Fatal(err)
	}
	// The partial tree is there, f in it with all of f that was sent:
	// main catches signals, and restore waits on its standard input.
	waitFor(t, "restore to write what it was sent", func() bool {
		ents, _ := os.ReadDir(dir)
		if len(ents) != 1 {
			return false
		}
		st, err := os.Stat(filepath.Join(dir, ents[0].Name(), "f"))
		return err == nil && st.Size() == 50
	})
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if code := cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(errOut.String(), "interrupted") {
			t.Errorf("restore sent SIGINT: exit %d, %q; want 1 and interrupted", code, errOut.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("restore still waits on its standard input 30s after SIGINT")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("restore stopped by SIGINT left %q behind", ents[0].Name())
	}
}
