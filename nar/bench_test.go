package nar

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"testing"

	"github.com/narhash/narhash/nar/nartest"
)

// BenchmarkWriter writes an archive of a directory of 100 small files.
func BenchmarkWriter(b *testing.B) {
	names := make([]string, 100)
	for i := range names {
		names[i] = fmt.Sprintf("file%03d.go", i)
	}
	content := bytes.Repeat([]byte("x"), 300)
	w := NewWriter(io.Discard)
	write := func() {
		w.Reset(io.Discard)
		w.Directory()
		for _, n := range names {
			w.Entry(n)
			w.File(false, int64(len(content)))
			w.Write(content)
		}
		w.EndDirectory()
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
	write()
	b.SetBytes(w.Offset())
	b.ReportAllocs()
	for b.Loop() {
		write()
	}
}

// BenchmarkReader reads that kind of archive back.
func BenchmarkReader(b *testing.B) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.Directory()
	for i := range 100 {
		w.Entry(fmt.Sprintf("file%03d.go", i))
		w.File(false, 300)
		w.Write(make([]byte, 300))
	}
	w.EndDirectory()
	w.Close()
	b.SetBytes(int64(buf.Len()))
	b.ReportAllocs()
	for b.Loop() {
		r := NewReader(bytes.NewReader(buf.Bytes()))
		for {
			if _, err := r.Next(); err == io.EOF {
				break
			} else if err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkDump dumps generated trees, on tmpfs when there is one.
func BenchmarkDump(b *testing.B) {
	for _, tc := range []struct {
		name  string
		files int
		size  int
	}{{"small-files", 5000, 150}, {"source-files", 1000, 20 << 10}, {"large-file", 1, 64 << 20}} {
		b.Run(tc.name, func(b *testing.B) {
			root := nartest.TempDir(b)
			bld := &nartest.Builder{Root: root}
			for d := range 10 {
				bld.Dir(fmt.Sprint(d))
			}
			for i := range tc.files {
				bld.File(filepath.Join(fmt.Sprint(i%10), fmt.Sprint(i)), make([]byte, tc.size), 0o644)
			}
			if bld.Err != nil {
				b.Fatal(bld.Err)
			}
			res, err := Dump(context.Background(), io.Discard, root, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(res.Size)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Dump(context.Background(), io.Discard, root, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestProgress(t *testing.T) {
	root := nartest.TempDir(t)
	if err := nartest.Random(root, 4, 300); err != nil {
		t.Fatal(err)
	}
	var p Progress
	res, err := Dump(context.Background(), io.Discard, root, &DumpOptions{Progress: &p})
	if err != nil {
		t.Fatal(err)
	}
	if p.Bytes.Load() != res.Size || p.Entries.Load() != res.Fingerprint.Entries {
		t.Errorf("progress %d bytes, %d entries; the dump wrote %d bytes, %d entries", p.Bytes.Load(), p.Entries.Load(), res.Size, res.Fingerprint.Entries)
	}
}

// TestDumpAllocsPerFile: the dump's allocations grow with the number of
// directories, not of files.
func TestDumpAllocsPerFile(t *testing.T) {
	allocs := func(files int) float64 {
		root := nartest.TempDir(t)
		b := &nartest.Builder{Root: root}
		for d := range 4 {
			b.Dir(fmt.Sprint(d))
		}
		for i := range files {
			b.File(filepath.Join(fmt.Sprint(i%4), fmt.Sprint(i)), []byte("tiny file"), 0o644)
		}
		must(t, b.Err)
		return testing.AllocsPerRun(5, func() {
			if _, err := Dump(context.Background(), io.Discard, root, &DumpOptions{Readers: 2}); err != nil {
				t.Fatal(err)
			}
		})
	}
	few, many := allocs(100), allocs(3100)
	if perFile := (many - few) / 3000; perFile > 0.05 {
		t.Errorf("%.0f allocations for 100 files, %.0f for 3,100: %.2f per file; want none", few, many, perFile)
	}
}
