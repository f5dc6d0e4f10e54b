#include <gtest/gtest.h>
#include <torch/torch.h>

#include "common.h"
#include "pefm-config.h"
#include "pefm/device.h"
#include "pefm/frame_input.h"
#include "pefm/stream_context.h"
#include "pefm/model.h"
#include "pefm/preprocess.h"
#include "pefm/state_dict.h"
#include "../core/src/resample.h"
#if PEFM_WITH_CUDA_KERNELS
#include "../core/src/cuda/kernels.h"
#include "../core/src/cuda/torch_elem.h"
#include "../core/src/cuda/yuv_desc.h"
#endif

namespace {

using pefm::ChannelMap;
using pefm::Resize;

// Network input back to 0..255 pixel values (undoing the ImageNet normalisation).
torch::Tensor to_pixels(const torch::Tensor& x) {
  const auto mean = torch::tensor({0.485f, 0.456f, 0.406f}).view({1, 3, 1, 1});
  const auto stdv = torch::tensor({0.229f, 0.224f, 0.225f}).view({1, 3, 1, 1});
  return (x * stdv + mean) * 255.0;
}

// PIL's Lanczos (the authors' T.Resize(S, Image.ANTIALIAS)) on 8-bit images, pixel for
// pixel: shrinking by non-integer factors, enlarging, a wide image, gray. The fixed-point
// weights and the rounding after each pass are PIL's, so the integers are the same.
TEST(Preprocess, LanczosIsPilsPixelForPixel) {
  const auto g = pefm::read_state_dict(pefm_test::data_dir() + "/golden/resize.pt");
  for (const char* name : {"shrink", "grow", "wide", "gray", "side", "dot", "big"}) {
    const auto in = g.at(std::string(name) + "_in"), want = g.at(std::string(name) + "_out");
    const bool gray = in.size(2) == 1;
    const auto x = pefm::preprocess(in.unsqueeze(0), gray ? ChannelMap::gray() : ChannelMap::rgb_order(), want.size(0),
                                    torch::kFloat32, Resize::kLanczos);
    const auto got = to_pixels(x)[0].permute({1, 2, 0}).round();
    const auto expect = want.to(torch::kFloat32).expand({-1, -1, 3});
    EXPECT_EQ((got - expect).abs().max().item<float>(), 0.0f) << name;
  }
  // Bilinear is not Lanczos: the same check fails for it (the test can tell them apart).
  const auto in = g.at("shrink_in"), want = g.at("shrink_out");
  const auto bil = to_pixels(pefm::preprocess(in.unsqueeze(0), ChannelMap::rgb_order(), 16, torch::kFloat32,
                                              Resize::kBilinear))[0].permute({1, 2, 0}).round();
  EXPECT_GT((bil - want.to(torch::kFloat32)).abs().max().item<float>(), 2.0f);
}

TEST(Preprocess, LanczosTapsArePilsWeights) {
  // 8 -> 4: scale 2, support 6 input pixels each side; weights sum to one in fixed point
  // within rounding, symmetric about each output's centre.
  const auto t = pefm::resample::lanczos_taps(8, 4);
  for (int i = 0; i < 4; ++i) {
    int64_t sum = 0;
    float fsum = 0;
    for (int j = 0; j < t.count[static_cast<size_t>(i)]; ++j) {
      sum += t.fixed[static_cast<size_t>(i * t.max_taps + j)];
      fsum += t.weights[static_cast<size_t>(i * t.max_taps + j)];
    }
    EXPECT_NEAR(static_cast<double>(sum), 1 << pefm::resample::kPrecisionBits, 8.0);
    EXPECT_NEAR(fsum, 1.0f, 1e-6f);
  }
  // Same size: the identity.
  const auto same = pefm::resample::lanczos_taps(5, 5);
  for (int i = 0; i < 5; ++i) {
    for (int j = 0; j < same.count[static_cast<size_t>(i)]; ++j) {
      const bool centre = same.lo[static_cast<size_t>(i)] + j == i;
      EXPECT_EQ(same.fixed[static_cast<size_t>(i * same.max_taps + j)], centre ? 1 << pefm::resample::kPrecisionBits : 0);
    }
  }
}

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
  EXPECT_TRUE(torch::allclose(pefm::preprocess(u8, {}, 32, torch::kFloat32, Resize::kBilinear),
                              pefm::preprocess(f, {}, 32, torch::kFloat32, Resize::kBilinear), 1e-5, 1e-5));
  // Lanczos quantises float frames to 8 bits first: the same input exactly.
  EXPECT_TRUE(torch::equal(pefm::preprocess(u8, {}, 32), pefm::preprocess(f, {}, 32)));
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
    const auto want = pefm::preprocess(frames, c.map, c.size, torch::kFloat32, Resize::kBilinear);
    auto got = torch::empty({2, 3, c.size, c.size});
    pefm::cuda::preprocess_host(describe(frames, c.map), got.data_ptr(), pefm::cuda::Elem::kFloat,
                                static_cast<int>(c.size), nullptr);
    EXPECT_LT((got - want).abs().max().item<float>(), 1e-4) << c.h << "x" << c.w << " -> " << c.size;
  }
}

// The kernel's Lanczos code on the host, with the CPU path's taps: the same integers for
// 8-bit frames (so the same floats after normalisation), float frames within rounding.
TEST(PreprocessKernel, HostTwinLanczosMatchesTheCpuPath) {
  struct Case { int64_t h, w, size; ChannelMap map; };
  for (const auto& c : {Case{64, 96, 32, ChannelMap::rgb_order()}, Case{20, 12, 32, ChannelMap::bgra_order()},
                        Case{257, 131, 64, ChannelMap::gray()}}) {
    for (const bool as_float : {false, true}) {
      auto frames = torch::randint(0, 256, {2, c.h, c.w, c.map.channels}, torch::kUInt8);
      if (as_float) frames = frames.to(torch::kFloat32) / 255.0;
      const auto want = pefm::preprocess(frames, c.map, c.size, torch::kFloat32, Resize::kLanczos);
      const auto tx = pefm::resample::lanczos_taps(static_cast<int>(c.w), static_cast<int>(c.size));
      const auto ty = pefm::resample::lanczos_taps(static_cast<int>(c.h), static_cast<int>(c.size));
      const pefm::cuda::LanczosTaps taps{{tx.max_taps, tx.lo.data(), tx.count.data(), tx.weights.data(), tx.fixed.data()},
                                         {ty.max_taps, ty.lo.data(), ty.count.data(), ty.weights.data(), ty.fixed.data()}};
      auto got = torch::empty({2, 3, c.size, c.size});
      pefm::cuda::preprocess_host(describe(frames, c.map), got.data_ptr(), pefm::cuda::Elem::kFloat,
                                  static_cast<int>(c.size), &taps);
      EXPECT_LT((got - want).abs().max().item<float>(), 1e-6)
          << c.h << "x" << c.w << " -> " << c.size << (as_float ? " float" : " uint8");
    }
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
    const auto want = pefm::preprocess(frames, map, 32, dtype, Resize::kBilinear);
    // Two images more, filled with a sentinel: a twin that wrote 4-byte values into 2-byte
    // slots would write twice the bytes, into the sentinel images (not past the buffer).
    auto got = torch::full({2 + 2, 3, 32, 32}, 99.0, torch::TensorOptions().dtype(dtype));
    pefm::cuda::preprocess_host(describe(frames, map), got.data_ptr(), pefm::cuda::kernel_elem(dtype), 32, nullptr);
    EXPECT_TRUE(got.slice(0, 2).eq(99.0).all().item<bool>()) << dtype << ": written past the end";
    const auto diff = (got.slice(0, 0, 2).to(torch::kFloat32) - want.to(torch::kFloat32)).abs().max().item<float>();
    EXPECT_LE(diff, step) << dtype;
  }
}
#endif

#if PEFM_WITH_CUDA_KERNELS
// A decoder's YUV 4:2:0 frame of random planes, rows padded past their pixels.
struct YuvFrame {
  std::vector<uint8_t> y, u, v;
  pefm::FrameView view;

  YuvFrame(pefm::FrameFormat format, int w, int h, double kr, double kb, bool full_range) {
    const int cw = (w + 1) / 2, ch = (h + 1) / 2;
    const bool nv12 = format == pefm::FrameFormat::kNV12;
    const int ys = w + 5, cs = (nv12 ? 2 * cw : cw) + 3;
    const auto fill = [](std::vector<uint8_t>& p, size_t n) {
      const auto t = torch::randint(0, 256, {static_cast<int64_t>(n)}, torch::kUInt8);
      p.assign(t.data_ptr<uint8_t>(), t.data_ptr<uint8_t>() + n);
    };
    fill(y, static_cast<size_t>(ys) * h);
    fill(u, static_cast<size_t>(cs) * ch);
    fill(v, static_cast<size_t>(cs) * ch);
    view.format = format;
    view.width = w;
    view.height = h;
    view.planes[0] = y.data();
    view.planes[1] = u.data();
    view.planes[2] = nv12 ? nullptr : v.data();
    view.strides[0] = ys;
    view.strides[1] = view.strides[2] = cs;
    view.kr = kr;
    view.kb = kb;
    view.full_range = full_range;
  }
};

// The GPU's YUV conversion (its host twin, the same per-pixel code with the kernel's
// description of the frame) against the CPU's: the same floats for bilinear models, and
// for Lanczos the 8 bits the CPU path quantises those floats to, so the network input is
// the same whichever side converts. Odd sizes, padded rows, three matrices, both ranges.
TEST(YuvKernel, HostTwinEqualsTheCpuConversion) {
  torch::manual_seed(11);
  struct Matrix { double kr, kb; };
  for (const auto format : {pefm::FrameFormat::kI420, pefm::FrameFormat::kNV12}) {
    for (const auto& m : {Matrix{0.299, 0.114}, Matrix{0.2126, 0.0722}, Matrix{0.2627, 0.0593}}) {
      for (const bool full : {false, true}) {
        const YuvFrame frame(format, 37, 23, m.kr, m.kb, full);
        const auto cpu = pefm::frame_input(frame.view, torch::kCPU, nullptr, Resize::kBilinear).pixels;
        const auto desc = pefm::cuda::describe_yuv(frame.view);
        auto as_float = torch::empty({23, 37, 3});
        pefm::cuda::yuv_to_rgb_host(desc, as_float.data_ptr(), true);
        auto as_bytes = torch::empty({23, 37, 3}, torch::kUInt8);
        pefm::cuda::yuv_to_rgb_host(desc, as_bytes.data_ptr(), false);
        const std::string what = std::string(format == pefm::FrameFormat::kI420 ? "I420" : "NV12") + " kr " +
                                 std::to_string(m.kr) + (full ? " full" : " limited");
        EXPECT_TRUE(torch::equal(as_float, cpu)) << what << ": max diff " << (as_float - cpu).abs().max().item<float>();
        const auto quantised = (cpu * 255.0).round().clamp(0, 255).to(torch::kUInt8);
        EXPECT_TRUE(torch::equal(as_bytes, quantised)) << what;
        EXPECT_TRUE(torch::equal(pefm::preprocess(as_bytes.unsqueeze(0), ChannelMap::rgb_order(), 16),
                                 pefm::preprocess(cpu.unsqueeze(0), ChannelMap::rgb_order(), 16)))
            << what << ": Lanczos input";
      }
    }
  }
}

// PIL's two passes as the kernels run them (rows into scratch, then columns) read a frame
// view with gaps between rows and images as they read a contiguous copy, and give the CPU
// path's values (the same integers; the division by 255 rounds differently in the last bit).
TEST(PreprocessKernel, HostTwinLanczosReadsStridedFrames) {
  torch::manual_seed(12);
  const auto big = torch::randint(0, 256, {2, 50, 70, 4}, torch::kUInt8);
  const auto view = big.slice(1, 3, 44).slice(2, 5, 66);  // 41 x 61, strided
  const auto tx = pefm::resample::lanczos_taps(61, 24);
  const auto ty = pefm::resample::lanczos_taps(41, 24);
  const pefm::cuda::LanczosTaps taps{{tx.max_taps, tx.lo.data(), tx.count.data(), tx.weights.data(), tx.fixed.data()},
                                     {ty.max_taps, ty.lo.data(), ty.count.data(), ty.weights.data(), ty.fixed.data()}};
  const auto copy = view.contiguous();
  auto got = torch::empty({2, 3, 24, 24}), want = torch::empty({2, 3, 24, 24});
  pefm::cuda::preprocess_host(describe(view, ChannelMap::bgra_order()), got.data_ptr(), pefm::cuda::Elem::kFloat, 24,
                              &taps);
  pefm::cuda::preprocess_host(describe(copy, ChannelMap::bgra_order()), want.data_ptr(), pefm::cuda::Elem::kFloat, 24,
                              &taps);
  EXPECT_TRUE(torch::equal(got, want));
  EXPECT_LT((got - pefm::preprocess(copy, ChannelMap::bgra_order(), 24)).abs().max().item<float>(), 1e-6);
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

#if PEFM_WITH_CUDA_KERNELS
// The conversion on the GPU as the element runs it (planes packed into the pinned buffer,
// uploaded, converted on the context's stream): the CPU's floats exactly for bilinear
// models, their 8-bit quantisation for Lanczos. Odd sizes, padded rows, both layouts.
TEST(YuvKernel, CudaConversionEqualsTheCpus) {
  PEFM_CUDA_OR_SKIP();
  torch::manual_seed(13);
  for (const auto format : {pefm::FrameFormat::kI420, pefm::FrameFormat::kNV12}) {
    for (const bool full : {false, true}) {
      const YuvFrame frame(format, 37, 23, 0.299, 0.114, full);
      const auto cpu = pefm::frame_input(frame.view, torch::kCPU, nullptr, Resize::kBilinear).pixels;
      pefm::StreamContext context;
      const auto as_float = pefm::frame_input(frame.view, torch::kCUDA, &context, Resize::kBilinear).pixels.cpu();
      const auto as_bytes = pefm::frame_input(frame.view, torch::kCUDA, &context, Resize::kLanczos).pixels.cpu();
      const std::string what = std::string(format == pefm::FrameFormat::kI420 ? "I420" : "NV12") + (full ? " full" : " limited");
      EXPECT_TRUE(torch::equal(as_float, cpu)) << what;
      EXPECT_TRUE(torch::equal(as_bytes, (cpu * 255.0).round().clamp(0, 255).to(torch::kUInt8))) << what;
    }
  }
}
#endif

// Every output type of the fused kernel (a bf16 buffer once received 4-byte floats).
TEST(PreprocessKernel, CudaMatchesCpu) {
  PEFM_CUDA_OR_SKIP();
  auto frames = torch::randint(0, 256, {3, 123, 301, 4}, torch::kUInt8);
  for (const auto resize : {Resize::kLanczos, Resize::kBilinear}) {
    const auto cpu = pefm::preprocess(frames, ChannelMap::bgra_order(), 64, torch::kFloat32, resize);
    const auto gpu = pefm::preprocess(frames.cuda(), ChannelMap::bgra_order(), 64, torch::kFloat32, resize).cpu();
    EXPECT_LT((cpu - gpu).abs().max().item<float>(), 1e-4) << pefm::to_string(resize);
    // Values reach about 2.7 in magnitude: fp16 rounds them by up to 2^-11 relative (1.3e-3
    // absolute), bf16 by 2^-8 (1.1e-2).
    for (const auto& [dtype, tol] : {std::pair<torch::ScalarType, float>{torch::kHalf, 2e-2f}, {torch::kBFloat16, 2e-2f}}) {
      const auto out = pefm::preprocess(frames.cuda(), ChannelMap::bgra_order(), 64, dtype, resize);
      ASSERT_EQ(out.scalar_type(), dtype);
      const auto back = out.cpu().to(torch::kFloat32);
      EXPECT_LT((cpu - back).abs().max().item<float>(), tol) << dtype << " " << pefm::to_string(resize);
    }
    // A second geometry on the same thread: the cached taps are replaced, not reused.
    const auto small = frames.slice(1, 0, 77).contiguous();
    const auto cpu2 = pefm::preprocess(small, ChannelMap::bgra_order(), 32, torch::kFloat32, resize);
    const auto gpu2 = pefm::preprocess(small.cuda(), ChannelMap::bgra_order(), 32, torch::kFloat32, resize).cpu();
    EXPECT_LT((cpu2 - gpu2).abs().max().item<float>(), 1e-4) << pefm::to_string(resize);
  }
}

}  // namespace
