#include <algorithm>
#include <cmath>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "pefm/synthetic_defect.h"

namespace {

using pefm::DefectKind;

// A structured image: a diagonal ramp and a checkerboard of 6-pixel squares, so every
// kind of defect changes something, [h, w, 3] uint8; grey when `grey`, else the channels
// are the ramp in three different directions.
torch::Tensor textured(int64_t h, int64_t w, bool grey) {
  const auto yy = torch::arange(h, torch::kFloat32).view({-1, 1}).expand({h, w});
  const auto xx = torch::arange(w, torch::kFloat32).view({1, -1}).expand({h, w});
  const auto checker = (yy.div(6).floor() + xx.div(6).floor()).remainder(2) * 80;
  const auto r = checker + (yy + xx) * (150.0 / static_cast<double>(h + w));
  if (grey) return r.round().to(torch::kUInt8).unsqueeze(2).expand({h, w, 3}).contiguous();
  const auto g = checker + yy * (150.0 / static_cast<double>(h));
  const auto b = checker + xx * (150.0 / static_cast<double>(w));
  return torch::stack({r, g, b}, 2).round().to(torch::kUInt8);
}

// Colour noise from integer hashing, the same with every LibTorch (no generator involved).
torch::Tensor random_colour(int64_t h, int64_t w) {
  const auto i = torch::arange(h * w * 3, torch::kInt64);
  return (i * static_cast<int64_t>(2654435761)).remainder(1000003).remainder(256).to(torch::kUInt8).view({h, w, 3});
}

std::vector<DefectKind> all_kinds() {
  std::vector<DefectKind> kinds;
  for (int k = 0; k < pefm::kDefectKinds; ++k) kinds.push_back(static_cast<DefectKind>(k));
  return kinds;
}

class SyntheticDefectKinds : public ::testing::TestWithParam<DefectKind> {};

TEST_P(SyntheticDefectKinds, ChangesTheMaskedPixelsVisiblyAndIsDeterministic) {
  const auto image = textured(96, 128, /*grey=*/false);
  const auto donor = random_colour(70, 90);
  for (uint64_t seed : {1u, 2u, 3u}) {
    const auto d = pefm::synthetic_defect(image, donor, GetParam(), seed);
    ASSERT_EQ(d.image.sizes(), image.sizes());
    ASSERT_EQ(d.image.scalar_type(), torch::kUInt8);
    ASSERT_EQ(d.mask.sizes(), (std::vector<int64_t>{96, 128}));
    const auto n = d.mask.sum().item<int64_t>();
    EXPECT_GT(n, 0) << pefm::to_string(GetParam()) << " seed " << seed;
    EXPECT_LT(n, 96 * 128 / 4) << "a defect is local";
    const auto change = (d.image.to(torch::kFloat32) - image.to(torch::kFloat32)).abs().mean(2);
    EXPECT_GE(change.masked_select(d.mask).mean().item<double>(), 4.0) << "visible inside its mask";
    if (GetParam() == DefectKind::kWarp) {
      // Pixels moved by less than half a pixel, at the disc's rim, are left out of the mask and
      // may change a little at the checkerboard's edges: that band is sqrt(r / 2|s|) <= 3
      // pixels wide here (r <= 0.14 * 96, |s| >= 0.8); no pixel farther from the mask changes.
      const auto near = torch::max_pool2d(d.mask.to(torch::kFloat32).unsqueeze(0), 9, 1, 4)[0].gt(0);
      EXPECT_EQ(change.gt(0).logical_and(near.logical_not()).sum().item<int64_t>(), 0);
    } else {
      EXPECT_EQ(change.gt(0).logical_and(d.mask.logical_not()).sum().item<int64_t>(), 0)
          << "nothing changes outside the mask";
    }
    const auto again = pefm::synthetic_defect(image, donor, GetParam(), seed);
    EXPECT_TRUE(again.image.equal(d.image) && again.mask.equal(d.mask)) << "deterministic in the seed";
  }
  EXPECT_FALSE(pefm::synthetic_defect(image, donor, GetParam(), 1).mask.equal(
      pefm::synthetic_defect(image, donor, GetParam(), 2).mask))
      << "seeds place defects differently";
}

TEST_P(SyntheticDefectKinds, StaysGreyOnAGreyImageWhateverTheDonor) {
  const auto image = textured(64, 80, /*grey=*/true);
  const auto donor = random_colour(64, 80);
  for (uint64_t seed = 0; seed < 5; ++seed) {
    const auto d = pefm::synthetic_defect(image, donor, GetParam(), seed).image;
    EXPECT_TRUE(d.select(2, 0).equal(d.select(2, 1)) && d.select(2, 0).equal(d.select(2, 2)))
        << pefm::to_string(GetParam()) << " seed " << seed << " put colour into a grey image";
  }
}

TEST_P(SyntheticDefectKinds, SmallAndUniformImagesGiveADefectNotAnError) {
  // 2 x 2 is the smallest image; a uniform one cannot show a flip or a warp, and after eight
  // draws the most visible is returned (the first, when none changes anything).
  const auto tiny = textured(2, 2, false);
  const auto d = pefm::synthetic_defect(tiny, random_colour(1, 1), GetParam(), 5);
  EXPECT_EQ(d.image.sizes(), tiny.sizes());
  const auto flat = torch::full({40, 40, 3}, 128, torch::kUInt8);
  const auto f = pefm::synthetic_defect(flat, flat, GetParam(), 5);
  EXPECT_EQ(f.image.sizes(), flat.sizes());
  EXPECT_EQ(f.mask.sizes(), (std::vector<int64_t>{40, 40}));
}

// A flat image with structure in one corner: a single flip mostly lands on flat grey and
// changes nothing; drawn again up to 8 times, most defects come out visible.
TEST(SyntheticDefect, AnInvisibleDrawIsDrawnAgain) {
  auto image = torch::full({64, 64, 3}, 128, torch::kUInt8);
  image.slice(0, 0, 24).slice(1, 0, 24).copy_(textured(24, 24, /*grey=*/true));
  int visible = 0;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    const auto d = pefm::synthetic_defect(image, image, DefectKind::kFlip, seed);
    const auto change = (d.image.to(torch::kFloat32) - image.to(torch::kFloat32)).abs().mean(2);
    visible += d.mask.any().item<bool>() && change.masked_select(d.mask).mean().item<double>() >= 4.0;
  }
  // One draw touches the corner about a quarter of the time; eight, nearly always.
  EXPECT_GE(visible, 15) << "of 20";
}

INSTANTIATE_TEST_SUITE_P(AllKinds, SyntheticDefectKinds, ::testing::ValuesIn(all_kinds()),
                         [](const ::testing::TestParamInfo<DefectKind>& info) {
                           auto name = pefm::to_string(info.param);
                           name.erase(std::remove(name.begin(), name.end(), '-'), name.end());
                           return name;
                         });

// Golden values for one seed per kind (mask pixels, and the image's sum of changes): the
// random draws are statements of their own, so every compiler draws them in one order and
// GCC and Clang builds agree. Tolerances: a pixel or two of mask, 0.5 % of change, for
// rounding that differs between CPUs.
TEST(SyntheticDefect, GoldenValuesForOneSeed) {
  const auto image = textured(96, 128, /*grey=*/false);
  const auto donor = random_colour(70, 90);
  const std::vector<std::pair<int64_t, double>> golden = {
      {234, 49871}, {186, 30270}, {234, 36996}, {127, 6934}, {50, 8784}, {494, 82242}};
  for (auto k : all_kinds()) {
    const auto d = pefm::synthetic_defect(image, donor, k, 12345);
    const auto n = d.mask.sum().item<int64_t>();
    const double change = (d.image.to(torch::kFloat64) - image.to(torch::kFloat64)).abs().sum().item<double>();
    const auto& [gn, gc] = golden[static_cast<size_t>(k)];
    EXPECT_NEAR(n, gn, 2) << pefm::to_string(k);
    EXPECT_NEAR(change, gc, 0.005 * gc) << pefm::to_string(k);
  }
}

TEST(SyntheticDefect, NamesItsKinds) {
  std::vector<std::string> names;
  for (auto k : all_kinds()) names.push_back(pefm::to_string(k));
  EXPECT_EQ(names, (std::vector<std::string>{"cut-paste", "blotch", "flip", "warp", "scar", "shift"}));
}

TEST(SyntheticDefect, RefusesWhatIsNotAnRgbByteImage) {
  const auto donor = random_colour(8, 8);
  try {
    pefm::synthetic_defect(torch::zeros({8, 8, 3}), donor, DefectKind::kBlotch, 1);
    FAIL() << "a float image was accepted";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("synthetic_defect: image must be [H >= 2, W >= 2, 3] uint8"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(pefm::synthetic_defect(torch::zeros({1, 8, 3}, torch::kUInt8), donor, DefectKind::kFlip, 1), c10::Error);
  EXPECT_THROW(pefm::synthetic_defect(donor, torch::zeros({8, 8}, torch::kUInt8), DefectKind::kScar, 1), c10::Error);
}

TEST(MisalignedCopy, IsAWindowOf85To95PercentOfEachSide) {
  const auto image = textured(60, 40, false);
  for (uint64_t seed = 0; seed < 10; ++seed) {
    const auto c = pefm::misaligned_copy(image, seed);
    const int64_t ch = c.size(0), cw = c.size(1);
    EXPECT_GE(ch, 51);  // 0.85 * 60
    EXPECT_LE(ch, 57);  // 0.95 * 60
    EXPECT_GE(cw, 34);
    EXPECT_LE(cw, 38);
    EXPECT_LT(std::abs(static_cast<double>(ch) / 60 - static_cast<double>(cw) / 40), 1.0 / 40 + 1.0 / 60)
        << "one scale for both sides";
    bool found = false;
    for (int64_t y = 0; y + ch <= 60 && !found; ++y)
      for (int64_t x = 0; x + cw <= 40 && !found; ++x)
        found = image.slice(0, y, y + ch).slice(1, x, x + cw).equal(c);
    EXPECT_TRUE(found) << "seed " << seed << ": not a window of the image";
    EXPECT_TRUE(pefm::misaligned_copy(image, seed).equal(c)) << "deterministic in the seed";
  }
}

}  // namespace
