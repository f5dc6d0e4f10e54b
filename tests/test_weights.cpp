#include <gtest/gtest.h>

#include <cstdlib>

#include "common.h"
#include "pefm/weights.h"

namespace {

class Weights : public ::testing::Test {
 protected:
  void TearDown() override { unsetenv("PEFM_BACKBONE_DIR"); }
};

TEST_F(Weights, FindsTheFileInTheEnvironmentFolders) {
  pefm_test::TempDir a, b;
  pefm_test::spit(b.file("resnet34.pth"), "x");
  setenv("PEFM_BACKBONE_DIR", (a.path() + ":" + b.path()).c_str(), 1);
  EXPECT_EQ(pefm::find_backbone_weights("resnet34"), b.file("resnet34.pth"));
  EXPECT_EQ(pefm::backbone_search_path().front(), a.path());
}

TEST_F(Weights, MissingWeightsSayWhereItLookedAndHowToGetThem) {
  pefm_test::TempDir a;
  setenv("PEFM_BACKBONE_DIR", a.path().c_str(), 1);
  try {
    pefm::find_backbone_weights("resnet50");
    FAIL();
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(a.file("resnet50.pth")), std::string::npos) << msg;
    EXPECT_NE(msg.find("export_backbones.py"), std::string::npos) << msg;
  }
}

}  // namespace
