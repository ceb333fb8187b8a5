//go:build linux

package daemon

import "strings"

// within reports whether p is dir or below it.
func within(p, dir string) bool {
	if p == dir || dir == "/" {
		return true
	}
	return strings.HasPrefix(p, dir) && p[len(dir)] == '/'
}

// pathTrie maps absolute, clean paths to values, one node per path
// component, so that the values at and above a path, and those below
// it, are found in time proportional to the path's depth and to their
// number, whatever the size of the map. The zero value is empty.
type pathTrie[V any] struct {
	top node[V]
	n   int
}

type node[V any] struct {
	kids map[string]*node[V]
	val  V
	has  bool
}

// components splits an absolute path into its names ("/" has none).
func components(p string, fn func(name string) bool) {
	for p = strings.TrimPrefix(p, "/"); p != ""; {
		name, rest, _ := strings.Cut(p, "/")
		if !fn(name) {
			return
		}
		p = rest
	}
}

func (t *pathTrie[V]) len() int { return t.n }

func (t *pathTrie[V]) set(p string, v V) {
	n := &t.top
	components(p, func(name string) bool {
		k := n.kids[name]
		if k == nil {
			if n.kids == nil {
				n.kids = map[string]*node[V]{}
			}
			k = &node[V]{}
			n.kids[name] = k
		}
		n = k
		return true
	})
	if !n.has {
		t.n++
	}
	n.val, n.has = v, true
}

// find returns p's node, or nil.
func (t *pathTrie[V]) find(p string) *node[V] {
	n := &t.top
	components(p, func(name string) bool {
		n = n.kids[name]
		return n != nil
	})
	return n
}

func (t *pathTrie[V]) get(p string) (V, bool) {
	if n := t.find(p); n != nil && n.has {
		return n.val, true
	}
	var zero V
	return zero, false
}

// delete removes p's value and prunes the nodes left empty.
func (t *pathTrie[V]) delete(p string) {
	var chain []*node[V]
	var names []string
	n := &t.top
	components(p, func(name string) bool {
		chain, names = append(chain, n), append(names, name)
		n = n.kids[name]
		return n != nil
	})
	if n == nil || !n.has {
		return
	}
	var zero V
	n.val, n.has = zero, false
	t.n--
	for i := len(chain) - 1; i >= 0 && !n.has && len(n.kids) == 0; i-- {
		delete(chain[i].kids, names[i])
		n = chain[i]
	}
}

// above calls fn with the path and value of p and of each of its
// ancestors that has one, outermost first.
func (t *pathTrie[V]) above(p string, fn func(path string, v V)) {
	n := &t.top
	if n.has {
		fn("/", n.val)
	}
	end := 0
	components(p, func(name string) bool {
		n = n.kids[name]
		if n == nil {
			return false
		}
		end += 1 + len(name)
		if n.has {
			fn(p[:end], n.val)
		}
		return true
	})
}

// deepest returns the value of p or of its innermost ancestor that has one.
func (t *pathTrie[V]) deepest(p string) (path string, v V, ok bool) {
	t.above(p, func(ap string, av V) { path, v, ok = ap, av, true })
	return path, v, ok
}

// below calls fn with every value strictly below p.
func (t *pathTrie[V]) below(p string, fn func(path string, v V)) {
	n := t.find(p)
	if n == nil {
		return
	}
	var walk func(prefix string, n *node[V])
	walk = func(prefix string, n *node[V]) {
		for name, k := range n.kids {
			kp := prefix + "/" + name
			if k.has {
				fn(kp, k.val)
			}
			walk(kp, k)
		}
	}
	if p == "/" {
		p = ""
	}
	walk(p, n)
}
