#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <tuple>
#include <string>
#include <vector>

#include "pefm/regions.h"
#include "pefm/web_regions.h"

namespace {

using pefm::WebRegion;
using pefm::WebRegions;

// A web of `rows` x `width` scores, 0 everywhere but the listed pixels (1).
struct Web {
  int64_t rows;
  int width;
  std::vector<float> scores;
  Web(int64_t r, int w) : rows(r), width(w), scores(static_cast<size_t>(r * w), 0.0f) {}
  void set(int64_t y, int x, float v = 1.0f) { scores[static_cast<size_t>(y * width + x)] = v; }
  void box(int64_t y0, int x0, int64_t h, int w) {
    for (int64_t y = y0; y < y0 + h; ++y)
      for (int x = x0; x < x0 + w; ++x) set(y, x);
  }
  // Fed in bands of the given heights (the last band takes the rest), then closed at EOS.
  std::vector<WebRegion> feed(const std::vector<int64_t>& bands, int64_t max_open_rows = 1000) const {
    WebRegions regions(width, max_open_rows);
    std::vector<WebRegion> all;
    int64_t y = 0;
    for (size_t i = 0; y < rows; ++i) {
      const int64_t h = i < bands.size() ? std::min(bands[i], rows - y) : rows - y;
      for (auto& r : regions.add_band(y, scores.data() + y * width, h, 0.5f)) all.push_back(r);
      y += h;
    }
    for (auto& r : regions.close_all("eos")) all.push_back(r);
    return all;
  }
};

std::string describe(const std::vector<WebRegion>& rs) {
  std::string s;
  for (const auto& r : rs)
    s += "(" + std::to_string(r.y) + "+" + std::to_string(r.height) + ", " + std::to_string(r.x) + "+" +
         std::to_string(r.width) + ", area " + std::to_string(r.area) + ", " + r.closed_by + ") ";
  return s;
}

TEST(WebRegions, ADefectStraddlingABandBoundaryIsReportedOnceWithItsWholeExtent) {
  Web web(20, 10);
  web.box(8, 3, 5, 3);  // rows 8..12: bands 0..9 and 10..19 each hold a part
  WebRegions regions(10, 1000);
  EXPECT_TRUE(regions.add_band(0, web.scores.data(), 10, 0.5f).empty()) << "still open at the boundary";
  EXPECT_EQ(regions.open_count(), 1u);
  const auto second = regions.add_band(10, web.scores.data() + 100, 10, 0.5f);
  ASSERT_EQ(second.size(), 1u) << describe(second);
  EXPECT_EQ(second[0].y, 8);
  EXPECT_EQ(second[0].height, 5);
  EXPECT_EQ(second[0].x, 3);
  EXPECT_EQ(second[0].width, 3);
  EXPECT_EQ(second[0].area, 15);
  EXPECT_EQ(second[0].closed_by, "ended");
  EXPECT_TRUE(regions.close_all("eos").empty()) << "reported once";
  // Fed whole, the same region.
  const auto whole = web.feed({20});
  ASSERT_EQ(whole.size(), 1u);
  EXPECT_EQ(whole[0].y, 8);
  EXPECT_EQ(whole[0].area, 15);
}

TEST(WebRegions, ADefectInsideABandIsReportedInThatBand) {
  Web web(30, 8);
  web.box(2, 1, 3, 2);
  WebRegions regions(8, 1000);
  const auto first = regions.add_band(0, web.scores.data(), 10, 0.5f);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].y, 2);
  EXPECT_EQ(first[0].closed_by, "ended");
  EXPECT_TRUE(regions.add_band(10, web.scores.data() + 80, 10, 0.5f).empty());
}

TEST(WebRegions, DiagonalTouchAcrossTheBoundaryJoinsAndTwoArmsBelowMergeIntoOne) {
  Web web(20, 12);
  web.set(9, 4);
  web.set(10, 5);  // diagonal neighbour across the boundary
  // Two separate arms above the boundary, joined by a bar below it: one region.
  web.box(6, 8, 4, 1);
  web.box(6, 11, 4, 1);
  web.box(10, 8, 1, 4);
  const auto banded = web.feed({10, 10});
  ASSERT_EQ(banded.size(), 2u) << describe(banded);  // ordered by first row
  EXPECT_EQ(banded[0].area, 4 + 4 + 4);
  EXPECT_EQ(banded[0].y, 6);
  EXPECT_EQ(banded[0].height, 5);
  EXPECT_EQ(banded[0].width, 4);
  EXPECT_EQ(banded[1].area, 2);
  EXPECT_EQ(banded[1].y, 9);
}

TEST(WebRegions, ARegionEndingOnTheLastRowOfABandIsReportedWithTheNextBand) {
  Web web(20, 6);
  web.box(8, 2, 2, 2);  // rows 8 and 9: touches the bottom of band 0, nothing below
  WebRegions regions(6, 1000);
  EXPECT_TRUE(regions.add_band(0, web.scores.data(), 10, 0.5f).empty());
  const auto second = regions.add_band(10, web.scores.data() + 60, 10, 0.5f);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].y, 8);
  EXPECT_EQ(second[0].height, 2);
  EXPECT_EQ(second[0].closed_by, "ended");
}

TEST(WebRegions, AGapOrEosClosesOpenRegionsAndSaysSo) {
  Web web(10, 6);
  web.box(7, 1, 3, 2);
  WebRegions regions(6, 1000);
  EXPECT_TRUE(regions.add_band(0, web.scores.data(), 10, 0.5f).empty());
  // The next band starts 5 rows later: a discontinuity, not stitched across.
  Web next(10, 6);
  next.box(0, 1, 2, 2);  // would have continued the region
  const auto after_gap = regions.add_band(15, next.scores.data(), 10, 0.5f);
  ASSERT_EQ(after_gap.size(), 2u) << describe(after_gap);
  EXPECT_EQ(after_gap[0].closed_by, "gap");
  EXPECT_EQ(after_gap[0].y, 7);
  EXPECT_EQ(after_gap[0].height, 3);
  EXPECT_EQ(after_gap[1].closed_by, "ended");
  EXPECT_EQ(after_gap[1].y, 15);
  // EOS with a region open at the last row.
  Web last(10, 6);
  last.box(8, 0, 2, 6);
  EXPECT_TRUE(regions.add_band(25, last.scores.data(), 10, 0.5f).empty());
  const auto at_eos = regions.close_all("eos");
  ASSERT_EQ(at_eos.size(), 1u);
  EXPECT_EQ(at_eos[0].closed_by, "eos");
  EXPECT_EQ(at_eos[0].y, 33);
  EXPECT_TRUE(regions.close_all("eos").empty());
  EXPECT_THROW(regions.add_band(30, last.scores.data(), 10, 0.5f), std::invalid_argument) << "backwards";
  EXPECT_THROW(regions.add_band(35, last.scores.data(), 0, 0.5f), std::invalid_argument);
}

TEST(WebRegions, AnEndlessStreakIsReportedInPartsOfTheBound) {
  Web web(50, 5);
  web.box(0, 2, 50, 1);  // a vertical streak through every band
  const auto parts = web.feed({10, 10, 10, 10, 10}, 25);
  ASSERT_EQ(parts.size(), 2u) << describe(parts);
  EXPECT_EQ(parts[0].closed_by, "max-rows");
  EXPECT_EQ(parts[0].y, 0);
  EXPECT_EQ(parts[0].height, 30);  // reported at the first band end past 25 rows
  EXPECT_EQ(parts[1].closed_by, "eos");
  EXPECT_EQ(parts[1].y, 30);
  EXPECT_EQ(parts[1].height, 20);
  int64_t area = 0;
  for (const auto& p : parts) area += p.area;
  EXPECT_EQ(area, 50) << "every pixel in exactly one part";
}

// Any split into bands gives the regions of the whole web, pixel for pixel.
TEST(WebRegions, AnySplitIntoBandsGivesTheRegionsOfTheWholeWeb) {
  std::mt19937 rng(5);
  for (int trial = 0; trial < 50; ++trial) {
    Web web(64, 30);
    for (auto& v : web.scores) v = (rng() % 100) < 35 ? 1.0f : 0.0f;
    auto whole = web.feed({64});
    std::vector<int64_t> bands;
    for (int64_t y = 0; y < 64;) {
      const int64_t h = 1 + static_cast<int64_t>(rng() % 12);
      bands.push_back(h);
      y += h;
    }
    auto banded = web.feed(bands);
    const auto order = [](const WebRegion& a, const WebRegion& b) {
      return std::tie(a.y, a.x, a.height, a.width, a.area) < std::tie(b.y, b.x, b.height, b.width, b.area);
    };
    std::sort(whole.begin(), whole.end(), order);
    std::sort(banded.begin(), banded.end(), order);
    ASSERT_EQ(banded.size(), whole.size()) << "trial " << trial;
    for (size_t i = 0; i < whole.size(); ++i) {
      EXPECT_EQ(banded[i].y, whole[i].y) << trial;
      EXPECT_EQ(banded[i].x, whole[i].x) << trial;
      EXPECT_EQ(banded[i].height, whole[i].height) << trial;
      EXPECT_EQ(banded[i].width, whole[i].width) << trial;
      EXPECT_EQ(banded[i].area, whole[i].area) << trial;
    }
  }
}

// The box rule covers exactly the frame pixels a run of map cells spans, whatever the
// ratio: floor and ceil of first * frame / map, with no rounding of 1 / ratio (a 64 px model
// on tiles of 93 put map row 192 at frame row 278 or 279 depending on how the ratio was
// rounded).
TEST(Regions, FrameSpanIsTheExactFloorAndCeilOfTheMapCells) {
  EXPECT_EQ(pefm::frame_span(192, 1, 93, 64, 1 << 30).begin, 279);
  for (int64_t frame_len : {93, 96, 100, 224, 300, 1000}) {
    for (int64_t map_len : {7, 56, 64, 224, 256}) {
      for (int64_t first = 0; first < 300; first += 7) {
        for (int64_t count : {1, 2, 5, 33}) {
          const auto s = pefm::frame_span(first, count, frame_len, map_len, INT64_MAX);
          const int64_t lo = first * frame_len, hi = (first + count) * frame_len;
          EXPECT_LE(s.begin * map_len, lo);
          EXPECT_GT((s.begin + 1) * map_len, lo);
          EXPECT_GE(s.end * map_len, hi);
          EXPECT_LT((s.end - 1) * map_len, hi);
        }
      }
    }
  }
  EXPECT_EQ(pefm::frame_span(10, 5, 3, 1, 40).end, 40) << "the end is clamped to the frame";
}

// The labeller numbers 8-connected components in the scan order of their first cell.
TEST(Regions, LabelComponentsJoinsDiagonalsAndNumbersInScanOrder) {
  const std::vector<float> grid = {1, 0, 0, 1,  //
                                   0, 1, 0, 0,  //
                                   0, 0, 0, 1,  //
                                   1, 0, 1, 0};
  std::vector<int32_t> comp;
  EXPECT_EQ(pefm::label_components(grid.data(), 4, 4, 0.5f, &comp), 4);
  EXPECT_EQ(comp, (std::vector<int32_t>{0, -1, -1, 1, -1, 0, -1, -1, -1, -1, -1, 2, 3, -1, 2, -1}));
}

}  // namespace
