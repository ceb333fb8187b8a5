package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/narhash/narhash/nar/nartest"
)

// TestNixSpellings runs narhash with Nix's own flag spellings and compares
// with what Nix 2.8 prints for the same spelling (or for the spelling it has
// where 2.8 lacks one: --algo and --hash-algo are newer Nix's --type).
func TestNixSpellings(t *testing.T) {
	needNix(t)
	dir := nartest.TempDir(t)
	tree := filepath.Join(dir, "tree")
	if err := os.Mkdir(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := nartest.Random(tree, 7, 40); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("some contents\n"), 0o644)

	for _, tc := range []struct {
		narhash []string
		nix     []string // "nix-hash …" or "nix …"
	}{
		{[]string{"hash", "--type", "sha256", "--base32", tree}, []string{"nix-hash", "--type", "sha256", "--base32", tree}},
		{[]string{"hash", "--type", "sha1", "--base32", tree}, []string{"nix-hash", "--type", "sha1", "--base32", tree}},
		{[]string{"hash", "--type", "md5", "--base16", tree}, []string{"nix-hash", tree}},
		{[]string{"hash", "--hash-algo", "sha512", "--base16", tree}, []string{"nix-hash", "--type", "sha512", tree}},
		{[]string{"hash", "--base32", tree}, []string{"nix", "hash", "path", "--base32", tree}},
		{[]string{"hash", "--base16", tree}, []string{"nix", "hash", "path", "--base16", tree}},
		{[]string{"hash", "--base64", tree}, []string{"nix", "hash", "path", "--base64", tree}},
		{[]string{"hash", "--sri", tree}, []string{"nix", "hash", "path", "--sri", tree}},
		{[]string{"hash", "--sri", "--base32", tree}, []string{"nix", "hash", "path", "--sri", "--base32", tree}}, // the last wins
		{[]string{"hash", "--type", "sha512", "--base32", tree}, []string{"nix", "hash", "path", "--type", "sha512", "--base32", tree}},
		{[]string{"hash", "--type", "sha1", "--sri", tree}, []string{"nix", "hash", "path", "--type", "sha1", tree}},
		{[]string{"hash", "--algo", "sha512", "--base64", tree}, []string{"nix", "hash", "path", "--type", "sha512", "--base64", tree}},
		{[]string{"hash", "--flat", "--type", "sha256", "--base32", file}, []string{"nix-hash", "--flat", "--type", "sha256", "--base32", file}},
		{[]string{"hash", "--flat", "--type", "md5", "--base16", file}, []string{"nix-hash", "--flat", file}},
		{[]string{"hash", "--flat", "--base32", file}, []string{"nix", "hash", "file", "--base32", file}},
		{[]string{"hash", "--mode", "flat", "--sri", file}, []string{"nix", "hash", "file", "--sri", file}},
		{[]string{"hash", "--mode", "nar", "--sri", file}, []string{"nix", "hash", "path", "--sri", file}},
		{[]string{"verify", "--mode", "flat", file, strings.TrimSpace(string(nixOut(t, "nix", "hash", "file", "--base16", file)))}, nil},
		{[]string{"store-path", "--mode", "flat", file}, []string{"nix-store", "--print-fixed-path", "sha256", strings.TrimSpace(string(nixOut(t, "nix-hash", "--flat", "--type", "sha256", "--base32", file))), "file"}},
	} {
		got, errOut, code := narhash(t, nil, tc.narhash...)
		if code != 0 {
			t.Errorf("narhash %q: exit %d: %s", tc.narhash, code, errOut)
			continue
		}
		if tc.nix == nil {
			continue
		}
		want := nixOut(t, tc.nix[0], tc.nix[1:]...)
		if string(got) != string(want) {
			t.Errorf("narhash %q = %q, but %q = %q", tc.narhash, got, tc.nix, want)
		}
	}
}

// TestConvertSpellings: nix hash convert's --to, --from and --hash-algo
// (Nix ≥ 2.19), against the nix hash to-* commands of Nix 2.8.
func TestConvertSpellings(t *testing.T) {
	needNix(t)
	const (
		sha1hex = "800d59cfcd3c05e900cb4e214be48f6b886a08df"
		nix32   = "0sg9f58l1jj88w6pdrfdpj5x9b1zrwszk84j81zvby36q9whhhqa"
		sri     = "sha256-CkMIecJm+LV/QJKg+TXPP6zUi7zN5XYNR0jKQFFx6Wk="
	)
	for _, tc := range []struct {
		narhash, nix []string
	}{
		{[]string{"--hash-algo", "sha1", "--to", "nix32", sha1hex}, []string{"to-base32", "--type", "sha1", sha1hex}},
		{[]string{"--hash-algo", "sha1", sha1hex}, []string{"to-sri", "--type", "sha1", sha1hex}}, // --to defaults to sri
		{[]string{"--type", "sha1", "--to", "base64", sha1hex}, []string{"to-base64", "--type", "sha1", sha1hex}},
		{[]string{"--to", "base16", "--from", "nix32", nix32}, []string{"to-base16", "--type", "sha256", nix32}},
		{[]string{"--to", "base32", "--from", "sri", sri}, []string{"to-base32", sri}}, // base32: Nix's old name of nix32
		{[]string{"--to", "sri", "--from", "base16", "sha256:0a430879c266f8b57f4092a0f935cf3facd48bbccde5760d4748ca405171e969"}, []string{"to-sri", "sha256:0a430879c266f8b57f4092a0f935cf3facd48bbccde5760d4748ca405171e969"}},
		{[]string{"--to", "nix32", "--from", "base16", "0A430879C266F8B57F4092A0F935CF3FACD48BBCCDE5760D4748CA405171E969"}, []string{"to-base32", "--type", "sha256", "0A430879C266F8B57F4092A0F935CF3FACD48BBCCDE5760D4748CA405171E969"}}, // upper case hex
	} {
		args := append([]string{"convert"}, tc.narhash...)
		got := narhashOK(t, nil, args...)
		want := nixOut(t, "nix", append([]string{"hash"}, tc.nix...)...)
		if string(got) != string(want) {
			t.Errorf("narhash %q = %q, but nix hash %q = %q", args, got, tc.nix, want)
		}
	}
	// --from insists on the input's format, as in Nix, and knows each
	// spelling of one.
	for _, tc := range []struct{ from, hash string }{
		{"base64", "CkMIecJm+LV/QJKg+TXPP6zUi7zN5XYNR0jKQFFx6Wk"}, // unpadded
		{"base16", "sha256:0A430879C266F8B57F4092A0F935CF3FACD48BBCCDE5760D4748CA405171E969"},
		{"sri", "sha256-CkMIecJm+LV/QJKg+TXPP6zUi7zN5XYNR0jKQFFx6Wk"},
		{"multibase", "mEiAKQwh5wmb4tX9AkqD5Nc8/rNSLvM3ldg1HSMpAUXHpaQ"}, // a multihash
	} {
		if out, errOut, code := narhash(t, nil, "convert", "--from", tc.from, "--to", "nix32", tc.hash); code != 0 || string(out) != nix32+"\n" {
			t.Errorf("convert --from %s %s: exit %d, %q %s", tc.from, tc.hash, code, out, errOut)
		}
	}
	// --from insists on the input's format, as in Nix.
	if _, errOut, code := narhash(t, nil, "convert", "--from", "nix32", sri); code != 1 || !strings.Contains(string(errOut), "is in format sri, but --from nix32 was given") {
		t.Errorf("convert --from nix32 SRI: exit %d, %s", code, errOut)
	}
}
