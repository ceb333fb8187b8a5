//go:build linux

package daemon

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/narhash/narhash/api"
	"github.com/narhash/narhash/nar/nartest"
)

// TestValidateMode: a file hard-linked into a root and edited through
// its other name outside the root changes the root, which inotify cannot
// see; a root added with Validate is checked by a stat walk on every
// query and sees it.
func TestValidateMode(t *testing.T) {
	root := newTree(t)
	outside := filepath.Join(nartest.TempDir(t), "outside")
	write(t, outside, "1")
	if err := os.Link(outside, filepath.Join(root, "linked")); err != nil {
		t.Skipf("hard link: %v", err)
	}
	r := start(t, Config{})
	got, err := r.c.AddRootWith(context.Background(), root, api.RootOptions{Validate: true})
	if err != nil || !got.Validate || !got.Degraded {
		t.Fatalf("add with validate: %+v, %v", got, err)
	}
	for i, data := range []string{"2", "three", "4444"} {
		fresh(t, r.c, root, "start")
		f, err := os.OpenFile(outside, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(data)
		f.Close()
		if got, want := query(t, r.c, root), offline(t, root); got.Hash != want {
			t.Fatalf("edit %d through the outside name: %s, want %s", i, got.Hash, want)
		}
	}
	// Kept across restarts.
	r.stop(t)
	r = start(t, Config{Socket: r.cfg.Socket, DB: r.cfg.DB})
	roots, _ := r.c.Roots(context.Background())
	if len(roots) != 1 || !roots[0].Validate {
		t.Errorf("after a restart: %+v", roots)
	}
}
