// Shared by the fuzzers of pefm's container (model files, checkpoints): an input with its
// CRC-32 and trailer repaired, so that mutations reach the parser behind the checksum
// instead of all failing at it. Empty when the input is too short to hold a trailer.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

#include "container.h"

namespace pefm_fuzz {

inline std::string with_repaired_trailer(std::string bytes) {
  constexpr size_t kTrailer = 4 + 8;  // CRC-32 + "PEFM_END"
  if (bytes.size() <= 16 + kTrailer) return {};
  const size_t body = bytes.size() - kTrailer;
  const uint32_t crc = pefm::crc32(bytes.data(), body);
  std::memcpy(bytes.data() + body, &crc, 4);
  std::memcpy(bytes.data() + body + 4, "PEFM_END", 8);
  return bytes;
}

}  // namespace pefm_fuzz
