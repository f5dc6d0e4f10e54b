#include "anomaly_map_op.h"

#include <torch/torch.h>

#include "pefm-config.h"

#if PEFM_WITH_CUDA_KERNELS && PEFM_TORCH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "cuda/kernels.h"
#include "cuda/torch_elem.h"
#endif

namespace pefm {

namespace {

// The CPU twin (and the fallback on CUDA): LibTorch operators.
torch::Tensor anomaly_map_torch(const std::array<ScaleMaps, 3>& scales, Fusion fusion, int64_t height,
                                int64_t width) {
  // Squared norms are summed over hundreds of channels: in float32 whatever the network's
  // precision (fp16 would overflow on outliers, bf16 keeps only 8 bits).
  const auto sq = [](const torch::Tensor& a, const torch::Tensor& b) {
    return (a.to(torch::kFloat32) - b.to(torch::kFloat32)).pow(2).sum(1, true);
  };
  torch::Tensor fused;
  for (const auto& m : scales) {
    const auto residual = 0.5 * (sq(m.s_hat, m.s) + sq(m.t_hat, m.t));
    const auto up = torch::nn::functional::interpolate(residual, torch::nn::functional::InterpolateFuncOptions()
                                                                     .size(std::vector<int64_t>{height, width})
                                                                     .mode(torch::kBilinear)
                                                                     .align_corners(false));
    if (!fused.defined()) {
      fused = up;
    } else if (fusion == Fusion::kMean) {
      fused = fused + up;
    } else {
      fused = fused * up;
    }
  }
  if (fusion == Fusion::kMean) fused = fused / 3.0;
  return fused.squeeze(1);
}

#if PEFM_WITH_CUDA_KERNELS && PEFM_TORCH_CUDA
// The CUDA twin: four kernels instead of about fifteen LibTorch ones.
torch::Tensor anomaly_map_cuda(const std::array<ScaleMaps, 3>& scales, Fusion fusion, int64_t size) {
  const auto& first = scales[0].s;
  c10::cuda::CUDAGuard guard(first.device());
  const auto type = first.scalar_type();
  const auto elem = cuda::kernel_elem(type);
  std::array<torch::Tensor, 12> keep;  // contiguous inputs, alive until the kernels are queued
  cuda::ResidualScale desc[3];
  const int64_t n = first.size(0);
  int64_t scratch = 0;
  for (int k = 0; k < 3; ++k) {
    const auto& m = scales[k];
    const torch::Tensor parts[4] = {m.s_hat, m.s, m.t_hat, m.t};
    // The kernels read raw pointers with the geometry of s and t: check it all first.
    TORCH_CHECK(m.s_hat.sizes() == m.s.sizes() && m.t_hat.sizes() == m.t.sizes(),
                "anomaly map scale ", k, ": mapped and original features differ in shape: ", m.s_hat.sizes(),
                " vs ", m.s.sizes(), ", ", m.t_hat.sizes(), " vs ", m.t.sizes());
    for (int j = 0; j < 4; ++j) {
      TORCH_CHECK(parts[j].scalar_type() == type, "anomaly map scale ", k, ": input ", j, " is ",
                  parts[j].scalar_type(), ", scale 0 is ", type);
      TORCH_CHECK(parts[j].device() == first.device() && parts[j].dim() == 4 && parts[j].size(0) == n &&
                      parts[j].size(2) == m.s.size(2) && parts[j].size(3) == m.s.size(3),
                  "anomaly map scale ", k, ": input ", j, " is ", parts[j].sizes(), " on ", parts[j].device(),
                  "; expected [", n, ", C, ", m.s.size(2), ", ", m.s.size(3), "] on ", first.device());
      keep[4 * k + j] = parts[j].contiguous();
    }
    const auto& s = keep[4 * k + 1];
    desc[k] = {keep[4 * k].data_ptr(), s.data_ptr(), keep[4 * k + 2].data_ptr(), keep[4 * k + 3].data_ptr(),
               static_cast<int>(s.size(1)), static_cast<int>(keep[4 * k + 3].size(1)), static_cast<int>(s.size(2)),
               static_cast<int>(s.size(3))};
    scratch += n * desc[k].h * desc[k].w;
  }
  const auto opts = first.options().dtype(torch::kFloat32);
  auto work = torch::empty({scratch}, opts);
  auto out = torch::empty({n, size, size}, opts);
  const auto err = cuda::launch_anomaly_map(desc, static_cast<int>(n), elem, fusion == Fusion::kProduct,
                                            static_cast<int>(size), work.data_ptr<float>(), out.data_ptr<float>(),
                                            c10::cuda::getCurrentCUDAStream());
  TORCH_CHECK(err == cudaSuccess, "anomaly map kernels failed: ", cudaGetErrorString(err));
  return out;
}
#endif

}  // namespace

torch::Tensor fused_anomaly_map(const std::array<ScaleMaps, 3>& scales, Fusion fusion, int64_t height,
                                int64_t width) {
#if PEFM_WITH_CUDA_KERNELS && PEFM_TORCH_CUDA
  if (scales[0].s.is_cuda() && height == width) return anomaly_map_cuda(scales, fusion, height);
#endif
  return anomaly_map_torch(scales, fusion, height, width);
}

}  // namespace pefm
