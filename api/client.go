package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/narhash/narhash/hasher"
)

// A Client talks to narhashd. The zero value uses DefaultSocket.
//
// Before it sends anything, it checks that the server is the user's own:
// the socket's directory belongs to the user and is not writable by
// others (unless sticky), the socket belongs to the user (or root), and
// the process answering runs as the user or root (SO_PEERCRED).
// Otherwise it refuses, with ErrUntrusted, saying what it found.
type Client struct {
	// Socket is the daemon's socket; "" means DefaultSocket().
	Socket string
	// Timeout bounds each request but a subscription's stream (0: 5
	// minutes: a first hash of a large tree takes a while). A daemon that
	// does not answer in time gets an error saying so, not a hang.
	Timeout time.Duration

	once sync.Once
	http *http.Client
}

func (c *Client) socket() string {
	if c.Socket != "" {
		return c.Socket
	}
	return DefaultSocket()
}

func (c *Client) client() *http.Client {
	c.once.Do(func() {
		sock := c.socket()
		c.http = &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return dialTrusted(ctx, sock)
			},
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     30 * time.Second,
		}}
	})
	return c.http
}

// Hash asks for the NAR hash of the absolute path, printed in format
// ("" for nix32). With watch, the path becomes a watched root.
func (c *Client) Hash(ctx context.Context, path, format string, watch bool) (HashResult, error) {
	return c.HashView(ctx, path, ViewTree, format, watch)
}

// HashView is Hash of a view of the path: ViewGit for its git view. An
// answer for another view (a narhashd older than view=git answers for the
// whole tree) fails with ErrTooOld; one for another path than path, as
// the daemon reads it, with ErrNotNarhashd.
func (c *Client) HashView(ctx context.Context, path string, view View, format string, watch bool) (HashResult, error) {
	q := url.Values{"path": {path}}
	if format != "" {
		q.Set("format", format)
	}
	if view != ViewTree {
		q.Set("view", string(view))
	}
	if watch {
		q.Set("watch", "1")
	}
	var res HashResult
	req := "/v1/hash?" + q.Encode()
	if err := c.do(ctx, http.MethodGet, req, nil, &res); err != nil {
		return HashResult{}, err
	}
	if why := res.invalid(format); why != "" {
		return HashResult{}, c.notNarhashd(http.MethodGet, req, why)
	}
	if res.View != view {
		return HashResult{}, c.otherView(http.MethodGet, req, view, res.View)
	}
	if !answers(path, res.Path) {
		return HashResult{}, c.notNarhashd(http.MethodGet, req, otherPath(path, res.Path))
	}
	return res, nil
}

// Roots lists the watched roots.
func (c *Client) Roots(ctx context.Context) ([]Root, error) {
	var rs roots
	err := c.do(ctx, http.MethodGet, "/v1/roots", nil, &rs)
	return rs, err
}

// AddRoot starts watching the absolute path.
func (c *Client) AddRoot(ctx context.Context, path string) (Root, error) {
	return c.AddRootWith(ctx, path, RootOptions{})
}

// AddRootWith starts watching the absolute path, as opt says.
func (c *Client) AddRootWith(ctx context.Context, path string, opt RootOptions) (Root, error) {
	var root Root
	body, err := withPaths(json.Marshal(rootRequest{RootOptions: opt}))(path, "")
	if err != nil {
		return Root{}, err
	}
	err = c.do(ctx, http.MethodPost, "/v1/roots", body, &root)
	return root, err
}

// RemoveRoot stops watching the absolute path.
func (c *Client) RemoveRoot(ctx context.Context, path string) error {
	return c.do(ctx, http.MethodDelete, "/v1/roots?"+url.Values{"path": {path}}.Encode(), nil, nil)
}

// Status returns the daemon's state.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.do(ctx, http.MethodGet, "/v1/status", nil, &st)
	return st, err
}

// Subscribe calls fn with the current hash of path and every new one,
// until ctx is done, fn fails or the daemon goes away. When a change
// leaves the path impossible to hash, fn gets a HashResult with Failed
// set and no hash; the next hash follows once a change mends it, even
// if it is the one sent before.
func (c *Client) Subscribe(ctx context.Context, path, format string, fn func(HashResult) error) error {
	return c.SubscribeView(ctx, path, ViewTree, format, fn)
}

// SubscribeView is Subscribe to a view of the path: ViewGit for its git
// view. Its answers are checked as HashView's are, and each must be for
// the path of the first.
func (c *Client) SubscribeView(ctx context.Context, path string, view View, format string, fn func(HashResult) error) error {
	q := url.Values{"path": {path}}
	if format != "" {
		q.Set("format", format)
	}
	if view != ViewTree {
		q.Set("view", string(view))
	}
	const req = "/v1/subscribe"
	resp, err := c.request(ctx, http.MethodGet, req+"?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	first := ""
	for sc.Scan() {
		// The last line may be an error instead of a hash. (A struct
		// embedding HashResult would take its UnmarshalJSON, and drop
		// the error.)
		var end struct {
			Error string `json:"error"`
		}
		if err := json.Unmarshal(sc.Bytes(), &end); err != nil {
			return c.notNarhashd(http.MethodGet, req, fmt.Sprintf("a line that is not JSON (%v)", err))
		}
		if end.Error != "" {
			return fmt.Errorf("narhashd ended the subscription: %s", end.Error)
		}
		var res HashResult
		if err := json.Unmarshal(sc.Bytes(), &res); err != nil {
			return c.notNarhashd(http.MethodGet, req, fmt.Sprintf("a line that is not its JSON (%v)", err))
		}
		if res.Failed == "" {
			if why := res.invalid(format); why != "" {
				return c.notNarhashd(http.MethodGet, req, why)
			}
		} else if !filepath.IsAbs(res.Path) || res.Hash != "" {
			return c.notNarhashd(http.MethodGet, req, fmt.Sprintf("a failure with a hash or without a path (%q, %q)", res.Hash, res.Path))
		}
		if res.View != view {
			return c.otherView(http.MethodGet, req, view, res.View)
		}
		switch {
		case first == "" && !answers(path, res.Path):
			return c.notNarhashd(http.MethodGet, req, otherPath(path, res.Path))
		case first == "":
			first = res.Path
		case res.Path != first:
			return c.notNarhashd(http.MethodGet, req, fmt.Sprintf("a line for another path, %s, after one for %s", Quote(res.Path), Quote(first)))
		}
		if err := fn(res); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return errors.New("narhashd closed the subscription (it stopped?)")
}

func (c *Client) do(ctx context.Context, method, path string, body []byte, out any) error {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, fmt.Errorf("%w %s %s within %v (on %s): it may be stuck; see its log, or restart it", ErrTimeout, method, pathOnly(path), timeout, c.socket()))
	defer cancel()
	resp, err := c.request(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer))
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxAnswer)).Decode(out); err != nil {
		if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
			return cause
		}
		return c.notNarhashd(method, path, fmt.Sprintf("something that is not its JSON (%v)", err))
	}
	if v, ok := out.(interface{ invalid() string }); ok {
		if why := v.invalid(); why != "" {
			return c.notNarhashd(method, path, why)
		}
	}
	return nil
}

// maxAnswer bounds what the client reads of an answer: far more than
// narhashd's status with thousands of roots, far less than would hurt.
const maxAnswer = 64 << 20

// notNarhashd is the error for an answer narhashd never gives: another
// program listens on the socket (run by the user, or the client would
// have refused it), or something broke narhashd's answer on the way.
// Nothing in such an answer is passed on.
func (c *Client) notNarhashd(method, path, what string) error {
	return fmt.Errorf("%w: the server on %s answered %s %s with %s; is another program listening on that socket? Stop it and start narhashd, or point NARHASHD_SOCKET (or --socket) at narhashd's socket",
		ErrNotNarhashd, c.socket(), method, pathOnly(path), what)
}

// otherView is the error for an answer for another view than asked: a
// narhashd older than view=git answers for the whole tree.
func (c *Client) otherView(method, path string, asked, got View) error {
	if asked == ViewTree || got != ViewTree {
		return c.notNarhashd(method, path, fmt.Sprintf("the hash of view %q, not of view %q as asked", got, asked))
	}
	return fmt.Errorf("%w: narhashd on %s answered %s %s with the whole tree's hash, not the %s view's (it does not know view=%s): restart narhashd, so that the one running is the one installed",
		ErrTooOld, c.socket(), method, pathOnly(path), asked, asked)
}

// answers reports whether an answer for got answers a query for path.
// The handler cleans path ("." and "//", see checkPath); the daemon then
// reads it as the kernel does: through a symlink on the way, ".." after
// a symlink from its target, a trailing slash after one into it; and it
// answers for where that leads. So got is path cleaned, or names the
// same file as path does now.
func answers(path, got string) bool {
	if clean, err := checkPath(path); got == path || err == nil && got == clean {
		return true
	}
	want, err := os.Lstat(path)
	if err != nil {
		return false
	}
	st, err := os.Lstat(got)
	return err == nil && os.SameFile(want, st)
}

// otherPath is what an answer for another path than asked is.
func otherPath(asked, got string) string {
	return fmt.Sprintf("the hash of another path, %s, not of %s as asked", Quote(got), Quote(asked))
}

// invalid says what, in a hash answer, narhashd never sends ("" if
// nothing): it sends a SHA-256 digest in the format asked for ("" is
// nix32), the NAR's size (never 0: the smallest archive, an empty
// file's, has 112 bytes), and an absolute path.
func (r *HashResult) invalid(format string) string {
	f := hasher.Nix32
	if format != "" {
		var err error
		if f, err = hasher.ParseFormat(format); err != nil {
			return "" // the daemon refuses the request: not reached
		}
	}
	h, err := hasher.Parse(r.Hash, hasher.SHA256)
	switch {
	case err != nil:
		return fmt.Sprintf("a hash that is not one (%q)", r.Hash)
	case h.Algo != hasher.SHA256 || r.Algo != "sha256":
		return fmt.Sprintf("a hash that is not SHA-256 (%q, algorithm %q)", r.Hash, r.Algo)
	case h.Format(f) != r.Hash:
		return fmt.Sprintf("a hash that is not in the format asked for, %s (%q)", f, r.Hash)
	case r.NARSize <= 0:
		return fmt.Sprintf("a NAR size of %d bytes", r.NARSize)
	case !filepath.IsAbs(r.Path):
		return fmt.Sprintf("a path that is not absolute (%q)", r.Path)
	}
	return ""
}

func (s *Status) invalid() string {
	if s.PID <= 0 { // a narhashd older than Version has no version, but a PID
		return "a status without narhashd's process ID"
	}
	for i := range s.Roots {
		if why := s.Roots[i].invalid(); why != "" {
			return why
		}
	}
	return ""
}

func (r *Root) invalid() string {
	if !filepath.IsAbs(r.Path) {
		return fmt.Sprintf("a root whose path is not absolute (%q)", r.Path)
	}
	return ""
}

// roots is the answer to GET /v1/roots.
type roots []Root

func (rs *roots) invalid() string {
	for i := range *rs {
		if why := (*rs)[i].invalid(); why != "" {
			return why
		}
	}
	return ""
}

// pathOnly drops a request's query, which may be long, for a message.
func pathOnly(p string) string {
	p, _, _ = strings.Cut(p, "?")
	return p
}

// request sends a request and returns a 2xx response, or the daemon's
// error as an *Error.
func (c *Client) request(ctx context.Context, method, path string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://narhashd"+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.client().Do(req)
	if err != nil {
		var ue *UntrustedError
		switch {
		case errors.As(err, &ue):
			return nil, ue
		case errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED):
			return nil, fmt.Errorf("%w (nothing answers on %s): start it with 'narhashd', or point NARHASHD_SOCKET at its socket", ErrNotRunning, c.socket())
		case ctx.Err() != nil && context.Cause(ctx) != ctx.Err():
			return nil, context.Cause(ctx)
		}
		return nil, fmt.Errorf("narhashd at %s: %w", c.socket(), err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		var e struct {
			Error string `json:"error"`
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = fmt.Sprintf("%s: %s", resp.Status, bytes.TrimSpace(b))
		}
		return nil, &Error{resp.StatusCode, e.Error}
	}
	return resp, nil
}
