//go:build linux

package daemon

import (
	"slices"
	"testing"
)

// TestPathTrie: the values at and above a path, and those below it, are
// exactly those within reach of it, as within says.
func TestPathTrie(t *testing.T) {
	paths := []string{"/", "/a", "/a/b", "/a/b/c", "/a/bc", "/a/c", "/x", "/x/y/z"}
	var tr pathTrie[string]
	for _, p := range paths {
		tr.set(p, p)
	}
	for _, q := range []string{"/", "/a", "/a/b", "/a/b/c/d", "/a/bc", "/q", "/x/y", "/x/y/z"} {
		var got, want []string
		tr.above(q, func(p, v string) {
			if p != v {
				t.Errorf("above(%q): path %q has value %q", q, p, v)
			}
			got = append(got, v)
		})
		tr.below(q, func(_ string, v string) { got = append(got, v) })
		for _, p := range paths {
			if within(q, p) || within(p, q) {
				want = append(want, p)
			}
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s reaches %q, want %q", q, got, want)
		}
	}
	for _, p := range paths {
		tr.delete(p)
	}
	if tr.len() != 0 || len(tr.top.kids) != 0 || tr.top.has {
		t.Errorf("after deleting all: %d values, %d nodes left", tr.len(), len(tr.top.kids))
	}
	if _, r, ok := tr.deepest("/a/b"); ok {
		t.Errorf("deepest in an empty trie: %q", r)
	}
}
