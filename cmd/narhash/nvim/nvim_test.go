// Package nvim_test runs the Neovim plugin beside it headless, against a
// real narhashd and without one, and checks the hashes it shows against
// narhash's offline hash and nix-hash.
package nvim_test

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/narhash/narhash/hasher"
	"github.com/narhash/narhash/nar/nartest"
)

// wait bounds every wait of the test; none sleeps.
const wait = 2 * time.Minute

// commands are narhash and narhashd, built once for the tests.
var commands = nartest.NewCommands("github.com/narhash/narhash/cmd/narhash", "github.com/narhash/narhash/cmd/narhashd")

func TestMain(m *testing.M) {
	code := m.Run()
	commands.Remove()
	os.Exit(code)
}

type step struct {
	Name, Status, SRI, Nix32, Base16, Source, View, Note, Err string
}

type result struct {
	Steps              []step
	Register, Inserted string
	Messages           string
	MessagesBefore     string `json:"messages_before"`
	Error              string
	// With NARHASH_TEST_FIFO: what the plugin showed while a FIFO was in
	// the project, and its hash once the FIFO went.
	Fifo struct{ Status, Err, Hash, After string }
}

// hashes is the tree's NAR hash as narhash computes it offline, checked
// against nix-hash when Nix is installed. With git, it is the git view's
// hash, from the narhash binary under test (whose own tests compare it
// with Nix's).
func hashes(t *testing.T, bin, root string, git bool) [3]string {
	t.Helper()
	if git {
		out, err := exec.Command(filepath.Join(bin, "narhash"), "hash", "--git", "--sri", root).Output()
		if err != nil {
			t.Fatalf("narhash hash --git %s: %v", root, err)
		}
		h, err := hasher.Parse(strings.TrimSpace(string(out)), hasher.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		return [3]string{h.Format(hasher.SRI), h.Format(hasher.Nix32), h.Format(hasher.Base16)}
	}
	res, err := hasher.HashPath(context.Background(), root, nil)
	if err != nil {
		t.Fatal(err)
	}
	nix32 := res.Hash.Format(hasher.Nix32)
	if _, err := exec.LookPath("nix-hash"); err == nil {
		out, err := exec.Command("nix-hash", "--type", "sha256", "--base32", root).Output()
		if err != nil {
			t.Fatalf("nix-hash %s: %v", root, err)
		}
		if got := strings.TrimSpace(string(out)); got != nix32 {
			t.Fatalf("offline hash %s, nix-hash %s", nix32, got)
		}
	} else {
		t.Log("nix-hash not installed: compared with narhash's offline hash only")
	}
	return [3]string{res.Hash.Format(hasher.SRI), nix32, res.Hash.Format(hasher.Base16)}
}

// runNvim runs testdata/init.lua in a headless Neovim, showing view
// ("dir", "git", or "auto" in a git worktree) of root and editing the
// file edit, and checks and returns what it saw.
func runNvim(t *testing.T, bin, root, socket, view, edit string, env ...string) result {
	t.Helper()
	git := view != "dir"
	wantView := map[bool]string{false: "dir", true: "git"}[git]
	// The hash the tree will have once Neovim wrote the file: made here,
	// then undone.
	const text = "written by the narhash plugin test"
	p := filepath.Join(root, edit)
	old, err := os.ReadFile(p)
	existed := err == nil
	if err := os.WriteFile(p, []byte(text+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	want := hashes(t, bin, root, git)
	if existed {
		err = os.WriteFile(p, old, 0o644)
	} else {
		err = os.Remove(p)
	}
	if err != nil {
		t.Fatal(err)
	}
	before := hashes(t, bin, root, git)
	plugin, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	init, err := filepath.Abs(filepath.Join("testdata", "init.lua"))
	if err != nil {
		t.Fatal(err)
	}
	outFile := filepath.Join(t.TempDir(), "out.json")
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nvim", "--headless", "--clean", "-u", init)
	cmd.Dir = root
	cmd.Env = append(os.Environ(),
		"NARHASH_TEST_PLUGIN="+plugin, "NARHASH_TEST_BIN="+filepath.Join(bin, "narhash"),
		"NARHASH_TEST_ROOT="+root, "NARHASH_TEST_OUT="+outFile, "NARHASHD_SOCKET="+socket,
		"NARHASH_TEST_VIEW="+view, "NARHASH_TEST_EDIT="+edit, "NARHASH_TEST_TEXT="+text, "NARHASH_TEST_AFTER="+want[0])
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	var r result
	b, rerr := os.ReadFile(outFile)
	if rerr != nil || json.Unmarshal(b, &r) != nil {
		t.Fatalf("nvim: %v, %s; its output:\n%s", err, b, out)
	}
	if err != nil || r.Error != "" {
		t.Fatalf("nvim: %v: %s\n%s", err, r.Error, out)
	}
	if after := hashes(t, bin, root, git); after != want {
		t.Fatalf("the tree's hash after Neovim wrote %s is %s, want %s (as made by the test)", edit, after[0], want[0])
	}
	wants := [][3]string{before, want}
	if len(r.Steps) == 4 { // the daemon came, then went, while it ran
		wants = [][3]string{before, before, want, want}
	}
	if len(r.Steps) != len(wants) {
		t.Fatalf("nvim recorded %d steps, want %d: %+v", len(r.Steps), len(wants), r)
	}
	for i, want := range wants {
		s := r.Steps[i]
		if got := [3]string{s.SRI, s.Nix32, s.Base16}; got != want {
			t.Errorf("%s: the plugin's hash is %q, the tree's %q", s.Name, got, want)
		}
		if s.View != wantView {
			t.Errorf("%s: the plugin shows the %s view, want %s", s.Name, s.View, wantView)
		}
		if !strings.Contains(s.Status, want[1]) {
			t.Errorf("%s: status() = %q, want the nix32 hash %s in it", s.Name, s.Status, want[1])
		}
	}
	if r.Register != before[0] || r.Inserted != before[0] {
		t.Errorf(":NarhashCopy put %q in the register and :NarhashInsert inserted %q; want the SRI hash %s", r.Register, r.Inserted, before[0])
	}
	if strings.TrimSpace(r.MessagesBefore) != "" || strings.Contains(r.Messages, "rror") {
		t.Errorf("the plugin wrote messages: %q, then %q", r.MessagesBefore, r.Messages)
	}
	return r
}

func tree(t *testing.T) (base, root string) {
	base = nartest.TempDir(t)
	root = filepath.Join(base, "project")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := nartest.Random(root, 11, 40); err != nil {
		t.Fatal(err)
	}
	return base, root
}

func needNvim(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("nvim"); err != nil {
		t.Skip("nvim not installed (Debian: apt-get install neovim): the editor plugin is not tested")
	}
	bin, err := commands.Dir()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// startDaemon runs narhashd on a socket of its own and returns that
// socket once narhashd says it is ready (sd_notify).
func startDaemon(t *testing.T, bin, base string) string {
	t.Helper()
	sock := filepath.Join(base, "run", "narhashd.sock")
	notify := filepath.Join(base, "notify.sock")
	ready, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notify, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ready.Close()
	d := exec.Command(filepath.Join(bin, "narhashd"), "--socket", sock, "--db", filepath.Join(base, "state", "cache.db"))
	d.Env = append(os.Environ(), "NOTIFY_SOCKET="+notify)
	var logs strings.Builder
	d.Stderr = &logs
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Process.Kill(); d.Wait() })
	ready.SetReadDeadline(time.Now().Add(wait))
	b := make([]byte, 64)
	if n, err := ready.Read(b); err != nil || string(b[:n]) != "READY=1" {
		t.Fatalf("narhashd not ready: %q %v\n%s", b[:n], err, logs.String())
	}
	return sock
}

func checkSource(t *testing.T, r result, live bool) {
	t.Helper()
	for _, s := range r.Steps {
		if live && (s.Source != "daemon" || strings.Contains(s.Status, "(")) {
			t.Errorf("%s: source %q, status %q; want the daemon's hash, live", s.Name, s.Source, s.Status)
		}
		if !live && (s.Source != "offline" || !strings.HasSuffix(s.Status, " (no daemon)")) {
			t.Errorf("%s: source %q, status %q; want an offline hash, marked (no daemon)", s.Name, s.Source, s.Status)
		}
	}
}

// TestPluginLive: with narhashd running, the plugin has it watch the
// project, shows its hash from the subscription stream, and shows the new
// hash, pushed by the daemon, after a file is written in the editor.
//
// Then a FIFO appears in the project: no hash can be had, and the
// statusline says "error" rather than the hash before; once the FIFO
// goes, the hash is back.
func TestPluginLive(t *testing.T) {
	bin := needNvim(t)
	base, root := tree(t)
	sock := startDaemon(t, bin, base)
	r := runNvim(t, bin, root, sock, "dir", "edited-in-nvim.txt", "NARHASH_TEST_FIFO=fifo")
	checkSource(t, r, true)
	if f := r.Fifo; f.Status != "nar error" || !strings.Contains(f.Err, "named pipe") || f.Hash != "" || f.After != r.Steps[len(r.Steps)-1].SRI {
		t.Errorf("with a FIFO in the project: status %q, error %q, hash %q; after it went, hash %q (want %s)", f.Status, f.Err, f.Hash, f.After, r.Steps[len(r.Steps)-1].SRI)
	}
}

// TestPluginNoDaemon: with nothing on the socket, the plugin says so in
// the statusline, shows the hash computed in the background, and hashes
// again after a write; it never shows an error.
func TestPluginNoDaemon(t *testing.T) {
	bin := needNvim(t)
	base, root := tree(t)
	checkSource(t, runNvim(t, bin, root, filepath.Join(base, "nothing", "here.sock"), "dir", "edited-in-nvim.txt"), false)
}

// gitProject is a git worktree with tracked files and an untracked one,
// which the git view leaves out.
func gitProject(t *testing.T) (base, root string) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed: the git view is not tested")
	}
	base = nartest.TempDir(t)
	root = filepath.Join(base, "project")
	for name, text := range map[string]string{"tracked.txt": "one\n", "src/main.c": "int main() { return 0; }\n", "untracked.txt": "not in the view\n"} {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{{"init", "-q"}, {"add", "tracked.txt", "src/main.c"}} {
		if out, err := exec.Command("git", append([]string{"-C", root}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v: %s", args, err, out)
		}
	}
	return base, root
}

// TestPluginGitLive: in a git worktree the plugin shows the git view's
// hash ("auto" finds the worktree), live from narhashd.
func TestPluginGitLive(t *testing.T) {
	bin := needNvim(t)
	base, root := gitProject(t)
	sock := startDaemon(t, bin, base)
	checkSource(t, runNvim(t, bin, root, sock, "auto", "tracked.txt"), true)
}

// TestPluginGitNoDaemon: the git view's hash without narhashd.
func TestPluginGitNoDaemon(t *testing.T) {
	bin := needNvim(t)
	base, root := gitProject(t)
	checkSource(t, runNvim(t, bin, root, filepath.Join(base, "nothing", "here.sock"), "auto", "tracked.txt"), false)
}

// TestPluginDaemonComes: the plugin starts without narhashd, shows the
// offline hash, goes live once narhashd starts (its retry finds it),
// follows the write, and falls back to the offline hash when narhashd
// stops.
func TestPluginDaemonComes(t *testing.T) {
	bin := needNvim(t)
	base, root := tree(t)
	sock := filepath.Join(base, "run", "narhashd.sock")
	argv, _ := json.Marshal([]string{filepath.Join(bin, "narhashd"), "--socket", sock, "--db", filepath.Join(base, "state", "cache.db")})
	r := runNvim(t, bin, root, sock, "dir", "edited-in-nvim.txt", "NARHASH_TEST_DAEMON="+string(argv), "NARHASH_TEST_RETRY_MS=50")
	if len(r.Steps) != 4 {
		t.Fatalf("steps %+v; want first, daemon came, after write, daemon went", r.Steps)
	}
	checkSource(t, result{Steps: r.Steps[:1]}, false)
	checkSource(t, result{Steps: r.Steps[1:3]}, true)
	checkSource(t, result{Steps: r.Steps[3:]}, false)
}

// TestHelpTags: the help file indexes without errors, with a tag for
// every command and the setup section.
func TestHelpTags(t *testing.T) {
	if _, err := exec.LookPath("nvim"); err != nil {
		t.Skip("nvim not installed (Debian: apt-get install neovim): the help file is not checked")
	}
	doc := t.TempDir()
	text, err := os.ReadFile(filepath.Join("doc", "narhash.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(doc, "narhash.txt"), text, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	out, err := exec.CommandContext(ctx, "nvim", "--headless", "--clean", "-c", "helptags "+doc, "-c", "qall!").CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("helptags: %v: %s", err, out)
	}
	tags, err := os.ReadFile(filepath.Join(doc, "tags"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tag := range []string{":NarhashCopy", ":NarhashInsert", ":NarhashStatus", ":NarhashRestart", "narhash-setup", "narhash-statusline"} {
		if !strings.Contains(string(tags), tag+"\t") {
			t.Errorf("no help tag %s in:\n%s", tag, tags)
		}
	}
}
