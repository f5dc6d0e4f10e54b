// FrameDetector on its own: tiling (placement, blending, 2-D grids), frames of every layout.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <thread>
#include <vector>

#include "common.h"
#include "pefm/detector.h"
#include "pefm/frame_detector.h"
#include "pefm/frame_input.h"
#include "pefm/model.h"
#include "pefm/model_file.h"
#include "pefm/stream_context.h"

namespace {

using pefm_test::map_of;
using pefm_test::paste_patch;
using pefm_test::rgb_view;
using pefm_test::texture_image;

// An uncalibrated tiny model (64 px input): maps are raw and unclamped.
pefm::FrameDetector& detector() {
  static pefm::FrameDetector det(pefm_test::tiny_model(21), {"cpu"});
  return det;
}

torch::Tensor process(torch::Tensor img, const pefm::TileOptions& tiles) {
  img = img.contiguous();
  return map_of(detector().process(rgb_view(img), {}, tiles));
}

// Tiles that do not overlap: the tiled map is, tile by tile, the map of that crop inspected
// whole (64 px tiles into a 64 px model: one map pixel per frame pixel). A tile placed at
// the wrong origin, or a transposed grid, fails.
TEST(FrameTiling, WithoutOverlapEachTileIsTheMapOfItsCrop) {
  const auto img = texture_image(128, 192, 4);  // 2 x 3 tiles
  const auto tiled = process(img, {64, 0});
  ASSERT_EQ(tiled.sizes(), (std::vector<int64_t>{128, 192}));
  for (int y0 : {0, 64}) {
    for (int x0 : {0, 64, 128}) {
      const auto crop = process(img.slice(0, y0, y0 + 64).slice(1, x0, x0 + 64), {0, 0});
      const auto part = tiled.slice(0, y0, y0 + 64).slice(1, x0, x0 + 64);
      EXPECT_TRUE(torch::allclose(part, crop, 1e-5, 1e-6)) << "tile at " << x0 << "," << y0 << " differs by "
                                                           << (part - crop).abs().max().item<float>();
    }
  }
}

// With overlap, on a 2-D grid (3 x 2 tiles of 64 px, 16 px overlap on a 160x112 frame):
// where one tile covers a pixel the map is that crop's map; where tiles overlap it is a
// blend, between the smallest and the largest of the covering crops' values.
TEST(FrameTiling, OverlapsBlendTheCoveringCropsAndSingleCoverageIsExact) {
  const auto img = texture_image(112, 160, 5);
  const auto tiled = process(img, {64, 16});
  ASSERT_EQ(tiled.sizes(), (std::vector<int64_t>{112, 160}));
  EXPECT_EQ(pefm::tile_origins(160, 64, 16), (std::vector<int>{0, 48, 96}));
  EXPECT_EQ(pefm::tile_origins(112, 64, 16), (std::vector<int>{0, 48}));
  const auto inf = std::numeric_limits<float>::infinity();
  auto lo = torch::full({112, 160}, inf), hi = torch::full({112, 160}, -inf), cover = torch::zeros({112, 160});
  auto single = torch::zeros({112, 160});
  for (int y0 : {0, 48}) {
    for (int x0 : {0, 48, 96}) {
      const auto crop = process(img.slice(0, y0, y0 + 64).slice(1, x0, x0 + 64), {0, 0});
      auto l = lo.slice(0, y0, y0 + 64).slice(1, x0, x0 + 64);
      auto h = hi.slice(0, y0, y0 + 64).slice(1, x0, x0 + 64);
      l.copy_(torch::minimum(l, crop));
      h.copy_(torch::maximum(h, crop));
      cover.slice(0, y0, y0 + 64).slice(1, x0, x0 + 64) += 1;
      single.slice(0, y0, y0 + 64).slice(1, x0, x0 + 64).copy_(crop);  // right wherever cover is 1
    }
  }
  const auto once = cover.eq(1);
  ASSERT_GT(once.sum().item<int64_t>(), 112 * 160 / 3);
  EXPECT_LT((tiled - single).abs().masked_select(once).max().item<float>(), 1e-4 * tiled.abs().max().item<float>());
  const auto slack = 1e-4f * tiled.abs().max().item<float>();
  EXPECT_TRUE((tiled >= lo - slack).all().item<bool>() && (tiled <= hi + slack).all().item<bool>())
      << "a blended pixel lies outside the values of the tiles covering it";
}

// A defect in a known tile of a 2-D grid changes the map there and nowhere far: the largest
// change lies on the patch (x 100..116, y 64..80: the lower row, third column).
TEST(FrameTiling, ADefectInAKnownTileChangesTheMapThere) {
  const auto clean = texture_image(112, 160, 6);
  const auto defect = paste_patch(clean, 64, 100, 16);
  const auto change = (process(defect, {64, 16}) - process(clean, {64, 16})).abs();
  const auto at = change.argmax().item<int64_t>();
  const int64_t y = at / 160, x = at % 160;
  EXPECT_TRUE(x >= 100 - 8 && x < 116 + 8 && y >= 64 - 8 && y < 80 + 8) << "largest change at " << x << "," << y;
  // Far from the patch (beyond the networks' reach) nothing moves.
  EXPECT_LT(change.slice(0, 0, 24).slice(1, 0, 40).max().item<float>(), 1e-5f * change.max().item<float>() + 1e-6f);
}

// 75 % colour bars (white, yellow, cyan, green, magenta, red, blue, black) as 8-bit
// Y/Cb/Cr: the published values of ITU-R BT.601 and BT.709 (limited range) and of the
// JPEG/JFIF convention (full range). Each decodes to 191 (75 %) or 0 per channel.
struct BarSet {
  const char* name;
  double kr, kb;
  bool full_range;
  uint8_t yuv[8][3];
};
constexpr BarSet kBars[] = {
    {"BT.601 limited", 0.299, 0.114, false,
     {{180, 128, 128}, {162, 44, 142}, {131, 156, 44}, {112, 72, 58}, {84, 184, 198}, {65, 100, 212}, {35, 212, 114}, {16, 128, 128}}},
    {"BT.709 limited", 0.2126, 0.0722, false,
     {{180, 128, 128}, {168, 44, 136}, {145, 147, 44}, {133, 63, 52}, {63, 193, 204}, {51, 109, 212}, {28, 212, 120}, {16, 128, 128}}},
    {"BT.601 full", 0.299, 0.114, true,
     {{191, 128, 128}, {169, 32, 144}, {134, 160, 32}, {112, 65, 48}, {79, 191, 208}, {57, 96, 224}, {22, 224, 112}, {0, 128, 128}}},
    {"BT.709 full", 0.2126, 0.0722, true,
     {{191, 128, 128}, {177, 32, 137}, {151, 150, 32}, {137, 54, 41}, {54, 202, 215}, {41, 106, 224}, {14, 224, 119}, {0, 128, 128}}},
};
constexpr int kBarRgb[8][3] = {{1, 1, 1}, {1, 1, 0}, {0, 1, 1}, {0, 1, 0}, {1, 0, 1}, {1, 0, 0}, {0, 0, 1}, {0, 0, 0}};

// The bars as one 16x2 frame (2x2 pixels per bar) in I420 and NV12 decode to their RGB
// within 2 levels (the bars' own 8-bit rounding): catches a swapped Cb/Cr, the other
// matrix, the other range, a wrong chroma plane layout.
TEST(YuvDecoding, StandardColourBarsDecodeToTheirRgb) {
  for (const auto& set : kBars) {
    for (const auto format : {pefm::FrameFormat::kI420, pefm::FrameFormat::kNV12}) {
      std::vector<uint8_t> y(16 * 2), u(8), v(8), uv(16);
      for (int b = 0; b < 8; ++b) {
        for (int i = 0; i < 4; ++i) y[(i / 2) * 16 + 2 * b + i % 2] = set.yuv[b][0];
        u[b] = uv[2 * b] = set.yuv[b][1];
        v[b] = uv[2 * b + 1] = set.yuv[b][2];
      }
      pefm::FrameView view;
      view.format = format;
      view.width = 16;
      view.height = 2;
      view.planes[0] = y.data();
      view.strides[0] = 16;
      if (format == pefm::FrameFormat::kI420) {
        view.planes[1] = u.data();
        view.planes[2] = v.data();
        view.strides[1] = view.strides[2] = 8;
      } else {
        view.planes[1] = uv.data();
        view.strides[1] = 16;
      }
      view.kr = set.kr;
      view.kb = set.kb;
      view.full_range = set.full_range;
      const auto rgb = pefm::frame_to_rgb(view) * 255.0;
      for (int b = 0; b < 8; ++b) {
        for (int px = 0; px < 4; ++px) {
          for (int c = 0; c < 3; ++c) {
            EXPECT_NEAR(rgb[px / 2][2 * b + px % 2][c].item<double>(), kBarRgb[b][c] * 191.25, 2.0)
                << set.name << (format == pefm::FrameFormat::kI420 ? " I420" : " NV12") << " bar " << b << " channel " << c;
          }
        }
      }
    }
  }
}

// One copy of the weights per device, whatever the device is called: here "auto" and
// "cpu" (on a GPU machine "auto", "cuda" and "cuda:0") resolve to one device and share one
// detector.
TEST(FrameDetectorRegistry, NamesOfOneDeviceShareOneDetector) {
  pefm_test::TempDir dir;
  const auto path = dir.file("m.pt");
  pefm::save_model(*pefm_test::tiny_model(3), path);
  const auto a = pefm::FrameDetector::acquire(path, {"cpu"});
  const auto b = pefm::FrameDetector::acquire(path, {"auto"});
  if (b->device() != "cpu") GTEST_SKIP() << "auto is " << b->device() << " here";
  EXPECT_EQ(a.get(), b.get());
  EXPECT_EQ(pefm::shared_detector_count(), 1u);
}

// Options that shape the inference copy are not shared across: a request for unfolded
// BatchNorm or for NCHW gets a detector that has them.
TEST(FrameDetectorRegistry, FoldingAndLayoutAreNotShared) {
  pefm_test::TempDir dir;
  const auto path = dir.file("m.pt");
  pefm::save_model(*pefm_test::tiny_model(3), path);
  pefm::DetectorOptions nchw{"cpu"}, unfolded{"cpu"};
  nchw.layout = pefm::DetectorOptions::Layout::kNchw;
  unfolded.fold_batchnorm = false;
  const auto plain = pefm::FrameDetector::acquire(path, {"cpu"});
  const auto a = pefm::FrameDetector::acquire(path, nchw);
  const auto b = pefm::FrameDetector::acquire(path, unfolded);
  EXPECT_NE(plain.get(), a.get());
  EXPECT_NE(plain.get(), b.get());
  EXPECT_NE(a.get(), b.get());
  EXPECT_TRUE(plain->detector().channels_last());
  EXPECT_FALSE(a->detector().channels_last());
  EXPECT_EQ(pefm::FrameDetector::acquire(path, nchw).get(), a.get());
  // NHWC asked for by name is what the CPU default gives: one copy.
  pefm::DetectorOptions nhwc{"cpu"};
  nhwc.layout = pefm::DetectorOptions::Layout::kNhwc;
  EXPECT_EQ(pefm::FrameDetector::acquire(path, nhwc).get(), plain.get());
  EXPECT_EQ(pefm::shared_detector_count(), 3u);
}

// An all-zero feature vector normalises to zero in every precision: fp16's 1e-12 rounds to
// 0, and 0 / 0 made the whole frame NaN, scored at the maximum.
TEST(Features, AllZeroVectorsNormaliseToZeroInHalfPrecision) {
  auto f = torch::zeros({1, 8, 2, 2}, torch::kHalf);
  f[0].select(1, 1).fill_(3.0);  // one position with a feature vector, the rest zero
  const auto n = pefm::l2_normalize_channels(f).to(torch::kFloat32);
  EXPECT_TRUE(torch::isfinite(n).all().item<bool>());
  EXPECT_EQ(n.select(2, 0).abs().sum().item<float>(), 0.0f);
  EXPECT_NEAR(n[0].select(1, 1).select(1, 0).norm().item<float>(), 1.0f, 1e-3);
  const auto x = torch::randn({2, 16, 3, 3});
  EXPECT_TRUE(pefm::l2_normalize_channels(x).allclose(
      torch::nn::functional::normalize(x, torch::nn::functional::NormalizeFuncOptions().p(2).dim(1))));
}

// ---- The CUDA path, frame by frame as the element runs it (bench/gpu-check.sh runs these
// with PEFM_REQUIRE_CUDA=1; here they skip). fp32 with TF32 off (PEFM_CUDA_OR_SKIP): the
// maps agree with the CPU's to 1e-3 of their maximum, cuDNN summing in another order.

// An RGB image ([H, W, 3] uint8) as a BT.709 limited-range YUV 4:2:0 frame (chroma of each
// 2x2 block's top-left pixel).
struct YuvImage {
  std::vector<uint8_t> y, u, v;
  pefm::FrameView view;

  YuvImage(const torch::Tensor& img, pefm::FrameFormat format) {
    const int h = static_cast<int>(img.size(0)), w = static_cast<int>(img.size(1));
    const int cw = (w + 1) / 2, ch = (h + 1) / 2;
    const bool nv12 = format == pefm::FrameFormat::kNV12;
    view.format = format;
    view.width = w;
    view.height = h;
    const pefm::YuvMatrix m(view);
    y.resize(static_cast<size_t>(w) * h);
    u.resize(static_cast<size_t>(cw) * ch * (nv12 ? 2 : 1));
    v.resize(static_cast<size_t>(cw) * ch);
    const auto px = img.accessor<uint8_t, 3>();
    const auto at = [](double x) { return static_cast<uint8_t>(std::clamp(std::lround(x), 0L, 255L)); };
    for (int r = 0; r < h; ++r) {
      for (int c = 0; c < w; ++c) {
        const double rgb[3] = {px[r][c][0] / 255.0, px[r][c][1] / 255.0, px[r][c][2] / 255.0};
        double yuv[3];
        m.to_yuv(rgb, yuv);
        y[static_cast<size_t>(r) * w + c] = at(yuv[0]);
        if (r % 2 || c % 2) continue;
        const size_t k = static_cast<size_t>(r / 2) * cw + c / 2;
        if (nv12) {
          u[2 * k] = at(yuv[1]);
          u[2 * k + 1] = at(yuv[2]);
        } else {
          u[k] = at(yuv[1]);
          v[k] = at(yuv[2]);
        }
      }
    }
    view.planes[0] = y.data();
    view.planes[1] = u.data();
    view.planes[2] = nv12 ? nullptr : v.data();
    view.strides[0] = w;
    view.strides[1] = view.strides[2] = nv12 ? 2 * cw : cw;
  }
};

void expect_close(const torch::Tensor& want, const torch::Tensor& got, const std::string& what) {
  ASSERT_EQ(want.sizes(), got.sizes()) << what;
  EXPECT_LT((want - got).abs().max().item<float>(), 1e-3f * want.abs().max().item<float>()) << what;
}

// `view` on the CPU and on `device` through a StreamContext (the element's path: the
// frame uploaded on the context's stream, YUV converted there), fp32.
void expect_device_matches_cpu(const std::shared_ptr<pefm::Model>& model, const pefm::FrameView& view,
                               const pefm::TileOptions& tiles, const std::string& what,
                               const std::string& device = "cuda") {
  pefm::FrameDetector cpu(model, {"cpu"}), gpu(model, {device});
  pefm::StreamContext context;
  expect_close(map_of(cpu.process(view, {}, tiles)), map_of(gpu.process(view, {}, tiles, &context)), what);
}

// YUV (converted on the GPU: to 8 bits for Lanczos, to floats for bilinear models) and gray
// frames, 8 and 12 bits, give the CPU's maps, whole and tiled.
TEST(FrameDetectorCuda, YuvAndGrayFramesMatchTheCpuWholeAndTiled) {
  PEFM_CUDA_OR_SKIP();
  const auto img = paste_patch(texture_image(69, 97, 31), 20, 30, 14).contiguous();  // odd sizes: a half chroma sample
  const auto gray = img.select(2, 1).contiguous();
  const auto gray12 = (gray.to(torch::kInt32) * 16).to(torch::kInt16).contiguous();
  pefm::FrameView g8, g16;
  g8.format = pefm::FrameFormat::kGray8;
  g16.format = pefm::FrameFormat::kGray16;
  g8.width = g16.width = 97;
  g8.height = g16.height = 69;
  g8.planes[0] = gray.data_ptr<uint8_t>();
  g8.strides[0] = 97;
  g16.planes[0] = reinterpret_cast<uint8_t*>(gray12.data_ptr<int16_t>());
  g16.strides[0] = 2 * 97;
  g16.bit_depth = 12;
  const YuvImage i420(img, pefm::FrameFormat::kI420), nv12(img, pefm::FrameFormat::kNV12);
  for (const auto resize : {pefm::Resize::kLanczos, pefm::Resize::kBilinear}) {
    auto model = pefm_test::tiny_model(21);
    model->config.resize = resize;
    for (const auto& tiles : {pefm::TileOptions{}, pefm::TileOptions{48, 12}}) {
      const std::string how = pefm::to_string(resize) + (tiles.size ? " tiled" : " whole");
      expect_device_matches_cpu(model, i420.view, tiles, "I420 " + how);
      expect_device_matches_cpu(model, nv12.view, tiles, "NV12 " + how);
      expect_device_matches_cpu(model, g8, tiles, "GRAY8 " + how);
      expect_device_matches_cpu(model, g16, tiles, "GRAY16 (12 bits) " + how);
      expect_device_matches_cpu(model, rgb_view(img), tiles, "RGB " + how);
    }
  }
}

// The concat position code and product fusion (the fused map kernel's other branch).
TEST(FrameDetectorCuda, ConcatPositionCodeAndProductFusionMatchTheCpu) {
  PEFM_CUDA_OR_SKIP();
  const auto img = paste_patch(texture_image(64, 64, 32), 10, 12, 12).contiguous();
  for (const auto pe : {pefm::PeMode::kConcat, pefm::PeMode::kNone}) {
    for (const auto fusion : {pefm::Fusion::kMean, pefm::Fusion::kProduct}) {
      auto cfg = pefm_test::tiny_config();
      cfg.pe = pe;
      cfg.fusion = fusion;
      torch::manual_seed(7);
      const auto model = std::make_shared<pefm::Model>(pefm::Model::create(cfg));
      expect_device_matches_cpu(model, rgb_view(img), {},
                                "pe " + pefm::to_string(pe) + (fusion == pefm::Fusion::kProduct ? " product" : " mean"));
    }
  }
}

// Two streams on one shared detector at once, as two elements of one model: each on its own
// CUDA stream and pinned buffer, each frame's map its own (a buffer reused across streams,
// or work queued on the wrong stream, mixes them up).
TEST(FrameDetectorCuda, TwoStreamsOnOneDetectorConcurrentlyGetTheirOwnMaps) {
  PEFM_CUDA_OR_SKIP();
  const auto model = pefm_test::tiny_model(21);
  pefm::FrameDetector cpu(model, {"cpu"});
  const auto gpu = std::make_shared<pefm::FrameDetector>(model, pefm::DetectorOptions{"cuda"});
  std::vector<torch::Tensor> images, want;
  for (int i = 0; i < 8; ++i) {
    images.push_back(paste_patch(texture_image(96, 128, 40 + i), 8 * i, 10 * i, 12).contiguous());
    want.push_back(map_of(cpu.process(rgb_view(images.back()), {})));
  }
  std::vector<std::vector<torch::Tensor>> got(2);
  const auto run = [&](int stream) {
    pefm::StreamContext context;
    for (int round = 0; round < 10; ++round) {
      for (size_t i = stream; i < images.size(); i += 2) {
        got[stream].push_back(map_of(gpu->process(rgb_view(images[i]), {}, {}, &context)));
      }
    }
  };
  std::thread a(run, 0), b(run, 1);
  a.join();
  b.join();
  for (int stream = 0; stream < 2; ++stream) {
    ASSERT_EQ(got[stream].size(), 40u);
    for (size_t k = 0; k < got[stream].size(); ++k) {
      const size_t i = stream + 2 * (k % 4);
      expect_close(want[i], got[stream][k], "stream " + std::to_string(stream) + " image " + std::to_string(i));
    }
  }
}

// A device index above 0: the weights, the stream and the kernels' tables on that GPU.
TEST(FrameDetectorCuda, ASecondGpuGivesTheCpuMaps) {
  PEFM_CUDA_OR_SKIP();
  if (torch::cuda::device_count() < 2) GTEST_SKIP() << "one GPU on this machine";
  const auto img = paste_patch(texture_image(70, 98, 33), 20, 30, 14).contiguous();
  const YuvImage nv12(img, pefm::FrameFormat::kNV12);
  const auto model = pefm_test::tiny_model(21);
  EXPECT_EQ(pefm::FrameDetector(model, {"cuda:1"}).device(), "cuda:1");
  expect_device_matches_cpu(model, rgb_view(img), {}, "RGB on cuda:1", "cuda:1");
  expect_device_matches_cpu(model, nv12.view, {48, 12}, "NV12 tiled on cuda:1", "cuda:1");
}

}  // namespace
