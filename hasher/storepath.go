package hasher

import (
	"encoding/hex"
	"fmt"
	"os"
	"path"
)

// DefaultStoreDir is Nix's store directory: NIX_STORE_DIR, else NIX_STORE,
// else /nix/store, as Nix's Settings read them (StorePath cleans it).
func DefaultStoreDir() string {
	for _, v := range []string{"NIX_STORE_DIR", "NIX_STORE"} {
		if d := os.Getenv(v); d != "" {
			return d
		}
	}
	return "/nix/store"
}

// canonStoreDir is dir as Nix's canonPath leaves it, which Nix applies to
// the store directory before it hashes it into store paths: absolute, no
// "." or ".." or empty names, no trailing slash (symlinks are kept).
func canonStoreDir(dir string) (string, error) {
	if !path.IsAbs(dir) {
		return "", fmt.Errorf("store directory %q is not an absolute path", dir)
	}
	return path.Clean(dir), nil
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
// `nix-store --add-fixed` and fixed-output derivations give. storeDir is
// cleaned as Nix cleans its own ("/nix/store/" is "/nix/store"), and must
// be absolute.
func StorePath(storeDir, name string, h Hash, recursive bool) (string, error) {
	if err := CheckName(name); err != nil {
		return "", err
	}
	storeDir, err := canonStoreDir(storeDir)
	if err != nil {
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
