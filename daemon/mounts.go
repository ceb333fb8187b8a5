//go:build linux

package daemon

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// mountTable is the daemon's view of /proc/self/mountinfo. The kernel
// flags the open file (POLLPRI) whenever a filesystem is mounted or
// unmounted, so each query can ask, with one poll, whether to look again.
//
// The file is a plain descriptor, not an *os.File: the runtime's poller
// would poll it too, and each poll takes the change flag.
type mountTable struct {
	fd     int      // -1: none
	points []string // mount points, unescaped
}

func (m *mountTable) open() error {
	m.fd = -1
	fd, err := unix.Open("/proc/self/mountinfo", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: "/proc/self/mountinfo", Err: err}
	}
	m.fd = fd
	return m.load()
}

func (m *mountTable) close() {
	if m.fd >= 0 {
		unix.Close(m.fd)
		m.fd = -1
	}
}

// changed reports, without blocking, whether the table changed since the
// last call.
func (m *mountTable) changed() bool {
	if m.fd < 0 {
		return false
	}
	fds := []unix.PollFd{{Fd: int32(m.fd), Events: unix.POLLPRI}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n > 0 && fds[0].Revents&(unix.POLLPRI|unix.POLLERR) != 0
}

// load reads the table again.
func (m *mountTable) load() error {
	if _, err := unix.Seek(m.fd, 0, io.SeekStart); err != nil {
		return err
	}
	var b []byte
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(m.fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			break
		}
		b = append(b, buf[:n]...)
	}
	m.points = m.points[:0]
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 4 {
			m.points = append(m.points, unescapeMount(f[4]))
		}
	}
	return sc.Err()
}

// inside returns a mount point strictly inside dir, or "".
func (m *mountTable) inside(dir string) string {
	for _, p := range m.points {
		if p != dir && within(p, dir) {
			return p
		}
	}
	return ""
}

// allInside returns the mount points strictly inside dir, or nil.
func (m *mountTable) allInside(dir string) map[string]bool {
	var in map[string]bool
	for _, p := range m.points {
		if p != dir && within(p, dir) {
			if in == nil {
				in = map[string]bool{}
			}
			in[p] = true
		}
	}
	return in
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mountsChanged reads the mount table again and looks at every root anew:
// one with a filesystem mounted inside it is degraded, one that a mount
// or unmount put another directory under its path is watched anew.
func (d *Daemon) mountsChanged() {
	if err := d.mounts.load(); err != nil {
		d.log.Warn("read mount table", "err", err)
	}
	for _, r := range d.roots {
		in := d.mounts.inside(r.path)
		if in != r.mountedIn {
			d.log.Info("mounts changed inside a root", "root", r.path, "path", clip(in))
			d.unwatchTree(r.path, nil)
			d.seat(r) // sets mountedIn and mounts
			continue
		}
		r.mounts = d.mounts.allInside(r.path) // another mount beside the first
		d.checkSeat(r)
	}
}

// watchMounts tells the loop of every change of the mount table, so that
// subscribers hear of a filesystem mounted in or over a root without a
// query. It polls a descriptor of its own (each open file has its own
// change flag; queries keep theirs) and stops when ctx is done.
func (d *Daemon) watchMounts(ctx context.Context) {
	fd, err := unix.Open("/proc/self/mountinfo", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	stop, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		return
	}
	defer unix.Close(stop)
	done := context.AfterFunc(ctx, func() { unix.Write(stop, []byte{1, 0, 0, 0, 0, 0, 0, 0}) })
	defer done()
	for {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLPRI}, {Fd: int32(stop), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, -1); err != nil && err != unix.EINTR {
			return
		}
		if fds[1].Revents != 0 || ctx.Err() != nil {
			return
		}
		if fds[0].Revents&(unix.POLLPRI|unix.POLLERR) != 0 {
			d.call(ctx, func() {
				if d.mounts.changed() {
					d.mountsChanged()
				}
			})
		}
	}
}
