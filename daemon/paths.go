package daemon

import "strings"

// within reports whether p is dir or below it.
func within(p, dir string) bool {
	if p == dir || dir == "/" {
		return true
	}
	return strings.HasPrefix(p, dir) && p[len(dir)] == '/'
}

// affects reports whether an event at p can change the NAR of the tree at
// t: p is t, is inside it, or is above it (a rename or removal of an
// ancestor).
func affects(p, t string) bool { return within(p, t) || within(t, p) }
