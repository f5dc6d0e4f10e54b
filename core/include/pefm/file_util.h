// Reading untrusted files and writing files atomically: plain POSIX, no LibTorch, no model
// format. Model files, checkpoints, weights and the tools' outputs all go through here.
#pragma once

#include <cstdint>
#include <string>

namespace pefm {

// A whole untrusted file into memory: std::runtime_error naming `kind` ("model file") and
// the path when it is missing, unreadable, not a regular file (a device or FIFO would be
// read forever; opening one never blocks) or larger than `max_bytes`.
std::string read_bounded_file(const std::string& path, const std::string& kind, uint64_t max_bytes);

// Writes `bytes` to `path` atomically (temp file + fsync + rename + fsync of the folder).
// The temporary file `path.tmp-XXXXXX` is flock()ed while it is written; temporary files of
// the same target that a killed writer left behind are removed first.
void write_file_atomically(const std::string& path, const std::string& bytes);

// A regular file's device, inode, size and modification time as one string ("" for a
// missing path or anything but a regular file): two equal identities are the same file,
// unchanged between them (a rename over it changes the inode, an edit the size or time).
std::string file_identity(const std::string& path);

// Removes `path.tmp-XXXXXX` files that no writer holds (unlocked and untouched for 10 s).
// Returns how many were removed.
int remove_stale_temp_files(const std::string& path);

}  // namespace pefm
