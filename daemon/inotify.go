//go:build linux

package daemon

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// inotify is one inotify instance, read by its own goroutine. The reader
// only parses events and hands them to the loop; it takes no lock the
// loop could hold, so adding or removing a watch (a plain system call,
// made by the loop) can never wait for the reader, and the reader can
// never wait for anything but the loop taking its events. The loop keeps
// the table of watches, by watch descriptor.
type inotify struct {
	file *os.File
	fd   int
	out  chan []inEvent // batches of events, in the kernel's order
	done chan struct{}  // closed by close: the reader stops sending
}

// inEvent is one inotify event; name is relative to the watched
// directory wd, "" for the directory itself.
type inEvent struct {
	wd     int32
	mask   uint32
	cookie uint32
	name   string
	err    error // a read error (mask 0): treated as lost events
}

// dirMask is what every directory watch asks for. IN_EXCL_UNLINK: a file
// deleted while open is out of the tree, its later writes do not matter.
const dirMask = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MODIFY | unix.IN_ATTRIB |
	unix.IN_MOVED_FROM | unix.IN_MOVED_TO | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF |
	unix.IN_ONLYDIR | unix.IN_EXCL_UNLINK

func newInotify() (*inotify, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w (too many inotify instances? raise fs.inotify.max_user_instances)", err)
	}
	// A non-blocking descriptor in an os.File uses the runtime's poller:
	// Read blocks without a thread, and close makes it return.
	return &inotify{file: os.NewFile(uintptr(fd), "inotify"), fd: fd, out: make(chan []inEvent, 16), done: make(chan struct{})}, nil
}

// watchFD watches the directory open as fd, by its /proc/self/fd name,
// so that the watch, the identity and the listing are all of one inode,
// whatever happens to the path meanwhile.
func (in *inotify) watchFD(fd int) (int32, error) {
	wd, err := unix.InotifyAddWatch(in.fd, "/proc/self/fd/"+strconv.Itoa(fd), dirMask)
	return int32(wd), err
}

// rm removes a watch; an error means the kernel had dropped it already.
func (in *inotify) rm(wd int32) { unix.InotifyRmWatch(in.fd, uint32(wd)) }

// close stops the reader and releases the instance.
func (in *inotify) close() {
	close(in.done)
	in.file.Close()
}

// read forwards events to out until close; it is the reader goroutine.
func (in *inotify) read() {
	defer close(in.out)
	buf := make([]byte, 64<<10)
	for {
		n, err := in.file.Read(buf)
		var batch []inEvent
		switch {
		case errors.Is(err, os.ErrClosed):
			return
		case err != nil:
			batch = []inEvent{{err: fmt.Errorf("read inotify events: %w", err)}}
		default:
			batch = parseEvents(buf[:n])
		}
		select {
		case in.out <- batch:
		case <-in.done:
			return
		}
	}
}

func parseEvents(b []byte) []inEvent {
	var evs []inEvent
	for len(b) >= unix.SizeofInotifyEvent {
		raw := (*unix.InotifyEvent)(unsafe.Pointer(&b[0]))
		end := unix.SizeofInotifyEvent + int(raw.Len)
		if end > len(b) {
			break
		}
		name := b[unix.SizeofInotifyEvent:end]
		for len(name) > 0 && name[len(name)-1] == 0 {
			name = name[:len(name)-1]
		}
		evs = append(evs, inEvent{wd: raw.Wd, mask: raw.Mask, cookie: raw.Cookie, name: string(name)})
		b = b[end:]
	}
	return evs
}
