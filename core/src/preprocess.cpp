#include "pefm/preprocess.h"

#include <algorithm>
#include <array>
#include <limits>
#include <vector>

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include "pefm-config.h"
#include "resample.h"
#if PEFM_WITH_CUDA_KERNELS && PEFM_TORCH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "cuda/kernels.h"
#include "cuda/torch_elem.h"
#endif

namespace pefm {

namespace {

torch::Tensor imagenet_mean(const torch::TensorOptions& opts) {
  return torch::tensor({kImageNetMean[0], kImageNetMean[1], kImageNetMean[2]}, opts).view({1, 3, 1, 1});
}
torch::Tensor imagenet_std(const torch::TensorOptions& opts) {
  return torch::tensor({kImageNetStd[0], kImageNetStd[1], kImageNetStd[2]}, opts).view({1, 3, 1, 1});
}

// `marked_on_device`: the CUDA kernels run and mark non-finite frames (preprocess).
void check_frames(const torch::Tensor& frames, const ChannelMap& map, bool marked_on_device) {
  TORCH_CHECK(frames.dim() == 4, "frames must be [N, H, W, C], got ", frames.sizes());
  TORCH_CHECK(map.channels == 1 || map.channels == 3 || map.channels == 4,
              "frames must have 1, 3 or 4 channels, got ", map.channels);
  TORCH_CHECK(frames.size(3) == map.channels, "frames have ", frames.size(3),
              " channels but the channel map says ", map.channels);
  TORCH_CHECK(frames.size(1) > 0 && frames.size(2) > 0, "frames are empty: ", frames.sizes());
  TORCH_CHECK(frames.scalar_type() == torch::kUInt8 || frames.scalar_type() == torch::kFloat32,
              "frames must be uint8 or float32, got ", frames.scalar_type());
  for (int c : map.rgb) TORCH_CHECK(c >= 0 && c < map.channels, "channel map index ", c, " out of range");
  // Where the kernels run, the check would wait for the GPU at every call: they mark such
  // frames instead.
  if (frames.is_floating_point() && !marked_on_device) {
    TORCH_CHECK(torch::isfinite(frames).all().item<bool>(), "frames contain NaN or Inf");
  }
}

#if PEFM_WITH_CUDA_KERNELS && PEFM_TORCH_CUDA
// The Lanczos taps of an h x w -> size x size resize on `device`, with views for the
// kernel; kept per thread for the last geometry (a stream's frames all have one).
const cuda::LanczosTaps& device_lanczos_taps(int64_t h, int64_t w, int64_t size, const torch::Device& device) {
  struct Cached {
    int64_t h = -1, w = -1, size = -1;
    torch::Device device = torch::kCPU;
    torch::Tensor ints;  // on the device: x lo, count, fixed, then y lo, count, fixed
    cuda::LanczosTaps view{};
  };
  thread_local Cached c;
  if (c.h != h || c.w != w || c.size != size || c.device != device) {
    const auto tx = resample::lanczos_taps(static_cast<int>(w), static_cast<int>(size));
    const auto ty = resample::lanczos_taps(static_cast<int>(h), static_cast<int>(size));
    std::vector<int32_t> ints;
    std::array<size_t, 6> at{};
    for (int k = 0; k < 2; ++k) {
      const auto& t = k == 0 ? tx : ty;
      at[static_cast<size_t>(k * 3)] = ints.size();
      ints.insert(ints.end(), t.lo.begin(), t.lo.end());
      at[static_cast<size_t>(k * 3 + 1)] = ints.size();
      ints.insert(ints.end(), t.count.begin(), t.count.end());
      at[static_cast<size_t>(k * 3 + 2)] = ints.size();
      ints.insert(ints.end(), t.fixed.begin(), t.fixed.end());
    }
    c = Cached{};  // a failed copy below leaves no stale geometry behind
    // A synchronous copy from pageable memory: done before the kernel is launched.
    auto ints_t = torch::from_blob(ints.data(), {static_cast<int64_t>(ints.size())}, torch::kInt32).to(device);
    const auto* ip = ints_t.data_ptr<int32_t>();
    c.view.x = {tx.max_taps, ip + at[0], ip + at[1], nullptr, ip + at[2]};
    c.view.y = {ty.max_taps, ip + at[3], ip + at[4], nullptr, ip + at[5]};
    c.ints = ints_t;
    c.h = h, c.w = w, c.size = size, c.device = device;
  }
  // Kernels of other streams may still read the tables when a new geometry replaces them:
  // the allocator waits for every stream they were used on.
  c.ints.record_stream(c10::cuda::getCurrentCUDAStream());
  return c.view;
}
#endif

// PIL's Lanczos resize of the selected R, G, B channels: a horizontal pass over every
// input row, then a vertical pass, with PIL's fixed-point weights and its rounding to 8
// bits after each pass. Float frames (YUV video converted in float) are quantised to 8 bits
// first, as a decoder's RGB output and the 8-bit training images are, so a frame gives the
// same input whichever format it came in. Returns [N, 3, size, size] float32 on the CPU in
// 0..255.
torch::Tensor lanczos_cpu(const torch::Tensor& frames, const ChannelMap& map, int64_t size) {
  TORCH_CHECK(size <= kMaxImageSize && frames.size(1) <= (int64_t{1} << 24) && frames.size(2) <= (int64_t{1} << 24),
              "preprocess: sizes out of range for Lanczos resizing: ", frames.sizes(), " -> ", size);
  const auto f = frames.scalar_type() == torch::kUInt8
                     ? frames.contiguous()
                     : (frames * 255.0).round().clamp(0, 255).to(torch::kUInt8).contiguous();
  const int64_t n = f.size(0), h = f.size(1), w = f.size(2), c = f.size(3);
  const int S = static_cast<int>(size);
  const auto tx = resample::lanczos_taps(static_cast<int>(w), S);
  const auto ty = resample::lanczos_taps(static_cast<int>(h), S);
  auto out = torch::empty({n, 3, size, size}, torch::kFloat32);
  const int32_t half = 1 << (resample::kPrecisionBits - 1);
  std::vector<uint8_t> mid(static_cast<size_t>(h * S * 3));  // horizontal pass of one image: [h, S, 3]
  const auto* src = f.data_ptr<uint8_t>();
  auto* o = out.data_ptr<float>();
  for (int64_t img = 0; img < n; ++img) {
    at::parallel_for(0, h, 16, [&](int64_t y0, int64_t y1) {
      for (int64_t y = y0; y < y1; ++y) {
        for (int ox = 0; ox < S; ++ox) {
          const int lo = tx.lo[static_cast<size_t>(ox)], cnt = tx.count[static_cast<size_t>(ox)];
          const int32_t* k = tx.fixed.data() + static_cast<size_t>(ox) * tx.max_taps;
          for (int ch = 0; ch < 3; ++ch) {
            const uint8_t* p = src + ((img * h + y) * w + lo) * c + map.rgb[static_cast<size_t>(ch)];
            int32_t acc = half;
            for (int j = 0; j < cnt; ++j) acc += p[j * c] * k[j];
            mid[static_cast<size_t>((y * S + ox) * 3 + ch)] = resample::clip8(acc);
          }
        }
      }
    });
    at::parallel_for(0, S, 8, [&](int64_t oy0, int64_t oy1) {
      for (int64_t oy = oy0; oy < oy1; ++oy) {
        const int lo = ty.lo[static_cast<size_t>(oy)], cnt = ty.count[static_cast<size_t>(oy)];
        const int32_t* k = ty.fixed.data() + static_cast<size_t>(oy) * ty.max_taps;
        for (int ox = 0; ox < S; ++ox) {
          for (int ch = 0; ch < 3; ++ch) {
            int32_t acc = half;
            for (int j = 0; j < cnt; ++j) acc += mid[(static_cast<size_t>(lo + j) * S + ox) * 3 + ch] * k[j];
            o[((img * 3 + ch) * S + oy) * S + ox] = resample::clip8(acc);
          }
        }
      }
    });
  }
  return out;
}

}  // namespace

torch::Tensor preprocess(const torch::Tensor& frames, const ChannelMap& map, int64_t size,
                         torch::ScalarType dtype, Resize resize) {
#if PEFM_WITH_CUDA_KERNELS && PEFM_TORCH_CUDA
  const bool kernels = frames.is_cuda() && frames.dim() == 4 && frames.stride(3) == 1;
#else
  const bool kernels = false;
#endif
  check_frames(frames, map, kernels);
  TORCH_CHECK(size > 0, "preprocess size must be positive, got ", size);
  if (frames.size(0) == 0) {
    return torch::empty({0, 3, size, size}, frames.options().dtype(dtype));
  }
#if PEFM_WITH_CUDA_KERNELS && PEFM_TORCH_CUDA
  if (kernels) {
    const auto elem = cuda::kernel_elem(dtype);  // before anything is allocated or launched
    c10::cuda::CUDAGuard guard(frames.device());
    auto out = at::empty({frames.size(0), 3, size, size}, frames.options().dtype(dtype));
    cuda::FrameDesc f{frames.data_ptr(), frames.is_floating_point(),
                      static_cast<int>(frames.size(0)), static_cast<int>(frames.size(1)),
                      static_cast<int>(frames.size(2)), static_cast<int>(frames.size(3)),
                      frames.stride(0), frames.stride(1), frames.stride(2),
                      {map.rgb[0], map.rgb[1], map.rgb[2]}};
    const cuda::LanczosTaps* taps = nullptr;
    torch::Tensor scratch;  // the rows pass of Lanczos, freed once the stream is past it
    if (resize == Resize::kLanczos) {
      taps = &device_lanczos_taps(frames.size(1), frames.size(2), size, frames.device());
      scratch = at::empty({cuda::lanczos_scratch_bytes(f, static_cast<int>(size))}, frames.options().dtype(torch::kUInt8));
    }
    const auto err = cuda::launch_preprocess(f, out.data_ptr(), elem, static_cast<int>(size), taps,
                                             scratch.defined() ? scratch.data_ptr<uint8_t>() : nullptr,
                                             c10::cuda::getCurrentCUDAStream());
    TORCH_CHECK(err == cudaSuccess, "preprocess kernel failed: ", cudaGetErrorString(err));
    if (frames.is_floating_point()) {
      // A frame with NaN or Inf becomes a NaN input, with no wait for the GPU: the
      // detector's NaN policy then scores it at the maximum and flags it.
      const auto finite = torch::isfinite(frames).flatten(1).all(1).view({-1, 1, 1, 1});
      out = torch::where(finite, out, torch::full({}, std::numeric_limits<float>::quiet_NaN(), out.options()));
    }
    return out;
  }
#endif
  if (resize == Resize::kLanczos) {
    const auto x = lanczos_cpu(frames.cpu(), map, size) / 255.0;
    return ((x - imagenet_mean(x.options())) / imagenet_std(x.options())).to(frames.device(), dtype);
  }
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
  return ((x - imagenet_mean(x.options())) / imagenet_std(x.options())).to(dtype);
}

}  // namespace pefm
