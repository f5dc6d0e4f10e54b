// libFuzzer target for backbone weights (.pth): any byte string must be read into tensors or
// refused with std::runtime_error (pth::PthError for the format, a NaN/Inf message for the
// values); never a crash, a hang, an out-of-bounds read of a storage or unbounded memory.
#include <cstdint>
#include <stdexcept>
#include <string>

#include <torch/torch.h>

#include "pefm/state_dict.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    const auto dict = pefm::state_dict_from_bytes(bytes, "fuzz-input.pth");
    // Touch every element, so a view reaching past its storage would be seen by ASan.
    for (const auto& [name, t] : dict) (void)t.sum().item<double>();
  } catch (const std::runtime_error&) {
    // the expected way to say no
  }
  return 0;
}
