// libFuzzer target for the --groups file parser: any byte string is parsed or refused with
// std::invalid_argument; never a crash, hang or other exception, and every entry it gives
// holds both fields, no NUL, and fits the line bound.
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "pefm/groups.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    for (const auto& e : pefm::parse_groups(text, "fuzz-input")) {
      if (e.image.empty() || e.group.empty() || e.line < 1 || e.image.find('\0') != std::string::npos ||
          e.image.size() + e.group.size() > pefm::kMaxGroupsLineBytes)
        std::abort();
    }
  } catch (const std::invalid_argument&) {
    // the expected way to say no
  }
  return 0;
}
