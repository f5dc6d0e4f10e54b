#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common.h"
#include "pefm/detector.h"
#include "pefm/model_file.h"

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const pefm::ModelFileError& e) {
    return e.what();
  }
  return "(no error)";
}

class ModelFile : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = pefm_test::tiny_model(5);
    model_->training["epochs"] = "3";
    model_->training["data"] = "/some/folder\nwith newline";
    auto maps = torch::rand({4, 64, 64});
    model_->calibration = pefm::Calibration::from_normal(maps, std::get<0>(maps.flatten(1).max(1)));
    path_ = tmp_.file("tiny.pt");
    pefm::save_model(*model_, path_);
    bytes_ = pefm_test::slurp(path_);
  }

  pefm_test::TempDir tmp_;
  std::shared_ptr<pefm::Model> model_;
  std::string path_, bytes_;
};

TEST_F(ModelFile, RoundTripGivesIdenticalOutputs) {
  auto loaded = std::make_shared<pefm::Model>(pefm::load_model(path_));
  EXPECT_EQ(loaded->config.source_arch, "mobilenet_v2");
  EXPECT_EQ(loaded->config.latent, (std::array<int64_t, 3>{8, 8, 8}));
  EXPECT_EQ(loaded->training.at("data"), "/some/folder\nwith newline");
  EXPECT_TRUE(loaded->calibration.valid);
  EXPECT_DOUBLE_EQ(loaded->calibration.threshold, model_->calibration.threshold);
  EXPECT_EQ(loaded->calibration.pixel_quantiles, model_->calibration.pixel_quantiles);
  pefm::Detector a(model_, {"cpu"}), b(loaded, {"cpu"});
  const auto frames = pefm_test::texture_image(50, 70, 9).unsqueeze(0);
  const auto ra = a.detect(frames), rb = b.detect(frames);
  EXPECT_TRUE(torch::equal(ra.maps, rb.maps));
  EXPECT_TRUE(torch::equal(ra.scores, rb.scores));
}

TEST_F(ModelFile, SaveLeavesNoTemporaryFiles) {
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(tmp_.path())) {
    ++files;
    EXPECT_EQ(e.path().filename(), "tiny.pt");
  }
  EXPECT_EQ(files, 1);
}

// What a writer killed mid-write leaves behind: a partial temporary file, last touched
// `age_s` seconds ago.
void leave_temp_file(const std::string& name, int age_s) {
  std::ofstream(name) << "PEFMMODL partial";
  const timespec t[2] = {{time(nullptr) - age_s, 0}, {time(nullptr) - age_s, 0}};
  ASSERT_EQ(utimensat(AT_FDCWD, name.c_str(), t, 0), 0) << name;
}

TEST_F(ModelFile, StaleTemporaryFilesOfKilledWritersAreRemoved) {
  namespace fs = std::filesystem;
  const std::string stale = path_ + ".tmp-a1B2c3";      // writer gone an hour ago
  const std::string writing = path_ + ".tmp-d4E5f6";    // a live writer holds its lock
  const std::string recent = path_ + ".tmp-g7H8i9";     // just created, maybe not yet locked
  const std::string other = tmp_.file("other.pt.tmp-j1K2l3");  // another target's
  const std::string unrelated = path_ + ".tmp-notours";  // not a mkstemp name
  for (const auto& f : {stale, writing, other, unrelated}) leave_temp_file(f, 3600);
  leave_temp_file(recent, 0);
  const int lock_fd = ::open(writing.c_str(), O_RDONLY);
  ASSERT_GE(lock_fd, 0);
  ASSERT_EQ(::flock(lock_fd, LOCK_EX), 0);

  pefm::save_model(*model_, path_);
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_TRUE(fs::exists(writing));
  EXPECT_TRUE(fs::exists(recent));
  EXPECT_TRUE(fs::exists(other));
  EXPECT_TRUE(fs::exists(unrelated));
  EXPECT_NO_THROW(pefm::load_model(path_));

  ::close(lock_fd);  // the writer dies: its file is stale now
  EXPECT_EQ(pefm::remove_stale_temp_files(path_), 1);
  EXPECT_FALSE(fs::exists(writing));
  EXPECT_EQ(pefm::remove_stale_temp_files(path_), 0);
}

TEST_F(ModelFile, MissingFileIsNamed) {
  const auto msg = error_of([] { pefm::load_model("/nonexistent/cable.pt"); });
  EXPECT_NE(msg.find("cannot open model file '/nonexistent/cable.pt'"), std::string::npos) << msg;
}

TEST_F(ModelFile, TruncatedFileIsReported) {
  for (size_t keep : {size_t{0}, size_t{5}, size_t{20}, bytes_.size() / 2, bytes_.size() - 1}) {
    const auto msg = error_of([&] { pefm::load_model_from_bytes(bytes_.substr(0, keep), "cut.pt"); });
    EXPECT_NE(msg.find("cut.pt"), std::string::npos) << keep << ": " << msg;
    EXPECT_TRUE(msg.find("truncated") != std::string::npos || msg.find("not a pefm model") != std::string::npos)
        << keep << ": " << msg;
  }
}

TEST_F(ModelFile, NewerFormatVersionAsksForAnUpgrade) {
  auto b = bytes_;
  const uint32_t v = pefm::kModelFormatVersion + 1;
  std::memcpy(b.data() + 8, &v, 4);
  const auto msg = error_of([&] { pefm::load_model_from_bytes(b, "future.pt"); });
  EXPECT_NE(msg.find("format version 2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("upgrade pefm"), std::string::npos) << msg;
}

TEST_F(ModelFile, GarbageVersionIsCalledCorruptNotNewer) {
  auto b = bytes_;
  std::memcpy(b.data() + 8, "ut r", 4);  // text where the version belongs
  const auto msg = error_of([&] { pefm::load_model_from_bytes(b, "damaged.pt"); });
  EXPECT_NE(msg.find("damaged.pt' is corrupt"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("upgrade"), std::string::npos) << msg;
}

TEST_F(ModelFile, NonModelFileIsRejected) {
  const auto msg = error_of([] { pefm::load_model_from_bytes("\x89PNG\r\n\x1a\n....", "photo.png"); });
  EXPECT_NE(msg.find("'photo.png' is not a pefm model file"), std::string::npos) << msg;
}

TEST_F(ModelFile, FlippedBitFailsTheChecksum) {
  auto b = bytes_;
  b[b.size() / 2] ^= 0x10;
  const auto msg = error_of([&] { pefm::load_model_from_bytes(b, "flip.pt"); });
  EXPECT_NE(msg.find("checksum mismatch"), std::string::npos) << msg;
}

TEST_F(ModelFile, NanWeightsAreRejectedByName) {
  {
    torch::NoGradGuard no_grad;
    model_->net->mapping[1]->named_parameters()["shared.weight"].view(-1)[3].fill_(NAN);
  }
  pefm::save_model(*model_, path_);
  const auto msg = error_of([&] { pefm::load_model(path_); });
  EXPECT_NE(msg.find("'net.mapping.1.shared.weight' contains NaN"), std::string::npos) << msg;
}

TEST_F(ModelFile, OverwriteKeepsTheFileLoadable) {
  model_->training["epochs"] = "4";
  pefm::save_model(*model_, path_);
  EXPECT_EQ(pefm::load_model(path_).training.at("epochs"), "4");
}

TEST_F(ModelFile, UnwritableFolderIsNamed) {
  try {
    pefm::save_model(*model_, "/nonexistent-dir/x.pt");
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent-dir/x.pt"), std::string::npos) << e.what();
  }
}

}  // namespace
