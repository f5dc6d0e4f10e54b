#include <gtest/gtest.h>
#include <torch/torch.h>

#include "common.h"
#include "pefm-config.h"
#include "pefm/device.h"
#include "pefm/model.h"
#include "pefm/preprocess.h"
#if PEFM_WITH_CUDA_KERNELS
#include "../core/src/cuda/kernels.h"
#include "../core/src/cuda/torch_elem.h"
#endif

namespace {

using pefm::ChannelMap;

TEST(Preprocess, NormalisesWithImageNetStatistics) {
  // A constant frame at the native size: no resampling, only scaling and normalisation.
  auto frame = torch::empty({1, 4, 4, 3}, torch::kUInt8);
  frame.select(3, 0).fill_(255);
  frame.select(3, 1).fill_(0);
  frame.select(3, 2).fill_(51);
  const auto x = pefm::preprocess(frame, ChannelMap::rgb_order(), 4);
  ASSERT_EQ(x.sizes(), (std::vector<int64_t>{1, 3, 4, 4}));
  EXPECT_NEAR(x[0][0][2][2].item<float>(), (1.0 - 0.485) / 0.229, 1e-5);
  EXPECT_NEAR(x[0][1][2][2].item<float>(), (0.0 - 0.456) / 0.224, 1e-5);
  EXPECT_NEAR(x[0][2][2][2].item<float>(), (0.2 - 0.406) / 0.225, 1e-5);
}

TEST(Preprocess, ChannelMapsSelectTheSameColours) {
  const auto rgb = pefm_test::texture_image(20, 30, 1);
  const auto bgr = rgb.flip(2).contiguous();
  auto bgra = torch::cat({bgr, torch::full({20, 30, 1}, 255, torch::kUInt8)}, 2);
  const auto a = pefm::preprocess(rgb.unsqueeze(0), ChannelMap::rgb_order(), 16);
  EXPECT_TRUE(torch::allclose(a, pefm::preprocess(bgr.unsqueeze(0), ChannelMap::bgr_order(), 16)));
  EXPECT_TRUE(torch::allclose(a, pefm::preprocess(bgra.unsqueeze(0), ChannelMap::bgra_order(), 16)));
}

TEST(Preprocess, FloatFramesInUnitRangeEqualUint8) {
  const auto u8 = pefm_test::texture_image(33, 47, 2).unsqueeze(0);
  const auto f = u8.to(torch::kFloat32) / 255.0;
  EXPECT_TRUE(torch::allclose(pefm::preprocess(u8, {}, 32), pefm::preprocess(f, {}, 32), 1e-5, 1e-5));
}

TEST(Preprocess, DownscalingIsAntialiased) {
  // One-pixel checkerboard: plain bilinear at 1/4 scale aliases to a pattern;
  // an antialiased filter averages it to flat mid-grey.
  const auto ys = torch::arange(64).view({64, 1}), xs = torch::arange(64).view({1, 64});
  const auto board = (((ys + xs) % 2) * 255).to(torch::kUInt8).unsqueeze(2).expand({64, 64, 3}).contiguous();
  const auto x = pefm::preprocess(board.unsqueeze(0), {}, 16);
  const auto grey = (127.5 / 255.0 - 0.485) / 0.229;
  EXPECT_NEAR(x[0][0].mean().item<float>(), grey, 0.02);
  EXPECT_LT(x[0][0].slice(0, 2, 14).slice(1, 2, 14).std().item<float>(), 0.05);
}

TEST(Preprocess, RejectsBadFrames) {
  EXPECT_THROW(pefm::preprocess(torch::zeros({4, 4, 3}, torch::kUInt8), {}, 8), c10::Error);
  EXPECT_THROW(pefm::preprocess(torch::zeros({1, 4, 4, 2}, torch::kUInt8), {2, {0, 1, 1}}, 8), c10::Error);
  EXPECT_THROW(pefm::preprocess(torch::zeros({1, 4, 4, 3}, torch::kInt32), {}, 8), c10::Error);
  EXPECT_THROW(pefm::preprocess(torch::full({1, 4, 4, 3}, INFINITY), {}, 8), c10::Error);
  EXPECT_EQ(pefm::preprocess(torch::zeros({0, 4, 4, 3}, torch::kUInt8), {}, 8).size(0), 0);
}

#if PEFM_WITH_CUDA_KERNELS
pefm::cuda::FrameDesc describe(const torch::Tensor& t, const ChannelMap& m) {
  return {t.data_ptr(), t.is_floating_point(), static_cast<int>(t.size(0)), static_cast<int>(t.size(1)),
          static_cast<int>(t.size(2)), static_cast<int>(t.size(3)), t.stride(0), t.stride(1), t.stride(2),
          {m.rgb[0], m.rgb[1], m.rgb[2]}};
}

// The CUDA kernel's per-pixel code, run on the host, matches LibTorch's antialiased
// bilinear path: downscaling, upscaling, non-square, BGRA and gray inputs.
TEST(PreprocessKernel, HostTwinMatchesLibTorch) {
  struct Case { int64_t h, w, size; ChannelMap map; };
  for (const auto& c : {Case{64, 96, 32, ChannelMap::rgb_order()}, Case{20, 12, 32, ChannelMap::bgra_order()},
                        Case{257, 131, 64, ChannelMap::gray()}, Case{32, 32, 32, ChannelMap::bgr_order()}}) {
    auto frames = torch::randint(0, 256, {2, c.h, c.w, c.map.channels}, torch::kUInt8);
    const auto want = pefm::preprocess(frames, c.map, c.size);
    auto got = torch::empty({2, 3, c.size, c.size});
    pefm::cuda::preprocess_host(describe(frames, c.map), got.data_ptr(), pefm::cuda::Elem::kFloat,
                                static_cast<int>(c.size));
    EXPECT_LT((got - want).abs().max().item<float>(), 1e-4) << c.h << "x" << c.w << " -> " << c.size;
  }
}

// Every output type through the kernels' own dtype mapping and dispatch (a bf16 buffer
// once received 4-byte floats on CUDA): the twin writes exactly the buffer LibTorch's
// preprocessing fills for that dtype, element for element.
TEST(PreprocessKernel, HostTwinWritesEveryDtype) {
  torch::manual_seed(4);
  const auto frames = torch::randint(0, 256, {2, 45, 70, 4}, torch::kUInt8);
  const auto map = ChannelMap::bgra_order();
  // The float tolerance of the float test above; for half and bf16 one rounding step at the
  // values' magnitude (up to about 2.7: 2^-9 and 2^-6), since float differences before the
  // rounding can move a value by one step.
  for (const auto& [dtype, step] : {std::pair<torch::ScalarType, float>{torch::kFloat32, 1e-4f},
                                    {torch::kHalf, 2e-3f}, {torch::kBFloat16, 1.6e-2f}}) {
    const auto want = pefm::preprocess(frames, map, 32, dtype);
    // Two images more, filled with a sentinel: a twin that wrote 4-byte values into 2-byte
    // slots would write twice the bytes, into the sentinel images (not past the buffer).
    auto got = torch::full({2 + 2, 3, 32, 32}, 99.0, torch::TensorOptions().dtype(dtype));
    pefm::cuda::preprocess_host(describe(frames, map), got.data_ptr(), pefm::cuda::kernel_elem(dtype), 32);
    EXPECT_TRUE(got.slice(0, 2).eq(99.0).all().item<bool>()) << dtype << ": written past the end";
    const auto diff = (got.slice(0, 0, 2).to(torch::kFloat32) - want.to(torch::kFloat32)).abs().max().item<float>();
    EXPECT_LE(diff, step) << dtype;
  }
}
#endif

#if PEFM_WITH_CUDA_KERNELS
// The fused residual + upsampling + fusion kernels' arithmetic (their host twin, same
// per-pixel code) against the model's LibTorch path, both fusions.
TEST(AnomalyMapKernel, HostTwinMatchesTheModel) {
  for (const auto fusion : {pefm::Fusion::kMean, pefm::Fusion::kProduct}) {
    auto cfg = pefm_test::tiny_config();
    cfg.fusion = fusion;
    torch::manual_seed(3);
    auto model = pefm::Model::create(cfg);
    auto& net = *model.net;
    torch::NoGradGuard no_grad;
    const auto x = pefm::preprocess(torch::stack({pefm_test::texture_image(64, 64, 1),
                                                  pefm_test::paste_patch(pefm_test::texture_image(64, 64, 2), 9, 30, 10)}),
                                    ChannelMap::rgb_order(), 64);
    const auto want = net.anomaly_map(x);
    const auto features = net.extract(x);
    std::vector<torch::Tensor> keep;
    pefm::cuda::ResidualScale scales[3];
    for (int k = 0; k < 3; ++k) {
      auto [s_hat, t_hat] = net.map_scale(k, features.source[k], features.target[k]);
      for (const auto& t : {s_hat, features.source[k], t_hat, features.target[k]}) keep.push_back(t.contiguous());
      const auto& s = keep[4 * k + 1];
      scales[k] = {keep[4 * k].data_ptr(), s.data_ptr(), keep[4 * k + 2].data_ptr(), keep[4 * k + 3].data_ptr(),
                   static_cast<int>(s.size(1)), static_cast<int>(keep[4 * k + 3].size(1)),
                   static_cast<int>(s.size(2)), static_cast<int>(s.size(3))};
    }
    auto got = torch::empty({2, 64, 64});
    pefm::cuda::anomaly_map_host(scales, 2, pefm::cuda::Elem::kFloat, fusion == pefm::Fusion::kProduct, 64,
                                 got.data_ptr<float>());
    EXPECT_LT((got - want).abs().max().item<float>(), 1e-5f * want.abs().max().item<float>())
        << (fusion == pefm::Fusion::kMean ? "mean" : "product");
  }
}

// The residual kernels read half and bf16 features through the same dispatch: the map of
// features stored in 2-byte types equals the float map of the same (rounded) values.
TEST(AnomalyMapKernel, HostTwinReadsEveryDtype) {
  torch::manual_seed(5);
  const int n = 2;
  const int64_t dims[3][3] = {{6, 16, 16}, {10, 8, 8}, {14, 4, 4}};  // channels, h, w per scale
  for (const auto dtype : {torch::kHalf, torch::kBFloat16}) {
    std::vector<torch::Tensor> typed, rounded;
    pefm::cuda::ResidualScale typed_scales[3], float_scales[3];
    for (int k = 0; k < 3; ++k) {
      for (int j = 0; j < 4; ++j) {
        const auto t = torch::randn({n, dims[k][0] + (j >= 2 ? 4 : 0), dims[k][1], dims[k][2]}).to(dtype);
        typed.push_back(t.contiguous());
        rounded.push_back(t.to(torch::kFloat32).contiguous());
      }
      const auto fill = [&](std::vector<torch::Tensor>& v, pefm::cuda::ResidualScale& s) {
        s = {v[4 * k].data_ptr(), v[4 * k + 1].data_ptr(), v[4 * k + 2].data_ptr(), v[4 * k + 3].data_ptr(),
             static_cast<int>(dims[k][0]), static_cast<int>(dims[k][0] + 4), static_cast<int>(dims[k][1]),
             static_cast<int>(dims[k][2])};
      };
      fill(typed, typed_scales[k]);
      fill(rounded, float_scales[k]);
    }
    auto got = torch::empty({n, 32, 32}), want = torch::empty({n, 32, 32});
    pefm::cuda::anomaly_map_host(typed_scales, n, pefm::cuda::kernel_elem(dtype), false, 32, got.data_ptr<float>());
    pefm::cuda::anomaly_map_host(float_scales, n, pefm::cuda::Elem::kFloat, false, 32, want.data_ptr<float>());
    EXPECT_TRUE(torch::equal(got, want)) << dtype << ": max difference " << (got - want).abs().max().item<float>();
  }
}
#endif

// Every output type of the fused kernel (a bf16 buffer once received 4-byte floats).
TEST(PreprocessKernel, CudaMatchesCpu) {
  PEFM_CUDA_OR_SKIP();
  auto frames = torch::randint(0, 256, {3, 123, 301, 4}, torch::kUInt8);
  const auto cpu = pefm::preprocess(frames, ChannelMap::bgra_order(), 64);
  const auto gpu = pefm::preprocess(frames.cuda(), ChannelMap::bgra_order(), 64).cpu();
  EXPECT_LT((cpu - gpu).abs().max().item<float>(), 1e-4);
  // Values reach about 2.7 in magnitude: fp16 rounds them by up to 2^-11 relative (1.3e-3
  // absolute), bf16 by 2^-8 (1.1e-2).
  for (const auto& [dtype, tol] : {std::pair<torch::ScalarType, float>{torch::kHalf, 2e-2f}, {torch::kBFloat16, 2e-2f}}) {
    const auto out = pefm::preprocess(frames.cuda(), ChannelMap::bgra_order(), 64, dtype);
    ASSERT_EQ(out.scalar_type(), dtype);
    const auto back = out.cpu().to(torch::kFloat32);
    EXPECT_LT((cpu - back).abs().max().item<float>(), tol) << dtype;
  }
}

}  // namespace
