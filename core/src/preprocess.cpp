#include "pefm/preprocess.h"

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

void check_frames(const torch::Tensor& frames, const ChannelMap& map) {
  TORCH_CHECK(frames.dim() == 4, "frames must be [N, H, W, C], got ", frames.sizes());
  TORCH_CHECK(map.channels == 1 || map.channels == 3 || map.channels == 4,
              "frames must have 1, 3 or 4 channels, got ", map.channels);
  TORCH_CHECK(frames.size(3) == map.channels, "frames have ", frames.size(3),
              " channels but the channel map says ", map.channels);
  TORCH_CHECK(frames.size(1) > 0 && frames.size(2) > 0, "frames are empty: ", frames.sizes());
  TORCH_CHECK(frames.scalar_type() == torch::kUInt8 || frames.scalar_type() == torch::kFloat32,
              "frames must be uint8 or float32, got ", frames.scalar_type());
  for (int c : map.rgb) TORCH_CHECK(c >= 0 && c < map.channels, "channel map index ", c, " out of range");
  if (frames.is_floating_point()) {
    TORCH_CHECK(torch::isfinite(frames).all().item<bool>(), "frames contain NaN or Inf");
  }
}

}  // namespace

torch::Tensor preprocess(const torch::Tensor& frames, const ChannelMap& map, int64_t size,
                         torch::ScalarType dtype) {
  check_frames(frames, map);
  TORCH_CHECK(size > 0, "preprocess size must be positive, got ", size);
  if (frames.size(0) == 0) {
    return torch::empty({0, 3, size, size}, frames.options().dtype(dtype));
  }
#if PEFM_WITH_CUDA_KERNELS && PEFM_TORCH_CUDA
  if (frames.is_cuda() && frames.stride(3) == 1) {
    const auto elem = cuda::kernel_elem(dtype);  // before anything is allocated or launched
    c10::cuda::CUDAGuard guard(frames.device());
    auto out = at::empty({frames.size(0), 3, size, size}, frames.options().dtype(dtype));
    cuda::FrameDesc f{frames.data_ptr(), frames.is_floating_point(),
                      static_cast<int>(frames.size(0)), static_cast<int>(frames.size(1)),
                      static_cast<int>(frames.size(2)), static_cast<int>(frames.size(3)),
                      frames.stride(0), frames.stride(1), frames.stride(2),
                      {map.rgb[0], map.rgb[1], map.rgb[2]}};
    const auto err = cuda::launch_preprocess(f, out.data_ptr(), elem,
                                             static_cast<int>(size),
                                             c10::cuda::getCurrentCUDAStream());
    TORCH_CHECK(err == cudaSuccess, "preprocess kernel failed: ", cudaGetErrorString(err));
    return out;
  }
#endif
  auto x = frames.to(torch::kFloat32);
  if (frames.scalar_type() == torch::kUInt8) x = x / 255.0;
  if (map.channels == 1) {
    x = x.expand({-1, -1, -1, 3});
  } else if (map.channels != 3 || map.rgb != std::array<int, 3>{0, 1, 2}) {
    x = x.index_select(3, torch::tensor({map.rgb[0], map.rgb[1], map.rgb[2]},
                                        torch::TensorOptions().dtype(torch::kLong).device(x.device())));
  }
  x = x.permute({0, 3, 1, 2}).contiguous();
  if (x.size(2) != size || x.size(3) != size) {
    x = torch::nn::functional::interpolate(x, torch::nn::functional::InterpolateFuncOptions()
                                                  .size(std::vector<int64_t>{size, size})
                                                  .mode(torch::kBilinear)
                                                  .align_corners(false)
                                                  .antialias(true));
  }
  const auto opts = x.options();
  const auto mean = torch::tensor({0.485f, 0.456f, 0.406f}, opts).view({1, 3, 1, 1});
  const auto stdv = torch::tensor({0.229f, 0.224f, 0.225f}, opts).view({1, 3, 1, 1});
  return ((x - mean) / stdv).to(dtype);
}

}  // namespace pefm
