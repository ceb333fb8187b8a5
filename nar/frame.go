package nar

import "encoding/binary"

// A dump does not go through a Writer: the readers lay out each batch's
// archive bytes in its arena, tokens and contents together, and the writer
// hashes them in runs as long as the batch. On 2 cores this takes the
// Writer's per-file calls, buffer copies and small hash writes off the
// goroutine that hashes, which is what limits a dump.
//
// The walker has checked what a Writer would check (names, their order,
// path lengths, targets), and marks where an entry closes the previous
// one (item.closePrev), so that the bytes follow from each item alone:
//
//	[tokPar if closePrev] (tokNAR for the root | tokEnt name tokNod) then
//	  directory: tokDir
//	  symlink:   tokSym target tokPar
//	  file:      tokReg or tokExe, size, contents, padding, tokPar
//	end of directory: [tokPar if closePrev] tokPar

// frameMax is the most arena bytes the framing of an item can take: all
// but a file's contents, counting a file as executable (the longer
// header) and fully padded.
func frameMax(it *item, nameLen, targetLen int) int {
	n := 0
	if it.closePrev {
		n += len(tokPar)
	}
	if it.op == opEndDir {
		return n + len(tokPar)
	}
	if it.root {
		n += len(tokNAR)
	} else {
		n += len(tokEnt) + 8 + nameLen + padLen(uint64(nameLen)) + len(tokNod)
	}
	switch it.op {
	case opDir:
		n += len(tokDir)
	case opSymlink:
		n += len(tokSym) + 8 + targetLen + padLen(uint64(targetLen)) + len(tokPar)
	case opFile:
		n += len(tokExe) + 8 + 7 + len(tokPar)
	}
	return n
}

// frameBudget bounds the framing of one batch (the sum of its frameMax),
// so that most of the arena is left for contents.
const frameBudget = arenaSize / 4

// A framer writes archive bytes into an arena. It slices rather than
// appends: the walker's accounting guarantees the room, and a mistake
// there must crash, never produce a wrong archive.
type framer struct {
	a []byte
	n int
}

func (f *framer) put(tok string) { f.n += copy(f.a[f.n:f.n+len(tok)], tok) }

func (f *framer) putUint(v uint64) {
	binary.LittleEndian.PutUint64(f.a[f.n:f.n+8], v)
	f.n += 8
}

// putPad writes the zero bytes that follow n bytes of a string. The arena
// is reused, so they are written, not assumed.
func (f *framer) putPad(n uint64) { f.n += copy(f.a[f.n:f.n+padLen(n)], zeros[:]) }

func (f *framer) putString(s []byte) {
	f.putUint(uint64(len(s)))
	f.n += copy(f.a[f.n:f.n+len(s)], s)
	f.putPad(uint64(len(s)))
}

// prefix frames what comes before an item's node: the close of the
// previous entry, then the entry's name, or the archive's magic.
func (b *batch) prefix(f *framer, it *item) {
	if it.closePrev {
		f.put(tokPar)
	}
	if it.root {
		f.put(tokNAR)
		return
	}
	f.put(tokEnt)
	f.putString(b.names[it.name.off : it.name.off+it.name.len])
	f.put(tokNod)
}

// frameNode frames an item that is not a file.
func (b *batch) frameNode(f *framer, it *item) {
	if it.op == opEndDir {
		if it.closePrev {
			f.put(tokPar)
		}
		f.put(tokPar)
		return
	}
	b.prefix(f, it)
	switch it.op {
	case opDir:
		f.put(tokDir)
	case opSymlink:
		f.put(tokSym)
		f.putString(b.names[it.target.off : it.target.off+it.target.len])
		f.put(tokPar)
	}
}

// fileHeader frames a file's node up to its contents.
func (f *framer) fileHeader(executable bool, size int64) {
	if executable {
		f.put(tokExe)
	} else {
		f.put(tokReg)
	}
	f.putUint(uint64(size))
}

// fileTrailer frames what follows a file's contents.
func (f *framer) fileTrailer(size int64) {
	f.putPad(uint64(size))
	f.put(tokPar)
}

// frameAll frames a batch that has no files to read; the walker does it.
func (b *batch) frameAll() {
	f := framer{a: b.arena}
	for i := range b.items {
		b.frameNode(&f, &b.items[i])
		b.items[i].end = f.n
	}
	b.finish(f.n)
}
