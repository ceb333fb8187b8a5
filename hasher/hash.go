package hasher

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"

	"github.com/minio/sha256-simd"
	"github.com/multiformats/go-multibase"
)

// Algo is a hash algorithm Nix knows.
type Algo uint8

// The algorithms Nix accepts. NAR hashes are SHA256.
const (
	SHA256 Algo = iota
	SHA512
	SHA1
	MD5
)

var algoNames = [...]string{SHA256: "sha256", SHA512: "sha512", SHA1: "sha1", MD5: "md5"}
var algoSizes = [...]int{SHA256: 32, SHA512: 64, SHA1: 20, MD5: 16}

func (a Algo) String() string { return algoNames[a] }

// Size returns the digest size in bytes.
func (a Algo) Size() int { return algoSizes[a] }

// New returns a new hash.Hash computing a; SHA256 is sha256-simd's.
func (a Algo) New() hash.Hash {
	switch a {
	case SHA512:
		return sha512.New()
	case SHA1:
		return sha1.New()
	case MD5:
		return md5.New()
	}
	return sha256.New()
}

// ParseAlgo parses an algorithm name: sha256, sha512, sha1 or md5.
func ParseAlgo(s string) (Algo, error) {
	for a, name := range algoNames {
		if s == name {
			return Algo(a), nil
		}
	}
	return 0, fmt.Errorf("hasher: unknown hash algorithm %q (known: sha256, sha512, sha1, md5)", s)
}

// Format is a way of printing a hash.
type Format uint8

// The formats; each is also what ParseFormat accepts.
const (
	Nix32     Format = iota // Nix's base 32, as nix-hash --base32 prints
	Base16                  // lowercase hexadecimal
	Base64                  // standard padded base 64
	SRI                     // sha256-<base64>, as in flake.lock and fetchurl
	Multibase               // the digest as a multibase base32 string (b…)
)

var formatNames = [...]string{Nix32: "nix32", Base16: "base16", Base64: "base64", SRI: "sri", Multibase: "multibase"}

func (f Format) String() string { return formatNames[f] }

// ParseFormat parses a format name. It also takes Nix's older names:
// base32 for nix32 and hex for base16.
func ParseFormat(s string) (Format, error) {
	switch s {
	case "base32":
		return Nix32, nil
	case "hex":
		return Base16, nil
	}
	for f, name := range formatNames {
		if s == name {
			return Format(f), nil
		}
	}
	return 0, fmt.Errorf("unknown hash format %q (known: nix32, base16, base64, sri, multibase)", s)
}

// A Hash is a digest and the algorithm that made it.
type Hash struct {
	Algo   Algo
	Digest []byte
}

// Sum returns the hash of b with algorithm a.
func Sum(a Algo, b []byte) Hash {
	h := a.New()
	h.Write(b)
	return Hash{a, h.Sum(nil)}
}

// Equal reports whether two hashes have the same algorithm and digest.
func (h Hash) Equal(o Hash) bool { return h.Algo == o.Algo && bytes.Equal(h.Digest, o.Digest) }

// String returns the hash as algo:nix32, the form Nix prints in messages.
func (h Hash) String() string { return h.Algo.String() + ":" + EncodeNix32(h.Digest) }

// Format prints the digest in format f. Only SRI names the algorithm.
func (h Hash) Format(f Format) string {
	switch f {
	case Base16:
		return hex.EncodeToString(h.Digest)
	case Base64:
		return base64.StdEncoding.EncodeToString(h.Digest)
	case SRI:
		return h.Algo.String() + "-" + base64.StdEncoding.EncodeToString(h.Digest)
	case Multibase:
		s, _ := multibase.Encode(multibase.Base32, h.Digest)
		return s
	}
	return EncodeNix32(h.Digest)
}

// ErrSyntax is matched by every error of Parse.
var ErrSyntax = errors.New("not a hash")

// multihash prefixes: the varint codes of the hash function and the
// digest length that precede a digest in a multihash.
var multihashPrefix = map[Algo][]byte{SHA256: {0x12, 0x20}, SHA512: {0x13, 0x40}, SHA1: {0x11, 0x14}, MD5: {0xd5, 0x01, 0x10}}

// Parse parses a hash in any form `nix hash convert` accepts, and multibase:
//
//	sha256-<base64>            SRI (padding optional)
//	sha256:<nix32|base16|base64>
//	<nix32|base16|base64>      of algorithm def, told apart by length
//	<multibase>                the digest, or a multihash of it
//
// The algorithm named in the string wins over def. Hex digits may be
// upper or lower case, as Nix accepts them.
func Parse(s string, def Algo) (Hash, error) {
	h, _, err := ParseWithFormat(s, def)
	return h, err
}

// ParseWithFormat is Parse, and also says which format s was written in
// (Base16 for "sha256:<hex>", SRI for "sha256-<base64>").
func ParseWithFormat(s string, def Algo) (Hash, Format, error) {
	h, f, err := parse(s, def)
	if err != nil {
		return Hash{}, 0, fmt.Errorf("hasher: %q is %w: %v", s, ErrSyntax, err)
	}
	return h, f, nil
}

func parse(s string, algo Algo) (Hash, Format, error) {
	if i := strings.IndexAny(s, "-:"); i > 0 {
		if a, err := ParseAlgo(s[:i]); err == nil {
			rest := s[i+1:]
			if s[i] == '-' {
				d, err := decodeBase64(rest, a.Size())
				if err != nil {
					return Hash{}, 0, fmt.Errorf("SRI hash: %v", err)
				}
				return Hash{a, d}, SRI, nil
			}
			return parseBare(rest, a, false)
		}
	}
	return parseBare(s, algo, true)
}

func parseBare(s string, a Algo, multibaseOK bool) (Hash, Format, error) {
	size := a.Size()
	switch len(s) {
	case 2 * size:
		d, err := hex.DecodeString(s)
		if err != nil {
			return Hash{}, 0, fmt.Errorf("%d characters, as base16 (hex) would be, but not hex", len(s))
		}
		return Hash{a, d}, Base16, nil
	case Nix32Len(size):
		d, err := DecodeNix32(s, size)
		if err != nil {
			return Hash{}, 0, err
		}
		return Hash{a, d}, Nix32, nil
	case base64.StdEncoding.EncodedLen(size), base64.RawStdEncoding.EncodedLen(size):
		if d, err := decodeBase64(s, size); err == nil {
			return Hash{a, d}, Base64, nil
		}
	}
	if multibaseOK {
		if _, d, err := multibase.Decode(s); err == nil {
			if len(d) == size {
				return Hash{a, d}, Multibase, nil
			}
			for ma, p := range multihashPrefix {
				if len(d) == len(p)+ma.Size() && bytes.HasPrefix(d, p) {
					return Hash{ma, d[len(p):]}, Multibase, nil
				}
			}
			return Hash{}, 0, fmt.Errorf("a multibase string of %d bytes, not a %d-byte %s digest or a multihash", len(d), size, a)
		}
	}
	return Hash{}, 0, fmt.Errorf("expected a %s hash: %d nix32 characters, %d hex digits, %d base64 characters, %s-<base64> (SRI) or a multibase string",
		a, Nix32Len(size), 2*size, base64.StdEncoding.EncodedLen(size), a)
}

func decodeBase64(s string, size int) ([]byte, error) {
	enc := base64.StdEncoding
	if !strings.HasSuffix(s, "=") && len(s)%4 != 0 {
		enc = base64.RawStdEncoding
	}
	d, err := enc.Strict().DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("bad base64: %v", err)
	}
	if len(d) != size {
		return nil, fmt.Errorf("%d bytes where a digest has %d", len(d), size)
	}
	return d, nil
}
