package nar

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// TestStatErrorNamesPathOnce: a stat walk's error names the path once
// (not "stat x: lstat x: …"), and names it when the cause does not (a
// cancelled walk).
func TestStatErrorNamesPathOnce(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, c := range []struct {
		name string
		ctx  context.Context
		path string
	}{
		{"missing path", context.Background(), missing},
		{"cancelled walk", cancelled, t.TempDir()},
	} {
		_, _, err := StatTree(c.ctx, c.path)
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		if n := strings.Count(err.Error(), c.path); n != 1 {
			t.Errorf("%s: %q names %s %d times, want once", c.name, err, c.path, n)
		}
	}
}
