// What the model file format says without LibTorch: its version and the error every
// reader throws. The layout itself is described in model_file.h.
#pragma once

#include <cstdint>
#include <stdexcept>

namespace pefm {

// 2: config.resize (Lanczos by default; version 1 files resize bilinearly). A pefm that
// reads only version 1 would resize a version 2 model's frames the wrong way, so it is
// told to update instead.
constexpr uint32_t kModelFormatVersion = 2;

// Thrown for anything wrong with a model or checkpoint file; what() names the file.
class ModelFileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace pefm
