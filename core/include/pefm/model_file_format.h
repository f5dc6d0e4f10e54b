// What the model file format says without LibTorch: its version and the error every
// reader throws. The layout itself is described in model_file.h.
#pragma once

#include <cstdint>
#include <stdexcept>

namespace pefm {

constexpr uint32_t kModelFormatVersion = 1;

// Thrown for anything wrong with a model or checkpoint file; what() names the file.
class ModelFileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace pefm
