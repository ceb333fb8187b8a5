package nar

import "encoding/binary"

// The NAR grammar, with its purely syntactic strings pre-joined into tokens
// (after tvix's nix-compat/src/nar/wire):
//
//	archive ::= tokNAR node
//	node    ::= tokSym string tokPar
//	          | (tokReg | tokExe) string tokPar
//	          | tokDir entry* tokPar
//	entry   ::= tokEnt string tokNod node tokPar
//
// Every string on the wire is u64le(len) ‖ bytes ‖ zero padding to a multiple of 8.
const (
	tokNAR = "\x0d\x00\x00\x00\x00\x00\x00\x00nix-archive-1\x00\x00\x00" +
		"\x01\x00\x00\x00\x00\x00\x00\x00(\x00\x00\x00\x00\x00\x00\x00" +
		"\x04\x00\x00\x00\x00\x00\x00\x00type\x00\x00\x00\x00"
	tokSym = "\x07\x00\x00\x00\x00\x00\x00\x00symlink\x00" +
		"\x06\x00\x00\x00\x00\x00\x00\x00target\x00\x00"
	tokReg = "\x07\x00\x00\x00\x00\x00\x00\x00regular\x00" +
		"\x08\x00\x00\x00\x00\x00\x00\x00contents"
	tokExe = "\x07\x00\x00\x00\x00\x00\x00\x00regular\x00" +
		"\x0a\x00\x00\x00\x00\x00\x00\x00executable\x00\x00\x00\x00\x00\x00" +
		"\x00\x00\x00\x00\x00\x00\x00\x00" +
		"\x08\x00\x00\x00\x00\x00\x00\x00contents"
	tokDir = "\x09\x00\x00\x00\x00\x00\x00\x00directory\x00\x00\x00\x00\x00\x00\x00"
	tokEnt = "\x05\x00\x00\x00\x00\x00\x00\x00entry\x00\x00\x00" +
		"\x01\x00\x00\x00\x00\x00\x00\x00(\x00\x00\x00\x00\x00\x00\x00" +
		"\x04\x00\x00\x00\x00\x00\x00\x00name\x00\x00\x00\x00"
	tokNod = "\x04\x00\x00\x00\x00\x00\x00\x00node\x00\x00\x00\x00" +
		"\x01\x00\x00\x00\x00\x00\x00\x00(\x00\x00\x00\x00\x00\x00\x00" +
		"\x04\x00\x00\x00\x00\x00\x00\x00type\x00\x00\x00\x00"
	tokPar = "\x01\x00\x00\x00\x00\x00\x00\x00)\x00\x00\x00\x00\x00\x00\x00"
)

// Limits a valid archive keeps to; the reader enforces them and the writer
// refuses to break them. They are Linux's NAME_MAX and PATH_MAX-1.
const (
	MaxNameLen   = 255  // longest directory entry name, in bytes
	MaxTargetLen = 4095 // longest symlink target, in bytes
	// MaxPathLen bounds the full path of an entry inside an archive (its
	// names and slashes), so that a reader's memory and time stay bounded
	// however deep an archive nests. Nix itself cannot dump a path longer
	// than PATH_MAX (4096).
	MaxPathLen = 64 << 10
)

// padLen returns how many zero bytes follow a string of n bytes on the wire.
func padLen(n uint64) int { return int(-n & 7) }

var zeros [8]byte

// checkName reports why name cannot be a directory entry name, or "".
func checkName[S ~string | ~[]byte](name S) string {
	switch {
	case len(name) == 0:
		return "empty entry name"
	case len(name) > MaxNameLen:
		return "entry name longer than 255 bytes"
	case len(name) == 1 && name[0] == '.', len(name) == 2 && name[0] == '.' && name[1] == '.':
		return "entry name is . or .."
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c == 0 {
			return "entry name contains a NUL byte"
		} else if c == '/' {
			return "entry name contains a slash"
		}
	}
	return ""
}

// checkTarget reports why target cannot be a symlink target, or "".
func checkTarget[S ~string | ~[]byte](target S) string {
	switch {
	case len(target) == 0:
		return "empty symlink target"
	case len(target) > MaxTargetLen:
		return "symlink target longer than 4095 bytes"
	}
	for i := 0; i < len(target); i++ {
		if target[i] == 0 {
			return "symlink target contains a NUL byte"
		}
	}
	return ""
}

// The archive's byte layout, which the Writer appends to its buffer.
// closePrev: the previous entry of the directory is closed first.

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

// appendFileTrailer appends what follows a file's contents.
func appendFileTrailer(dst []byte, size int64) []byte {
	dst = append(dst, zeros[:padLen(uint64(size))]...)
	return append(dst, tokPar...)
}
