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

// Crafted .pth files (tests/fuzz/make_pth_corpus.py writes them with Python's own pickler):
// each is refused by name, before any byte of a storage is copied (was: LibTorch 1.13's
// unpickler segfaulted, or copied heap bytes into the weights and exited 0).
std::string pth_error(const std::string& seed) {
  const auto path = pefm_test::data_dir() + "/../fuzz/corpus-pth/" + seed;
  try {
    pefm::read_state_dict(path);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(CraftedPth, ValidSeedsLoadWithTheirValues) {
  const auto dir = pefm_test::data_dir() + "/../fuzz/corpus-pth/";
  const auto d = pefm::read_state_dict(dir + "ordered-dict-metadata");
  ASSERT_EQ(d.size(), 3u);
  EXPECT_EQ(d.at("conv.weight").sizes(), (std::vector<int64_t>{2, 3, 2, 2}));
  EXPECT_FLOAT_EQ(d.at("conv.weight").flatten()[5].item<float>(), 0.5f);
  EXPECT_EQ(d.at("bn.num_batches_tracked").item<int64_t>(), 7);
  const auto v = pefm::read_state_dict(dir + "views-and-shared-storage");
  // a: offset 4, size [4, 2], stride [1, 4] over 0.0, 0.1, ... -> a[1][1] = storage[4 + 1 + 4]
  EXPECT_NEAR(v.at("a")[1][1].item<float>(), 0.9f, 1e-6);
  EXPECT_NEAR(v.at("c").item<float>(), 2.3f, 1e-6);
  const auto h = pefm::read_state_dict(dir + "half-and-bytes");
  EXPECT_EQ(h.at("h").scalar_type(), torch::kHalf);
  EXPECT_EQ(h.at("u")[1].item<int64_t>(), 3);
}

TEST(CraftedPth, StorageShorterThanItsTensorIsRefused) {
  for (const char* seed : {"short-storage", "offset-past-end", "huge-size"}) {
    const auto msg = pth_error(seed);
    EXPECT_NE(msg.find(seed), std::string::npos) << msg;
    EXPECT_NE(msg.find("'w'"), std::string::npos) << seed << ": " << msg;
  }
  // A storage entry shorter than the element count its reference declares.
  EXPECT_NE(pth_error("numel-lies").find("storage '1' holds 12 bytes, less than its 1000 float32 elements"),
            std::string::npos)
      << pth_error("numel-lies");
  EXPECT_NE(pth_error("negative-stride").find("'w'"), std::string::npos) << pth_error("negative-stride");
}

// Small files that would expand: a one-element storage viewed as 65536 x 65536 through zero
// strides (16 GB), and 500 views of one 16 KB storage (8 MB from a 56 KB file).
TEST(CraftedPth, ViewsThatWouldMultiplyMemoryAreRefused) {
  const auto zero = pth_error("zero-stride-expansion");
  EXPECT_NE(zero.find("'w'"), std::string::npos) << zero;
  EXPECT_NE(zero.find("elements but its storage '1' holds only 3"), std::string::npos) << zero;
  const auto many = pth_error("many-views");
  EXPECT_NE(many.find("holds tensors of more than twice its own size"), std::string::npos) << many;
}

TEST(CraftedPth, ForbiddenGlobalsAreRefusedByName) {
  const auto msg = pth_error("forbidden-global");
  EXPECT_NE(msg.find("system"), std::string::npos) << msg;
  EXPECT_NE(msg.find("which pefm does not load"), std::string::npos) << msg;
  EXPECT_NE(pth_error("not-a-dict").find("not a dict of tensors"), std::string::npos) << pth_error("not-a-dict");
}

TEST(CraftedPth, NonFiniteWeightsAreRefusedByName) {
  pefm_test::TempDir tmp;
  pefm::write_state_dict({{"layer.weight", torch::tensor({1.0f, NAN})}}, tmp.file("nan.pth"));
  try {
    pefm::read_state_dict(tmp.file("nan.pth"));
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("'layer.weight' contains NaN or Inf"), std::string::npos) << e.what();
  }
}

// LibTorch's own writer (torch::pickle_save) is read back exactly, views included.
TEST(CraftedPth, LibTorchWrittenFilesRoundTrip) {
  pefm_test::TempDir tmp;
  const auto base = torch::arange(24, torch::kFloat32).view({4, 6});
  pefm::write_state_dict({{"t", base.t()}, {"half", base.to(torch::kHalf)}, {"n", torch::tensor(int64_t{3})}},
                         tmp.file("lt.pth"));
  const auto d = pefm::read_state_dict(tmp.file("lt.pth"));
  EXPECT_TRUE(torch::equal(d.at("t"), base.t()));
  EXPECT_TRUE(torch::equal(d.at("half"), base.to(torch::kHalf)));
  EXPECT_EQ(d.at("n").item<int64_t>(), 3);
}

}  // namespace
