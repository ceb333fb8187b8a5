package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"

	"github.com/narhash/narhash/hasher"
	"golang.org/x/sys/unix"
)

// NewHandler serves b under /v1/. Connections must carry their peer's
// credentials in their context (see ConnContext): only the server's own
// user and root are answered.
func NewHandler(b Backend) http.Handler {
	h := &handler{b: b}
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

type handler struct{ b Backend }

type peerKey struct{}

// ConnContext records the peer credentials of a Unix socket connection,
// for http.Server.ConnContext.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ctx
	}
	var cred *unix.Ucred
	raw.Control(func(fd uintptr) { cred, _ = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) })
	if cred == nil {
		return ctx
	}
	return context.WithValue(ctx, peerKey{}, *cred)
}

func (h *handler) checkPeer(next http.Handler) http.Handler {
	me := os.Getuid()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cred, ok := r.Context().Value(peerKey{}).(unix.Ucred)
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

// pathParam returns the path query parameter, made absolute.
func pathParam(r *http.Request) (string, error) {
	p := r.URL.Query().Get("path")
	if p == "" {
		return "", Errorf(http.StatusBadRequest, "missing ?path=")
	}
	if !filepath.IsAbs(p) {
		return "", Errorf(http.StatusBadRequest, "path %q is not absolute: the daemon does not know the client's working directory", p)
	}
	return filepath.Clean(p), nil
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

// Result turns a Hash into its wire form, in format f.
func Result(h Hash, f hasher.Format) HashResult {
	return HashResult{
		Path: h.Path, Hash: hasher.Hash{Algo: hasher.SHA256, Digest: h.Digest[:]}.Format(f),
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
	res, err := h.b.Hash(r.Context(), path, r.URL.Query().Get("watch") == "1")
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
	var req struct {
		Path string `json:"path"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
		writeError(w, Errorf(http.StatusBadRequest, "body must be {\"path\": \"/abs/path\"}: %v", err))
		return
	}
	if !filepath.IsAbs(req.Path) {
		writeError(w, Errorf(http.StatusBadRequest, "path %q is not absolute", req.Path))
		return
	}
	root, err := h.b.AddRoot(r.Context(), filepath.Clean(req.Path))
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
	flusher, _ := w.(http.Flusher)
	started := false
	enc := json.NewEncoder(w)
	err = h.b.Subscribe(r.Context(), path, func(hh Hash) error {
		if !started {
			w.Header().Set("Content-Type", "application/x-ndjson")
			started = true
		}
		if err := enc.Encode(Result(hh, format)); err != nil {
			return err
		}
		if flusher != nil {
			flusher.Flush()
		}
		return nil
	})
	if err != nil && !started && !errors.Is(err, context.Canceled) {
		writeError(w, err)
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
