package hasher

import (
	"errors"
	"fmt"
)

// nix32Alphabet is Nix's base-32 alphabet: digits and lowercase letters
// without e, o, u and t.
const nix32Alphabet = "0123456789abcdfghijklmnpqrsvwxyz"

// Nix32Len returns the length of the nix32 encoding of n bytes.
func Nix32Len(n int) int {
	if n == 0 {
		return 0
	}
	return (n*8-1)/5 + 1
}

// EncodeNix32 encodes b in Nix's base 32, as nix-hash --base32 prints
// hashes. The first character holds the top bits of the last byte.
func EncodeNix32(b []byte) string {
	n := Nix32Len(len(b))
	out := make([]byte, n)
	for i := n - 1; i >= 0; i-- {
		bit := uint(i * 5)
		j, k := bit/8, bit%8
		c := b[j] >> k
		if int(j)+1 < len(b) {
			c |= b[j+1] << (8 - k)
		}
		out[n-1-i] = nix32Alphabet[c&31]
	}
	return string(out)
}

var nix32Index = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for i := range len(nix32Alphabet) {
		t[nix32Alphabet[i]] = int8(i)
	}
	return t
}()

var errNix32 = errors.New("not nix32")

// DecodeNix32 decodes s, the nix32 encoding of size bytes. It is strict:
// a wrong length, a character outside the alphabet (uppercase included) or
// non-zero padding bits are errors.
func DecodeNix32(s string, size int) ([]byte, error) {
	if len(s) != Nix32Len(size) {
		return nil, fmt.Errorf("%w: %d characters where %d are due", errNix32, len(s), Nix32Len(size))
	}
	b := make([]byte, size)
	for n := range len(s) {
		c := s[len(s)-1-n]
		d := nix32Index[c]
		if d < 0 {
			return nil, fmt.Errorf("%w: character %q is not in the nix32 alphabet %s", errNix32, c, nix32Alphabet)
		}
		bit := uint(n * 5)
		i, j := bit/8, bit%8
		b[i] |= byte(d) << j
		carry := byte(d) >> (8 - j)
		if int(i)+1 < size {
			b[i+1] |= carry
		} else if carry != 0 {
			return nil, fmt.Errorf("%w: padding bits of the first character %q are not zero", errNix32, s[0])
		}
	}
	return b, nil
}
