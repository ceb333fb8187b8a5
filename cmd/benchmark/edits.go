package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/narhash/narhash/api"
	"github.com/narhash/narhash/nar"
	"github.com/narhash/narhash/nar/nartest"
)

// The incremental rehash (issue 9), with -trees edits and -trees 200k:
//
//   - edits: narhashd watches a copy of GOROOT on the disk filesystem
//     (-edits-dir, not tmpfs); the benchmark appends a line to random
//     files, one at a time, sends a query through the Go client right
//     after each edit and times edit to fresh answer, next to a full
//     `narhash hash` and nix-hash of the tree. Each edit is printed with
//     the file's position in the archive: the fraction of the archive
//     from the file on (the suffix a resumed hash reads). Every answer
//     is checked against a full hash, after the timing.
//   - 200k: narhashd's ready time and memory watching 200,000 files.

// editOptions are the flags of the incremental benchmark.
type editOptions struct {
	dir   *string
	edits *int
	seed  *uint64
}

func editFlags(fs *flag.FlagSet) editOptions {
	return editOptions{
		dir:   fs.String("edits-dir", "/var/tmp/narhash-bench-edits", "where -trees edits copies GOROOT: on the disk filesystem, not tmpfs"),
		edits: fs.Int("edits", 25, "random one-file edits for -trees edits"),
		seed:  fs.Uint64("seed", uint64(time.Now().UnixNano()), "seed of the edits' choice of files"),
	}
}

// benchIncremental runs what -trees selects of the incremental benchmark.
func benchIncremental(ctx context.Context, stdout, stderr io.Writer, dir, only string, o editOptions) error {
	has := func(name string) bool { return strings.Contains(","+only+",", ","+name+",") }
	if !has("edits") && !has("200k") {
		return nil
	}
	narhashd := filepath.Join(dir, "narhashd")
	if err := goBuild(ctx, stderr, narhashd, "./cmd/narhashd"); err != nil {
		return err
	}
	if has("edits") {
		if err := benchEdits(ctx, stdout, stderr, dir, narhashd, o); err != nil {
			return fmt.Errorf("edits: %w", err)
		}
	}
	if has("200k") {
		if err := bench200k(ctx, stdout, stderr, dir, narhashd); err != nil {
			return fmt.Errorf("200k: %w", err)
		}
	}
	return nil
}

// daemon is a narhashd started by the benchmark.
type daemon struct {
	cmd   *exec.Cmd
	c     *api.Client
	ready time.Duration // from start to the root's first clean status
}

// startDaemon starts narhashd watching root, with a fresh database in
// run, and waits until root is clean.
func startDaemon(ctx context.Context, stderr io.Writer, narhashd, run, root string) (*daemon, error) {
	os.RemoveAll(run)
	sock := filepath.Join(run, "narhashd.sock")
	cmd := exec.CommandContext(ctx, narhashd, "--watch", root, "--socket", sock, "--db", filepath.Join(run, "cache.db"), "--log-level", "warn")
	cmd.Stderr = stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	d := &daemon{cmd: cmd, c: &api.Client{Socket: sock}}
	for {
		st, err := d.c.Status(ctx)
		if err == nil && len(st.Roots) == 1 && st.Roots[0].State == "clean" {
			break
		}
		if time.Since(start) > 5*time.Minute || ctx.Err() != nil {
			d.stop()
			return nil, fmt.Errorf("narhashd never reported %s clean", root)
		}
		time.Sleep(5 * time.Millisecond)
	}
	d.ready = time.Since(start)
	return d, nil
}

func (d *daemon) stop() { d.cmd.Process.Signal(os.Interrupt); d.cmd.Wait() }

// fileAt is a file of the tree and where its node begins in the archive.
type fileAt struct {
	path   string // relative to the tree
	offset int64  // of its contents, in the archive
}

// archiveFiles lists the regular files of the tree at root in archive
// order with their offsets, and the archive's size.
func archiveFiles(ctx context.Context, root string) ([]fileAt, int64, error) {
	pr, pw := io.Pipe()
	var size int64
	go func() {
		res, err := nar.Dump(ctx, pw, root, nil)
		size = res.Size
		pw.CloseWithError(err)
	}()
	l, err := nar.List(pr)
	pr.Close()
	if err != nil {
		return nil, 0, err
	}
	var files []fileAt
	var walk func(prefix string, l *nar.Listing)
	walk = func(prefix string, l *nar.Listing) {
		switch l.Type {
		case nar.TypeRegular:
			files = append(files, fileAt{prefix, l.Offset})
		case nar.TypeDirectory:
			for _, e := range l.Entries {
				walk(strings.TrimPrefix(prefix+"/"+e.Name, "/"), e.Listing)
			}
		}
	}
	walk("", l)
	return files, size, nil
}

func benchEdits(ctx context.Context, stdout, stderr io.Writer, dir, narhashd string, o editOptions) error {
	out, err := exec.CommandContext(ctx, "go", "env", "GOROOT").Output()
	if err != nil {
		return fmt.Errorf("go env GOROOT: %w", err)
	}
	goroot := strings.TrimSpace(string(out))
	tree := filepath.Join(*o.dir, "goroot")
	if _, err := os.Stat(tree + ".ok"); err != nil {
		fmt.Fprintf(stderr, "copying %s to %s…\n", goroot, tree)
		os.RemoveAll(tree)
		if err := os.MkdirAll(*o.dir, 0o755); err != nil {
			return err
		}
		if out, err := exec.CommandContext(ctx, "cp", "-R", goroot, tree).CombinedOutput(); err != nil {
			return fmt.Errorf("cp: %v: %s", err, out)
		}
		// A copy made by another user may hold read-only files: the
		// edits append to them.
		if out, err := exec.CommandContext(ctx, "chmod", "-R", "u+w", tree).CombinedOutput(); err != nil {
			return fmt.Errorf("chmod: %v: %s", err, out)
		}
		os.WriteFile(tree+".ok", nil, 0o644)
	}
	files, size, err := archiveFiles(ctx, tree)
	if err != nil {
		return err
	}
	d, err := startDaemon(ctx, stderr, narhashd, filepath.Join(*o.dir, "run"), tree)
	if err != nil {
		return err
	}
	defer d.stop()

	// The full hashes, warm: narhash hash and nix-hash of the tree. A
	// narhash hash also follows every edit, to check the answer: the
	// median of all of them is what the edits are compared with, so that
	// the load of a shared machine weighs on both alike.
	narhash := filepath.Join(dir, "narhash")
	full := map[string]time.Duration{}
	var fulls []time.Duration
	fullHash := func() (string, error) {
		t0 := time.Now()
		out, err := exec.CommandContext(ctx, narhash, "hash", tree).Output()
		if err != nil {
			return "", fmt.Errorf("narhash hash: %v %s", err, out)
		}
		fulls = append(fulls, time.Since(t0))
		return strings.TrimSpace(string(out)), nil
	}
	for _, tl := range []struct {
		name string
		argv []string
		runs int
	}{
		{"nix-hash", []string{"nix-hash", "--type", "sha256", "--base32", tree}, 3},
	} {
		if _, err := exec.LookPath(tl.argv[0]); err != nil {
			continue
		}
		var d []time.Duration
		for range tl.runs {
			t0 := time.Now()
			if out, err := exec.CommandContext(ctx, tl.argv[0], tl.argv[1:]...).Output(); err != nil {
				return fmt.Errorf("%s: %v %s", tl.name, err, out)
			}
			d = append(d, time.Since(t0))
		}
		full[tl.name] = pct(d, 50)
	}
	for range 7 {
		if _, err := fullHash(); err != nil {
			return err
		}
	}

	// Edits: random files, then the last file of the archive.
	rng := rand.New(rand.NewPCG(*o.seed, 9))
	type result struct {
		file            string
		suffix, latency float64 // suffix fraction; latency over a full narhash hash
		took            time.Duration
		source          string
		wrong           bool
	}
	var results []result
	for i := range *o.edits + 1 {
		f := files[rng.IntN(len(files))]
		if i == *o.edits {
			f = files[len(files)-1]
		}
		path := filepath.Join(tree, f.path)
		suffix := float64(size-f.offset) / float64(size)
		t0 := time.Now()
		if err := nartest.AppendTo(path, fmt.Sprintf("\n// narhash benchmark edit %d\n", i)); err != nil {
			return err
		}
		got, err := d.c.Hash(ctx, tree, "", false)
		took := time.Since(t0)
		if err != nil {
			return err
		}
		want, err := fullHash()
		if err != nil {
			return err
		}
		results = append(results, result{file: f.path, suffix: suffix, took: took, source: got.Source, wrong: got.Hash != want})
		if files, size, err = archiveFiles(ctx, tree); err != nil { // the offsets after it moved
			return err
		}
	}

	base := pct(fulls, 50)
	for i := range results {
		results[i].latency = float64(results[i].took) / float64(base)
	}
	fmt.Fprintf(stdout, "\nedit→fresh on a copy of GOROOT on the disk filesystem (%s, %d files, %.0f MiB of archive; load %s; seed %d):\n\n",
		*o.dir, len(files), float64(size)/(1<<20), loadavg(), *o.seed)
	fmt.Fprintf(stdout, "full hashes of the tree, median: narhash hash %s (%d runs, one after each edit)", ms(base), len(fulls))
	if n, ok := full["nix-hash"]; ok {
		fmt.Fprintf(stdout, ", nix-hash %s", ms(n))
	}
	fmt.Fprintf(stdout, "; narhashd ready in %.2f s\n\n", d.ready.Seconds())
	fmt.Fprintln(stdout, "| # | file | suffix | edit→fresh | ÷ full hash | answer |")
	fmt.Fprintln(stdout, "|---|---|---|---|---|---|")
	wrong := 0
	var lat, suf []float64
	var tooks []time.Duration
	for i, r := range results {
		answer := r.source
		if r.wrong {
			answer += ", WRONG"
			wrong++
		}
		fmt.Fprintf(stdout, "| %d | %s | %.3f | %s | %.3f | %s |\n", i, r.file, r.suffix, ms(r.took), r.latency, answer)
		if i < *o.edits {
			lat, suf, tooks = append(lat, r.latency), append(suf, r.suffix), append(tooks, r.took)
		}
	}
	last := results[len(results)-1]
	medLat, medSuf := median64(lat), median64(suf)
	fmt.Fprintf(stdout, "\nover %d random edits: edit→fresh median %s (%.3f of a full hash), p90 %s; median suffix %.3f; wrong answers %d\n",
		len(lat), ms(pct(tooks, 50)), medLat, ms(pct(tooks, 90)), medSuf, wrong)
	fmt.Fprintf(stdout, "median edit→fresh ≤ median suffix + 0.15: %.3f ≤ %.3f: %v; the last file: %.3f < 0.1: %v\n",
		medLat, medSuf+0.15, medLat <= medSuf+0.15, last.latency, last.latency < 0.1)

	var q []time.Duration
	for range 2000 {
		t0 := time.Now()
		if _, err := d.c.Hash(ctx, tree, "", false); err != nil {
			return err
		}
		q = append(q, time.Since(t0))
	}
	rss, hwm := procMem(d.cmd.Process.Pid)
	fmt.Fprintf(stdout, "query of the unchanged root through the Go client: median %s, p99 %s (2000 queries); narhashd RSS %.0f MiB (peak %.0f MiB)\n",
		ms(pct(q, 50)), ms(pct(q, 99)), float64(rss)/1024, float64(hwm)/1024)
	if wrong > 0 {
		return fmt.Errorf("%d wrong answers", wrong)
	}
	return nil
}

// bench200k measures narhashd's ready time and memory watching 200,000
// small files in 2,201 directories.
func bench200k(ctx context.Context, stdout, stderr io.Writer, dir, narhashd string) error {
	tree := filepath.Join(dir, "files200k")
	if _, err := os.Stat(tree + ".ok"); err != nil {
		fmt.Fprintln(stderr, "generating files200k (200,000 files of 10 B to 4 KiB)…")
		os.RemoveAll(tree)
		rng := rand.New(rand.NewPCG(200, 0))
		buf := make([]byte, 4096)
		for i := range buf {
			buf[i] = byte('a' + i%26)
		}
		for a := range 200 {
			for b := range 10 {
				sub := filepath.Join(tree, fmt.Sprintf("d%03d", a), fmt.Sprintf("e%d", b))
				if err := os.MkdirAll(sub, 0o755); err != nil {
					return err
				}
				for c := range 100 {
					if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%02d.txt", c)), buf[:10+rng.IntN(4086)], 0o644); err != nil {
						return err
					}
				}
			}
		}
		os.WriteFile(tree+".ok", nil, 0o644)
	}
	d, err := startDaemon(ctx, stderr, narhashd, filepath.Join(dir, "run200k"), tree)
	if err != nil {
		return err
	}
	defer d.stop()
	rss0, hwm0 := procMem(d.cmd.Process.Pid)
	var q []time.Duration
	for range 1000 {
		t0 := time.Now()
		if _, err := d.c.Hash(ctx, tree, "", false); err != nil {
			return err
		}
		q = append(q, time.Since(t0))
	}
	// Edits at random places, each queried.
	rng := rand.New(rand.NewPCG(200, 1))
	var e []time.Duration
	for i := range 20 {
		p := filepath.Join(tree, fmt.Sprintf("d%03d/e%d/f%02d.txt", rng.IntN(200), rng.IntN(10), rng.IntN(100)))
		t0 := time.Now()
		if err := nartest.AppendTo(p, fmt.Sprintf("edit %d\n", i)); err != nil {
			return err
		}
		if _, err := d.c.Hash(ctx, tree, "", false); err != nil {
			return err
		}
		e = append(e, time.Since(t0))
	}
	rss, hwm := procMem(d.cmd.Process.Pid)
	var full []time.Duration
	for range 3 {
		t0 := time.Now()
		if out, err := exec.CommandContext(ctx, filepath.Join(dir, "narhash"), "hash", tree).Output(); err != nil {
			return fmt.Errorf("narhash hash: %v %s", err, out)
		}
		full = append(full, time.Since(t0))
	}
	st, _ := d.c.Status(ctx)
	watches := 0
	if len(st.Roots) == 1 {
		watches = st.Roots[0].Watches
	}
	fmt.Fprintf(stdout, "\nnarhashd watching 200,000 files in 2,201 directories (%s; %d watches; load %s): ready (first hash and watches) in %.2f s; RSS %.0f MiB (peak %.0f MiB) when ready, %.0f MiB (peak %.0f MiB) after 1000 queries and 20 edits; query median %s, p99 %s; edit→fresh median %s, p90 %s (a full narhash hash: %s)\n",
		tree, watches, loadavg(), d.ready.Seconds(), float64(rss0)/1024, float64(hwm0)/1024, float64(rss)/1024, float64(hwm)/1024,
		ms(pct(q, 50)), ms(pct(q, 99)), ms(pct(e, 50)), ms(pct(e, 90)), ms(pct(full, 50)))
	return nil
}

func median64(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
