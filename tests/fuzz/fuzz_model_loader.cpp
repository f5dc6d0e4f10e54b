// libFuzzer target for the model-file loader: any byte string must be either
// loaded or rejected with a ModelFileError; never a crash, hang, other exception or
// unbounded allocation (run under AddressSanitizer + UndefinedBehaviorSanitizer).
//
// Each input is tried twice: as it is, and with its checksum and trailer repaired, so
// that mutations reach the parser behind the CRC-32 instead of all failing at it.
#include <cstdint>
#include <string>

#include "container.h"
#include "repaired.h"
#include "pefm/model_file.h"

namespace {

void load(const std::string& bytes) {
  try {
    pefm::load_model_from_bytes(bytes, "fuzz-input");
  } catch (const pefm::ModelFileError&) {
    // the expected way to say no
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  load(bytes);
  if (const auto repaired = pefm_fuzz::with_repaired_trailer(bytes); !repaired.empty()) load(repaired);
  return 0;
}
