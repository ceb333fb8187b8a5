#!/usr/bin/env bash
# Regenerates the fixtures in this directory with real Nix (Debian's nix-bin):
# for each tree built below, its NAR (nix-store --dump), NAR hash (nix-hash),
# store path (nix-store --print-fixed-path) and listing (nix nar ls --json -R).
# Run from anywhere: bash testdata/gen.sh. Tests read the results; they never
# run this script.
set -euo pipefail
cd "$(dirname "$0")"
command -v nix-store >/dev/null || { echo "gen.sh: needs Nix: apt-get install -y nix-bin" >&2; exit 1; }
nix() { command nix --extra-experimental-features nix-command "$@"; }

work=$(mktemp -d)
trap 'chmod -R u+w "$work"; rm -rf "$work"' EXIT
umask 022

# The three archives of tvix's nix-compat tests (seed 000).
printf 'Hello World!' > "$work/helloworld"
ln -s /nix/store/somewhereelse "$work/symlink"
mkdir -p "$work/complicated/keep"
: > "$work/complicated/.keep"
ln -s /nix/store/somewhereelse "$work/complicated/aa"
: > "$work/complicated/keep/.keep"
# The spec's worked example.
printf 'hello' > "$work/hello"
# An empty directory, an executable, and names that sort by bytes.
mkdir "$work/emptydir"
mkdir -p "$work/mixed/sub/deeper"
printf '#!/bin/sh\necho hi\n' > "$work/mixed/run.sh"; chmod 0755 "$work/mixed/run.sh"
printf 'x' > "$work/mixed/B"; printf 'yy' > "$work/mixed/_"; printf '' > "$work/mixed/a"
printf '12345678' > "$work/mixed/sub/eight"; printf '123456789' > "$work/mixed/sub/nine"
ln -s ../run.sh "$work/mixed/sub/link"
printf 'caf\xc3\xa9' > "$work/mixed/$(printf 'caf\xc3\xa9')"
printf 'raw' > "$work/mixed/$(printf '\xff\xfe')"

: > hashes.txt
for name in helloworld symlink complicated hello emptydir mixed; do
	nix-store --dump "$work/$name" > "$name.nar"
	hash=$(nix-hash --type sha256 --base32 "$work/$name")
	path=$(nix-store --print-fixed-path --recursive sha256 "$hash" "$name")
	printf '%s %s %s\n' "$name" "$hash" "$path" >> hashes.txt
	nix nar ls --json -R "$name.nar" / > "$name.ls.json" || true
done
echo "gen.sh: wrote $(ls *.nar | wc -l) archives with Nix $(nix-store --version | awk '{print $NF}')"
