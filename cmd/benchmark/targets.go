package main

import (
	"fmt"
	"io"
	"slices"
)

// Issue 10's targets, checked on the real-filesystem table's rows on the
// disk filesystem, for narhash with -procs's first GOMAXPROCS: the figure
// is the table's (a ratio of medians), and beside it the same ratio taken
// round by round, each from two runs in the same round. This VM's speed
// moves by 10-20 % within minutes, for seconds at a time; a round's two
// runs share its minute, so the spread of the per-round ratios shows how
// far one run's figure can be trusted.

// realTarget is one of the targets: on tree (cold or warm), the ratio of
// tool a's time to tool b's is at most limit (atMost), or at least it.
type realTarget struct {
	tree   string
	cold   bool
	a, b   string
	atMost bool
	limit  float64
}

func (t realTarget) String() string {
	cache := "warm"
	if t.cold {
		cache = "cold"
	}
	rel := "≥"
	if t.atMost {
		rel = "≤"
	}
	var what string
	switch {
	case t.a == "narhash" && t.b == "sha256":
		what = fmt.Sprintf("narhash %s %.2f× the SHA-256 floor", rel, t.limit)
	case t.a == "narhash" && t.b == "readall":
		what = fmt.Sprintf("narhash %s %.2f× the parallel read", rel, t.limit)
	default:
		what = fmt.Sprintf("narhash %s %.1f× faster than %s", rel, t.limit, t.a)
	}
	return fmt.Sprintf("%s, %s: %s", t.tree, cache, what)
}

// diskRow is the row of tree on the disk filesystem, cold or warm.
func diskRow(rows []realRow, tree string, cold bool) (realRow, bool) {
	i := slices.IndexFunc(rows, func(r realRow) bool {
		return r.tree.name == tree && r.cold == cold && r.tree.fsType != "tmpfs"
	})
	if i < 0 {
		return realRow{}, false
	}
	return rows[i], true
}

// realTargets lists the targets for the trees measured.
func realTargets(rows []realRow) []realTarget {
	var ts []realTarget
	add := func(t realTarget) {
		if _, ok := diskRow(rows, t.tree, t.cold); ok {
			ts = append(ts, t)
		}
	}
	add(realTarget{"goroot", false, "narhash", "sha256", true, 1.15})
	add(realTarget{"goroot", false, "nix-hash", "narhash", false, 1.7})
	add(realTarget{"src", false, "nix-hash", "narhash", false, 1.7})
	add(realTarget{"big", false, "narhash", "sha256", true, 1.05})
	add(realTarget{"tiny", false, "nix-hash", "narhash", false, 3})
	for _, tree := range []string{"goroot", "src", "big", "tiny"} {
		add(realTarget{tree, true, "nix-hash", "narhash", false, 2})
		add(realTarget{tree, true, "narhash", "readall", true, 1.15})
	}
	return ts
}

// reportTargets prints whether this run met each target, for narhash
// with GOMAXPROCS procs ("" for its default).
func reportTargets(stdout io.Writer, rows []realRow, procs string) {
	ts := realTargets(rows)
	if len(ts) == 0 {
		return
	}
	nh := "narhash " + procs
	tool := func(name string) string {
		if name == "narhash" {
			return nh
		}
		return name
	}
	gmp := procs
	if gmp == "" {
		gmp = "its default"
	}
	fmt.Fprintf(stdout, "\nIssue 10's targets in this run, on the disk filesystem, narhash with GOMAXPROCS %s: "+
		"the table's ratio of medians, and the same ratio round by round (median, lowest–highest), "+
		"each from two runs of one round.\n\n", gmp)
	fmt.Fprintln(stdout, "| target | this run | round by round | met |")
	fmt.Fprintln(stdout, "|---|---|---|---|")
	met := 0
	floors := warmFloors(rows)
	for _, t := range ts {
		row, _ := diskRow(rows, t.tree, t.cold)
		a, oka := row.sample(tool(t.a), floors)
		b, okb := row.sample(tool(t.b), floors)
		if !oka || !okb {
			fmt.Fprintf(stdout, "| %s | – | – | not measured |\n", t)
			continue
		}
		r := a.wall.Seconds() / b.wall.Seconds()
		ok := r >= t.limit
		if t.atMost {
			ok = r <= t.limit
		}
		verdict := "no"
		if ok {
			verdict, met = "yes", met+1
		}
		fmt.Fprintf(stdout, "| %s | %.2f× | %s | %s |\n", t, r, perRound(row.rounds[tool(t.a)], row.rounds[tool(t.b)]), verdict)
	}
	fmt.Fprintf(stdout, "\nTargets met: %d of %d.\n", met, len(ts))
}

// perRound is the ratio of a's time to b's in each round where both ran,
// as "median (lowest–highest)".
func perRound(a, b []sample) string {
	n := min(len(a), len(b))
	if n == 0 {
		return "–"
	}
	rs := make([]float64, n)
	for i := range n {
		rs[i] = a[i].wall.Seconds() / b[i].wall.Seconds()
	}
	slices.Sort(rs)
	return fmt.Sprintf("%.2f× (%.2f–%.2f×)", median64(rs), rs[0], rs[n-1])
}
