package nar

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/narhash/narhash/nar/nartest"
)

// stutter reads r, but every other Read returns 0, nil, which io.Reader
// allows and bufio passes through; the others return at most max bytes
// (0: no limit).
type stutter struct {
	r     io.Reader
	max   int
	empty bool
}

func (s *stutter) Read(p []byte) (int, error) {
	if s.empty = !s.empty; s.empty {
		return 0, nil
	}
	if s.max > 0 && len(p) > s.max {
		p = p[:s.max]
	}
	return s.r.Read(p)
}

// readNodes reads a whole archive and describes it, contents included.
// It reads contents with an empty buffer first, then in odd-sized pieces.
func readNodes(r io.Reader) (string, error) {
	var b strings.Builder
	nr := NewReader(r)
	buf := make([]byte, 1000)
	for {
		hdr, err := nr.Next()
		if err == io.EOF {
			return b.String(), nil
		}
		if err != nil {
			return b.String(), err
		}
		fmt.Fprintf(&b, "%q %s %v %d %q %d", hdr.Path, hdr.Type, hdr.Executable, hdr.Size, hdr.LinkTarget, hdr.Offset)
		if n, err := nr.Read(buf[:0]); n != 0 || err != nil && err != io.EOF {
			return b.String(), fmt.Errorf("%s: Read of nothing: %d, %v", hdr.Path, n, err)
		}
		h := sha256.New()
		if _, err := io.CopyBuffer(h, struct{ io.Reader }{nr}, buf); err != nil {
			return b.String(), err
		}
		fmt.Fprintf(&b, " %x\n", h.Sum(nil))
	}
}

// stutterArchives returns the fixtures and random archives, some with
// files larger than the Reader's buffer, which bufio reads directly.
func stutterArchives(t *testing.T) map[string][]byte {
	archives := fixtures(t)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 20 {
		var b bytes.Buffer
		w := NewWriter(&b)
		writeRandom(rng, w, 0)
		must(t, w.Close())
		archives[fmt.Sprintf("random%d", i)] = b.Bytes()
	}
	var b bytes.Buffer
	w := NewWriter(&b)
	must(t, w.Directory())
	must(t, w.Entry("big"))
	must(t, w.File(true, 300<<10))
	_, err := w.Write(nartest.Bytes(rng, 300<<10))
	must(t, err)
	must(t, w.Entry("empty"))
	must(t, w.File(false, 0))
	must(t, w.EndDirectory())
	must(t, w.Close())
	archives["big"] = b.Bytes()
	return archives
}

// TestReaderEmptyReads: a source that sometimes returns 0, nil, and a Read
// with an empty buffer, are not a truncated archive. Next, Read, List and
// Restore all give what they give from a plain source.
func TestReaderEmptyReads(t *testing.T) {
	dir := nartest.TempDir(t)
	i := 0
	for name, b := range stutterArchives(t) {
		want, err := readNodes(bytes.NewReader(b))
		must(t, err)
		wantList, err := List(bytes.NewReader(b))
		must(t, err)
		for _, max := range []int{0, 7} {
			got, err := readNodes(&stutter{r: bytes.NewReader(b), max: max})
			if err != nil || got != want {
				t.Errorf("%s, max %d: read %v; same nodes: %v", name, max, err, got == want)
			}
			l, err := List(&stutter{r: bytes.NewReader(b), max: max})
			if err != nil || !bytes.Equal(l.AppendJSON(nil, true), wantList.AppendJSON(nil, true)) {
				t.Errorf("%s, max %d: List: %v", name, max, err)
			}
			i++
			dest := filepath.Join(dir, fmt.Sprint(i))
			if err := Restore(&stutter{r: bytes.NewReader(b), max: max}, dest); err != nil {
				t.Errorf("%s, max %d: Restore: %v", name, max, err)
				continue
			}
			if got, _ := dumpBytes(t, dest, 0); !bytes.Equal(got, b) {
				t.Errorf("%s, max %d: the restored tree dumps differently", name, max)
			}
		}
	}
}

type emptyReader struct{}

func (emptyReader) Read([]byte) (int, error) { return 0, nil }

// TestReaderNoProgress: a source that only ever returns 0, nil fails with
// io.ErrNoProgress, as bufio does, in a header or in contents.
func TestReaderNoProgress(t *testing.T) {
	hdr := strs("nix-archive-1", "(", "type", "regular", "contents") + "\x05\x00\x00\x00\x00\x00\x00\x00"
	for _, tc := range []struct {
		name string
		r    io.Reader
	}{
		{"header", emptyReader{}},
		{"contents", io.MultiReader(strings.NewReader(hdr+"he"), emptyReader{})},
	} {
		done := make(chan error, 1)
		go func() {
			nr := NewReader(tc.r)
			_, err := nr.Next()
			if err == nil {
				_, err = io.ReadAll(nr)
			}
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, io.ErrNoProgress) {
				t.Errorf("%s: got %v, want io.ErrNoProgress", tc.name, err)
			}
		case <-time.After(time.Minute):
			t.Fatalf("%s: the reader still spins after a minute", tc.name)
		}
	}
}

// TestFormatErrorPath: a format error names the node where the archive
// breaks: the directory whose entries are wrong, the file whose contents
// end early.
func TestFormatErrorPath(t *testing.T) {
	file := func(contents string) string { return strs("regular", "contents", contents, ")") }
	hdr := strs("nix-archive-1", "(", "type")
	dir := func(entries ...string) string { return str("directory") + strings.Join(entries, "") + str(")") }
	ent := func(name, node string) string {
		return strs("entry", "(", "name", name, "node", "(", "type") + node + str(")")
	}
	long := strings.Repeat("d", 255)
	deep := dir(ent(long, dir(ent(long, dir(ent("b", file("")), ent("a", file("")))))))
	withFile := hdr + dir(ent("d", dir(ent("f", file(strings.Repeat("x", 100))))))
	cut := strings.Index(withFile, strings.Repeat("x", 100)) + 50
	for _, tc := range []struct {
		name, nar, path, msg string
	}{
		{"duplicate", hdr + dir(ent("d", dir(ent("a", file("")), ent("a", file(""))))), "/d", `in "/d": duplicate entry "a"`},
		{"unsorted root", hdr + dir(ent("b", file("")), ent("a", file(""))), "/", `in "/": entry "a" is not after "b"`},
		{"bad type", hdr + dir(ent("x", strs("fifo", ")"))), "/x", `in "/x": expected node type`},
		{"truncated contents", withFile[:cut], "/d/f", `in "/d/f": archive ends early (truncated)`},
		{"truncated name", withFile[:len(hdr)+len(str("directory"))+len(strs("entry", "(", "name"))+4], "/", `in "/": archive ends early`},
		{"trailing data", hdr + file("x") + "\x00", "/", `in "/": data after the end`},
		{"deep", hdr + deep, "/" + long + "/" + long, `in "/` + long[:99] + `…(312 bytes)…` + long[:100] + `": entry "a" is not after "b"`},
	} {
		_, err := List(strings.NewReader(tc.nar))
		var fe *FormatError
		if !errors.As(err, &fe) || !errors.Is(err, ErrFormat) {
			t.Errorf("%s: got %v, want a *FormatError", tc.name, err)
			continue
		}
		if fe.Path != tc.path || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: got path %.20q, error %q; want %.20q, %q", tc.name, fe.Path, err, tc.path, tc.msg)
		}
		if !strings.HasPrefix(err.Error(), "nar: invalid archive at byte ") {
			t.Errorf("%s: %q does not start as every format error does", tc.name, err)
		}
	}

	// Restore says it too, and says the file once.
	err := Restore(strings.NewReader(withFile[:cut]), filepath.Join(nartest.TempDir(t), "dest"))
	if msg := fmt.Sprint(err); !errors.Is(err, io.ErrUnexpectedEOF) || !strings.Contains(msg, `in "/d/f": archive ends early`) || strings.Count(msg, "/d/f") != 1 {
		t.Errorf("restore of an archive cut in /d/f's contents: %v", err)
	}
}

// TestRestoreCollision: an entry whose name the filesystem takes for one
// already restored ("a" after "A" where case folds) is reported as such,
// not as a destination that exists.
func TestRestoreCollision(t *testing.T) {
	dir := nartest.TempDir(t)
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	must(t, err)
	defer unix.Close(fd)
	must(t, os.WriteFile(filepath.Join(dir, "a"), nil, 0o644))
	rs := &restorer{nr: NewReader(strings.NewReader(""))}
	defer rs.closeAll()
	for _, hdr := range []*Header{{Type: TypeRegular}, {Type: TypeDirectory}, {Type: TypeSymlink, LinkTarget: "t"}} {
		err := rs.create(fd, "a", "/a", hdr)
		if msg := fmt.Sprint(err); !strings.Contains(msg, " /a: it collides with an entry already restored (likely a case or Unicode collision on this filesystem)") || errors.Is(err, ErrExist) {
			t.Errorf("%s over an existing name: %v", hdr.Type, err)
		}
	}
}

// TestCleanPath: one spelling of a path inside an archive, the one
// Header.Path has, for Lookup and for whoever compares with Header.Path.
func TestCleanPath(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "/"},
		{"/", "/"},
		{"//", "/"},
		{"a", "/a"},
		{"/a", "/a"},
		{"a/", "/a"},
		{"a//b", "/a/b"},
		{"//a//b//", "/a/b"},
		{"/a/./b", "/a/./b"},
		{"/a/b", "/a/b"},
	} {
		if got := CleanPath(tc.in); got != tc.want {
			t.Errorf("CleanPath(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	l, err := List(bytes.NewReader(fixtures(t)["complicated"]))
	must(t, err)
	nr := NewReader(bytes.NewReader(fixtures(t)["complicated"]))
	for {
		hdr, err := nr.Next()
		if err == io.EOF {
			break
		}
		must(t, err)
		spellings := []string{hdr.Path, hdr.Path[1:], hdr.Path + "/", "/" + strings.ReplaceAll(hdr.Path, "/", "//")}
		for _, p := range spellings {
			if CleanPath(p) != hdr.Path {
				t.Errorf("CleanPath(%q) = %q, want %q", p, CleanPath(p), hdr.Path)
			}
			if got, err := l.Lookup(p); err != nil || got.Type != hdr.Type || got.Size != hdr.Size || got.Offset != hdr.Offset {
				t.Errorf("Lookup(%q): %v", p, err)
			}
		}
	}
}

// TestWriterOffset: after File, Offset is the narOffset of a non-empty
// file, and 16 bytes (the closing ")") past that of an empty one, which
// File has already ended.
func TestWriterOffset(t *testing.T) {
	var b bytes.Buffer
	w := NewWriter(&b)
	must(t, w.Directory())
	var offsets []int64
	for _, size := range []int64{0, 2, 0, 9} {
		must(t, w.Entry(fmt.Sprint(len(offsets))))
		must(t, w.File(false, size))
		offsets = append(offsets, w.Offset())
		_, err := w.Write(make([]byte, size))
		must(t, err)
	}
	must(t, w.EndDirectory())
	must(t, w.Close())
	l, err := List(bytes.NewReader(b.Bytes()))
	must(t, err)
	for i, e := range l.Entries {
		want := e.Offset
		if e.Size == 0 {
			want += int64(len(tokPar))
		}
		if offsets[i] != want {
			t.Errorf("file of %d bytes: Offset after File %d, want %d (narOffset %d)", e.Size, offsets[i], want, e.Offset)
		}
	}
}
