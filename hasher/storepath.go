package hasher

import (
	"encoding/hex"
	"fmt"
	"os"
)

// DefaultStoreDir is Nix's store directory unless NIX_STORE_DIR says
// otherwise.
func DefaultStoreDir() string {
	if d := os.Getenv("NIX_STORE_DIR"); d != "" {
		return d
	}
	return "/nix/store"
}

// CheckName reports whether name can be the name of a store path: 1 to 211
// characters of 0-9 a-z A-Z + - . _ ? =, and not . or .. .
func CheckName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("store path name is empty")
	case len(name) > 211:
		return fmt.Errorf("store path name %q is longer than 211 characters", name)
	case name == "." || name == "..":
		return fmt.Errorf("store path name cannot be %q", name)
	}
	for i := range len(name) {
		c := name[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '+' || c == '-' || c == '.' || c == '_' || c == '?' || c == '=') {
			return fmt.Errorf("store path name %q contains %q: only 0-9 a-z A-Z + - . _ ? = are allowed", name, c)
		}
	}
	return nil
}

// StorePath returns the store path of fixed-output contents with hash h:
// what `nix-store --add` (recursive, SHA-256 of the NAR: type "source"),
// `nix-store --add-fixed` and fixed-output derivations give.
func StorePath(storeDir, name string, h Hash, recursive bool) (string, error) {
	if err := CheckName(name); err != nil {
		return "", err
	}
	typ, inner := "source", h.Digest
	if !recursive || h.Algo != SHA256 {
		r := ""
		if recursive {
			r = "r:"
		}
		typ = "output:out"
		inner = Sum(SHA256, []byte("fixed:out:"+r+h.Algo.String()+":"+hex.EncodeToString(h.Digest)+":")).Digest
	}
	s := typ + ":sha256:" + hex.EncodeToString(inner) + ":" + storeDir + ":" + name
	full := Sum(SHA256, []byte(s)).Digest
	var c [20]byte
	for i, b := range full {
		c[i%20] ^= b
	}
	return storeDir + "/" + EncodeNix32(c[:]) + "-" + name, nil
}
