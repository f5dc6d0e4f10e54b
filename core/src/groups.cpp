#include "pefm/groups.h"

#include <stdexcept>

namespace pefm {
namespace {

// Control bytes shown as \xNN: an echoed line cannot drive the terminal.
std::string printable(const std::string& s) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::string trimmed(const std::string& s) {
  const auto first = s.find_first_not_of(" \t");
  return first == std::string::npos ? std::string() : s.substr(first, s.find_last_not_of(" \t") - first + 1);
}

}  // namespace

std::vector<GroupEntry> parse_groups(const std::string& text, const std::string& origin) {
  std::vector<GroupEntry> entries;
  bool first_entry = true;
  size_t begin = text.compare(0, 3, "\xEF\xBB\xBF") == 0 ? 3 : 0;
  for (int64_t number = 1; begin < text.size(); ++number) {
    size_t end = text.find('\n', begin);
    if (end == std::string::npos) end = text.size();
    const auto where = [&] { return origin + " line " + std::to_string(number) + ": "; };
    const size_t length = end - begin - (end > begin && text[end - 1] == '\r' ? 1 : 0);  // CRLF's CR not counted
    if (length > kMaxGroupsLineBytes)
      throw std::invalid_argument(where() + "longer than " + std::to_string(kMaxGroupsLineBytes) + " bytes");
    std::string line = text.substr(begin, end - begin);
    begin = end + 1;
    if (line.find('\0') != std::string::npos) throw std::invalid_argument(where() + "holds a NUL byte: not a text file");
    if (!line.empty() && line.back() == '\r') line.pop_back();
    line = trimmed(line);
    if (line.empty() || line[0] == '#') continue;
    const auto comma = line.rfind(',');
    const std::string image = comma == std::string::npos ? "" : trimmed(line.substr(0, comma));
    const std::string group = comma == std::string::npos ? "" : trimmed(line.substr(comma + 1));
    if (image.empty() || group.empty())
      throw std::invalid_argument(where() + "expected IMAGE,GROUP, got '" + printable(line.substr(0, 200)) + "'");
    const bool header = first_entry && (image == "file" || image == "image") && group == "group";
    first_entry = false;
    if (header) continue;
    if (entries.size() == kMaxGroupsEntries)
      throw std::invalid_argument(where() + "more than " + std::to_string(kMaxGroupsEntries) + " entries");
    entries.push_back({image, group, number});
  }
  if (entries.empty()) throw std::invalid_argument(origin + " names no image");
  return entries;
}

}  // namespace pefm
