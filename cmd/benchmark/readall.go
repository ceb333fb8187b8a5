package main

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
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
			f, err := os.Open(it.path)
			if err != nil {
				return nil, 0, err
			}
			defer f.Close()
			for {
				k, err := f.Read(buf)
				n += int64(k)
				if err == io.EOF {
					return nil, n, nil
				}
				if err != nil {
					return nil, n, err
				}
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
