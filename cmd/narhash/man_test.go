package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestManPages writes the manual and has groff check and render it: no
// warnings, a page per command, and each flag of hash in its OPTIONS.
func TestManPages(t *testing.T) {
	dir := t.TempDir()
	out := narhashOK(t, nil, "man", dir)
	files := strings.Fields(string(out))
	if len(files) < len(allCommands)+1 {
		t.Fatalf("narhash man wrote %d pages, want one per command and narhash.1: %q", len(files), files)
	}
	for _, name := range append([]string{"narhash"}, allCommands...) {
		page := filepath.Join(dir, strings.ReplaceAll("narhash "+name, " ", "-")+".1")
		if name == "narhash" {
			page = filepath.Join(dir, "narhash.1")
		}
		if _, err := os.Stat(page); err != nil {
			t.Errorf("no page for %s: %v", name, err)
		}
	}
	if _, err := exec.LookPath("groff"); err != nil {
		t.Skip("groff is not installed: not rendering the pages")
	}
	for _, f := range files {
		var warn bytes.Buffer
		cmd := exec.Command("groff", "-man", "-Tutf8", "-ww", "-z", f)
		cmd.Stderr = &warn
		if err := cmd.Run(); err != nil || warn.Len() > 0 {
			t.Errorf("groff %s: %v\n%s", f, err, warn.String())
		}
	}
	cmd := exec.Command("groff", "-man", "-Tascii", "-P", "-cbou", filepath.Join(dir, "narhash-hash.1"))
	text, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"SYNOPSIS", "narhash hash [flags] PATH...", "--base32", "--sri", "--type ALGO", "--flat", "narhash hash --sri ./src"} {
		if !bytes.Contains(text, []byte(want)) {
			t.Errorf("narhash-hash(1) rendered lacks %q:\n%s", want, text)
		}
	}
}
