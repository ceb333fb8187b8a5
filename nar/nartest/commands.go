package nartest

import (
	"fmt"
	"os"
	"os/exec"
	"sync"
)

// Commands builds Go commands for tests that run them as real
// processes: once per test binary, into a temporary directory that
// Remove deletes (call it from TestMain, after m.Run).
type Commands struct {
	pkgs []string // import paths
	once sync.Once
	dir  string
	err  error
}

// NewCommands returns a builder of the commands pkgs.
func NewCommands(pkgs ...string) *Commands { return &Commands{pkgs: pkgs} }

// Dir builds the commands the first time it is called and returns the
// directory that holds them.
func (c *Commands) Dir() (string, error) {
	c.once.Do(func() {
		c.dir, c.err = os.MkdirTemp("", "nartest-bin-")
		if c.err != nil {
			return
		}
		out, err := exec.Command("go", append([]string{"build", "-o", c.dir}, c.pkgs...)...).CombinedOutput()
		if err != nil {
			c.err = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	return c.dir, c.err
}

// Remove deletes what Dir built, if it built anything.
func (c *Commands) Remove() {
	if c.dir != "" {
		os.RemoveAll(c.dir)
	}
}
