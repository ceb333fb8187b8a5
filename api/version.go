package api

import (
	"runtime/debug"
	"sync"
)

// Version returns the version of the running binary, from the build
// information the Go toolchain records: the module version when it was
// built with `go install module@version`, else the VCS revision it was
// built from (with "-dirty" when the tree had uncommitted changes), else
// "devel". The CLI and the daemon print it for --version, and the daemon
// reports it in Status so that a client can tell which version answers.
func Version() string { return version() }

var version = sync.OnceValue(func() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	return versionOf(bi)
})

// versionOf picks the version out of build information.
func versionOf(bi *debug.BuildInfo) string {
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if modified == "true" {
		rev += "-dirty"
	}
	return "devel-" + rev
}
