package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

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

// UnmarshalJSON reads a result as MarshalJSON writes it: the escape
// \udcXX in its paths is the byte 0xXX, not U+FFFD.
func (r *HashResult) UnmarshalJSON(b []byte) error {
	type plain HashResult
	p := struct {
		plain
		Path json.RawMessage `json:"path"`
		Root json.RawMessage `json:"root"`
	}{plain: plain(*r)}
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	if err := unquotePath(p.Path, &p.plain.Path); err != nil {
		return err
	}
	if err := unquotePath(p.Root, &p.plain.Root); err != nil {
		return err
	}
	*r = HashResult(p.plain)
	return nil
}

// UnmarshalJSON reads a root as MarshalJSON writes it.
func (r *Root) UnmarshalJSON(b []byte) error {
	type plain Root
	p := struct {
		plain
		Path json.RawMessage `json:"path"`
	}{plain: plain(*r)}
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	if err := unquotePath(p.Path, &p.plain.Path); err != nil {
		return err
	}
	*r = Root(p.plain)
	return nil
}

// rootRequest is the body of POST /v1/roots. Its path is written and
// read as HashResult's is.
type rootRequest struct {
	Path string `json:"path"`
	RootOptions
}

// UnmarshalJSON reads the request as withPaths writes it.
func (r *rootRequest) UnmarshalJSON(b []byte) error {
	var p struct {
		Path json.RawMessage `json:"path"`
		RootOptions
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	r.RootOptions = p.RootOptions
	return unquotePath(p.Path, &r.Path)
}

// unquotePath sets *p to the JSON string raw, a path as withPaths writes
// it: the escape of a lone low surrogate \udc80 to \udcff is the byte 0x80
// to 0xff of a name that is not UTF-8. The rest is read as encoding/json
// reads it: a path absent or null is left alone, one that is not a string
// is refused, and a byte of the JSON text that is not UTF-8 is U+FFFD.
func unquotePath(raw json.RawMessage, p *string) error {
	if len(raw) == 0 {
		return nil
	}
	if raw[0] != '"' || bytes.IndexByte(raw, '\\') < 0 {
		return json.Unmarshal(raw, p)
	}
	s := raw[1 : len(raw)-1] // valid JSON: the decoder checked it
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c >= utf8.RuneSelf:
			r, n := utf8.DecodeRune(s[i:])
			out = utf8.AppendRune(out, r)
			i += n
			continue
		case c != '\\':
			out = append(out, c)
			i++
			continue
		case s[i+1] != 'u':
			out = append(out, unescape[s[i+1]])
			i += 2
			continue
		}
		r := hex4(s[i+2 : i+6])
		i += 6
		switch {
		case 0xdc80 <= r && r <= 0xdcff:
			out = append(out, byte(r-0xdc00))
		case utf16.IsSurrogate(r):
			if r < 0xdc00 && i+6 <= len(s) && s[i] == '\\' && s[i+1] == 'u' {
				if pair := utf16.DecodeRune(r, hex4(s[i+2:i+6])); pair != utf8.RuneError {
					out = utf8.AppendRune(out, pair)
					i += 6
					continue
				}
			}
			out = utf8.AppendRune(out, utf8.RuneError)
		default:
			out = utf8.AppendRune(out, r)
		}
	}
	*p = string(out)
	return nil
}

// unescape maps the character after a backslash in a JSON string (but u)
// to the byte it stands for.
var unescape = [256]byte{'"': '"', '\\': '\\', '/': '/', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t'}

// hex4 reads the four hex digits of a \u escape.
func hex4(b []byte) rune {
	r, _ := strconv.ParseUint(string(b), 16, 16)
	return rune(r)
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
