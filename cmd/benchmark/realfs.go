package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/narhash/narhash/hasher"
	"github.com/narhash/narhash/nar/nartest"
)

// The real-filesystem table (issue 10), with -trees real: the trees on
// the disk filesystem (-disk, which must not be tmpfs) and on tmpfs (-dir
// when it is tmpfs), warm and cold, next to nix-hash, go-nix, the
// in-memory SHA-256 floor and, cold, a 64-way parallel read of the same
// files (readall.go): one table of ratios from one run.
//
//   - goroot: a copy of GOROOT (about 15,000 files), a real source tree;
//   - src, big, tiny: the synthetic trees of the first table;
//   - an absolute path: a tree of the user's, measured where it is (on
//     whatever filesystem that is), and not copied.
//
// Warm: every tool reads the tree once before the first round. Cold: the
// page cache is dropped (sync; echo 3 > /proc/sys/vm/drop_caches) before
// every run of every tool, which needs root; without it the cold rows are
// skipped with a message. After each drop nix-hash --version runs once,
// so that only the tree is cold, not nix-hash's own binary and libraries
// (narhash is on tmpfs, the benchmark's own binary is running).

// realOptions are the flags of the real-filesystem table.
type realOptions struct {
	disk       *string
	trees      *string
	modes      *string
	procs      *string
	warmRounds *int
	coldRounds *int
}

func realFlags(fs *flag.FlagSet) realOptions {
	return realOptions{
		disk:       fs.String("disk", "/var/tmp/narhash-bench", "-trees real: where to put the trees on the disk filesystem (not tmpfs; kept for the next run)"),
		trees:      fs.String("real", "goroot,src,big,tiny", "-trees real: which trees: goroot, src, big, tiny, or absolute paths of trees to measure where they are"),
		modes:      fs.String("modes", "warm,cold", "-trees real: warm, cold (cold needs root, to drop the page cache)"),
		procs:      fs.String("procs", "", "-trees real: GOMAXPROCS values for narhash, one row each (e.g. 2,8; empty: narhash's default)"),
		warmRounds: fs.Int("warm-rounds", 5, "-trees real: warm rounds (after one warm-up round)"),
		coldRounds: fs.Int("cold-rounds", 3, "-trees real: cold rounds"),
	}
}

// realTree is one tree on one filesystem.
type realTree struct {
	name, path, fsType string
	narSize            int64
	files              int
}

// realRow is one line of the table: a tree, a cache state, and the
// medians of every tool ("narhash 8" is narhash with GOMAXPROCS=8); rounds
// holds every tool's samples in round order, so that round r of one tool
// ran in the same minute as round r of another.
type realRow struct {
	tree   realTree
	cold   bool
	m      map[string]sample
	rounds map[string][]sample
}

func benchReal(ctx context.Context, stdout, stderr io.Writer, only, tmpDir, self, narhash string, o realOptions) error {
	if !strings.Contains(","+only+",", ",real,") {
		return nil
	}
	if err := os.MkdirAll(*o.disk, 0o755); err != nil {
		return err
	}
	diskFS := fsName(*o.disk)
	if diskFS == "tmpfs" {
		return fmt.Errorf("-disk %s is on tmpfs; give a directory on the disk filesystem", *o.disk)
	}
	var procs []string
	for _, p := range strings.Split(*o.procs, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		if n, err := strconv.Atoi(p); err != nil || n < 1 {
			return fmt.Errorf("-procs: %q is not a positive number", p)
		}
		procs = append(procs, p)
	}
	if len(procs) == 0 {
		procs = []string{""}
	}
	warm := strings.Contains(","+*o.modes+",", ",warm,")
	cold := strings.Contains(","+*o.modes+",", ",cold,")
	coldNote := ""
	if cold {
		if err := dropCaches(); err != nil {
			fmt.Fprintf(stderr, "benchmark: skipping the cold rows: cannot drop the page cache (%v); run as root\n", err)
			coldNote = fmt.Sprintf("Cold rows skipped: cannot drop the page cache (%v).", err)
			cold = false
		}
	}
	_, nixErr := exec.LookPath("nix-hash")

	// The trees: on the disk, and on tmpfs when -dir is tmpfs.
	var tds []realTree
	tmpfs := fsName(tmpDir) == "tmpfs"
	for _, name := range strings.Split(*o.trees, ",") {
		var paths []string
		if filepath.IsAbs(name) {
			// A tree of the user's, measured where it is, on its own
			// filesystem.
			name = filepath.Clean(name)
			paths = append(paths, name)
		} else {
			build := realBuilder(ctx, name)
			if build == nil {
				return fmt.Errorf("-real: no tree %q (goroot, src, big, tiny, or an absolute path)", name)
			}
			dirs := []string{*o.disk}
			if tmpfs {
				dirs = append(dirs, tmpDir)
			}
			for _, d := range dirs {
				p := filepath.Join(d, name)
				if _, err := os.Stat(p + ".ok"); err != nil {
					fmt.Fprintf(stderr, "generating %s…\n", p)
					os.RemoveAll(p)
					if err := build(p); err != nil {
						return fmt.Errorf("generate %s: %w", p, err)
					}
					os.WriteFile(p+".ok", nil, 0o644)
				}
				paths = append(paths, p)
			}
		}
		for _, p := range paths {
			res, err := hasher.HashPath(ctx, p, nil)
			if err != nil {
				return fmt.Errorf("-real %s: %w", name, err)
			}
			files, err := countFiles(p)
			if err != nil {
				return err
			}
			tds = append(tds, realTree{name, p, fsName(p), res.NARSize, files})
		}
	}

	var rows []realRow
	for _, td := range tds {
		tools := []tool{}
		for _, p := range procs {
			tools = append(tools, tool{"narhash " + p, func(string, int64) []string { return []string{narhash, "hash", td.path} }})
		}
		if nixErr == nil {
			tools = append(tools, tool{"nix-hash", func(string, int64) []string { return []string{"nix-hash", "--type", "sha256", "--base32", td.path} }})
		}
		tools = append(tools, tool{"go-nix", func(string, int64) []string { return []string{self, "-gonix", td.path} }})
		warmTools := append(slices.Clone(tools), tool{"sha256", func(string, int64) []string { return []string{self, "-sha256", strconv.FormatInt(td.narSize, 10)} }})
		coldTools := append(slices.Clone(tools), tool{"readall", func(string, int64) []string { return []string{self, "-readall", td.path} }})
		if warm {
			m, rs, err := realRounds(ctx, stderr, self, td, warmTools, false, *o.warmRounds)
			if err != nil {
				return err
			}
			rows = append(rows, realRow{td, false, m, rs})
		}
		if cold && td.fsType != "tmpfs" {
			m, rs, err := realRounds(ctx, stderr, self, td, coldTools, true, *o.coldRounds)
			if err != nil {
				return err
			}
			rows = append(rows, realRow{td, true, m, rs})
		}
	}
	return realReport(stdout, tds, procs, rows, nixErr == nil, coldNote, *o.warmRounds, *o.coldRounds)
}

// warmFloors maps each tree to the SHA-256 floor of its warm row on the
// disk filesystem, which its cold row shares.
func warmFloors(rows []realRow) map[string]sample {
	floors := map[string]sample{}
	for _, row := range rows {
		if s, ok := row.m["sha256"]; ok && row.tree.fsType != "tmpfs" {
			floors[row.tree.name] = s
		}
	}
	return floors
}

// sample is the row's median of tool name; a cold row's SHA-256 floor is
// its tree's warm one (floors).
func (row realRow) sample(name string, floors map[string]sample) (sample, bool) {
	if s, ok := row.m[name]; ok {
		return s, ok
	}
	if name == "sha256" {
		s, ok := floors[row.tree.name]
		return s, ok
	}
	return sample{}, false
}

// realRounds runs every tool on td in turn, round by round (rotating who
// goes first), and returns the medians and the samples in round order.
// Warm, round 0 warms up and is not counted; cold, every run starts with
// the page cache dropped.
func realRounds(ctx context.Context, stderr io.Writer, self string, td realTree, tools []tool, cold bool, rounds int) (map[string]sample, map[string][]sample, error) {
	mode, first := "warm", 1
	if cold {
		mode, first = "cold", 0
	}
	samples := map[string][]sample{}
	for r := range rounds + first {
		fmt.Fprintf(stderr, "%s on %s, %s: round %d of %d\n", td.name, td.fsType, mode, r+1, rounds+first)
		order := slices.Clone(tools)
		for range r % len(order) {
			order = append(order[1:], order[0])
		}
		for _, tl := range order {
			if cold {
				if err := dropCaches(); err != nil {
					return nil, nil, err
				}
				exec.CommandContext(ctx, "nix-hash", "--version").Run() // its binary and libraries, not the tree
			}
			var env []string
			if p, ok := strings.CutPrefix(tl.name, "narhash "); ok && p != "" {
				env = []string{"GOMAXPROCS=" + p}
			}
			s, err := measureEnv(ctx, self, env, tl.cmd("", 0))
			if err != nil {
				return nil, nil, fmt.Errorf("%s on %s: %w", tl.name, td.path, err)
			}
			if r >= first {
				samples[tl.name] = append(samples[tl.name], s)
			}
		}
	}
	m := map[string]sample{}
	for name, ss := range samples {
		m[name] = median(ss)
	}
	return m, samples, nil
}

func realReport(stdout io.Writer, tds []realTree, procs []string, rows []realRow, nix bool, coldNote string, warmRounds, coldRounds int) error {
	var fss []string
	for _, td := range tds {
		if s := td.path + " " + td.fsType; !slices.Contains(fss, s) {
			fss = append(fss, s)
		}
	}
	fmt.Fprintf(stdout, "\n%s\nTrees: %s.\n\n", machineReal(), strings.Join(fss, ", "))
	fmt.Fprintln(stdout, "| tree | files | NAR size | filesystem | cache | GOMAXPROCS | narhash | nix-hash | go-nix | SHA-256 in memory | parallel read | narhash / SHA-256 | nix-hash / narhash | go-nix / narhash | narhash / parallel read |")
	fmt.Fprintln(stdout, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	agree := true
	floors := warmFloors(rows)
	for _, row := range rows {
		cache := "warm"
		if row.cold {
			cache = "cold"
		}
		get := func(name string) (sample, bool) { return row.sample(name, floors) }
		secs := func(name string) string {
			if s, ok := get(name); ok {
				return fmt.Sprintf("%.3f s", s.wall.Seconds())
			}
			return "–"
		}
		ratio := func(a, b string) string {
			sa, oka := get(a)
			sb, okb := get(b)
			if !oka || !okb || (b == "sha256" && row.cold) || (b == "readall" && !row.cold) {
				return "–"
			}
			return fmt.Sprintf("%.2f×", sa.wall.Seconds()/sb.wall.Seconds())
		}
		for _, p := range procs {
			nh := "narhash " + p
			for _, other := range []string{"nix-hash", "go-nix"} {
				if s, ok := row.m[other]; ok && s.out != row.m[nh].out {
					agree = false
				}
			}
			get2 := func(name string) string { // narhash's variant for this row
				if name == "narhash" {
					return nh
				}
				return name
			}
			r := func(a, b string) string { return ratio(get2(a), get2(b)) }
			gmp := p
			if gmp == "" {
				gmp = "default"
			}
			nixCol := "–"
			if nix {
				nixCol = secs("nix-hash")
			}
			fmt.Fprintf(stdout, "| %s | %d | %.0f MB | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
				row.tree.name, row.tree.files, float64(row.tree.narSize)/1e6, row.tree.fsType, cache, gmp,
				secs(nh), nixCol, secs("go-nix"), secs("sha256"), secs("readall"),
				r("narhash", "sha256"), r("nix-hash", "narhash"), r("go-nix", "narhash"), r("narhash", "readall"))
		}
	}
	var rounds []string
	if slices.ContainsFunc(rows, func(r realRow) bool { return !r.cold }) {
		rounds = append(rounds, fmt.Sprintf("%d warm rounds (after one warm-up)", warmRounds))
	}
	if slices.ContainsFunc(rows, func(r realRow) bool { return r.cold }) {
		rounds = append(rounds, fmt.Sprintf("%d cold rounds (page cache dropped before every run)", coldRounds))
	}
	fmt.Fprintf(stdout, "\nMedians of %s, tools interleaved. "+
		"Parallel read: %d goroutines listing every directory and reading every file once. All hashes agreed: %v.\n",
		strings.Join(rounds, " and "), readers, agree)
	if coldNote != "" {
		fmt.Fprintln(stdout, coldNote)
	}
	reportTargets(stdout, rows, procs[0])
	if !agree {
		return errors.New("the tools' hashes differ")
	}
	return nil
}

func realBuilder(ctx context.Context, name string) func(string) error {
	switch name {
	case "goroot":
		return func(p string) error {
			goroot, err := exec.CommandContext(ctx, "go", "env", "GOROOT").Output()
			if err != nil {
				return fmt.Errorf("go env GOROOT: %w", err)
			}
			if out, err := exec.CommandContext(ctx, "cp", "-a", strings.TrimSpace(string(goroot)), p).CombinedOutput(); err != nil {
				return fmt.Errorf("cp: %v: %s", err, out)
			}
			return nil
		}
	case "src":
		return nartest.BenchSrc
	case "big":
		return nartest.BenchBig
	case "tiny":
		return nartest.BenchTiny
	}
	return nil
}

// dropCaches writes back dirty pages and drops the page cache, dentries
// and inodes.
func dropCaches() error {
	syscall.Sync()
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200)
}

func countFiles(root string) (int, error) {
	n := 0
	err := filepath.WalkDir(root, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return err
	})
	return n, err
}

// fsName names the filesystem path is on.
func fsName(path string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return "unknown filesystem"
	}
	switch st.Type {
	case 0x01021994:
		return "tmpfs"
	case 0xEF53:
		return "ext4"
	case 0x9123683E:
		return "btrfs"
	case 0x58465342:
		return "xfs"
	case 0x2FC12FC1:
		return "zfs"
	case 0x794c7630:
		return "overlayfs"
	}
	return fmt.Sprintf("filesystem 0x%x", st.Type)
}

// machineReal describes the machine: CPU, cores, kernel, Nix and Go.
func machineReal() string {
	s := machine(".")
	s, _, _ = strings.Cut(s, "; trees on")
	nixVersion := "no Nix"
	if out, err := exec.Command("nix-hash", "--version").Output(); err == nil {
		nixVersion = strings.TrimSpace(string(out))
	}
	load := ""
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = "; load average at the end " + strings.Join(strings.Fields(string(b))[:3], " ")
	}
	return fmt.Sprintf("%s; %s; %s%s.", s, nixVersion, goVersionShort(), load)
}

func goVersionShort() string {
	return strings.TrimPrefix(strings.TrimSpace(goVersion()), "go version ")
}

// measureEnv is measure with extra environment variables for the tool
// (spawn passes its environment on).
func measureEnv(ctx context.Context, self string, env, argv []string) (sample, error) {
	cmd := exec.CommandContext(ctx, self, append([]string{"-spawn"}, argv...)...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return sample{}, fmt.Errorf("%v: %s", err, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(errOut.String()), "\n")
	var ns, rss int64
	if _, err := fmt.Sscanf(lines[len(lines)-1], "spawn: %d %d", &ns, &rss); err != nil {
		return sample{}, fmt.Errorf("no measurement in %q", errOut.String())
	}
	return sample{time.Duration(ns), rss, strings.TrimSpace(out.String())}, nil
}
