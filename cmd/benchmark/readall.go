package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// readers is how many goroutines the parallel read runs: enough to keep
// a disk's queue full, whatever GOMAXPROCS is.
const readers = 64

// childReadAll reads every file under root once, with readers goroutines
// listing the directories and reading the files (and symlinks) they find:
// the device floor of a cold dump, which must read the same bytes. It
// prints the number of bytes read.
func childReadAll(root string) int {
	st, err := os.Lstat(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "readall:", err)
		return 1
	}
	type item struct {
		path string
		typ  fs.FileMode
	}
	var (
		mu       sync.Mutex
		more     = sync.NewCond(&mu)
		queue    = []item{{root, st.Mode().Type()}}
		pending  = 1 // queued or being visited
		total    int64
		firstErr error
		wg       sync.WaitGroup
	)
	visit := func(it item, buf []byte) (found []item, n int64, err error) {
		switch {
		case it.typ.IsDir():
			ents, err := os.ReadDir(it.path)
			for _, e := range ents {
				found = append(found, item{filepath.Join(it.path, e.Name()), e.Type()})
			}
			return found, 0, err
		case it.typ&fs.ModeSymlink != 0:
			target, err := os.Readlink(it.path)
			return nil, int64(len(target)), err
		case it.typ.IsRegular():
			// The system calls themselves: os.Open would also try to
			// register the file with the poller.
			fd, err := unix.Open(it.path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
			if err != nil {
				return nil, 0, &fs.PathError{Op: "open", Path: it.path, Err: err}
			}
			defer unix.Close(fd)
			for {
				k, err := unix.Read(fd, buf)
				if err == unix.EINTR {
					continue
				}
				if err != nil {
					return nil, n, &fs.PathError{Op: "read", Path: it.path, Err: err}
				}
				if k == 0 {
					return nil, n, nil
				}
				n += int64(k)
			}
		}
		return nil, 0, nil
	}
	for range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 256<<10)
			mu.Lock()
			defer mu.Unlock()
			for {
				for len(queue) == 0 && pending > 0 {
					more.Wait()
				}
				if pending == 0 {
					return
				}
				it := queue[len(queue)-1]
				queue = queue[:len(queue)-1]
				mu.Unlock()
				found, n, err := visit(it, buf)
				mu.Lock()
				queue = append(queue, found...)
				pending += len(found) - 1
				total += n
				if err != nil && firstErr == nil {
					firstErr = err
				}
				more.Broadcast()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		fmt.Fprintln(os.Stderr, "readall:", firstErr)
		return 1
	}
	fmt.Println(total)
	return 0
}
