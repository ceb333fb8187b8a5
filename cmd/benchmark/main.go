// Command benchmark measures `narhash hash` side by side with nix-hash,
// go-nix's DumpPath into SHA-256 and a plain in-memory SHA-256 of the same
// number of bytes, on three trees it generates deterministically: one
// 1 GiB file (big), a source-like tree (src) and 100,000 tiny files
// (tiny). On each tree the tools run in turn, round by round (the first
// round warms up and is not counted); it checks that every tool
// prints the same hash and reports medians, peak memory and ratios.
//
// Then it starts narhashd watching the tiny tree and measures query
// latency (through the Go client and through `narhash query`) and the
// daemon's memory; and it measures narhash hash --git on a git repository
// of a copy of GOROOT next to nix flake metadata (gitrepo.go).
//
// -trees picks what to measure: big, src, tiny (the daemon with it), git,
// and the incremental rehash (edits.go): edits, 200k.
//
// It is its own module so that go-nix is never a dependency of narhash:
//
//	go run -C cmd/benchmark . [-rounds 7] [-dir /dev/shm/narhash-bench]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/minio/sha256-simd"
	"github.com/narhash/narhash/hasher"
	"github.com/narhash/narhash/nar/nartest"
	gonix "github.com/nix-community/go-nix/pkg/nar"
)

func main() {
	// Child modes: the bench runs every tool as a process of its own, so
	// that each one's time and peak memory are measured the same way.
	if len(os.Args) == 3 && os.Args[1] == "-gonix" {
		os.Exit(childGoNix(os.Args[2]))
	}
	if len(os.Args) == 3 && os.Args[1] == "-sha256" {
		os.Exit(childSHA256(os.Args[2]))
	}
	if len(os.Args) == 3 && os.Args[1] == "-readall" {
		os.Exit(childReadAll(os.Args[2]))
	}
	if len(os.Args) > 2 && os.Args[1] == "-spawn" {
		os.Exit(spawn(os.Args[2:]))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// childGoNix prints the nix32 SHA-256 of go-nix's dump of path.
func childGoNix(path string) int {
	h := sha256.New()
	if err := gonix.DumpPath(h, path); err != nil {
		fmt.Fprintln(os.Stderr, "go-nix:", err)
		return 1
	}
	fmt.Println(hasher.EncodeNix32(h.Sum(nil)))
	return 0
}

// childSHA256 hashes n bytes of a 4 MiB in-memory buffer: the floor for
// any NAR hasher of an n-byte archive.
func childSHA256(arg string) int {
	n, err := strconv.ParseInt(arg, 10, 64)
	if err != nil {
		return 2
	}
	buf := make([]byte, 4<<20)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	h := sha256.New()
	for n > 0 {
		k := min(n, int64(len(buf)))
		h.Write(buf[:k])
		n -= k
	}
	fmt.Printf("%x\n", h.Sum(nil))
	return 0
}

// goBuild builds a command of narhash's own module (where the replace
// directive of this module points) into out, as the README installs it:
// static, with CGO_ENABLED=0.
func goBuild(ctx context.Context, stderr io.Writer, out, pkg string) error {
	dir, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", "github.com/narhash/narhash").Output()
	if err != nil {
		return fmt.Errorf("find narhash's module: %w", err)
	}
	build := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	build.Dir = strings.TrimSpace(string(dir))
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stdout, build.Stderr = stderr, stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("go build %s: %w", pkg, err)
	}
	return nil
}

// spawn runs a command and reports its wall time and peak RSS on the last
// line of standard error. It runs as a fresh, small process: a child's
// ru_maxrss includes the memory of the process it was forked from, so
// forking tools straight from the (larger) benchmark would overstate them.
func spawn(argv []string) int {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	fmt.Fprintf(os.Stderr, "\nspawn: %d %d\n", wall.Nanoseconds(), ru.Maxrss)
	return 0
}

type tree struct {
	name  string
	build func(string) error
	desc  string
}

var trees = []tree{
	{"big", nartest.BenchBig, "one 1 GiB file"},
	{"src", nartest.BenchSrc, "20,000 files of 1-64 KiB, 1,111 dirs, 5% executable, 200 symlinks"},
	{"tiny", nartest.BenchTiny, "100,000 files of 10-200 B, 1,111 dirs"},
}

type tool struct {
	name string
	cmd  func(path string, narSize int64) []string
}

type sample struct {
	wall time.Duration
	rss  int64 // KiB
	out  string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("benchmark", flag.ContinueOnError)
	defDir := filepath.Join(os.TempDir(), "narhash-bench")
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		defDir = "/dev/shm/narhash-bench"
	}
	dir := fs.String("dir", defDir, "where to build the trees and binaries (kept for the next run)")
	realOpts := realFlags(fs) // realfs.go
	rounds := fs.Int("rounds", 7, "interleaved rounds; the table shows medians")
	only := fs.String("trees", "big,src,tiny,git", "which trees to measure: big, src, tiny, git (the git view), real (the real-filesystem table, realfs.go)")
	queries := fs.Int("queries", 2000, "daemon queries through the Go client (0: skip the daemon benchmark)")
	incr := editFlags(fs) // edits.go
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		fmt.Fprintln(stderr, "benchmark:", err)
		return 1
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stderr, "benchmark:", err)
		return 1
	}
	narhash := filepath.Join(*dir, "narhash")
	fmt.Fprintln(stderr, "building narhash…")
	if err := goBuild(ctx, stderr, narhash, "./cmd/narhash"); err != nil {
		fmt.Fprintln(stderr, "benchmark:", err)
		return 1
	}
	tools := []tool{
		{"narhash", func(p string, _ int64) []string { return []string{narhash, "hash", p} }},
		{"nix-hash", func(p string, _ int64) []string { return []string{"nix-hash", "--type", "sha256", "--base32", p} }},
		{"go-nix", func(p string, _ int64) []string { return []string{self, "-gonix", p} }},
		{"sha256", func(_ string, n int64) []string { return []string{self, "-sha256", strconv.FormatInt(n, 10)} }},
	}
	if _, err := exec.LookPath("nix-hash"); err != nil {
		fmt.Fprintln(stderr, "benchmark: nix-hash not found (apt-get install -y nix-bin); measuring without it")
		tools = slices.Delete(tools, 1, 2)
	}

	var selected []tree
	for _, t := range trees {
		if strings.Contains(","+*only+",", ","+t.name+",") {
			selected = append(selected, t)
		}
	}
	paths := map[string]string{}
	sizes := map[string]int64{}
	for _, t := range selected {
		p := filepath.Join(*dir, t.name)
		if _, err := os.Stat(p + ".ok"); err != nil {
			fmt.Fprintf(stderr, "generating %s (%s)…\n", t.name, t.desc)
			os.RemoveAll(p)
			if err := t.build(p); err != nil {
				fmt.Fprintln(stderr, "benchmark:", err)
				return 1
			}
			os.WriteFile(p+".ok", nil, 0o644)
		}
		paths[t.name] = p
		res, err := hasher.HashPath(ctx, p, nil) // warms the page cache, and gives the NAR size
		if err != nil {
			fmt.Fprintln(stderr, "benchmark:", err)
			return 1
		}
		sizes[t.name] = res.NARSize
	}

	// Tree by tree: every tool in turn, round by round, so the tools are
	// compared under the same conditions; round 0 warms up.
	samples := map[string]map[string][]sample{}
	for _, t := range selected {
		samples[t.name] = map[string][]sample{}
		for r := range *rounds + 1 {
			order := slices.Clone(tools)
			for range r % len(order) { // rotate who goes first
				order = append(order[1:], order[0])
			}
			for _, tl := range order {
				if ctx.Err() != nil {
					return 1
				}
				s, err := measure(ctx, self, tl.cmd(paths[t.name], sizes[t.name]))
				if err != nil {
					fmt.Fprintf(stderr, "benchmark: %s on %s: %v\n", tl.name, t.name, err)
					return 1
				}
				if r > 0 {
					samples[t.name][tl.name] = append(samples[t.name][tl.name], s)
				}
			}
		}
		fmt.Fprintf(stderr, "%s: %d rounds done\n", t.name, *rounds)
	}
	status := 0
	if len(selected) > 0 {
		status = report(stdout, stderr, selected, tools, samples, sizes, *dir)
	} else if strings.Contains(","+*only+",", ",git,") {
		fmt.Fprintf(stdout, "%s\n", machine(*dir))
	}
	if err := benchReal(ctx, stdout, stderr, *only, *dir, self, narhash, realOpts); err != nil {
		fmt.Fprintln(stderr, "benchmark: real:", err)
		return 1
	}
	if strings.Contains(","+*only+",", ",git,") {
		if err := benchGit(ctx, stdout, stderr, *dir, self, narhash, *rounds); err != nil {
			fmt.Fprintln(stderr, "benchmark: git:", err)
			return 1
		}
	}
	if err := benchIncremental(ctx, stdout, stderr, *dir, *only, incr); err != nil {
		fmt.Fprintln(stderr, "benchmark:", err)
		return 1
	}
	if *queries > 0 && paths["tiny"] != "" {
		if err := benchDaemon(ctx, stdout, stderr, *dir, paths["tiny"], *queries); err != nil {
			fmt.Fprintln(stderr, "benchmark: daemon:", err)
			return 1
		}
	}
	return status
}

// measure runs a command through spawn and returns its wall time, peak
// RSS and output.
func measure(ctx context.Context, self string, argv []string) (sample, error) {
	return measureEnv(ctx, self, nil, argv)
}

func median(ss []sample) sample {
	s := slices.Clone(ss)
	slices.SortFunc(s, func(a, b sample) int { return int(a.wall - b.wall) })
	m := s[len(s)/2]
	m.rss = slices.MaxFunc(ss, func(a, b sample) int { return int(a.rss - b.rss) }).rss
	return m
}

func report(stdout, stderr io.Writer, selected []tree, tools []tool, samples map[string]map[string][]sample, sizes map[string]int64, dir string) int {
	status := 0
	has := func(name string) bool { return slices.ContainsFunc(tools, func(t tool) bool { return t.name == name }) }
	fmt.Fprintf(stdout, "%s\n\n", machine(dir))
	fmt.Fprintln(stdout, "| tree | NAR size | narhash | nix-hash | go-nix | SHA-256 in memory | nix-hash / narhash | go-nix / narhash | narhash / SHA-256 | peak RSS narhash, nix-hash, go-nix |")
	fmt.Fprintln(stdout, "|---|---|---|---|---|---|---|---|---|---|")
	for _, t := range selected {
		m := map[string]sample{}
		for _, tl := range tools {
			m[tl.name] = median(samples[t.name][tl.name])
		}
		// Every tool must agree on the hash.
		for _, tl := range []string{"nix-hash", "go-nix"} {
			if has(tl) && m[tl].out != m["narhash"].out {
				fmt.Fprintf(stderr, "benchmark: %s: narhash says %s, %s says %s\n", t.name, m["narhash"].out, tl, m[tl].out)
				status = 1
			}
		}
		secs := func(name string) string {
			if !has(name) {
				return "–"
			}
			return fmt.Sprintf("%.3f s", m[name].wall.Seconds())
		}
		ratio := func(a, b string) string {
			if !has(a) || !has(b) {
				return "–"
			}
			return fmt.Sprintf("%.2f×", m[a].wall.Seconds()/m[b].wall.Seconds())
		}
		rss := func(name string) string {
			if !has(name) {
				return "–"
			}
			return fmt.Sprintf("%.0f MiB", float64(m[name].rss)/1024)
		}
		fmt.Fprintf(stdout, "| %s | %.0f MB | %s | %s | %s | %s | %s | %s | %s | %s, %s, %s |\n", t.name, float64(sizes[t.name])/1e6,
			secs("narhash"), secs("nix-hash"), secs("go-nix"), secs("sha256"),
			ratio("nix-hash", "narhash"), ratio("go-nix", "narhash"), ratio("narhash", "sha256"),
			rss("narhash"), rss("nix-hash"), rss("go-nix"))
	}
	fmt.Fprintf(stdout, "\nMedians of %d interleaved rounds; peak RSS is the largest of the rounds. All hashes agreed: %v.\n",
		len(samples[selected[0].name]["narhash"]), status == 0)
	return status
}

// machine describes where the benchmark ran.
func machine(dir string) string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "model name") {
				cpu = strings.TrimSpace(line[strings.Index(line, ":")+1:])
				break
			}
		}
	}
	var uts syscall.Utsname
	syscall.Uname(&uts)
	kernel := utsString(uts.Release[:])
	fsType := "unknown filesystem"
	var st syscall.Statfs_t
	if syscall.Statfs(dir, &st) == nil {
		switch st.Type {
		case 0x01021994:
			fsType = "tmpfs"
		case 0xEF53:
			fsType = "ext4"
		default:
			fsType = fmt.Sprintf("filesystem 0x%x", st.Type)
		}
	}
	nixVersion := "no Nix"
	if out, err := exec.Command("nix-hash", "--version").Output(); err == nil {
		nixVersion = strings.TrimSpace(string(out))
	}
	return fmt.Sprintf("Machine: %s, %d cores, Linux %s; trees on %s (warm page cache); %s; %s.",
		cpu, runtime.NumCPU(), kernel, fsType, nixVersion, runtime.Version())
}

func utsString(b []int8) string {
	var s []byte
	for _, c := range b {
		if c == 0 {
			break
		}
		s = append(s, byte(c))
	}
	return string(s)
}
