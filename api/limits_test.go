package api

import (
	"context"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestConnectionLimits: stalled connections (they send nothing) take at
// most maxConns slots and are dropped after the read timeout, so a real
// client is answered; the server never holds more.
func TestConnectionLimits(t *testing.T) {
	defer func(r, n any) { readTimeout, maxConns = r.(time.Duration), n.(int) }(readTimeout, maxConns)
	readTimeout, maxConns = 300*time.Millisecond, 8
	sock := filepath.Join(t.TempDir(), "s.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := NewServer(ctx, stubBackend{})
	go srv.Serve(l)
	defer srv.Close()
	var stalled []net.Conn
	for range 50 {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		stalled = append(stalled, c)
	}
	defer func() {
		for _, c := range stalled {
			c.Close()
		}
	}()
	if n := len(l.(*listener).slots); n > 8 {
		t.Errorf("%d connections served at once, limit 8", n)
	}
	c := &Client{Socket: sock}
	begin := time.Now()
	if _, err := c.Status(context.Background()); err != nil {
		t.Fatalf("a client behind 50 stalled connections: %v", err)
	}
	t.Logf("answered after %v", time.Since(begin))
	if n := len(l.(*listener).slots); n > 8 {
		t.Errorf("%d connections served at once, limit 8", n)
	}
}

// TestClientTimeout: a daemon that takes a request and never answers
// gives an error saying so, not a hang.
func TestClientTimeout(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	block := make(chan struct{})
	defer close(block)
	go http.Serve(l, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-block }))
	c := &Client{Socket: sock, Timeout: 200 * time.Millisecond}
	done := make(chan error, 1)
	go func() { _, err := c.Status(context.Background()); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "did not answer GET /v1/status within 200ms") {
			t.Errorf("got %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the client still waits after 10 s")
	}
}
