#include <gtest/gtest.h>
#include <torch/torch.h>

#include "common.h"
#include "pefm/backbone.h"
#include "pefm/state_dict.h"

namespace {

using pefm::TensorDict;

std::string load_error(const TensorDict& dict, const std::string& origin) {
  auto b = pefm::make_backbone("resnet18");
  try {
    pefm::load_state_dict(*b, dict, origin, [&](const std::string& k) { return b->is_tail_key(k); });
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

TensorDict resnet18_dict() {
  auto full = pefm::make_backbone("resnet18", pefm::BackboneHead::kClassifier);
  return pefm::module_state(*full);
}

TEST(StateDict, RoundTripThroughAFileLoadsByName) {
  pefm_test::TempDir tmp;
  torch::manual_seed(3);
  const auto dict = resnet18_dict();
  pefm::write_state_dict(dict, tmp.file("r18.pth"));
  const auto back = pefm::read_state_dict(tmp.file("r18.pth"));
  ASSERT_EQ(back.size(), dict.size());
  auto b = pefm::make_backbone("resnet18");
  pefm::load_state_dict(*b, back, tmp.file("r18.pth"), [&](const std::string& k) { return b->is_tail_key(k); });
  EXPECT_TRUE(torch::equal(pefm::module_state(*b).at("layer3.1.bn2.running_var"),
                           dict.at("layer3.1.bn2.running_var")));
}

TEST(StateDict, MissingKeyIsNamedWithTheFile) {
  auto dict = resnet18_dict();
  dict.erase("layer2.0.downsample.1.weight");
  const auto msg = load_error(dict, "weights/r18.pth");
  EXPECT_NE(msg.find("missing key 'layer2.0.downsample.1.weight'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("weights/r18.pth"), std::string::npos) << msg;
}

TEST(StateDict, UnexpectedKeyIsNamedWithTheFile) {
  auto dict = resnet18_dict();
  dict["layer1.0.conv9.weight"] = torch::zeros({1});
  const auto msg = load_error(dict, "weights/r18.pth");
  EXPECT_NE(msg.find("unexpected key 'layer1.0.conv9.weight'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("weights/r18.pth"), std::string::npos) << msg;
}

TEST(StateDict, MisShapedKeyNamesBothShapes) {
  auto dict = resnet18_dict();
  dict["conv1.weight"] = torch::zeros({64, 3, 3, 3});
  const auto msg = load_error(dict, "weights/r18.pth");
  EXPECT_NE(msg.find("'conv1.weight' has shape [64, 3, 3, 3], expected [64, 3, 7, 7]"), std::string::npos) << msg;
}

TEST(StateDict, TailKeysOfTheFullNetworkAreAccepted) {
  EXPECT_EQ(load_error(resnet18_dict(), "r18.pth"), "");
}

TEST(StateDict, MissingFileIsNamed) {
  try {
    pefm::read_state_dict("/nonexistent/resnet34.pth");
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/resnet34.pth"), std::string::npos) << e.what();
  }
}

TEST(StateDict, GarbageFileIsNamedAsNotAStateDict) {
  pefm_test::TempDir tmp;
  pefm_test::spit(tmp.file("junk.pth"), "this is not a zip archive at all, just text");
  try {
    pefm::read_state_dict(tmp.file("junk.pth"));
    FAIL();
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("junk.pth"), std::string::npos) << msg;
    EXPECT_NE(msg.find("not a PyTorch state dict"), std::string::npos) << msg;
  }
}

TEST(StateDict, NonDictPickleIsRejected) {
  pefm_test::TempDir tmp;
  const auto bytes = torch::pickle_save(c10::IValue(torch::ones({2})));
  pefm_test::spit(tmp.file("tensor.pth"), std::string(bytes.begin(), bytes.end()));
  try {
    pefm::read_state_dict(tmp.file("tensor.pth"));
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("not a dict of tensors"), std::string::npos) << e.what();
  }
}

}  // namespace
