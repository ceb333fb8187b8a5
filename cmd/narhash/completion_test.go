package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/narhash/narhash/nar/nartest"
)

// completionCases are command lines being typed and what completing the
// last word must offer (all of want, none of not).
var completionCases = []struct {
	line      string
	want, not []string
}{
	{"narhash ", []string{"hash", "store-path", "verify", "convert", "dump", "restore", "ls", "cat", "query", "watch", "status", "subscribe", "completion", "version"}, nil},
	{"narhash ha", []string{"hash"}, []string{"ls"}},
	{"narhash hash --", []string{"--format", "--base32", "--base16", "--base64", "--sri", "--type", "--flat", "--json"}, []string{"--hash-algo"}},
	{"narhash hash --format ", []string{"nix32", "base16", "base64", "sri", "multibase"}, nil},
	{"narhash hash --type ", []string{"sha256", "sha512", "sha1", "md5"}, nil},
	{"narhash convert --to s", []string{"sri"}, []string{"nix32"}},
	{"narhash convert --hash-algo sha", []string{"sha256", "sha512", "sha1"}, []string{"md5"}},
	{"narhash ls -", []string{"-l", "-R", "-d", "--json"}, nil},
	{"narhash watch ", []string{"add", "rm", "ls"}, nil},
	{"narhash cat test.nar /", []string{"/run.sh", "/sub/", "/café"}, []string{"/sub/eight"}},
	{"narhash ls -R test.nar sub/", []string{"sub/eight", "sub/deeper/", "sub/link"}, []string{"/run.sh"}},
	{"narhash completion ", []string{"bash", "zsh", "fish"}, nil},
}

// completionDir makes a directory with an archive, test.nar, to complete
// paths inside, and changes into it.
func completionDir(t *testing.T) {
	dir := nartest.TempDir(t)
	nar, err := os.ReadFile("../../testdata/mixed.nar")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "test.nar"), nar, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
}

func checkCompletions(t *testing.T, shell, line string, got []string, want, not []string) {
	t.Helper()
	set := map[string]bool{}
	for _, g := range got {
		set[g] = true
	}
	for _, w := range want {
		if !set[w] {
			t.Errorf("%s: completing %q offers %q, not %q", shell, line, got, w)
		}
	}
	for _, n := range not {
		if set[n] {
			t.Errorf("%s: completing %q offers %q, which it must not", shell, line, n)
		}
	}
}

// TestBashCompletion sources `narhash completion bash` in bash, with the
// bash-completion package it relies on, and completes each line as bash
// does on TAB.
func TestBashCompletion(t *testing.T) {
	const lib = "/usr/share/bash-completion/bash_completion"
	if _, err := os.Stat(lib); err != nil {
		t.Skip("bash-completion is not installed (apt-get install bash-completion): the bash script needs it")
	}
	installNarhash(t)
	completionDir(t)
	var script strings.Builder
	script.WriteString(`source ` + lib + `
source <(narhash completion bash) || exit 1
complete -p narhash | grep -q -- '-o default' || { echo "file names are not the default"; exit 1; }
comp() {
	COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}
	read -ra COMP_WORDS <<<"$COMP_LINE"
	[[ $COMP_LINE == *" " ]] && COMP_WORDS+=("")
	COMP_CWORD=$((${#COMP_WORDS[@]}-1))
	COMPREPLY=()
	__start_narhash narhash 2>/dev/null
	printf '%s\t' "${COMPREPLY[@]}"; echo
}
`)
	for _, c := range completionCases {
		script.WriteString("comp '" + c.line + "'\n")
	}
	out, err := exec.Command("bash", "-c", script.String()).CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	lines := strings.Split(string(out), "\n")
	for i, c := range completionCases {
		checkCompletions(t, "bash", c.line, strings.Fields(lines[i]), c.want, c.not)
	}
}

// TestFishCompletion loads `narhash completion fish` in fish and completes
// each line with fish's own complete -C.
func TestFishCompletion(t *testing.T) {
	if _, err := exec.LookPath("fish"); err != nil {
		t.Skip("fish is not installed (apt-get install fish)")
	}
	installNarhash(t)
	completionDir(t)
	for _, c := range completionCases {
		out, err := exec.Command("fish", "--no-config", "-c", "narhash completion fish | source; complete -C '"+c.line+"'").CombinedOutput()
		if err != nil {
			t.Fatalf("fish: %v\n%s", err, out)
		}
		if strings.Contains(string(out), "`") { // descriptions are the flags' usage, without pflag's quotes
			t.Errorf("fish: completing %q: a description shows backquotes:\n%s", c.line, out)
		}
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			got = append(got, strings.TrimSuffix(strings.SplitN(l, "\t", 2)[0], "."))
		}
		checkCompletions(t, "fish", c.line, got, c.want, c.not)
	}
}

// TestCompletionScriptsParse: each script is valid in its shell. (zsh's
// completion is driven by the same `narhash __complete` as bash's and
// fish's, which the tests above exercise.)
func TestCompletionScriptsParse(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		if _, err := exec.LookPath(shell); err != nil {
			t.Logf("%s is not installed (apt-get install %s): not checking its script", shell, shell)
			continue
		}
		script := filepath.Join(t.TempDir(), "narhash."+shell)
		out := narhashOK(t, nil, "completion", shell)
		if !strings.Contains(string(out), "__complete") {
			t.Errorf("%s script does not call narhash __complete", shell)
		}
		os.WriteFile(script, out, 0o644)
		if msg, err := exec.Command(shell, "-n", script).CombinedOutput(); err != nil {
			t.Errorf("%s -n: %v\n%s", shell, err, msg)
		}
	}
}
