package nar

import "encoding/binary"

// A dump does not go through a Writer's checks and buffer: the readers
// lay out each batch's archive bytes in its arena with the same layout
// functions (below), tokens and contents together, and the writer
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
		n += fileHeaderLen(true) + 7 + len(tokPar)
	}
	return n
}

// frameBudget bounds the framing of one batch (the sum of its frameMax),
// so that most of the arena is left for contents.
const frameBudget = arenaSize / 4

// The archive's byte layout, in one place: a Writer appends it to its
// buffer, a dump's readers to a batch's arena (framer). closePrev: the
// previous entry of the directory is closed first.

// appendString appends a length-prefixed, padded string.
func appendString[S ~string | ~[]byte](dst []byte, s S) []byte {
	dst = binary.LittleEndian.AppendUint64(dst, uint64(len(s)))
	dst = append(dst, s...)
	return append(dst, zeros[:padLen(uint64(len(s)))]...)
}

// appendEntry appends what comes before the node of a directory's entry.
func appendEntry[S ~string | ~[]byte](dst []byte, closePrev bool, name S) []byte {
	if closePrev {
		dst = append(dst, tokPar...)
	}
	dst = append(dst, tokEnt...)
	dst = appendString(dst, name)
	return append(dst, tokNod...)
}

// appendEndDir appends the end of a directory.
func appendEndDir(dst []byte, closePrev bool) []byte {
	if closePrev {
		dst = append(dst, tokPar...)
	}
	return append(dst, tokPar...)
}

// appendSymlink appends a symlink's node.
func appendSymlink[S ~string | ~[]byte](dst []byte, target S) []byte {
	dst = append(dst, tokSym...)
	dst = appendString(dst, target)
	return append(dst, tokPar...)
}

// appendFileHeader appends a file's node up to its contents.
func appendFileHeader(dst []byte, executable bool, size int64) []byte {
	if executable {
		dst = append(dst, tokExe...)
	} else {
		dst = append(dst, tokReg...)
	}
	return binary.LittleEndian.AppendUint64(dst, uint64(size))
}

// fileHeaderLen is the length of what appendFileHeader appends.
func fileHeaderLen(executable bool) int {
	if executable {
		return len(tokExe) + 8
	}
	return len(tokReg) + 8
}

// appendFileTrailer appends what follows a file's contents.
func appendFileTrailer(dst []byte, size int64) []byte {
	dst = append(dst, zeros[:padLen(uint64(size))]...)
	return append(dst, tokPar...)
}

// A framer appends archive bytes to an arena, in place: the walker's
// accounting (frameMax) guarantees the room, and a mistake there must
// crash, never produce a wrong archive.
type framer struct {
	a []byte
	n int
}

// tail is where the next bytes go, for an append.
func (f *framer) tail() []byte { return f.a[:f.n] }

// set takes what an append to tail made: the arena, grown in place.
func (f *framer) set(b []byte) {
	if len(b) > 0 && &b[0] != &f.a[0] {
		panic("nar: a batch's framing overflowed its arena")
	}
	f.n = len(b)
}

// prefix frames what comes before an item's node: the close of the
// previous entry, then the entry's name, or the archive's magic.
func (b *batch) prefix(f *framer, it *item) {
	if it.root {
		f.set(append(f.tail(), tokNAR...))
		return
	}
	f.set(appendEntry(f.tail(), it.closePrev, b.names[it.name.off:it.name.off+it.name.len]))
}

// frameNode frames an item that is not a file.
func (b *batch) frameNode(f *framer, it *item) {
	if it.op == opEndDir {
		f.set(appendEndDir(f.tail(), it.closePrev))
		return
	}
	b.prefix(f, it)
	switch it.op {
	case opDir:
		f.set(append(f.tail(), tokDir...))
	case opSymlink:
		f.set(appendSymlink(f.tail(), b.names[it.target.off:it.target.off+it.target.len]))
	}
}

// fileHeader frames a file's node up to its contents.
func (f *framer) fileHeader(executable bool, size int64) {
	f.set(appendFileHeader(f.tail(), executable, size))
}

// fileTrailer frames what follows a file's contents.
func (f *framer) fileTrailer(size int64) { f.set(appendFileTrailer(f.tail(), size)) }

// frameAll frames a batch that has no files to read; the walker does it.
func (b *batch) frameAll() {
	f := framer{a: b.arena}
	for i := range b.items {
		b.frameNode(&f, &b.items[i])
		b.items[i].end = f.n
	}
	b.finish(f.n)
}
