package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/narhash/narhash/hasher"
)

func convertCmd(sio *stdio) *cobra.Command {
	o := &convertOpts{}
	c := command("hash", "convert [flags] HASH...", "Convert hashes between nix32, base16, base64, sri and multibase",
		func(_ *cobra.Command, args []string) error { return runConvert(sio, o, args) })
	c.Long = `Like nix hash convert (Nix 2.19 and later): --to FORMAT (default sri), --from
FORMAT to insist on the input's format, --hash-algo ALGO for hashes that do not
name their algorithm (default sha256; nix hash to-sri's --type works too).

Input in any format is recognised: nix32, base16, base64, SRI, algo:hash, and
multibase (the digest, or a multihash in any multibase encoding).`
	c.Example = `  narhash convert --to sri 0sg9f58l1jj88w6pdrfdpj5x9b1zrwszk84j81zvby36q9whhhqa
  narhash convert --hash-algo sha1 --to nix32 800d59cfcd3c05e900cb4e214be48f6b886a08df`
	c.Args = args(1, -1, "HASH")
	c.ValidArgsFunction = cobra.NoFileCompletions
	fs := c.Flags()
	stringVar(fs, &o.to, "to", "sri", "the `FORMAT` to print: nix32, base16, base64, sri or multibase")
	stringVar(fs, &o.from, "from", "", "fail unless every HASH is in `FORMAT`")
	algoFlags(c, &o.algo, "the `ALGO` of hashes that do not name one: sha256, sha512, sha1 or md5")
	c.RegisterFlagCompletionFunc("to", fixed(formatNames))
	c.RegisterFlagCompletionFunc("from", fixed(formatNames))
	return c
}

type convertOpts struct{ to, from, algo string }

func runConvert(sio *stdio, opts *convertOpts, args []string) error {
	format, err := hasher.ParseFormat(opts.to)
	if err != nil {
		return usagef("--to: %v", err)
	}
	var from hasher.Format
	if opts.from != "" {
		if from, err = hasher.ParseFormat(opts.from); err != nil {
			return usagef("--from: %v", err)
		}
	}
	algo, err := hasher.ParseAlgo(opts.algo)
	if err != nil {
		return usagef("%v", err)
	}
	for _, s := range args {
		h, got, err := hasher.ParseWithFormat(s, algo)
		if err != nil {
			return err
		}
		if opts.from != "" && got != from {
			return fmt.Errorf("convert: hash %q is in format %s, but --from %s was given", s, got, from)
		}
		fmt.Fprintln(sio.out, h.Format(format))
	}
	return nil
}
