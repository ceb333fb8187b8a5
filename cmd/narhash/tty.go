package main

import "golang.org/x/term"

// isTerminal reports whether w is a terminal: a file descriptor that
// answers the terminal ioctl. /dev/null, a character device, is not one.
func isTerminal(w any) bool {
	f, ok := w.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}
