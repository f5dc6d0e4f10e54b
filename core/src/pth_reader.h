// Bounded reader for PyTorch .pth files (torch.save's zip format): a zip of stored
// entries holding `<archive>/data.pkl` (a pickle, protocol 2..5) and one raw storage per
// tensor under `<archive>/data/<key>`. Only what a state dict needs is understood; any
// other pickle global is refused by name, so a file cannot run code.
//
// Internal to pefm: no LibTorch here, only the standard library, so it can be fuzzed and
// sanitised on its own (tests/pth_reader_selftest.cpp).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace pefm {
namespace pth {

class PthError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class DType { kFloat32, kFloat64, kFloat16, kBFloat16, kInt64, kInt32, kInt16, kInt8, kUInt8, kBool };
size_t element_size(DType t);
const char* dtype_name(DType t);  // "float32", ...

struct TensorRecord {
  std::string name;  // the dict key
  DType dtype;
  std::vector<int64_t> sizes;
  std::vector<int64_t> strides;  // in elements
  int64_t storage_offset = 0;    // in elements
  // Points into the `bytes` given to read_pth (little-endian, possibly unaligned: copy
  // with memcpy). storage_bytes is numel * element_size as the file declares it; every
  // element the sizes/strides/offset reach lies below it.
  const unsigned char* storage = nullptr;
  uint64_t storage_bytes = 0;
};

// Parses `bytes` (the whole file). Every tensor is checked before it is returned: sizes
// and strides non-negative, rank <= 16, element count and extent computed without
// overflow, and storage_offset + the largest reachable index inside the storage. The top
// object must be a dict (plain or collections.OrderedDict) of string -> tensor; throws
// PthError naming `origin` otherwise ("... holds a list, not a dict of tensors"; "entry 'k' is a int, not a tensor").
// Records are returned in the file's order; a key given twice is an error.
std::vector<TensorRecord> read_pth(const std::string& bytes, const std::string& origin);

}  // namespace pth
}  // namespace pefm
