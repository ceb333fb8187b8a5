package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/narhash/narhash/api"
)

// benchDaemon starts narhashd watching the tree at root, waits until its
// hash is known, and measures query latency through the Go client and
// through `narhash query`, and the daemon's memory.
func benchDaemon(ctx context.Context, stdout, stderr io.Writer, dir, root string, queries int) error {
	narhashd := filepath.Join(dir, "narhashd")
	if err := goBuild(ctx, stderr, narhashd, "./cmd/narhashd"); err != nil {
		return err
	}
	run := filepath.Join(dir, "daemon-run")
	os.RemoveAll(run)
	sock := filepath.Join(run, "narhashd.sock")
	cmd := exec.CommandContext(ctx, narhashd, "--watch", root, "--socket", sock, "--db", filepath.Join(run, "cache.db"), "--log-level", "warn")
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }()
	c := &api.Client{Socket: sock}
	start := time.Now()
	for {
		st, err := c.Status(ctx)
		if err == nil && len(st.Roots) == 1 && st.Roots[0].State == "clean" {
			break
		}
		if time.Since(start) > 2*time.Minute {
			return fmt.Errorf("narhashd never reported %s clean", root)
		}
		time.Sleep(20 * time.Millisecond)
	}
	ready := time.Since(start)

	var client []time.Duration
	for range queries {
		t0 := time.Now()
		if _, err := c.Hash(ctx, root, "", false); err != nil {
			return err
		}
		client = append(client, time.Since(t0))
	}
	narhash := filepath.Join(dir, "narhash")
	var cli []time.Duration
	for range max(50, queries/20) {
		q := exec.CommandContext(ctx, narhash, "query", "--socket", sock, root)
		t0 := time.Now()
		if out, err := q.Output(); err != nil || len(strings.TrimSpace(string(out))) != 52 {
			return fmt.Errorf("narhash query: %v %q", err, out)
		}
		cli = append(cli, time.Since(t0))
	}
	rss, hwm := procMem(cmd.Process.Pid)
	st, _ := c.Status(ctx)
	watches := 0
	if len(st.Roots) == 1 {
		watches = st.Roots[0].Watches
	}
	fmt.Fprintf(stdout, "\nnarhashd watching tiny (100,000 files, %d watched directories; first hash and watches ready in %.2f s):\n\n", watches, ready.Seconds())
	fmt.Fprintln(stdout, "| query of the unchanged root | median | p99 | queries |")
	fmt.Fprintln(stdout, "|---|---|---|---|")
	fmt.Fprintf(stdout, "| Go client (api.Client) | %s | %s | %d |\n", ms(pct(client, 50)), ms(pct(client, 99)), len(client))
	fmt.Fprintf(stdout, "| `narhash query` (a process each) | %s | %s | %d |\n", ms(pct(cli, 50)), ms(pct(cli, 99)), len(cli))
	fmt.Fprintf(stdout, "\nnarhashd memory while watching it: RSS %.0f MiB (peak %.0f MiB).\n", float64(rss)/1024, float64(hwm)/1024)
	return nil
}

func pct(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d.Microseconds())/1000) }

// procMem returns a process's VmRSS and VmHWM in KiB.
func procMem(pid int) (rss, hwm int64) {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = v
		case "VmHWM:":
			hwm = v
		}
	}
	return rss, hwm
}
