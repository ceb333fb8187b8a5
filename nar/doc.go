// Package nar reads and writes NAR, the Nix archive format, byte for byte
// as Nix does, and dumps and restores filesystem trees.
//
// The main types:
//   - [Writer] produces an archive node by node (File/Write, Symlink,
//     Directory/Entry/EndDirectory), checking every rule a reader enforces.
//   - [Reader] reads one strictly, like archive/tar.Reader: Next, then Read
//     for a file's contents. Invalid input is a *[FormatError] naming the
//     byte offset, the entry there and the broken rule; memory stays
//     bounded.
//   - [Dump] writes the archive of a path as `nix-store --dump` does,
//     reading files ahead on several goroutines (the pipeline, whose
//     rules are in pipeline.go), and [StatTree] computes
//     the [Fingerprint] of a tree without reading its contents. A
//     [Selection] (DumpOptions.Select, [StatSelection]) restricts both to
//     chosen entries, such as the files a git worktree tracks.
//   - [List] gives a [Listing] like `nix nar ls`, [Restore] unpacks an
//     archive like `nix-store --restore`.
//   - [Checkpoints] saved while dumping into a hash let a later dump
//     resume where the first change is ([DumpOptions.From]), reading and
//     hashing only what follows; [ComparePaths] orders paths as the
//     archive does, and [StatCheckpoints] finds by a stat walk the last
//     checkpoint a changed tree still matches. Their number is bounded by
//     the archive's size, not its number of files: one per 1 MiB of
//     archive (Checkpoints.Every), each about 400 bytes in memory and 300
//     encoded, so about 400 KiB per GiB of archive; 100,000 files of
//     GOROOT's mean size (16 KiB) make 1.5 GiB of archive and 600 KiB of
//     checkpoints, 100,000 files of 1 KiB about 40 KiB.
//
// Caveats:
//   - The fast dump is Linux only (getdents, openat and friends, in
//     sys_linux.go). On macOS and the BSDs, Dump, StatTree and
//     StatSelection take a portable dump (portable.go: lstat, os.ReadDir
//     and a [Writer], one goroutine) that gives the same archive and
//     Fingerprint, slower; checkpoints and resumed dumps are Linux only
//     (StatCheckpoints matches none elsewhere). Restore uses openat and
//     friends on every Unix.
//   - Dump detects a file that changes while it is read and fails with
//     [ErrChanged] rather than produce a torn archive: its stat after the
//     read must match the one before (size, mtime, ctime, mode, inode, device), or,
//     on a filesystem stamped from this machine's clock, show no change
//     since shortly before the dump began. A change that keeps all of
//     those equal (a write through a shared mmap) cannot be seen by stat.
//   - The reader is stricter than Nix: Nix accepts some non-canonical
//     archives ("executable" after "contents", say) that this package
//     rejects, so that every archive it accepts re-encodes to its own bytes.
//   - Paths inside an archive are limited to [MaxPathLen] bytes.
package nar
