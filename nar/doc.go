// Package nar reads and writes NAR, the Nix archive format, byte for byte
// as Nix does, and dumps and restores filesystem trees.
//
// The main types:
//   - [Writer] produces an archive node by node (File/Write, Symlink,
//     Directory/Entry/EndDirectory), checking every rule a reader enforces.
//   - [Reader] reads one strictly, like archive/tar.Reader: Next, then Read
//     for a file's contents. Invalid input is a *[FormatError] naming the
//     byte offset and the broken rule; memory stays bounded.
//   - [Dump] writes the archive of a path as `nix-store --dump` does,
//     reading and framing files ahead on several goroutines (frame.go),
//     and [StatTree] computes
//     the [Fingerprint] of a tree without reading its contents. A
//     [Selection] (DumpOptions.Select, [StatSelection]) restricts both to
//     chosen entries, such as the files a git worktree tracks.
//   - [List] gives a [Listing] like `nix nar ls`, [Restore] unpacks an
//     archive like `nix-store --restore`.
//
// Caveats:
//   - Linux only: the dump and restore use openat and friends
//     (golang.org/x/sys/unix, in sys_linux.go and restore.go).
//   - Dump detects a file that changes while it is read and fails with
//     [ErrChanged] rather than produce a torn archive: its stat after the
//     read must match the one before (size, mtime, ctime, inode, mode), or,
//     on a filesystem stamped from this machine's clock, show no change
//     since shortly before the dump began. A change that keeps all of
//     those equal (a write through a shared mmap) cannot be seen by stat.
//   - The reader is stricter than Nix: Nix accepts some non-canonical
//     archives ("executable" after "contents", say) that this package
//     rejects, so that every archive it accepts re-encodes to its own bytes.
//   - Paths inside an archive are limited to [MaxPathLen] bytes.
package nar
