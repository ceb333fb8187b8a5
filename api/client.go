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
	"sync"
	"syscall"
)

// A Client talks to narhashd. The zero value uses DefaultSocket.
type Client struct {
	// Socket is the daemon's socket; "" means DefaultSocket().
	Socket string

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
				var d net.Dialer
				return d.DialContext(ctx, "unix", sock)
			},
			MaxIdleConnsPerHost: 64,
		}}
	})
	return c.http
}

// Hash asks for the NAR hash of the absolute path, printed in format
// ("" for nix32). With watch, the path becomes a watched root.
func (c *Client) Hash(ctx context.Context, path, format string, watch bool) (HashResult, error) {
	q := url.Values{"path": {path}}
	if format != "" {
		q.Set("format", format)
	}
	if watch {
		q.Set("watch", "1")
	}
	var res HashResult
	err := c.do(ctx, http.MethodGet, "/v1/hash?"+q.Encode(), nil, &res)
	return res, err
}

// Roots lists the watched roots.
func (c *Client) Roots(ctx context.Context) ([]Root, error) {
	var roots []Root
	err := c.do(ctx, http.MethodGet, "/v1/roots", nil, &roots)
	return roots, err
}

// AddRoot starts watching the absolute path.
func (c *Client) AddRoot(ctx context.Context, path string) (Root, error) {
	var root Root
	body, _ := json.Marshal(map[string]string{"path": path})
	err := c.do(ctx, http.MethodPost, "/v1/roots", body, &root)
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
// until ctx is done, fn fails or the daemon goes away.
func (c *Client) Subscribe(ctx context.Context, path, format string, fn func(HashResult) error) error {
	q := url.Values{"path": {path}}
	if format != "" {
		q.Set("format", format)
	}
	resp, err := c.request(ctx, http.MethodGet, "/v1/subscribe?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var res HashResult
		if err := json.Unmarshal(sc.Bytes(), &res); err != nil {
			return fmt.Errorf("narhashd sent %q: %w", sc.Bytes(), err)
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
	resp, err := c.request(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("narhashd's answer to %s %s: %w", method, path, err)
	}
	return nil
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
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w (nothing answers on %s): start it with 'narhashd', or point NARHASHD_SOCKET at its socket", ErrNotRunning, c.socket())
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
