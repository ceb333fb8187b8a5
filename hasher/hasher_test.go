package hasher

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/narhash/narhash/nar"
	"github.com/narhash/narhash/nar/nartest"
	"golang.org/x/sys/unix"
)

func TestNix32Vectors(t *testing.T) {
	for _, tc := range []struct{ data, want string }{
		{"abc", "1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s"},
	} {
		h := Sum(SHA256, []byte(tc.data))
		if got := EncodeNix32(h.Digest); got != tc.want {
			t.Errorf("nix32(sha256(%q)) = %s, want %s", tc.data, got, tc.want)
		}
		d, err := DecodeNix32(tc.want, 32)
		if err != nil || !bytes.Equal(d, h.Digest) {
			t.Errorf("decode %s: %x, %v", tc.want, d, err)
		}
	}
	// Lengths for every size: encode then decode is the identity.
	for n := range 70 {
		b := bytes.Repeat([]byte{0xa5}, n)
		s := EncodeNix32(b)
		if len(s) != Nix32Len(n) && n > 0 {
			t.Errorf("size %d: %d characters", n, len(s))
		}
		if d, err := DecodeNix32(s, n); n > 0 && (err != nil || !bytes.Equal(d, b)) {
			t.Errorf("size %d: round trip %x %v", n, d, err)
		}
	}
}

func TestNix32Strict(t *testing.T) {
	good := "1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s"
	for name, s := range map[string]string{
		"uppercase":    strings.ToUpper(good),
		"letter e":     "e" + good[1:],
		"letter u":     good[:10] + "u" + good[11:],
		"too short":    good[1:],
		"too long":     good + "0",
		"padding bits": "2" + good[1:],
		"empty":        "",
	} {
		if _, err := DecodeNix32(s, 32); err == nil {
			t.Errorf("%s: %q decoded", name, s)
		}
	}
}

func TestParseFormats(t *testing.T) {
	h := Sum(SHA256, []byte("hello"))
	for _, f := range []Format{Nix32, Base16, Base64, SRI, Multibase} {
		s := h.Format(f)
		for _, in := range []string{s, "sha256:" + s} {
			if f == SRI || f == Multibase && strings.HasPrefix(in, "sha256:") {
				continue
			}
			got, err := Parse(in, SHA256)
			if err != nil || !got.Equal(h) {
				t.Errorf("%s: parse %q: %v %v", f, in, got, err)
			}
		}
	}
	// Spec vectors for "hello"'s NAR.
	nar := "0sg9f58l1jj88w6pdrfdpj5x9b1zrwszk84j81zvby36q9whhhqa"
	for _, in := range []string{
		nar,
		"sha256:" + nar,
		"0a430879c266f8b57f4092a0f935cf3facd48bbccde5760d4748ca405171e969",
		"0A430879C266F8B57F4092A0F935CF3FACD48BBCCDE5760D4748CA405171E969", // Nix takes upper case hex too
		"sha256:0A430879c266F8B57F4092A0F935CF3FACD48BBCCDE5760D4748CA405171E969",
		"sha256-CkMIecJm+LV/QJKg+TXPP6zUi7zN5XYNR0jKQFFx6Wk=",
		"sha256-CkMIecJm+LV/QJKg+TXPP6zUi7zN5XYNR0jKQFFx6Wk",
		"CkMIecJm+LV/QJKg+TXPP6zUi7zN5XYNR0jKQFFx6Wk=",
		"mCkMIecJm+LV/QJKg+TXPP6zUi7zN5XYNR0jKQFFx6Wk",    // multibase base64
		"mEiAKQwh5wmb4tX9AkqD5Nc8/rNSLvM3ldg1HSMpAUXHpaQ", // multihash in multibase
	} {
		h, err := Parse(in, SHA256)
		if err != nil {
			t.Errorf("parse %q: %v", in, err)
			continue
		}
		if got := h.Format(Nix32); got != nar {
			t.Errorf("parse %q = %s, want %s", in, got, nar)
		}
	}
	for _, in := range []string{
		"", "sha256-", "sha256-!!!!", "sha256:xyz", "md5:" + nar, "0A430879C266F8B57F4092A0F935CF3FACD48BBCCDE5760D4748CA405171E96G",
		"zzzz", "sha256-CkMIecJm+LV/QJKg+TXPP6zUi7zN5XYNR0jKQFFx6W=", "bAAAA",
	} {
		if h, err := Parse(in, SHA256); err == nil || !errors.Is(err, ErrSyntax) {
			t.Errorf("parse %q: got %v, %v; want ErrSyntax", in, h, err)
		}
	}
}

func TestStorePath(t *testing.T) {
	h, _ := Parse("0sg9f58l1jj88w6pdrfdpj5x9b1zrwszk84j81zvby36q9whhhqa", SHA256)
	// From testdata/hashes.txt, made by nix-store --print-fixed-path.
	got, err := StorePath("/nix/store", "hello", h, true)
	if want := "/nix/store/yqi18hzk6wxzj2ksv7x9k8rnnzwirzz9-hello"; got != want || err != nil {
		t.Errorf("got %s %v, want %s", got, err, want)
	}
	for _, bad := range []string{"", ".", "..", "a/b", "sp ace", "é", strings.Repeat("n", 212)} {
		if _, err := StorePath("/nix/store", bad, h, true); err == nil {
			t.Errorf("name %q accepted", bad)
		}
	}
	if _, err := StorePath("/nix/store", strings.Repeat("n", 211), h, true); err != nil {
		t.Errorf("211-character name: %v", err)
	}
}

// TestStoreDirCleaned: the store directory is hashed into a store path
// as Nix's canonPath leaves it, and NIX_STORE stands in for NIX_STORE_DIR.
func TestStoreDirCleaned(t *testing.T) {
	h := Sum(SHA256, []byte("x"))
	want, err := StorePath("/nix/store", "x", h, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"/nix/store/", "//nix//store", "/nix/./store/.", "/nix/var/../store"} {
		if got, err := StorePath(dir, "x", h, true); got != want || err != nil {
			t.Errorf("store dir %q: got %s %v, want %s", dir, got, err, want)
		}
	}
	if _, err := StorePath("nix/store", "x", h, true); err == nil || !strings.Contains(err.Error(), "not an absolute path") {
		t.Errorf("relative store dir: err %v, want one saying it is not absolute", err)
	}
	t.Setenv("NIX_STORE_DIR", "")
	t.Setenv("NIX_STORE", "/gnu/store")
	if d := DefaultStoreDir(); d != "/gnu/store" {
		t.Errorf("with NIX_STORE only: %q, want /gnu/store", d)
	}
	t.Setenv("NIX_STORE_DIR", "/opt/store")
	if d := DefaultStoreDir(); d != "/opt/store" {
		t.Errorf("with NIX_STORE_DIR and NIX_STORE: %q, want NIX_STORE_DIR's /opt/store", d)
	}
}

// TestStorePathNix compares every kind of store path with Nix's.
func TestStorePathNix(t *testing.T) {
	if _, err := exec.LookPath("nix-store"); err != nil {
		t.Skip("nix-store not found: install Nix (apt-get install nix-bin) to compare store paths with it")
	}
	for _, tc := range []struct {
		algo      Algo
		recursive bool
		name      string
	}{
		{SHA256, true, "source"}, {SHA256, false, "file.tar.gz"}, {SHA1, false, "x"}, {SHA512, true, "r-sha512"},
		{MD5, false, "m?d=5"}, {SHA256, true, ".dotted"}, {SHA256, true, "a+b_c-d.e"},
	} {
		h := Sum(tc.algo, []byte(tc.name))
		got, err := StorePath("/nix/store", tc.name, h, tc.recursive)
		if err != nil {
			t.Fatal(err)
		}
		args := []string{"--print-fixed-path"}
		if tc.recursive {
			args = append(args, "--recursive")
		}
		out, err := exec.Command("nix-store", append(args, tc.algo.String(), h.Format(Nix32), tc.name)...).Output()
		if err != nil {
			t.Fatalf("nix-store %v: %v", args, err)
		}
		if want := strings.TrimSpace(string(out)); got != want {
			t.Errorf("%+v: got %s, Nix says %s", tc, got, want)
		}
	}
	// The store directory as Nix's environment gives it, uncleaned.
	dir := t.TempDir()
	h := Sum(SHA256, []byte("env"))
	for _, env := range [][2]string{{"NIX_STORE_DIR", dir + "//store/"}, {"NIX_STORE", dir + "/./store"}} {
		for _, v := range []string{"NIX_STORE_DIR", "NIX_STORE"} {
			t.Setenv(v, "") // restored after the test
			os.Unsetenv(v)  // Nix 2.8 aborts on an empty one
		}
		t.Setenv(env[0], env[1])
		got, err := StorePath(DefaultStoreDir(), "env", h, true)
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("nix-store", "--print-fixed-path", "--recursive", "sha256", h.Format(Nix32), "env").Output()
		if err != nil {
			t.Fatalf("nix-store with %s=%s: %v", env[0], env[1], err)
		}
		if want := strings.TrimSpace(string(out)); got != want {
			t.Errorf("%s=%s: got %s, Nix says %s", env[0], env[1], got, want)
		}
	}
}

func TestHashPathRetriesThenGivesUp(t *testing.T) {
	root := nartest.TempDir(t)
	b := &nartest.Builder{Root: root}
	b.File("f", []byte("x"), 0o644)
	if b.Err != nil {
		t.Fatal(b.Err)
	}
	res, err := HashPath(context.Background(), root, nil)
	if err != nil || res.NARSize == 0 {
		t.Fatal(res, err)
	}
	if _, err := HashPath(context.Background(), filepath.Join(root, "missing"), nil); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing path: %v", err)
	}
	var _ = nar.ErrChanged
}

// TestHashFileTorn: a same-size rewrite with the old mtime restored
// changes only ctime, which HashFile must notice.
func TestHashFileTorn(t *testing.T) {
	dir := nartest.TempDir(t)
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("12345678"), 0o644); err != nil {
		t.Fatal(err)
	}
	var before, after unix.Stat_t
	if err := unix.Stat(p, &before); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(p, []byte("abcdefgh"), 0o644)
	mtime := time.Unix(before.Mtim.Unix())
	os.Chtimes(p, mtime, mtime)
	if err := unix.Stat(p, &after); err != nil {
		t.Fatal(err)
	}
	if !nar.StatChanged(&before, &after) {
		t.Fatal("a same-size rewrite with the old mtime restored went unnoticed")
	}
	if nar.StatChanged(&after, &after) {
		t.Fatal("an unchanged file counts as changed")
	}
	if _, _, err := HashFile(context.Background(), p, SHA256); err != nil {
		t.Fatal(err)
	}
}

func FuzzParse(f *testing.F) {
	h := Sum(SHA256, []byte("seed"))
	for _, fm := range []Format{Nix32, Base16, Base64, SRI, Multibase} {
		f.Add(h.Format(fm))
	}
	f.Add("sha512:" + Sum(SHA512, nil).Format(Nix32))
	f.Fuzz(func(t *testing.T, s string) {
		h, err := Parse(s, SHA256)
		if err != nil {
			return
		}
		if len(h.Digest) != h.Algo.Size() {
			t.Fatalf("%q parsed to a %d-byte %s digest", s, len(h.Digest), h.Algo)
		}
		for _, fm := range []Format{Nix32, Base16, Base64, SRI} {
			out := h.Format(fm)
			if fm != SRI {
				out = h.Algo.String() + ":" + out
			}
			back, err := Parse(out, SHA256)
			if err != nil || !back.Equal(h) {
				t.Fatalf("%q -> %s %q -> %v %v", s, fm, out, back, err)
			}
		}
	})
}
