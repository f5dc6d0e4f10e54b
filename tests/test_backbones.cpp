#include <gtest/gtest.h>
#include <torch/torch.h>

#include <numeric>

#include "common.h"
#include "pefm/backbone.h"
#include "pefm/preprocess.h"
#include "pefm/state_dict.h"

namespace {

using pefm_test::data_dir;

struct TapCase {
  std::string arch;
  std::array<int64_t, 3> channels;
};

class BackboneTaps : public ::testing::TestWithParam<TapCase> {};

TEST_P(BackboneTaps, ShapesForTwoInputSizes) {
  const auto& c = GetParam();
  torch::manual_seed(0);
  auto b = pefm::make_backbone(c.arch);
  b->eval();
  EXPECT_EQ(b->tap_channels(), c.channels);
  torch::NoGradGuard no_grad;
  for (int64_t size : {64, 96}) {
    const auto taps = b->forward_taps(torch::randn({2, 3, size, size}));
    ASSERT_EQ(taps.size(), 3u);
    for (int k = 0; k < 3; ++k) {
      const int64_t s = size >> (2 + k);
      EXPECT_EQ(taps[k].sizes(), (std::vector<int64_t>{2, c.channels[k], s, s}))
          << c.arch << " tap " << k << " at " << size << " px";
      EXPECT_EQ(b->tap_size(k, size), s);
    }
  }
}

// Same architecture as torchvision: formula weights give torchvision's own tap outputs
// (golden tensors from tests/data/make_golden.py) on a non-square input.
TEST_P(BackboneTaps, MatchesTorchvisionGolden) {
  const auto& c = GetParam();
  auto b = pefm::make_backbone(c.arch);
  b->eval();
  pefm_test::fill_formula(*b);
  const auto golden = pefm::read_state_dict(data_dir() + "/golden/formula_" + c.arch + ".pt");
  torch::NoGradGuard no_grad;
  const auto taps = b->forward_taps(golden.at("input"));
  for (int k = 0; k < 3; ++k) {
    const auto& want = golden.at("tap" + std::to_string(k));
    ASSERT_EQ(taps[k].sizes(), want.sizes()) << c.arch << " tap " << k;
    const double scale = want.abs().max().item<double>();
    const double err = (taps[k] - want).abs().max().item<double>();
    EXPECT_LT(err, 1e-4 * scale + 1e-6) << c.arch << " tap " << k << " max error " << err;
  }
}

// Folding BatchNorm into the convolutions changes nothing but speed. The formula fills
// every BN with non-trivial statistics (var 0.5..1.5, mean and shift +-0.1).
TEST_P(BackboneTaps, FoldingBatchNormKeepsTheTaps) {
  const auto& c = GetParam();
  auto b = pefm::make_backbone(c.arch);
  b->eval();
  pefm_test::fill_formula(*b);
  const auto x = pefm_test::formula_tensor("fold-input", {2, 3, 48, 64}, 10.0);
  torch::NoGradGuard no_grad;
  const auto before = b->forward_taps(x);
  b->fold_batchnorm();
  const auto after = b->forward_taps(x);
  for (int k = 0; k < 3; ++k) {
    const double scale = before[k].abs().max().item<double>();
    EXPECT_LT((after[k] - before[k]).abs().max().item<double>(), 1e-4 * scale) << c.arch << " tap " << k;
  }
}

INSTANTIATE_TEST_SUITE_P(AllArchitectures, BackboneTaps,
                         ::testing::Values(TapCase{"resnet18", {64, 128, 256}},
                                           TapCase{"resnet34", {64, 128, 256}},
                                           TapCase{"resnet50", {256, 512, 1024}},
                                           TapCase{"wide_resnet50_2", {256, 512, 1024}},
                                           TapCase{"mobilenet_v2", {24, 32, 96}}),
                         [](const auto& info) { return info.param.arch; });

// The table model files are checked against before anything is built.
TEST(Backbone, StateSizeTableMatchesTheNetworks) {
  for (const auto& arch : pefm::supported_backbones()) {
    auto b = pefm::make_backbone(arch);
    pefm::BackboneStateSize have;
    for (const auto& [key, t] : pefm::module_state(*b)) {
      ++have.tensors;
      have.elements += t.numel();
    }
    EXPECT_EQ(have.tensors, pefm::backbone_state_size(arch).tensors) << arch;
    EXPECT_EQ(have.elements, pefm::backbone_state_size(arch).elements) << arch;
  }
}

TEST(Backbone, UnknownArchitectureNamesTheSupportedOnes) {
  try {
    pefm::make_backbone("resnet1000");
    FAIL();
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("resnet1000"), std::string::npos) << msg;
    EXPECT_NE(msg.find("wide_resnet50_2"), std::string::npos) << msg;
  }
}

TEST(Backbone, TailKeysAreOnlyThoseAfterTheLastTap) {
  auto r = pefm::make_backbone("resnet50");
  EXPECT_TRUE(r->is_tail_key("layer4.0.conv1.weight"));
  EXPECT_TRUE(r->is_tail_key("fc.bias"));
  EXPECT_FALSE(r->is_tail_key("layer3.0.conv1.weight"));
  auto m = pefm::make_backbone("mobilenet_v2");
  EXPECT_TRUE(m->is_tail_key("features.14.conv.0.0.weight"));
  EXPECT_TRUE(m->is_tail_key("features.18.1.running_var"));
  EXPECT_TRUE(m->is_tail_key("classifier.1.weight"));
  EXPECT_FALSE(m->is_tail_key("features.13.conv.0.0.weight"));
  EXPECT_FALSE(m->is_tail_key("features.1.conv.0.0.weight"));
  EXPECT_FALSE(m->is_tail_key("features.140.x"));
}

// Real ImageNet weights: a torchvision dict written by Python loads by name and gives
// torchvision's features.
TEST(BackboneRealWeights, MobileNetV2MatchesTorchvision) {
  PEFM_SHARED_OR_SKIP(path, "models/mobilenet_v2_torchvision_imagenet.pth");
  auto b = pefm::make_backbone("mobilenet_v2");
  pefm::load_state_dict(*b, pefm::read_state_dict(path), path,
                        [&](const std::string& k) { return b->is_tail_key(k); });
  b->eval();
  const auto golden = pefm::read_state_dict(data_dir() + "/golden/mobilenet_v2_real.pt");
  torch::NoGradGuard no_grad;
  const auto taps = b->forward_taps(golden.at("input"));
  for (int k = 0; k < 3; ++k) {
    const auto& want = golden.at("tap" + std::to_string(k));
    const double err = (taps[k] - want).abs().max().item<double>();
    EXPECT_LT(err, 1e-4 * want.abs().max().item<double>()) << "tap " << k;
  }
}

TEST(BackboneRealWeights, MobileNetV2ClassifiesTheCat) {
  PEFM_SHARED_OR_SKIP(weights, "models/mobilenet_v2_torchvision_imagenet.pth");
  PEFM_SHARED_OR_SKIP(image, "models/cat.bmp");
  auto b = pefm::make_backbone("mobilenet_v2", pefm::BackboneHead::kClassifier);
  pefm::load_state_dict(*b, pefm::read_state_dict(weights), weights);  // strict: whole net
  b->eval();
  const auto img = pefm_test::read_bmp(image);
  const auto x = pefm::preprocess(img.unsqueeze(0), pefm::ChannelMap::rgb_order(), 224);
  torch::NoGradGuard no_grad;
  const auto probs = torch::softmax(b->classify(x), 1)[0];
  const auto top = std::get<1>(probs.topk(3));
  EXPECT_EQ(top[0].item<int64_t>(), 285) << "expected 285 Egyptian cat";
  // Next two: tabby (281) and tiger cat (282), in either order.
  const std::set<int64_t> next = {top[1].item<int64_t>(), top[2].item<int64_t>()};
  EXPECT_EQ(next, (std::set<int64_t>{281, 282}));
  EXPECT_GT(probs[285].item<float>(), 0.3);
}

}  // namespace
