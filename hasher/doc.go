// Package hasher computes and prints the hashes Nix uses: the SHA-256 of a
// path's NAR serialisation (HashPath, streamed through sha256-simd, never
// held in memory), a file's flat hash (HashFile), and the store paths
// derived from them (StorePath).
//
// A Hash prints in Nix's base 32 (nix32, EncodeNix32), base16, base64,
// SRI (sha256-…) or multibase; Parse reads any of them back, strictly: a
// nix32 string with an unknown character, the wrong length or non-zero
// padding bits is an error, never a different hash.
//
// Caveats: multibase output is the bare digest in base32 (b…); on input a
// multihash (0x12 0x20 ‖ digest) in any multibase encoding is accepted too.
package hasher
