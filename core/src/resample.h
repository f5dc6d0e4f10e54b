// Internal: PIL's Lanczos resampling weights (Pillow's Resample.c, precompute_coeffs and
// normalize_coeffs_8bpc), shared by the CPU path and the CUDA kernel so both read the same
// taps with the same fixed-point weights (docs/architecture.md, step 1).
#pragma once

#include <cstdint>
#include <vector>

#include "pixel_constants.h"

namespace pefm {
namespace resample {

// One axis: output i reads inputs lo[i] .. lo[i] + count[i] - 1 with weights
// weights[i * max_taps + j] (normalised to sum 1) and their fixed-point copies (what the
// 8-bit passes use).
struct AxisTaps {
  int max_taps = 0;
  std::vector<int32_t> lo, count;
  std::vector<float> weights;
  std::vector<int32_t> fixed;
};

// Lanczos (a = 3) from `in` samples to `out`: the filter is widened by in / out when
// shrinking (antialiasing), taps are clipped to the input and renormalised, as PIL does.
AxisTaps lanczos_taps(int in, int out);

// PIL's clip8: a fixed-point sum (with its rounding half added) to 0..255.
inline uint8_t clip8(int32_t v) {
  const int32_t s = v >> kPrecisionBits;  // arithmetic shift: floor, as PIL
  return static_cast<uint8_t>(s < 0 ? 0 : s > 255 ? 255 : s);
}

}  // namespace resample
}  // namespace pefm
