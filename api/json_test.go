package api

import (
	"context"
	"encoding/json"
	"reflect"
	"regexp"
	"testing"
	"time"
)

// TestPathsRoundTrip: a path that is not UTF-8 comes back from the JSON
// narhashd writes byte for byte, in a hash and in a root.
func TestPathsRoundTrip(t *testing.T) {
	for _, p := range []string{
		"/src",
		"/a/\xff\xc3",            // not UTF-8: \udcff\udcc3
		"/a/\xed\xa0\x80",        // a surrogate encoded as UTF-8: not UTF-8 either
		"/a/é😀\u2028",            // UTF-8, written as it is
		"/a/\"q\"\\\n\t\x01\x7f", // escaped as JSON escapes them
		`/a/\udcff`,              // the escape's text, in a name
		"/a/\xdc\xff",
	} {
		h := HashResult{Path: p, View: ViewGit, Hash: "h", Algo: "sha256", NARSize: 112, Root: p + "/..", Computed: time.Unix(7, 0).UTC(), Epoch: 3}
		b, err := json.Marshal(h)
		if err != nil {
			t.Fatal(err)
		}
		var got HashResult
		if err := json.Unmarshal(b, &got); err != nil || got != h {
			t.Errorf("%q: %s read back as %+v (%v), want %+v", p, b, got, err, h)
		}
		st := Status{PID: 1, Roots: []Root{{Path: p, State: "clean", Watches: 2}}}
		if b, err = json.Marshal(st); err != nil {
			t.Fatal(err)
		}
		var gotSt Status
		if err := json.Unmarshal(b, &gotSt); err != nil || !reflect.DeepEqual(gotSt, st) {
			t.Errorf("%q: %s read back as %+v (%v), want %+v", p, b, gotSt, err, st)
		}
	}
}

// TestClientPathNotUTF8: the client gets a path that is not UTF-8 back
// from narhashd as it is, in a hash and in a root.
func TestClientPathNotUTF8(t *testing.T) {
	c := &Client{Socket: serveStub(t)}
	const p = "/a/\xff\xc3b"
	if res, err := c.Hash(context.Background(), p, "", false); err != nil || res.Path != p {
		t.Errorf("hash %q: path %q (%v)", p, res.Path, err)
	}
	if r, err := c.AddRoot(context.Background(), p); err != nil || r.Path != p {
		t.Errorf("add root %q: path %q (%v)", p, r.Path, err)
	}
}

// TestUnmarshalPath: what is not one of narhashd's escapes is read as
// encoding/json reads it.
func TestUnmarshalPath(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		bad      bool
	}{
		{`{"path":"/a/\ud83d\ude00"}`, "/a/😀", false},          // a surrogate pair
		{`{"path":"/a/\ud83d\udcff"}`, "/a/\U0001f4ff", false}, // a pair, though its second half is one of ours
		{`{"path":"/a/\udc41"}`, "/a/\ufffd", false},           // a lone surrogate not ours
		{`{"path":"/a/\ud83d"}`, "/a/\ufffd", false},           // a lone high surrogate
		{`{"path":"/a/\u00e9\/\b\f\r"}`, "/a/é/\b\f\r", false},
		{`{"path":"/a/\uDCFF"}`, "/a/\xff", false},
		{"{\"path\":\"/a/\xff\\n\"}", "/a/\ufffd\n", false}, // a byte of the JSON text that is not UTF-8
		{`{"path":null}`, "/old", false},
		{`{"epoch":1}`, "/old", false},
		{`{"path":7}`, "", true},
	} {
		h, r := HashResult{Path: "/old"}, Root{Path: "/old"}
		errH, errR := json.Unmarshal([]byte(tc.in), &h), json.Unmarshal([]byte(tc.in), &r)
		for _, got := range []struct {
			path string
			err  error
		}{{h.Path, errH}, {r.Path, errR}} {
			if (got.err != nil) != tc.bad || !tc.bad && got.path != tc.want {
				t.Errorf("%s: %q (%v), want %q", tc.in, got.path, got.err, tc.want)
			}
		}
	}
	var h HashResult
	if err := json.Unmarshal([]byte(`{"path":"/a","root":"/\udcfe","epoch":2,"failed":"x"}`), &h); err != nil || h != (HashResult{Path: "/a", Root: "/\xfe", Epoch: 2, Failed: "x"}) {
		t.Errorf("a failure: %+v (%v)", h, err)
	}
}

// FuzzPathJSON: every path comes back from its JSON as it was, and no
// JSON makes reading a result panic.
func FuzzPathJSON(f *testing.F) {
	f.Add("/a/\xff\xc3", []byte(`{"path":"/a/\udcff\ud83d\ude00\ud83d","root":"\\udc"}`))
	f.Add("/\xed\xa0\x80\\udcff", []byte(`{"path":"\uDC80\n"}`))
	f.Fuzz(func(t *testing.T, p string, in []byte) {
		b, err := json.Marshal(HashResult{Path: p, Root: p})
		if err != nil {
			t.Fatal(err)
		}
		var got HashResult
		if err := json.Unmarshal(b, &got); err != nil || got.Path != p || got.Root != p {
			t.Fatalf("%q: %s read back as %q, %q (%v)", p, b, got.Path, got.Root, err)
		}
		// Without an escape that may be one of ours, a path reads as
		// encoding/json reads a string.
		var std struct {
			Path string `json:"path"`
		}
		var r Root
		err = json.Unmarshal(in, &r)
		if json.Unmarshal(in, &std) == nil && !ours.Match(in) && (err != nil || r.Path != std.Path) {
			t.Fatalf("%s: read as %q (%v), encoding/json reads %q", in, r.Path, err, std.Path)
		}
		json.Unmarshal(in, &got)
	})
}

// ours matches what may be an escape of a byte that is not UTF-8.
var ours = regexp.MustCompile(`(?i)\\udc[89a-f]`)
