// Continuous line-scan mode (WebStream): a strip fed as buffers of rows gives the map and
// the regions of the same strip fed whole, each region once, with its web extent.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <memory>
#include <random>
#include <set>
#include <stdexcept>
#include <tuple>
#include <vector>

#include "common.h"
#include "pefm/frame_detector.h"
#include "pefm/postprocess.h"
#include "pefm/stream_context.h"
#include "pefm/testing.h"
#include "pefm/web_stream.h"

namespace {

using pefm_test::map_of;
using pefm_test::paste_patch;
using pefm_test::rgb_view;
using pefm_test::texture_image;

// An uncalibrated tiny model (64 px input): raw maps, thresholds on the raw scale.
std::shared_ptr<pefm::FrameDetector> detector() {
  static auto det = std::make_shared<pefm::FrameDetector>(pefm_test::tiny_model(21), pefm::DetectorOptions{"cpu"});
  return det;
}

// The same trained for a few seconds on web textures (uncalibrated): defects stand out.
std::shared_ptr<pefm::FrameDetector> trained() {
  static auto det =
      std::make_shared<pefm::FrameDetector>(pefm_test::trained_texture_model(64, 64, true), pefm::DetectorOptions{"cpu"});
  return det;
}

// The strip inspected as one frame.
pefm::FrameResult whole(const torch::Tensor& strip, const pefm::TileOptions& tiles, const pefm::Thresholds& t = {},
                        pefm::FrameDetector& det = *detector()) {
  const auto img = strip.contiguous();
  return det.process(rgb_view(img), t, tiles);
}

struct Fed {
  std::vector<pefm::WebBuffer> buffers;  // in the order they became ready
  std::vector<pefm::FrameRegion> orphans;
  std::vector<int64_t> rows_late;  // per buffer: rows pushed after its end before the push that released it
};

// The strip fed as buffers of `heights` rows (summing to its height), then ended with `why`.
Fed feed(pefm::WebStream& web, const torch::Tensor& strip, const std::vector<int>& heights,
         const pefm::Thresholds& t = {}, const std::string& why = "eos", int64_t web_row0 = 0) {
  Fed out;
  std::vector<int64_t> ends;
  int64_t row = 0;
  for (size_t i = 0; i < heights.size(); ++i) {
    const auto part = strip.slice(0, row, row + heights[i]).contiguous();
    web.push(rgb_view(part), web_row0 + row, i, t);
    for (auto& b : web.take_ready()) {
      out.rows_late.push_back(row - (b.web_row - web_row0 + b.rows));
      out.buffers.push_back(std::move(b));
    }
    row += heights[i];
  }
  if (!why.empty()) {
    out.orphans = web.finish(why);
    for (auto& b : web.take_ready()) {
      out.rows_late.push_back(-1);
      out.buffers.push_back(std::move(b));
    }
  }
  return out;
}

torch::Tensor stitched(const Fed& fed) {
  std::vector<torch::Tensor> maps;
  for (const auto& b : fed.buffers) maps.push_back(map_of(b.result));
  return torch::cat(maps);
}

std::vector<int> random_heights(int total, int lo, int hi, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int> out;
  for (int left = total; left > 0;) {
    const int h = std::min(left, std::uniform_int_distribution<int>(lo, hi)(rng));
    out.push_back(h);
    left -= h;
  }
  return out;
}

// A region as a web box, for comparison with a whole frame's regions (one map pixel per
// frame pixel: 64 px tiles into the 64 px model).
using Box = std::tuple<int64_t, int64_t, int, int>;  // y, height, x, width
Box web_box(const pefm::FrameRegion& g) { return {g.web_y, g.web_height, g.web_x, g.web_width}; }
Box frame_box(const pefm::FrameRegion& g) { return {g.y, g.height, g.x, g.width}; }

std::vector<pefm::FrameRegion> all_regions(const Fed& fed) {
  std::vector<pefm::FrameRegion> out = fed.orphans;
  for (const auto& b : fed.buffers) out.insert(out.end(), b.result.regions.begin(), b.result.regions.end());
  return out;
}

// The strip with defects, and a raw level halfway between the clean strip's highest score
// and the lowest of the defects' peaks (the uncalibrated model's scale).
struct DefectStrip {
  torch::Tensor img;
  double level;
};
DefectStrip defect_strip(int h, int w, const std::vector<std::pair<int, int>>& defects, uint64_t seed,
                         const pefm::TileOptions& tiles) {
  const auto clean = pefm_test::web_texture(h, w, seed);
  auto img = clean;
  for (const auto& [y, x] : defects) img = paste_patch(img, y, x, 20);
  const float clean_max = whole(clean, tiles, {}, *trained()).raw_score;
  const auto map = map_of(whole(img, tiles, {}, *trained()));
  float lowest_peak = std::numeric_limits<float>::max();
  for (const auto& [y, x] : defects) {
    lowest_peak = std::min(lowest_peak, map.slice(0, y, y + 20).slice(1, x, x + 20).max().item<float>());
  }
  EXPECT_GT(lowest_peak, clean_max * 1.2f) << "the defects must stand out of the clean strip";
  return {img, 0.5 * (clean_max + lowest_peak)};
}

const pefm::TileOptions kTiles{64, 16};

// The stitched map of a strip fed as buffers equals the map of the same strip inspected
// whole, at every split, to float rounding: no seam at buffer boundaries. Fed buffer by
// buffer without continuous mode, the same strip shows seams far beyond that tolerance.
TEST(WebStream, StitchedMapEqualsTheWholeStripsMapAtEverySplit) {
  const auto strip = texture_image(331, 160, 7);
  const auto reference = map_of(whole(strip, kTiles));
  const float tolerance = 1e-5f * reference.abs().max().item<float>();
  for (const auto& heights : {std::vector<int>{331}, std::vector<int>{100, 100, 131}, random_heights(331, 1, 90, 1),
                              random_heights(331, 30, 200, 2), std::vector<int>(331, 1)}) {
    pefm::WebStream web(detector(), kTiles, 100000);
    const auto fed = feed(web, strip, heights);
    ASSERT_EQ(fed.buffers.size(), heights.size());
    int64_t row = 0;
    for (size_t i = 0; i < fed.buffers.size(); ++i) {
      EXPECT_EQ(fed.buffers[i].tag, i) << "buffers come out in the order they went in";
      EXPECT_EQ(fed.buffers[i].web_row, row);
      EXPECT_EQ(fed.buffers[i].result.map_height, heights[i]) << "one map row per frame row here";
      row += heights[i];
    }
    const auto map = stitched(fed);
    ASSERT_EQ(map.sizes(), reference.sizes());
    EXPECT_LE((map - reference).abs().max().item<float>(), tolerance) << heights.size() << " buffers";
  }
  // Two frame rows per map row (128 px tiles into the 64 px model), odd buffer heights: the
  // map rows split between buffers by rounding still tile the whole map exactly.
  const pefm::TileOptions coarse{128, 40};
  const auto coarse_reference = map_of(whole(strip, coarse));
  for (const auto& heights : {random_heights(331, 2, 70, 4), std::vector<int>{3, 101, 77, 150}}) {
    pefm::WebStream web(detector(), coarse, 100000);
    const auto fed = feed(web, strip, heights);
    ASSERT_EQ(fed.buffers.size(), heights.size());
    const auto map = stitched(fed);
    ASSERT_EQ(map.sizes(), coarse_reference.sizes());
    EXPECT_LE((map - coarse_reference).abs().max().item<float>(), 1e-5f * coarse_reference.abs().max().item<float>());
  }
  // Without continuous mode: each buffer inspected on its own.
  std::vector<torch::Tensor> parts;
  for (int64_t row : {0, 100, 200}) parts.push_back(map_of(whole(strip.slice(0, row, std::min<int64_t>(331, row + (row == 200 ? 131 : 100))), kTiles)));
  EXPECT_GT((torch::cat(parts) - reference).abs().max().item<float>(), 100 * tolerance)
      << "per-buffer maps differ from the whole strip's at the boundaries (what this test would catch)";
}

// Continuous mode on CUDA (bench/gpu-check.sh; skips here): tiles blended on the GPU across
// buffers of random heights, through the element's stream context, give the CPU's stitched
// map (fp32, TF32 off: 1e-3 of its maximum).
TEST(WebStreamCuda, StitchedMapOnCudaIsTheCpus) {
  PEFM_CUDA_OR_SKIP();
  const auto strip = texture_image(331, 160, 7);
  const auto gpu = std::make_shared<pefm::FrameDetector>(pefm_test::tiny_model(21), pefm::DetectorOptions{"cuda"});
  for (const auto& tiles : {kTiles, pefm::TileOptions{128, 40}}) {
    pefm::WebStream cpu_web(detector(), tiles, 100000);
    const auto want = stitched(feed(cpu_web, strip, random_heights(331, 2, 90, 5)));
    pefm::WebStream web(gpu, tiles, 100000);
    pefm::StreamContext context;
    Fed fed;
    int64_t row = 0;
    uint64_t tag = 0;
    for (const int h : random_heights(331, 2, 90, 6)) {
      const auto part = strip.slice(0, row, row + h).contiguous();
      web.push(rgb_view(part), row, tag++, {}, &context);
      for (auto& b : web.take_ready()) fed.buffers.push_back(std::move(b));
      row += h;
    }
    web.finish("eos", &context);
    for (auto& b : web.take_ready()) fed.buffers.push_back(std::move(b));
    const auto got = stitched(fed);
    ASSERT_EQ(got.sizes(), want.sizes());
    EXPECT_LT((got - want).abs().max().item<float>(), 1e-3f * want.abs().max().item<float>()) << tiles.size << " px tiles";
  }
}

// A defect across the boundary between two buffers is one region, reported once, with the
// buffer where it ends and with the extent the whole strip gives it; inspected buffer by
// buffer it would be two halves.
TEST(WebStream, ADefectStraddlingABufferBoundaryIsReportedOnceWithItsWebExtent) {
  const auto ds = defect_strip(256, 160, {{90, 50}}, 3, kTiles);
  const pefm::Thresholds t{0.5, ds.level};
  const auto expected = whole(ds.img, kTiles, t, *trained()).regions;
  ASSERT_EQ(expected.size(), 1u);
  pefm::WebStream web(trained(), kTiles, 100000);
  const auto fed = feed(web, ds.img, {100, 100, 56}, t);
  const auto found = all_regions(fed);
  ASSERT_EQ(found.size(), 1u) << "reported once";
  EXPECT_EQ(web_box(found[0]), frame_box(expected[0]));
  EXPECT_EQ(found[0].area, expected[0].area);
  EXPECT_FLOAT_EQ(found[0].peak, expected[0].peak);
  EXPECT_EQ(found[0].closed_by, "ended");
  EXPECT_EQ(fed.buffers[1].result.regions.size(), 1u) << "with the buffer where it ends (rows 100..199)";
  // Its part inside that buffer, in the buffer's own rows.
  EXPECT_EQ(found[0].y, 0);
  EXPECT_EQ(found[0].height, found[0].web_y + found[0].web_height - 100);
  // Buffer by buffer, the same defect is cut in pieces.
  size_t pieces = 0;
  for (int64_t row : {0, 100}) {
    pieces += whole(ds.img.slice(0, row, row + 100), kTiles, t, *trained()).regions.size();
  }
  EXPECT_GE(pieces, 2u);
}

// Defects inside buffers, across one boundary and across several short buffers, at random
// splits: exactly the whole strip's regions, each once, each with the buffer holding its
// last row.
TEST(WebStream, RandomSplitsGiveTheWholeStripsRegionsEachOnce) {
  const auto ds = defect_strip(400, 160, {{20, 20}, {150, 120}, {190, 30}, {330, 70}}, 5, kTiles);
  const pefm::Thresholds t{0.5, ds.level};
  std::multiset<Box> expected;
  for (const auto& g : whole(ds.img, kTiles, t, *trained()).regions) expected.insert(frame_box(g));
  ASSERT_GE(expected.size(), 4u) << "each defect at least one region";
  for (uint64_t seed = 1; seed <= 6; ++seed) {
    pefm::WebStream web(trained(), kTiles, 100000);
    const auto fed = feed(web, ds.img, random_heights(400, 5, 120, seed), t);
    std::multiset<Box> found;
    for (const auto& b : fed.buffers) {
      for (const auto& g : b.result.regions) {
        found.insert(web_box(g));
        const int64_t last = g.web_y + g.web_height - 1;
        EXPECT_TRUE(last >= b.web_row && last < b.web_row + b.rows)
            << "region ending at row " << last << " reported with rows " << b.web_row << ".." << b.web_row + b.rows - 1;
        EXPECT_GE(g.y, 0);
        EXPECT_LE(g.y + g.height, b.rows);
      }
    }
    EXPECT_TRUE(fed.orphans.empty());
    EXPECT_EQ(found, expected) << "split seed " << seed;
  }
}

// A defect still open when the stream ends is reported by finish, with the last buffer.
TEST(WebStream, EndOfStreamReportsTheRegionStillOpen) {
  const auto ds = defect_strip(200, 160, {{185, 40}}, 9, kTiles);  // runs to the last row
  const pefm::Thresholds t{0.5, ds.level};
  pefm::WebStream web(trained(), kTiles, 100000);
  const auto fed = feed(web, ds.img, {80, 80, 40}, t, "");
  size_t before = 0;
  for (const auto& b : fed.buffers) before += b.result.regions.size();
  EXPECT_EQ(before, 0u) << "nothing reported while the defect may go on";
  EXPECT_EQ(web.pending(), 3u - fed.buffers.size());
  EXPECT_TRUE(web.finish("eos").empty());
  const auto rest = web.take_ready();
  ASSERT_FALSE(rest.empty());
  ASSERT_EQ(rest.back().result.regions.size(), 1u);
  const auto& g = rest.back().result.regions[0];
  EXPECT_EQ(g.closed_by, "eos");
  EXPECT_EQ(g.web_y + g.web_height, 200) << "it reaches the end of the web";
  EXPECT_EQ(web.next_row(), -1) << "the web is closed";
}

// A discontinuity ends the web: the region open there is reported as far as it went,
// closed "gap", and the next buffer starts a new web (its rows keep counting on the web).
TEST(WebStream, ADiscontinuityClosesOpenRegionsAndStartsAFreshWeb) {
  const auto ds = defect_strip(256, 160, {{90, 50}}, 3, kTiles);
  const pefm::Thresholds t{0.5, ds.level};
  pefm::WebStream web(trained(), kTiles, 100000);
  const auto first = feed(web, ds.img.slice(0, 0, 100), {50, 50}, t, "gap");
  const auto closed = all_regions(first);
  ASSERT_FALSE(closed.empty());
  for (const auto& g : closed) {
    EXPECT_EQ(g.closed_by, "gap");
    EXPECT_EQ(g.web_y + g.web_height, 100) << "as far as the web went";
  }
  // The rest arrives after 1000 lost rows: a fresh web, its rows on the same web scale.
  const auto second = feed(web, ds.img.slice(0, 100), {100, 56}, t, "eos", 1100);
  const auto rest = all_regions(second);
  ASSERT_FALSE(rest.empty());
  for (const auto& g : rest) {
    EXPECT_EQ(g.web_y, 1100) << "the defect's remainder, starting the new web";
    EXPECT_EQ(g.closed_by, "ended");
  }
}

// What does not continue the web is refused (the caller reports the discontinuity and
// ends the web first), as are buffers too short for one map row and tile-size 0.
TEST(WebStream, RefusesWhatDoesNotContinueTheWeb) {
  const auto strip = texture_image(64, 128, 4);
  pefm::WebStream web(detector(), kTiles, 1000);
  const auto a = strip.slice(0, 0, 32).contiguous();
  web.push(rgb_view(a), 500, 0, {});
  EXPECT_EQ(web.next_row(), 532);
  EXPECT_THROW(web.push(rgb_view(a), 600, 1, {}), std::invalid_argument) << "rows skipped";
  pefm::WebStream other(detector(), kTiles, 1000);
  other.push(rgb_view(a), 0, 0, {});
  const auto narrow = strip.slice(0, 0, 32).slice(1, 0, 96).contiguous();
  EXPECT_THROW(other.push(rgb_view(narrow), 32, 1, {}), std::invalid_argument) << "another width";
  pefm::WebStream coarse(detector(), {256, 0}, 1000);  // 4 frame rows per map row
  const auto thin = strip.slice(0, 0, 3).contiguous();
  try {
    coarse.push(rgb_view(thin), 0, 0, {});
    ADD_FAILURE() << "a 3-row buffer under 256 px tiles into a 64 px model was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("tile-size"), std::string::npos) << e.what();
  }
  EXPECT_THROW(pefm::WebStream(detector(), {0, 0}, 1000), std::invalid_argument);
  EXPECT_THROW(pefm::WebStream(detector(), kTiles, 0), std::invalid_argument);
}

// Rows held back: a buffer is ready before held_rows_bound() more rows have arrived, and
// the pixels held stay within about a tile and a step.
TEST(WebStream, RowsHeldBackStayWithinTheStatedBound) {
  const auto strip = texture_image(600, 96, 8);
  const auto heights = random_heights(600, 1, 40, 3);
  pefm::WebStream web(detector(), kTiles, 1000);
  const auto fed = feed(web, strip, heights, {}, "eos");
  const int64_t bound = web.held_rows_bound();
  EXPECT_EQ(bound, pefm::WebStream::held_rows_bound(kTiles, 64));
  for (size_t i = 0; i < fed.buffers.size(); ++i) {
    EXPECT_LT(fed.rows_late[i], bound) << "buffer " << i;
  }
  pefm::WebStream again(detector(), kTiles, 1000);
  int64_t row = 0;
  for (int h : heights) {
    const auto part = strip.slice(0, row, row + h).contiguous();
    again.push(rgb_view(part), row, 0, {});
    again.take_ready();
    row += h;
    EXPECT_LE(again.held_rows(), kTiles.size + (kTiles.size - kTiles.overlap) + h);
  }
}

// A failure mid-web (here an injected one, as CUDA running out of memory) drops the web
// and every result not yet taken; the next buffer starts a fresh web.
TEST(WebStream, AFailureDropsTheWebAndTheNextBufferStartsAFreshOne) {
  const auto strip = texture_image(256, 96, 12);
  auto det = std::make_shared<pefm::FrameDetector>(pefm_test::tiny_model(21), pefm::DetectorOptions{"cpu"});
  pefm::WebStream web(det, kTiles, 1000);
  feed(web, strip.slice(0, 0, 192), {64, 64, 64}, {}, "");
  ASSERT_GT(web.ready() + web.pending(), 0u);
  pefm::testing::inject_failures(*det, 1, "injected");
  const auto next = strip.slice(0, 192, 256).contiguous();
  EXPECT_THROW(web.push(rgb_view(next), 192, 3, {}), std::exception);
  EXPECT_EQ(web.pending(), 0u);
  EXPECT_EQ(web.ready(), 0u);
  EXPECT_EQ(web.next_row(), -1);
  web.push(rgb_view(next), 192, 4, {});
  EXPECT_EQ(web.next_row(), 256);
  web.finish("eos");
  const auto out = web.take_ready();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].tag, 4u);
}

// A flush forgets the pending buffers (their tags come back) and reports the regions open
// in the rows already released: here the defect's first rows (buffer 1 is out, buffer 2,
// where the defect goes on, is still held).
TEST(WebStream, DropForgetsPendingBuffersAndReportsOpenRegions) {
  const auto ds = defect_strip(256, 160, {{90, 50}}, 3, kTiles);
  const pefm::Thresholds t{0.5, ds.level};
  pefm::WebStream web(trained(), kTiles, 100000);
  const auto fed = feed(web, ds.img.slice(0, 0, 250), {50, 50, 50, 50, 50}, t, "");
  ASSERT_EQ(fed.buffers.size(), 2u) << "rows 0..99 out, 100..249 held";
  EXPECT_TRUE(all_regions(fed).empty());
  std::vector<uint64_t> dropped;
  const auto closed = web.drop("flush", &dropped);
  EXPECT_EQ(dropped, (std::vector<uint64_t>{2, 3, 4}));
  ASSERT_FALSE(closed.empty());
  for (const auto& g : closed) {
    EXPECT_EQ(g.closed_by, "flush");
    EXPECT_EQ(g.web_y + g.web_height, 100) << "as far as the rows released";
    EXPECT_EQ(g.height, 0) << "no buffer holds it";
  }
  EXPECT_EQ(web.pending(), 0u);
  EXPECT_EQ(web.next_row(), -1);
}

}  // namespace
