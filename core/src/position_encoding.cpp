#include "pefm/position_encoding.h"

#include <cmath>

#include <c10/util/Exception.h>
#include <torch/torch.h>

namespace pefm {

torch::Tensor position_encoding(int64_t d, int64_t h, int64_t w) {
  TORCH_CHECK(d > 0 && d % 4 == 0, "position encoding needs channels divisible by 4, got ", d);
  TORCH_CHECK(h > 0 && w > 0, "position encoding needs a non-empty map, got ", h, "x", w);
  const int64_t d2 = d / 2;
  // div[i] = exp(-(2i) ln(10000) / d2), i = 0 .. d2/2 - 1 (PEFM_AD.py).
  const auto div =
      torch::exp(torch::arange(0, d2, 2, torch::kFloat64) * (-std::log(10000.0) / d2));
  const auto cols = torch::arange(0, w, torch::kFloat64).unsqueeze(1) * div;  // [w, d2/2]
  const auto rows = torch::arange(0, h, torch::kFloat64).unsqueeze(1) * div;  // [h, d2/2]
  auto pe = torch::zeros({d, h, w}, torch::kFloat64);
  using torch::indexing::Slice;
  pe.index_put_({Slice(0, d2, 2)}, torch::sin(cols).t().unsqueeze(1).expand({-1, h, w}));
  pe.index_put_({Slice(1, d2, 2)}, torch::cos(cols).t().unsqueeze(1).expand({-1, h, w}));
  pe.index_put_({Slice(d2, d, 2)}, torch::sin(rows).t().unsqueeze(2).expand({-1, h, w}));
  pe.index_put_({Slice(d2 + 1, d, 2)}, torch::cos(rows).t().unsqueeze(2).expand({-1, h, w}));
  return pe.to(torch::kFloat32);
}

torch::Tensor apply_position_encoding(const torch::Tensor& f, const torch::Tensor& pe,
                                      PeMode mode) {
  switch (mode) {
    case PeMode::kNone:
      return f;
    case PeMode::kAdd:
      return f + pe.unsqueeze(0);
    case PeMode::kConcat:
      return torch::cat({f, pe.unsqueeze(0).expand({f.size(0), -1, -1, -1})}, 1);
  }
  TORCH_CHECK(false, "unknown position encoding mode");
}

int64_t encoded_channels(int64_t d, PeMode mode) {
  return mode == PeMode::kConcat ? 2 * d : d;
}

}  // namespace pefm
