module github.com/narhash/narhash/cmd/benchmark

go 1.25.0

require (
	github.com/minio/sha256-simd v1.0.1
	github.com/narhash/narhash v0.0.0
	github.com/nix-community/go-nix v0.0.0-20250101154619-4bdde671e0a1
	golang.org/x/sys v0.47.0
)

require (
	github.com/klauspost/cpuid/v2 v2.2.3 // indirect
	github.com/mr-tron/base58 v1.3.0 // indirect
	github.com/multiformats/go-base32 v0.1.0 // indirect
	github.com/multiformats/go-base36 v0.2.0 // indirect
	github.com/multiformats/go-multibase v0.3.0 // indirect
)

replace github.com/narhash/narhash => ../..
