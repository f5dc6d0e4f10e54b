#include <gtest/gtest.h>
#include <torch/torch.h>

#include "pefm/position_encoding.h"

namespace {

using pefm::PeMode;

// Hand-computed: sin/cos of small integers and of 0.01 * integer (div[1] = 10000^-0.5).
constexpr double kSin1 = 0.8414709848078965, kSin2 = 0.9092974268256817;
constexpr double kCos1 = 0.5403023058681398, kCos2 = -0.4161468365471424;
constexpr double kSin001 = 0.009999833334166664, kCos001 = 0.9999500004166653;
constexpr double kSin002 = 0.01999866669333308, kCos002 = 0.9998000066665778;

TEST(PositionEncoding, FourChannelsMatchHandValues) {
  const auto pe = pefm::position_encoding(4, 2, 3);
  ASSERT_EQ(pe.sizes(), (std::vector<int64_t>{4, 2, 3}));
  const auto a = pe.accessor<float, 3>();
  const double col_sin[3] = {0.0, kSin1, kSin2}, col_cos[3] = {1.0, kCos1, kCos2};
  for (int h = 0; h < 2; ++h) {
    for (int w = 0; w < 3; ++w) {
      EXPECT_NEAR(a[0][h][w], col_sin[w], 1e-6) << "channel 0 is sin(column)";
      EXPECT_NEAR(a[1][h][w], col_cos[w], 1e-6) << "channel 1 is cos(column)";
      EXPECT_NEAR(a[2][h][w], h == 0 ? 0.0 : kSin1, 1e-6) << "channel 2 is sin(row)";
      EXPECT_NEAR(a[3][h][w], h == 0 ? 1.0 : kCos1, 1e-6) << "channel 3 is cos(row)";
    }
  }
}

TEST(PositionEncoding, EightChannelsUseBase10000Frequencies) {
  const auto pe = pefm::position_encoding(8, 3, 3);
  const auto a = pe.accessor<float, 3>();
  // Column 2, row 1.
  EXPECT_NEAR(a[0][1][2], kSin2, 1e-6);
  EXPECT_NEAR(a[1][1][2], kCos2, 1e-6);
  EXPECT_NEAR(a[2][1][2], kSin002, 1e-7);
  EXPECT_NEAR(a[3][1][2], kCos002, 1e-6);
  EXPECT_NEAR(a[4][1][2], kSin1, 1e-6);
  EXPECT_NEAR(a[5][1][2], kCos1, 1e-6);
  EXPECT_NEAR(a[6][1][2], kSin001, 1e-7);
  EXPECT_NEAR(a[7][1][2], kCos001, 1e-6);
}

TEST(PositionEncoding, RejectsChannelsNotDivisibleByFour) {
  try {
    pefm::position_encoding(6, 2, 2);
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("divisible by 4"), std::string::npos) << e.what();
  }
  EXPECT_THROW(pefm::position_encoding(8, 0, 2), c10::Error);
}

TEST(PositionEncoding, AddModeAddsTheCodeToEveryImage) {
  const auto pe = pefm::position_encoding(4, 2, 3);
  const auto f = torch::ones({2, 4, 2, 3});
  const auto out = pefm::apply_position_encoding(f, pe, PeMode::kAdd);
  ASSERT_EQ(out.sizes(), f.sizes());
  EXPECT_NEAR(out[1][0][0][2].item<float>(), 1.0 + kSin2, 1e-6);
  EXPECT_NEAR(out[0][3][1][0].item<float>(), 1.0 + kCos1, 1e-6);
  EXPECT_EQ(pefm::encoded_channels(4, PeMode::kAdd), 4);
}

TEST(PositionEncoding, ConcatModeAppendsTheCodeAsChannels) {
  const auto pe = pefm::position_encoding(4, 2, 3);
  const auto f = torch::full({2, 4, 2, 3}, 7.0);
  const auto out = pefm::apply_position_encoding(f, pe, PeMode::kConcat);
  ASSERT_EQ(out.sizes(), (std::vector<int64_t>{2, 8, 2, 3}));
  EXPECT_TRUE(torch::equal(out.slice(1, 0, 4), f));
  EXPECT_NEAR(out[1][4][0][1].item<float>(), kSin1, 1e-6);
  EXPECT_NEAR(out[1][7][1][1].item<float>(), kCos1, 1e-6);
  EXPECT_EQ(pefm::encoded_channels(4, PeMode::kConcat), 8);
}

TEST(PositionEncoding, NoneModeLeavesFeaturesUnchanged) {
  const auto pe = pefm::position_encoding(4, 2, 3);
  const auto f = torch::randn({1, 4, 2, 3});
  EXPECT_TRUE(torch::equal(pefm::apply_position_encoding(f, pe, PeMode::kNone), f));
}

}  // namespace
