// pefm-train --groups FILE: which training images are captures of one part. The text is
// read whole through read_bounded_file (a regular file, bounded) and parsed here. No
// LibTorch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace pefm {

// The largest groups file, its longest line and the most entries it may hold.
inline constexpr uint64_t kMaxGroupsFileBytes = 64ull << 20;
inline constexpr size_t kMaxGroupsLineBytes = 8192;
inline constexpr size_t kMaxGroupsEntries = 1000000;

struct GroupEntry {
  std::string image;  // as written (relative to the groups file's folder, or absolute)
  std::string group;
  int64_t line = 0;   // 1-based
};

// "IMAGE,GROUP" lines: the last comma splits them (a group name has no comma), spaces and
// tabs around either are dropped; blank lines, '#' comments, a UTF-8 byte order mark and a
// header ("file,group" or "image,group", before any entry) are skipped; CRLF is accepted.
// Throws std::invalid_argument naming `origin` and the line: a NUL byte, a line over
// kMaxGroupsLineBytes, more than kMaxGroupsEntries entries, a line without both fields,
// no entry at all.
std::vector<GroupEntry> parse_groups(const std::string& text, const std::string& origin);

}  // namespace pefm
