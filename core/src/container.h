// Internal: the byte container behind model and checkpoint files (see model_file.h).
#pragma once

#include <map>
#include <string>

#include "pefm/state_dict.h"

namespace pefm {

struct Container {
  std::map<std::string, std::string> meta;
  TensorDict tensors;
};

std::string encode_container(const Container& c);
// Throws ModelFileError naming `origin` for anything malformed; never allocates more
// than the input's size for tensor data.
Container decode_container(const std::string& bytes, const std::string& origin);

// Largest model or checkpoint file read (kMaxLatent widths give about 0.6 GB).
constexpr uint64_t kMaxModelFileBytes = uint64_t{1} << 30;

uint32_t crc32(const void* data, size_t size, uint32_t crc = 0);

}  // namespace pefm
