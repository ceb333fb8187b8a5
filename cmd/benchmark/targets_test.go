package main

import (
	"strings"
	"testing"
	"time"
)

// TestReportTargets checks the verdicts on made-up rows: each target's
// ratio on the right side of its limit or not, the cold floor taken from
// the warm row, and the per-round ratios from rounds of the same index.
func TestReportTargets(t *testing.T) {
	ms := func(v ...int) []sample {
		var ss []sample
		for _, x := range v {
			ss = append(ss, sample{wall: time.Duration(x) * time.Millisecond})
		}
		return ss
	}
	row := func(tree string, cold bool, rounds map[string][]sample) realRow {
		m := map[string]sample{}
		for k, v := range rounds {
			m[k] = median(v)
		}
		return realRow{tree: realTree{name: tree, fsType: "ext4"}, cold: cold, m: m, rounds: rounds}
	}
	rows := []realRow{
		// medians: 1.05× the floor (met; rounds 1.05, 1.11, 1.20), 1.71× nix-hash (met).
		row("goroot", false, map[string][]sample{"narhash 2": ms(210, 200, 240), "sha256": ms(200, 180, 200), "nix-hash": ms(360, 360, 400)}),
		// 2.50× nix-hash (missed).
		row("tiny", false, map[string][]sample{"narhash 2": ms(200, 200, 200), "nix-hash": ms(500, 500, 500)}),
		// cold: 3× nix-hash (met), 1.20× the parallel read (missed).
		row("goroot", true, map[string][]sample{"narhash 2": ms(600), "nix-hash": ms(1800), "readall": ms(500)}),
		// tmpfs rows are not the targets'.
		{tree: realTree{name: "src", fsType: "tmpfs"}, m: map[string]sample{"narhash 2": {wall: time.Second}}},
	}
	var out strings.Builder
	reportTargets(&out, rows, "2")
	got := out.String()
	for _, want := range []string{
		"| goroot, warm: narhash ≤ 1.15× the SHA-256 floor | 1.05× | 1.11× (1.05–1.20×) | yes |",
		"| goroot, warm: narhash ≥ 1.7× faster than nix-hash | 1.71× | 1.71× (1.67–1.80×) | yes |",
		"| tiny, warm: narhash ≥ 3.0× faster than nix-hash | 2.50× | 2.50× (2.50–2.50×) | no |",
		"| goroot, cold: narhash ≥ 2.0× faster than nix-hash | 3.00× | 3.00× (3.00–3.00×) | yes |",
		"| goroot, cold: narhash ≤ 1.15× the parallel read | 1.20× | 1.20× (1.20–1.20×) | no |",
		"Targets met: 3 of 5.",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	if strings.Contains(got, "src") {
		t.Errorf("a tmpfs row was taken for a target:\n%s", got)
	}
}
