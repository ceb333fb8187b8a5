package api

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type stubBackend struct{}

func (stubBackend) Hash(_ context.Context, p string, _ View, _ bool) (Hash, error) {
	if p == "/missing" {
		return Hash{}, Errorf(http.StatusNotFound, "hash %s: no such file or directory", p)
	}
	return Hash{Path: p, Source: "cache", NARSize: 112}, nil
}
func (stubBackend) Roots(context.Context) ([]Root, error) { return nil, nil }
func (stubBackend) AddRoot(_ context.Context, p string, _ RootOptions) (Root, error) {
	return Root{Path: p}, nil
}
func (stubBackend) RemoveRoot(context.Context, string) error { return nil }
func (stubBackend) Status(context.Context) (Status, error) {
	return Status{Version: "test", PID: 1}, nil
}
func (stubBackend) Subscribe(ctx context.Context, p string, _ View, send func(Hash) error) error {
	return send(Hash{Path: p, NARSize: 112})
}

// serve runs the handler with the test's own credentials, as if over the
// socket.
func serve(h http.Handler, req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	ctx := context.WithValue(req.Context(), peerKey{}, ucred{Uid: uint32(os.Getuid())})
	h.ServeHTTP(rec, req.WithContext(ctx))
	return rec
}

func TestHandlerErrors(t *testing.T) {
	h := NewHandler(stubBackend{})
	for _, tc := range []struct {
		method, url string
		code        int
		want        string
	}{
		{"GET", "/v1/hash?path=/a", 200, `"path":"/a"`},
		{"GET", "/v1/hash", 400, "missing ?path="},
		{"GET", "/v1/hash?path=relative", 400, "not absolute"},
		{"GET", "/v1/hash?path=/a&format=base58", 400, "unknown hash format"},
		{"GET", "/v1/hash?path=/a&view=svn", 400, "unknown view"},
		{"GET", "/v1/subscribe?path=/a&view=svn", 400, "unknown view"},
		{"GET", "/v1/hash?path=/missing", 404, "no such file"},
		{"GET", "/v2/hash", 404, "no route"},
		{"PUT", "/v1/roots", 404, "no route"},
		{"POST", "/v1/roots", 400, "body must be"},
		{"GET", "/v1/status", 200, `"pid":1`},
		{"GET", "/v1/subscribe?path=/a", 200, `"path":"/a"`},
		{"GET", "/v1/hash?path=/a%00b", 400, "NUL byte"},
		{"GET", "/v1/subscribe?path=/a%00", 400, "NUL byte"},
		{"DELETE", "/v1/roots?path=/r%00", 400, "NUL byte"},
		{"POST", "/v1/roots", 400, "NUL byte"},
		{"GET", "/v1/hash?path=/" + strings.Repeat("x", 5000), 400, "longer than the system allows"},
		{"GET", "/v1/hash?path=/a/./b//c/", 200, `"path":"/a/b/c/"`},
		{"GET", "/v1/hash?path=/a/link/.", 200, `"path":"/a/link/"`},
		{"GET", "/v1/hash?path=/a/link/../g", 200, `"path":"/a/link/../g"`},
		{"GET", "/v1/hash?path=%zz", 400, "bad query"},
		{"GET", "/v1/hash?path=/a/%FF%C3", 200, `"path":"/a/\udcff\udcc3"`},
	} {
		if tc.method == "POST" && tc.want == "NUL byte" {
			rec := serve(h, httptest.NewRequest("POST", "/v1/roots", strings.NewReader(`{"path":"/a\u0000b"}`)))
			if rec.Code != 400 || !strings.Contains(rec.Body.String(), tc.want) {
				t.Errorf("POST a root with a NUL: %d %s", rec.Code, rec.Body)
			}
			continue
		}
		rec := serve(h, httptest.NewRequest(tc.method, tc.url, nil))
		if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.want) {
			t.Errorf("%s %s: %d %s; want %d and %q", tc.method, Quote(tc.url), rec.Code, Quote(rec.Body.String()), tc.code, tc.want)
		}
		if rec.Body.Len() > 1024 {
			t.Errorf("%s %s: an answer of %d bytes: long paths must be shortened in messages", tc.method, Quote(tc.url), rec.Body.Len())
		}
		if rec.Code >= 400 {
			var e map[string]string
			if json.Unmarshal(rec.Body.Bytes(), &e) != nil || e["error"] == "" {
				t.Errorf("%s %s: error body %q is not {\"error\": …}", tc.method, tc.url, rec.Body)
			}
		}
	}
	// Without peer credentials (not over the socket), nothing is answered.
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/status", nil))
	if rec.Code != http.StatusForbidden {
		t.Errorf("no credentials: %d", rec.Code)
	}
}

func TestListen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	sock := filepath.Join(dir, "s.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Errorf("socket directory mode %v", st.Mode().Perm())
	}
	go http.Serve(l, NewHandler(stubBackend{}))
	if _, err := Listen(sock); !errors.Is(err, ErrRunning) {
		t.Errorf("second listener: %v, want ErrRunning", err)
	}
	// Someone else's socket at the path is not removed by our Close.
	l.Close()
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Error("Close left our socket behind")
	}
	other, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	other.SetUnlinkOnClose(false)
	l2, err := Listen(sock + "2")
	if err != nil {
		t.Fatal(err)
	}
	os.Rename(sock, sock+"2") // replace l2's socket file with another one
	l2.Close()
	if _, err := os.Lstat(sock + "2"); err != nil {
		t.Error("Close removed a socket that was not its own")
	}
	other.Close()
	// A stale socket (nothing answers) is replaced.
	if l3, err := Listen(sock + "2"); err != nil {
		t.Errorf("stale socket: %v", err)
	} else {
		l3.Close()
	}
}

func TestClientNotRunning(t *testing.T) {
	c := &Client{Socket: filepath.Join(t.TempDir(), "none.sock")}
	_, err := c.Status(context.Background())
	if !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), c.Socket) {
		t.Fatalf("got %v", err)
	}
}

// FuzzQuery sends arbitrary paths and queries to the handler: it must
// answer every one with a status and, for errors, a JSON error; never panic.
func FuzzQuery(f *testing.F) {
	for _, s := range []string{"/v1/hash?path=/a", "/v1/hash?path=%00", "/v1/subscribe?path=/x&format=sri", "/v1/roots?path=..", "/v1/hash?path=/a&watch=1&format="} {
		f.Add("GET", s)
	}
	f.Add("DELETE", "/v1/roots?path=/a/../b")
	h := NewHandler(stubBackend{})
	f.Fuzz(func(t *testing.T, method, url string) {
		req, err := http.NewRequest(method, "http://narhashd"+url, nil)
		if err != nil || !strings.HasPrefix(url, "/") {
			return
		}
		rec := serve(h, req)
		if rec.Code >= 400 && !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s %s: %d with a body that is not JSON: %q", method, url, rec.Code, rec.Body)
		}
	})
}
