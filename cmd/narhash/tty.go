package main

import "golang.org/x/term"

// isTerminal reports whether s (standard input, output or error) is a
// terminal: a file descriptor that answers the terminal ioctl. /dev/null,
// a character device, is not one.
func isTerminal(s any) bool {
	f, ok := s.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}
