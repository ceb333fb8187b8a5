package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/narhash/narhash/hasher"
)

// NewHandler serves b under /v1/. Connections must carry their peer's
// credentials in their context (see ConnContext): only the server's own
// user and root are answered.
func NewHandler(b Backend) http.Handler { return newHandler(b, nil) }

func newHandler(b Backend, stop <-chan struct{}) http.Handler {
	h := &handler{b: b, stop: stop}
	mux := http.NewServeMux()
	// The route table, sorted by path.
	mux.HandleFunc("GET /v1/hash", h.hash)
	mux.HandleFunc("GET /v1/roots", h.roots)
	mux.HandleFunc("POST /v1/roots", h.addRoot)
	mux.HandleFunc("DELETE /v1/roots", h.removeRoot)
	mux.HandleFunc("GET /v1/status", h.status)
	mux.HandleFunc("GET /v1/subscribe", h.subscribe)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, Errorf(http.StatusNotFound, "no route %s %s: see /v1/status, /v1/hash, /v1/roots, /v1/subscribe", r.Method, r.URL.Path))
	})
	return h.checkPeer(mux)
}

type handler struct {
	b    Backend
	stop <-chan struct{} // closed when the server shuts down
}

func (h *handler) stopping() bool {
	select {
	case <-h.stop:
		return true
	default:
		return false
	}
}

type peerKey struct{}

// ConnContext records the peer credentials of a Unix socket connection,
// for http.Server.ConnContext.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if lc, isOurs := c.(*conn); isOurs {
		uc, ok = lc.UnixConn, true
	}
	if !ok {
		return ctx
	}
	cred, err := peerCred(uc)
	if err != nil {
		return ctx
	}
	return context.WithValue(ctx, peerKey{}, *cred)
}

func (h *handler) checkPeer(next http.Handler) http.Handler {
	me := os.Getuid()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cred, ok := r.Context().Value(peerKey{}).(ucred)
		if !ok {
			writeError(w, Errorf(http.StatusForbidden, "narhashd answers only on its Unix socket, to its own user"))
			return
		}
		if int(cred.Uid) != me && cred.Uid != 0 {
			writeError(w, Errorf(http.StatusForbidden, "narhashd runs as uid %d and answers only that user and root, not uid %d: run your own narhashd", me, cred.Uid))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// pathParam returns the path query parameter, checked by checkPath.
func pathParam(r *http.Request) (string, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return "", Errorf(http.StatusBadRequest, "bad query string: %v", clipErr(err))
	}
	p, ok := q["path"]
	if !ok || p[0] == "" {
		return "", Errorf(http.StatusBadRequest, "missing ?path=")
	}
	return checkPath(p[0])
}

// pathMax is the longest path the kernel takes (PATH_MAX, with its NUL).
const pathMax = 4096

// checkPath refuses a path no file can have: relative, with a NUL byte,
// or longer than PATH_MAX. It cleans "." and "//", and keeps "..": after
// a symlink, ".." is the parent of its target, which only the daemon
// can find. A trailing slash is kept, and a trailing "." becomes one:
// either follows a symlink.
func checkPath(p string) (string, error) {
	switch {
	case !filepath.IsAbs(p):
		return "", Errorf(http.StatusBadRequest, "path %s is not absolute: the daemon does not know the client's working directory", Quote(p))
	case strings.IndexByte(p, 0) >= 0:
		return "", Errorf(http.StatusBadRequest, "path %s has a NUL byte, which no file name can have", Quote(p))
	case len(p) >= pathMax:
		return "", Errorf(http.StatusBadRequest, "path %s is %d bytes, longer than the system allows (PATH_MAX, %d)", Quote(p), len(p), pathMax)
	}
	var b strings.Builder
	for i, c := range strings.Split(p, "/") {
		if (c == "" || c == ".") && i > 0 {
			continue
		}
		if i > 0 {
			b.WriteByte('/')
		}
		b.WriteString(c)
	}
	out := b.String()
	if out == "" {
		out = "/"
	}
	if last := p[strings.LastIndexByte(p, '/')+1:]; (last == "" || last == ".") && out != "/" {
		out += "/" // a trailing slash follows a symlink
	}
	return out, nil
}

// Quote quotes a path for a message, shortened to its first and last
// 100 bytes if it is long; bytes that are not UTF-8 are escaped.
func Quote(p string) string {
	if len(p) > 256 {
		return fmt.Sprintf("%q…(%d bytes)…%q", p[:100], len(p)-200, p[len(p)-100:])
	}
	return strconv.Quote(p)
}

// clipErr shortens the message of an error that quotes a long input.
func clipErr(err error) error {
	if msg := err.Error(); len(msg) > 512 {
		return fmt.Errorf("%s…(%d bytes)…%s", msg[:200], len(msg)-400, msg[len(msg)-200:])
	}
	return err
}

func formatParam(r *http.Request) (hasher.Format, error) {
	f := r.URL.Query().Get("format")
	if f == "" {
		return hasher.Nix32, nil
	}
	format, err := hasher.ParseFormat(f)
	if err != nil {
		return 0, Errorf(http.StatusBadRequest, "%v", err)
	}
	return format, nil
}

func pathAndFormat(r *http.Request) (string, hasher.Format, error) {
	path, err := pathParam(r)
	if err != nil {
		return "", 0, err
	}
	format, err := formatParam(r)
	return path, format, err
}

func viewParam(r *http.Request) (View, error) { return ParseView(r.URL.Query().Get("view")) }

// Result turns a Hash into its wire form, in format f.
func Result(h Hash, f hasher.Format) HashResult {
	if h.Failed != "" {
		return HashResult{Path: h.Path, View: h.View, Root: h.Root, Epoch: h.Epoch, Degraded: h.Degraded, Failed: h.Failed}
	}
	return HashResult{
		Path: h.Path, View: h.View, Hash: hasher.Hash{Algo: hasher.SHA256, Digest: h.Digest[:]}.Format(f),
		Algo: "sha256", Format: f.String(), NARSize: h.NARSize, Root: h.Root, Source: h.Source,
		Computed: h.Computed, TookMS: float64(h.Took.Microseconds()) / 1000, Epoch: h.Epoch, Degraded: h.Degraded,
	}
}

func (h *handler) hash(w http.ResponseWriter, r *http.Request) {
	path, format, err := pathAndFormat(r)
	if err != nil {
		writeError(w, err)
		return
	}
	view, err := viewParam(r)
	if err != nil {
		writeError(w, err)
		return
	}
	res, err := h.b.Hash(r.Context(), path, view, r.URL.Query().Get("watch") == "1")
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, Result(res, format))
}

func (h *handler) roots(w http.ResponseWriter, r *http.Request) {
	roots, err := h.b.Roots(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	if roots == nil {
		roots = []Root{}
	}
	writeJSON(w, roots)
}

func (h *handler) addRoot(w http.ResponseWriter, r *http.Request) {
	var req rootRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
		writeError(w, Errorf(http.StatusBadRequest, "body must be {\"path\": \"/abs/path\"}: %v", clipErr(err)))
		return
	}
	path, err := checkPath(req.Path)
	if err != nil {
		writeError(w, err)
		return
	}
	root, err := h.b.AddRoot(r.Context(), path, req.RootOptions)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, root)
}

func (h *handler) removeRoot(w http.ResponseWriter, r *http.Request) {
	path, err := pathParam(r)
	if err != nil {
		writeError(w, err)
		return
	}
	if err := h.b.RemoveRoot(r.Context(), path); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, map[string]string{"removed": path})
}

func (h *handler) status(w http.ResponseWriter, r *http.Request) {
	st, err := h.b.Status(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, st)
}

func (h *handler) subscribe(w http.ResponseWriter, r *http.Request) {
	path, format, err := pathAndFormat(r)
	if err != nil {
		writeError(w, err)
		return
	}
	view, err := viewParam(r)
	if err != nil {
		writeError(w, err)
		return
	}
	// A stream has no read deadline; each line must be taken by the
	// client within writeTimeout.
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Time{})
	started := false
	enc := json.NewEncoder(w)
	err = h.b.Subscribe(r.Context(), path, view, func(hh Hash) error {
		if !started {
			w.Header().Set("Content-Type", "application/x-ndjson")
			started = true
		}
		rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		if err := enc.Encode(Result(hh, format)); err != nil {
			return err
		}
		return rc.Flush()
	})
	if h.stopping() {
		err = Errorf(http.StatusServiceUnavailable, "narhashd is shutting down")
	}
	switch {
	case err == nil || errors.Is(err, context.Canceled):
		// The client left.
	case !started:
		writeError(w, err)
	default:
		// The stream ends with a line saying why, then a clean end.
		rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		enc.Encode(map[string]string{"error": fmt.Sprint(err)})
		rc.Flush()
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	var e *Error
	if errors.As(err, &e) {
		code = e.Code
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": fmt.Sprint(err)})
}
