package nar

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// str is one wire string: u64le length, bytes, zero padding.
func str(s string) string {
	var b []byte
	b = binary.LittleEndian.AppendUint64(b, uint64(len(s)))
	b = append(b, s...)
	b = append(b, make([]byte, padLen(uint64(len(s))))...)
	return string(b)
}

func strs(ss ...string) string {
	var b strings.Builder
	for _, s := range ss {
		b.WriteString(str(s))
	}
	return b.String()
}

func TestTokens(t *testing.T) {
	for _, tc := range []struct {
		tok  string
		want []string
	}{
		{tokNAR, []string{"nix-archive-1", "(", "type"}},
		{tokSym, []string{"symlink", "target"}},
		{tokReg, []string{"regular", "contents"}},
		{tokExe, []string{"regular", "executable", "", "contents"}},
		{tokDir, []string{"directory"}},
		{tokEnt, []string{"entry", "(", "name"}},
		{tokNod, []string{"node", "(", "type"}},
		{tokPar, []string{")"}},
	} {
		if got := strs(tc.want...); got != tc.tok {
			t.Errorf("token %q:\n got % x\nwant % x", tc.want, tc.tok, got)
		}
	}
}

// TestHelloVector checks the spec's corrected worked example.
func TestHelloVector(t *testing.T) {
	var b bytes.Buffer
	w := NewWriter(&b)
	must(t, w.File(false, 5))
	mustWrite(t, w, "hello")
	must(t, w.Close())
	const want = "0a430879c266f8b57f4092a0f935cf3facd48bbccde5760d4748ca405171e969"
	if sum := sha256.Sum256(b.Bytes()); hex.EncodeToString(sum[:]) != want || b.Len() != 120 {
		t.Errorf("got %d bytes, sha256 %x; want 120 bytes, %s", b.Len(), sum, want)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func mustWrite(t *testing.T, w *Writer, s string) {
	t.Helper()
	if _, err := w.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
}

// fixtures returns the NAR fixtures that testdata/gen.sh made with Nix.
func fixtures(t testing.TB) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob("../testdata/*.nar")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no fixtures in ../testdata (%v)", err)
	}
	out := map[string][]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimSuffix(filepath.Base(p), ".nar")] = b
	}
	return out
}

// copyArchive reads an archive and writes it again node by node.
func copyArchive(src []byte) ([]byte, error) {
	var out bytes.Buffer
	r := NewReader(bytes.NewReader(src))
	w := NewWriter(&out)
	depth := []string{}
	for {
		hdr, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if hdr.Path != "/" {
			parent, name := hdr.Path[:strings.LastIndexByte(hdr.Path, '/')], hdr.Path[strings.LastIndexByte(hdr.Path, '/')+1:]
			for depth[len(depth)-1] != parent {
				depth = depth[:len(depth)-1]
				if err := w.EndDirectory(); err != nil {
					return nil, err
				}
			}
			if err := w.Entry(name); err != nil {
				return nil, err
			}
		}
		switch hdr.Type {
		case TypeRegular:
			if err := w.File(hdr.Executable, hdr.Size); err != nil {
				return nil, err
			}
			if hdr.Size > 0 && hdr.Offset != w.Offset() {
				return nil, fmt.Errorf("header offset %d, writer's %d", hdr.Offset, w.Offset())
			}
			if _, err := io.Copy(w, r); err != nil {
				return nil, err
			}
		case TypeSymlink:
			if err := w.Symlink(hdr.LinkTarget); err != nil {
				return nil, err
			}
		case TypeDirectory:
			if err := w.Directory(); err != nil {
				return nil, err
			}
			p := hdr.Path
			if p == "/" {
				p = ""
			}
			depth = append(depth, p)
		}
	}
	for range depth {
		if err := w.EndDirectory(); err != nil {
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

func TestFixturesRoundTrip(t *testing.T) {
	for name, b := range fixtures(t) {
		got, err := copyArchive(b)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !bytes.Equal(got, b) {
			t.Errorf("%s: re-encoded archive differs from Nix's", name)
		}
	}
}

// TestListFixtures compares List with `nix nar ls --json -R` output that
// gen.sh recorded. Nix writes raw bytes for non-UTF-8 names, which we
// escape: the test undoes that escape before comparing.
func TestListFixtures(t *testing.T) {
	for name, b := range fixtures(t) {
		want, err := os.ReadFile("../testdata/" + name + ".ls.json")
		if err != nil {
			t.Fatal(err)
		}
		l, err := List(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got := unescapeSurrogates(string(l.AppendJSON(nil, true)))
		if got != strings.TrimSpace(string(want)) {
			t.Errorf("%s:\n got %s\nwant %s", name, got, want)
		}
	}
}

// unescapeSurrogates turns \udcXX escapes back into raw bytes.
func unescapeSurrogates(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if strings.HasPrefix(s[i:], `\udc`) && i+6 <= len(s) {
			if v, err := hex.DecodeString(s[i+4 : i+6]); err == nil {
				b.WriteByte(v[0])
				i += 5
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func TestJSONStringValid(t *testing.T) {
	for _, s := range []string{"plain", "caf\xc3\xa9", "\xff\xfe", "a\nb\"c\\d\x01\x7f", "\xc3", "emoji \xf0\x9f\x98\x80"} {
		js := string(AppendJSONString(nil, s))
		if !jsonValid(js) {
			t.Errorf("%q encodes to invalid JSON %s", s, js)
		}
		if got := unescapeJSONForTest(t, js); got != s {
			t.Errorf("%q: round trip gave %q", s, got)
		}
	}
}

func TestWriterRules(t *testing.T) {
	for _, tc := range []struct {
		name string
		do   func(w *Writer) error
		want string
	}{
		{"write too long", func(w *Writer) error { w.File(false, 2); _, err := w.Write([]byte("abc")); return err }, "write too long"},
		{"close mid file", func(w *Writer) error { w.File(false, 2); return w.Close() }, "Close called while file contents are due"},
		{"unsorted", func(w *Writer) error { w.Directory(); w.Entry("b"); w.File(false, 0); return w.Entry("a") }, `"a" is not after "b"`},
		{"duplicate", func(w *Writer) error { w.Directory(); w.Entry("a"); w.File(false, 0); return w.Entry("a") }, `"a" is not after "a"`},
		{"dot", func(w *Writer) error { w.Directory(); return w.Entry(".") }, "is . or .."},
		{"dotdot", func(w *Writer) error { w.Directory(); return w.Entry("..") }, "is . or .."},
		{"slash", func(w *Writer) error { w.Directory(); return w.Entry("a/b") }, "slash"},
		{"nul", func(w *Writer) error { w.Directory(); return w.Entry("a\x00") }, "NUL"},
		{"empty name", func(w *Writer) error { w.Directory(); return w.Entry("") }, "empty entry name"},
		{"long name", func(w *Writer) error { w.Directory(); return w.Entry(strings.Repeat("x", 256)) }, "longer than 255"},
		{"empty target", func(w *Writer) error { return w.Symlink("") }, "empty symlink target"},
		{"long target", func(w *Writer) error { return w.Symlink(strings.Repeat("x", 4096)) }, "longer than 4095"},
		{"two roots", func(w *Writer) error { w.File(false, 0); return w.File(false, 0) }, "after the archive's root node is complete"},
		{"entry outside dir", func(w *Writer) error { return w.Entry("a") }, "Entry called where a node"},
		{"unclosed dir", func(w *Writer) error { w.Directory(); return w.Close() }, "archive incomplete"},
		{"negative size", func(w *Writer) error { return w.File(false, -1) }, "negative"},
	} {
		w := NewWriter(io.Discard)
		err := tc.do(w)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
			continue
		}
		if err2 := w.Close(); err2 != err {
			t.Errorf("%s: error is not sticky: Close gave %v after %v", tc.name, err2, err)
		}
	}
	// A 255-byte name is fine.
	w := NewWriter(io.Discard)
	w.Directory()
	w.Entry(strings.Repeat("x", 255))
	w.Symlink(strings.Repeat("y", 4095))
	w.EndDirectory()
	must(t, w.Close())
}

func TestWriterAllocs(t *testing.T) {
	w := NewWriter(io.Discard)
	content := make([]byte, 100)
	names := []string{"a", "b", "c", "d"}
	allocs := testing.AllocsPerRun(100, func() {
		w.Reset(io.Discard)
		w.Directory()
		for _, n := range names {
			w.Entry(n)
			w.File(true, int64(len(content)))
			w.Write(content)
		}
		w.Entry("e")
		w.Symlink("target")
		w.EndDirectory()
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("writing an archive allocates %v times; want 0", allocs)
	}
}

// malformed returns invalid archives, each with the rule it breaks.
func malformed() []struct{ name, nar, want string } {
	file := func(contents string) string { return strs("regular", "contents", contents, ")") }
	hdr := strs("nix-archive-1", "(", "type")
	dir := func(entries ...string) string {
		return hdr + str("directory") + strings.Join(entries, "") + str(")")
	}
	ent := func(name, node string) string {
		return strs("entry", "(", "name", name, "node", "(", "type") + node + str(")")
	}
	badPad := hdr + str("regular") + str("contents") + "\x01\x00\x00\x00\x00\x00\x00\x00x\x00\x00\x00\x00\x01\x00\x00" + str(")")
	huge := func(n uint64) string {
		return hdr + str("regular") + str("contents") + string(binary.LittleEndian.AppendUint64(nil, n))
	}
	hugeName := func(n uint64) string {
		return hdr + str("directory") + strs("entry", "(", "name") + string(binary.LittleEndian.AppendUint64(nil, n))
	}
	return []struct{ name, nar, want string }{
		{"empty", "", "ends early"},
		{"bad magic", strs("nix-archive-2", "(", "type") + file("x"), "NAR magic"},
		{"bad type", hdr + strs("fifo") + str(")"), "node type"},
		{"bad padding", badPad, "non-zero padding"},
		{"bad name padding", hdr + str("directory") + strs("entry", "(", "name") + "\x01\x00\x00\x00\x00\x00\x00\x00a\x00\x00\x00\x00\x00\x00\x01", "non-zero padding after entry name"},
		{"unsorted", dir(ent("b", file("")), ent("a", file(""))), `"a" is not after "b"`},
		{"duplicate", dir(ent("a", file("")), ent("a", file(""))), "duplicate entry"},
		{"dot", dir(ent(".", file(""))), "is . or .."},
		{"dotdot", dir(ent("..", file(""))), "is . or .."},
		{"slash", dir(ent("a/b", file(""))), "slash"},
		{"nul name", dir(ent("a\x00b", file(""))), "NUL"},
		{"empty name", dir(ent("", file(""))), "empty entry name"},
		{"long name", dir(ent(strings.Repeat("n", 256), file(""))), "length 256 exceeds"},
		{"empty target", hdr + strs("symlink", "target", "", ")"), "empty symlink target"},
		{"nul target", hdr + strs("symlink", "target", "a\x00", ")"), "NUL"},
		{"long target", hdr + strs("symlink", "target", strings.Repeat("t", 4096), ")"), "length 4096 exceeds"},
		{"size 2^63", huge(1 << 63), "impossible"},
		{"size 2^63-1", huge(1<<63 - 1), "ends early"},
		{"name length 2^63", hugeName(1 << 63), "exceeds the limit"},
		{"name length 2^64-1", hugeName(^uint64(0)), "exceeds the limit"},
		{"trailing data", hdr + file("x") + "\x00", "data after the end"},
		{"trailing archive", hdr + file("x") + hdr + file("x"), "data after the end"},
		{"executable after contents", hdr + strs("regular", "contents", "x", "executable", "", ")"), `")" after the file contents`},
		{"executable marker not empty", hdr + strs("regular", "executable", "y", "contents", "x", ")"), `"" "contents" after "executable"`},
		{"missing close", hdr + strs("regular", "contents", "x"), "ends early"},
		{"wrong close", hdr + strs("regular", "contents", "x", "("), `")" after the file contents`},
		{"entry without node", hdr + str("directory") + strs("entry", "(", "name", "a", "type", "(", "type"), `"node"`},
		{"unknown dir token", hdr + str("directory") + strs("foo"), `expected "entry" or ")"`},
	}
}

func TestMalformed(t *testing.T) {
	for _, tc := range malformed() {
		_, err := List(strings.NewReader(tc.nar))
		var fe *FormatError
		if !errors.As(err, &fe) || !errors.Is(err, ErrFormat) {
			t.Errorf("%s: got %v, want a *FormatError", tc.name, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %q, want it to mention %q", tc.name, err, tc.want)
		}
		if fe.Offset < 0 || fe.Offset > int64(len(tc.nar)) {
			t.Errorf("%s: offset %d outside the %d-byte archive", tc.name, fe.Offset, len(tc.nar))
		}
	}
}

// TestTruncatedEverywhere cuts every fixture at every offset.
func TestTruncatedEverywhere(t *testing.T) {
	for name, b := range fixtures(t) {
		for n := range len(b) {
			_, err := List(bytes.NewReader(b[:n]))
			if !errors.Is(err, io.ErrUnexpectedEOF) || !errors.Is(err, ErrFormat) {
				t.Fatalf("%s cut at %d of %d: got %v, want a truncation error", name, n, len(b), err)
			}
		}
	}
}

// TestCorruptedEverywhere flips each byte of each fixture: the archive
// must either be rejected or still re-encode to exactly its own bytes.
func TestCorruptedEverywhere(t *testing.T) {
	for name, b := range fixtures(t) {
		c := bytes.Clone(b)
		for i := range c {
			for _, x := range []byte{0x01, 0x80, 0xff} {
				c[i] ^= x
				if out, err := copyArchive(c); err == nil && !bytes.Equal(out, c) {
					t.Fatalf("%s with byte %d ^%#x: accepted but re-encodes differently", name, i, x)
				}
				c[i] ^= x
			}
		}
	}
}

// TestRandomRoundTrip writes random archives and reads them back.
func TestRandomRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		var b bytes.Buffer
		w := NewWriter(&b)
		writeRandom(rng, w, 0)
		must(t, w.Close())
		got, err := copyArchive(b.Bytes())
		if err != nil {
			t.Fatalf("archive %d: %v", i, err)
		}
		if !bytes.Equal(got, b.Bytes()) {
			t.Fatalf("archive %d: round trip differs", i)
		}
	}
}

func writeRandom(rng *rand.Rand, w *Writer, depth int) {
	switch k := rng.IntN(10); {
	case k < 5 || depth > 4:
		n := rng.IntN(40)
		if rng.IntN(20) == 0 {
			n = rng.IntN(300 << 10)
		}
		w.File(rng.IntN(3) == 0, int64(n))
		buf := make([]byte, n)
		for i := range buf {
			buf[i] = byte(rng.Uint32())
		}
		w.Write(buf)
	case k < 7:
		w.Symlink(randName(rng))
	default:
		w.Directory()
		names := map[string]bool{}
		for range rng.IntN(6) {
			names[randName(rng)] = true
		}
		sorted := make([]string, 0, len(names))
		for n := range names {
			sorted = append(sorted, n)
		}
		sortStrings(sorted)
		for _, n := range sorted {
			w.Entry(n)
			writeRandom(rng, w, depth+1)
		}
		w.EndDirectory()
	}
}

func randName(rng *rand.Rand) string {
	for {
		b := make([]byte, 1+rng.IntN(12))
		for i := range b {
			b[i] = byte(1 + rng.IntN(255))
			if b[i] == '/' {
				b[i] = 'x'
			}
		}
		if s := string(b); s != "." && s != ".." {
			return s
		}
	}
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func TestReaderBoundedMemory(t *testing.T) {
	// A file that claims 2^62 bytes must not make the reader allocate it.
	hdr := strs("nix-archive-1", "(", "type", "regular", "contents")
	r := NewReader(io.MultiReader(strings.NewReader(hdr+string(binary.LittleEndian.AppendUint64(nil, 1<<62))), io.LimitReader(zeroReader{}, 1<<20)))
	h, err := r.Next()
	must(t, err)
	if h.Size != 1<<62 {
		t.Fatalf("size %d", h.Size)
	}
	_, err = io.Copy(io.Discard, bufio.NewReader(r))
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("got %v, want truncation", err)
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func FuzzReader(f *testing.F) {
	for _, b := range fixtures(f) {
		f.Add(b)
	}
	for _, tc := range malformed() {
		f.Add([]byte(tc.nar))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := copyArchive(b)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v does not match ErrFormat", err)
			}
			return
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("accepted archive re-encodes differently")
		}
	})
}

func jsonValid(s string) bool { return json.Valid([]byte(s)) }

// unescapeJSONForTest decodes a JSON string literal, turning \udcXX back
// into the raw byte XX as the surrogateescape convention says.
func unescapeJSONForTest(t *testing.T, s string) string {
	t.Helper()
	s = s[1 : len(s)-1]
	var b []byte
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b = append(b, s[i])
			continue
		}
		i++
		switch s[i] {
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			v, err := strconv.ParseUint(s[i+1:i+5], 16, 32)
			if err != nil {
				t.Fatal(err)
			}
			if v >= 0xdc80 && v <= 0xdcff {
				b = append(b, byte(v))
			} else {
				b = utf8.AppendRune(b, rune(v))
			}
			i += 4
		default:
			b = append(b, s[i])
		}
	}
	return string(b)
}
