package api

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/narhash/narhash/nar"
)

// MarshalJSON writes the result with its paths as file names are written
// everywhere in narhash's JSON: a byte that is not part of valid UTF-8 as
// the escape \udcXX (see the README), not as U+FFFD, which would lose it.
func (r HashResult) MarshalJSON() ([]byte, error) {
	type plain HashResult
	p := plain(r)
	p.Path, p.Root = "", ""
	return withPaths(json.Marshal(p))(r.Path, r.Root)
}

// MarshalJSON writes the root with its path as HashResult does.
func (r Root) MarshalJSON() ([]byte, error) {
	type plain Root
	p := plain(r)
	p.Path = ""
	return withPaths(json.Marshal(p))(r.Path, "")
}

// withPaths puts path (and root, if not empty) into b, an object whose
// first member is "path":"".
func withPaths(b []byte, err error) func(path, root string) ([]byte, error) {
	return func(path, root string) ([]byte, error) {
		if err != nil {
			return nil, err
		}
		const empty = `{"path":""`
		if !bytes.HasPrefix(b, []byte(empty)) || b[len(b)-1] != '}' {
			return nil, fmt.Errorf("api: unexpected JSON layout %.40q", b)
		}
		out := make([]byte, 0, len(b)+len(path)+len(root)+16)
		out = append(out, `{"path":`...)
		out = nar.AppendJSONString(out, path)
		out = append(out, b[len(empty):len(b)-1]...)
		if root != "" {
			out = append(out, `,"root":`...)
			out = nar.AppendJSONString(out, root)
		}
		return append(out, '}'), nil
	}
}
