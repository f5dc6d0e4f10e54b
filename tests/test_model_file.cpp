#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "../core/src/container.h"
#include "common.h"
#include "pefm/backbone.h"
#include "pefm/calibration_maps.h"
#include "pefm/detector.h"
#include "pefm/mapping_net.h"
#include "pefm/file_util.h"
#include "pefm/model_file.h"
#include "pefm/preprocess.h"
#include "pefm/position_encoding.h"
#include "pefm/state_dict.h"
#include "pefm/trainer.h"

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
    model_->calibration = pefm::calibration_from_normal(maps, std::get<0>(maps.flatten(1).max(1)));
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

// The resize filter is part of the model: a bilinear model stays bilinear after a round
// trip and its detector resizes frames bilinearly (different maps from Lanczos').
TEST_F(ModelFile, TheResizeFilterRoundTripsAndDecidesHowFramesAreResized) {
  EXPECT_EQ(pefm::load_model(path_).config.resize, pefm::Resize::kLanczos);
  model_->config.resize = pefm::Resize::kBilinear;
  const auto bil = tmp_.file("bilinear.pt");
  pefm::save_model(*model_, bil);
  auto loaded = std::make_shared<pefm::Model>(pefm::load_model(bil));
  EXPECT_EQ(loaded->config.resize, pefm::Resize::kBilinear);
  const auto frames = pefm_test::texture_image(50, 70, 9).unsqueeze(0);
  pefm::Detector lanczos(std::make_shared<pefm::Model>(pefm::load_model(path_)), {"cpu"}), bilinear(loaded, {"cpu"});
  const auto want = bilinear.detect_preprocessed(
      pefm::preprocess(frames, {}, loaded->config.image_size, torch::kFloat32, pefm::Resize::kBilinear));
  EXPECT_TRUE(torch::equal(bilinear.detect(frames).maps, want.maps));
  EXPECT_FALSE(torch::allclose(lanczos.detect(frames).maps, want.maps));
}

TEST_F(ModelFile, AStatedFalseAlarmRateRoundTripsAndAForeignMethodIsRefused) {
  std::vector<double> scores;
  for (int i = 0; i < 30; ++i) scores.push_back(0.5 + 0.01 * i);
  model_->calibration.set_false_alarm_threshold(scores, 0.05, 5);
  pefm::save_model(*model_, path_);
  const auto loaded = pefm::load_model(path_);
  const auto& c = loaded.calibration;
  EXPECT_EQ(c.method, "conformal");
  EXPECT_DOUBLE_EQ(c.false_alarm_target, 0.05);
  EXPECT_DOUBLE_EQ(c.false_alarm_bound, model_->calibration.false_alarm_bound);
  EXPECT_EQ(c.folds, 5);
  EXPECT_DOUBLE_EQ(c.false_alarm_upper95, model_->calibration.false_alarm_upper95);
  EXPECT_DOUBLE_EQ(c.threshold, model_->calibration.threshold);
  EXPECT_EQ(c.groups, 30);
  // Values no writer makes are refused, naming the key.
  const auto good = model_->calibration;
  std::vector<int64_t> parts;
  for (int i = 0; i < 30; ++i) parts.push_back(i / 3);
  model_->calibration.set_false_alarm_threshold(scores, 0.1, 5, parts);
  pefm::save_model(*model_, path_);
  EXPECT_EQ(pefm::load_model(path_).calibration.groups, 10);
  model_->calibration.groups = 31;
  pefm::save_model(*model_, path_);
  EXPECT_NE(error_of([&] { pefm::load_model(path_); }).find("calibration.groups 31 is not in 1..30"), std::string::npos);
  model_->calibration = good;
  model_->calibration.folds = 1;
  pefm::save_model(*model_, path_);
  EXPECT_NE(error_of([&] { pefm::load_model(path_); }).find("calibration.folds"), std::string::npos);
  model_->calibration = good;
  model_->calibration.false_alarm_target = 1.5;
  pefm::save_model(*model_, path_);
  EXPECT_NE(error_of([&] { pefm::load_model(path_); }).find("calibration.false_alarm_target"), std::string::npos);
  model_->calibration = good;
  model_->calibration.false_alarm_upper95 = NAN;
  pefm::save_model(*model_, path_);
  EXPECT_NE(error_of([&] { pefm::load_model(path_); }).find("calibration.false_alarm_upper95"), std::string::npos);
  model_->calibration = good;
  // A method this pefm does not know is refused, naming the key.
  model_->calibration.method = "guesswork";
  pefm::save_model(*model_, path_);
  const auto msg = error_of([&] { pefm::load_model(path_); });
  EXPECT_NE(msg.find("calibration.method"), std::string::npos) << msg;
}

// A calibration is checked as a whole at load: a combination no writer makes (and that
// would flag every frame, or state a rate its images cannot support) is refused, naming
// the field.
TEST_F(ModelFile, ACalibrationNoWriterMakesIsRefusedNamingTheField) {
  std::vector<double> scores;
  for (int i = 0; i < 8; ++i) scores.push_back(0.5 + 0.01 * i);
  model_->calibration.set_false_alarm_threshold(scores, 0.05, 4);  // 8 images state 1/9 at best
  const auto good = model_->calibration;
  pefm::save_model(*model_, path_);
  EXPECT_NEAR(pefm::load_model(path_).calibration.false_alarm_bound, 1.0 / 9, 1e-12);
  const auto refused = [&](const std::function<void(pefm::Calibration&)>& edit, const std::string& says) {
    model_->calibration = good;
    edit(model_->calibration);
    pefm::save_model(*model_, path_);
    const auto msg = error_of([&] { pefm::load_model(path_); });
    EXPECT_NE(msg.find(says), std::string::npos) << says << "\n" << msg;
  };
  refused([](auto& c) { c.base = -1.0, c.threshold = -0.5; }, "calibration.threshold -0.5");
  refused([](auto& c) { c.false_alarm_bound = 0.0; }, "calibration.false_alarm_bound 0");
  refused([](auto& c) { c.false_alarm_bound = 0.05; }, "the least rate 8 units can state");
  refused([](auto& c) { c.false_alarm_bound = 0.5; }, "above both the rate asked");
  refused([](auto& c) { c.false_alarm_upper95 = c.false_alarm_bound / 2; }, "calibration.false_alarm_upper95");
  refused([](auto& c) { c.folds = 1000; }, "calibration.folds 1000 is not in 2..8");
  refused([](auto& c) { c.threshold = std::nextafter(c.base, 1.0); }, "by more than rounding");
  refused([](auto& c) { c.image_std = -0.1; }, "calibration.image_std");
  refused([](auto& c) { c.image_min = c.image_max + 1; }, "calibration.image_min");
  refused([](auto& c) { std::reverse(c.pixel_quantiles.begin(), c.pixel_quantiles.end()); },
          "calibration.pixel_quantiles are not in ascending order");
  model_->calibration = good;
}

TEST_F(ModelFile, TheRegionThresholdRoundTripsAndImpossibleValuesAreRefused) {
  torch::manual_seed(11);
  auto maps = torch::rand({4, 16, 16});
  pefm::set_region_threshold(model_->calibration, maps, {0.9, 0.95, 0.99, 0.999}, 0.001);
  pefm::save_model(*model_, path_);
  const auto& want = model_->calibration;
  const auto c = pefm::load_model(path_).calibration;
  EXPECT_DOUBLE_EQ(c.region_threshold, want.region_threshold);
  EXPECT_DOUBLE_EQ(c.region_rate_target, 0.001);
  EXPECT_DOUBLE_EQ(c.region_rate, want.region_rate);
  EXPECT_DOUBLE_EQ(c.region_image_rate, want.region_image_rate);
  EXPECT_EQ(c.region_pixels, 1024);
  EXPECT_DOUBLE_EQ(c.region_raw(0.5), want.region_threshold);
  // Values no writer makes are refused, naming the key: each edit saved, loaded, undone.
  const auto good = model_->calibration;
  const auto refused = [&](const std::function<void(pefm::Calibration&)>& edit, const std::string& key) {
    model_->calibration = good;
    edit(model_->calibration);
    pefm::save_model(*model_, path_);
    const auto msg = error_of([&] { pefm::load_model(path_); });
    EXPECT_NE(msg.find(key), std::string::npos) << msg;
  };
  // at the base, every region-threshold would map to the base
  refused([&](auto& c) { c.region_threshold = c.base; }, "region_threshold");
  // beyond any raw score: would overflow the float maps
  refused([](auto& c) { c.region_threshold = 2e6; }, "region_threshold");
  refused([](auto& c) { c.threshold = 2e6; }, "calibration.threshold");
  refused([](auto& c) { c.base = -2e6; }, "calibration.base");
  refused([](auto& c) { c.region_rate_target = 0.75; }, "calibration.region_rate_target");  // pefm-train: (0, 0.5]
  refused([](auto& c) { c.region_rate = 1.5; }, "calibration.region_rate");
  refused([](auto& c) { c.region_pixels = 0; }, "calibration.region_pixels");
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
  EXPECT_NE(msg.find("format version " + std::to_string(v)), std::string::npos) << msg;
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
    model_->net->mapping(1).named_parameters()["shared.weight"].view(-1)[3].fill_(NAN);
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

// Files from strangers: each crafted file below passes the checksum (it is recomputed, as
// an attacker would) and is refused by the loader, fast and without allocating what its
// sizes declare.
class CraftedModel : public ModelFile {
 protected:
  // The model file with `edit` applied to its decoded container, re-encoded (new CRC).
  std::string crafted(const std::function<void(pefm::Container&)>& edit) {
    auto c = pefm::decode_container(bytes_, "tiny.pt");
    edit(c);
    return pefm::encode_container(c);
  }
  // Loads `bytes`; returns the error, checking it came within a second (four under the
  // sanitizers, which run everything several times slower) and with less than 100 MB of
  // extra resident memory: a refusal comes before any heavy work.
  std::string refused(const std::string& bytes) {
    const long rss0 = pefm_test::rss_kib();
    const auto t0 = std::chrono::steady_clock::now();
    const auto msg = error_of([&] { pefm::load_model_from_bytes(bytes, "crafted.pt"); });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_LT(s, 1.0 * pefm_test::kTimeoutScale) << msg;
    if (!pefm_test::kSanitized) {
      EXPECT_LT(pefm_test::rss_kib() - rss0, 100 * 1024) << msg;
    }
    return msg;
  }
};

// Refused before gigabytes are allocated for a shape error (latent 20000 would need ~67 GB).
TEST_F(CraftedModel, HugeLatentWidthsAreRefusedBeforeAnythingIsBuilt) {
  const auto msg = refused(crafted([](pefm::Container& c) { c.meta["config.latent"] = "2048,2048,2048"; }));
  EXPECT_NE(msg.find("crafted.pt"), std::string::npos) << msg;
  EXPECT_NE(msg.find("config.latent 2048 needs"), std::string::npos) << msg;
  const auto over = refused(crafted([](pefm::Container& c) { c.meta["config.latent"] = "20000,8,8"; }));
  EXPECT_NE(over.find("not in 1..2048"), std::string::npos) << over;
}

// A small file declaring the largest backbones must not make pefm build them (~200 MB).
TEST_F(CraftedModel, BackbonesAreNotBuiltForAFileThatDoesNotHoldThem) {
  const auto msg = refused(crafted([](pefm::Container& c) {
    c.meta["config.source_arch"] = c.meta["config.target_arch"] = "wide_resnet50_2";
    c.meta["config.source_taps"] = c.meta["config.target_taps"] = pefm::backbone_tap_names("wide_resnet50_2");
  }));
  EXPECT_NE(msg.find("source backbone tensors of"), std::string::npos) << msg;
  EXPECT_NE(msg.find("wide_resnet50_2 has 258 of 24902123"), std::string::npos) << msg;
}

TEST_F(CraftedModel, MissingMappingTensorIsNamed) {
  const auto msg = refused(crafted([](pefm::Container& c) { c.tensors.erase("net.mapping.2.shared.weight"); }));
  EXPECT_NE(msg.find("lacks tensor 'net.mapping.2.shared.weight'"), std::string::npos) << msg;
}

// An input size whose every frame would need gigabytes.
TEST_F(CraftedModel, HugeImageSizeIsRefused) {
  const auto msg = refused(crafted([](pefm::Container& c) { c.meta["config.image_size"] = "4096"; }));
  EXPECT_NE(msg.find("between 32 and 1024"), std::string::npos) << msg;
}

TEST_F(CraftedModel, NonFiniteOrEndlessCalibrationListsAreRefused) {
  for (const char* list : {"0.1,nan,0.3", "0.1,inf", "1,2,x"}) {
    const auto msg = refused(crafted([&](pefm::Container& c) { c.meta["calibration.image_quantiles"] = list; }));
    EXPECT_NE(msg.find("'calibration.image_quantiles' is not a list"), std::string::npos) << list << ": " << msg;
  }
  const auto msg = refused(crafted([](pefm::Container& c) { c.meta["calibration.images"] = "-5"; }));
  EXPECT_NE(msg.find("calibration.images -5"), std::string::npos) << msg;
}

TEST_F(ModelFile, DevicesAndFifosAreNotReadForever) {
  const auto msg = error_of([] { pefm::load_model("/dev/zero"); });
  EXPECT_NE(msg.find("'/dev/zero' is not a regular file"), std::string::npos) << msg;
  // A FIFO with no writer: opening it must not block.
  const auto fifo = tmp_.file("fifo.pt");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const auto fmsg = error_of([&] { pefm::load_model(fifo); });
  EXPECT_NE(fmsg.find("is not a regular file"), std::string::npos) << fmsg;
}

// Model files as users have them: every layout pefm has written, produced from the layout
// itself by tests/data/make_model_files.py (not by pefm's writer), so a change to writer and
// reader together that breaks existing files fails here. Each must keep its config, its
// calibration, its provenance and the anomaly map of an independent reference; what a file
// lacks because it was written before the field existed must read as the default its
// comment in model_file.cpp states.
std::shared_ptr<pefm::Model> load_fixture(const std::string& name) {
  return std::make_shared<pefm::Model>(pefm::load_model(pefm_test::data_dir() + "/models/" + name));
}

uint32_t format_version_of(const std::string& name) {
  const auto bytes = pefm_test::slurp(pefm_test::data_dir() + "/models/" + name);
  uint32_t v = 0;
  if (bytes.size() >= 12) std::memcpy(&v, bytes.data() + 8, 4);
  return v;
}

// What every fixture holds alike: the config (but the resize filter), the calibration's
// statistics, the provenance and the weights.
void expect_fixture_model(const std::shared_ptr<pefm::Model>& model) {
  const auto& cfg = model->config;
  EXPECT_EQ(cfg.source_arch, "mobilenet_v2");
  EXPECT_EQ(cfg.target_arch, "mobilenet_v2");
  EXPECT_EQ(cfg.image_size, 64);
  EXPECT_EQ(cfg.pe, pefm::PeMode::kAdd);
  EXPECT_EQ(cfg.latent, (std::array<int64_t, 3>{4, 8, 12}));
  EXPECT_EQ(cfg.fusion, pefm::Fusion::kMean);
  const auto& cal = model->calibration;
  ASSERT_TRUE(cal.valid);
  EXPECT_EQ(cal.images, 7);
  EXPECT_EQ(cal.threshold, 0.875);
  EXPECT_EQ(cal.base, 0.25);
  EXPECT_EQ(cal.image_std, 0.125);
  EXPECT_EQ(cal.pixel_mean, 0.3125);
  ASSERT_EQ(cal.image_quantiles.size(), 101u);
  EXPECT_DOUBLE_EQ(cal.image_quantiles[100], 0.75);
  ASSERT_EQ(cal.pixel_quantiles.size(), 101u);
  EXPECT_DOUBLE_EQ(cal.pixel_quantiles[100], 0.625);
  EXPECT_EQ(model->training["epochs"], "3");
  EXPECT_EQ(model->training["note"], "line one\nline two");
  EXPECT_DOUBLE_EQ(cal.normalize(0.875), 0.5);

  const auto expected = pefm::read_state_dict(pefm_test::data_dir() + "/models/expected_maps.pt");
  const auto& want = expected.at("map");
  const double scale = want.abs().max().item<double>();
  torch::Tensor map;
  {
    torch::NoGradGuard no_grad;
    map = model->net->anomaly_map(expected.at("input"));
  }
  ASSERT_EQ(map.sizes(), want.sizes());
  EXPECT_LT((map - want).abs().max().item<double>(), 1e-5 * scale);
  pefm::Detector det(model, {"cpu"});
  EXPECT_LT((det.detect_preprocessed(expected.at("input")).maps - want).abs().max().item<double>(), 1e-4 * scale);
}

// No region threshold in the file: every field of it unset, and region-threshold on the
// image scale (calibration.h: region_raw = denormalize), so 0.5 cuts regions at the image
// threshold, as before the region threshold existed.
void expect_regions_at_the_image_threshold(const pefm::Calibration& cal) {
  EXPECT_TRUE(std::isnan(cal.region_threshold)) << cal.region_threshold;
  EXPECT_TRUE(std::isnan(cal.region_rate_target)) << cal.region_rate_target;
  EXPECT_TRUE(std::isnan(cal.region_rate)) << cal.region_rate;
  EXPECT_TRUE(std::isnan(cal.region_image_rate)) << cal.region_image_rate;
  EXPECT_EQ(cal.region_pixels, 0);
  EXPECT_DOUBLE_EQ(cal.region_raw(0.5), cal.threshold) << "regions cut at the image threshold, as they were";
  EXPECT_DOUBLE_EQ(cal.region_raw(0.75), cal.denormalize(0.75));
  EXPECT_DOUBLE_EQ(cal.region_raw(0.75), 1.1875);  // 0.25 + 1.5 * (0.875 - 0.25)
  EXPECT_DOUBLE_EQ(cal.region_cut(0.5), cal.threshold);
}

class OldModelFiles : public ::testing::TestWithParam<const char*> {};

TEST_P(OldModelFiles, KeepLoadingWithTheirConfigCalibrationAndMap) {
  ASSERT_EQ(format_version_of(GetParam()), 1u);
  const auto model = load_fixture(GetParam());
  ASSERT_NO_FATAL_FAILURE(expect_fixture_model(model));
  EXPECT_EQ(model->config.resize, pefm::Resize::kBilinear) << "version 1 files were trained on bilinear resizing";
  const auto& cal = model->calibration;
  EXPECT_EQ(cal.method, "mean+3std") << "written before stated false-alarm rates";
  EXPECT_TRUE(std::isnan(cal.false_alarm_bound));
  EXPECT_EQ(cal.groups, 0) << "no stated rate, no groups";
  expect_regions_at_the_image_threshold(cal);
}

INSTANTIATE_TEST_SUITE_P(EveryLayout, OldModelFiles,
                         ::testing::Values("v1-2026-11-28-first.pefm", "v1-2026-11-28-taps.pefm"),
                         [](const auto& info) {
                           std::string name = info.param;
                           name = name.substr(0, name.find('.'));
                           for (auto& ch : name) ch = std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
                           return name;
                         });

// The stated false-alarm rate as pefm-train wrote it by default from 2026-11-29 to
// 2026-11-30 (before --groups): method, rate, bound, folds and 95 % bound, no
// calibration.groups.
void expect_conformal_without_groups(const pefm::Calibration& cal) {
  EXPECT_EQ(cal.method, "conformal");
  EXPECT_EQ(cal.false_alarm_target, 0.125);
  EXPECT_EQ(cal.false_alarm_bound, 0.125);
  EXPECT_EQ(cal.folds, 5);
  EXPECT_EQ(cal.false_alarm_upper95, 0.34816);
  EXPECT_EQ(cal.groups, cal.images) << "before --groups every calibration image stood alone";
  EXPECT_EQ(cal.groups, 7);
}

// Format version 2 as its first writer (commit 8e3cd51) wrote it: config.resize, a
// conformal threshold, but no calibration.groups and no region threshold.
TEST(Version2ModelFiles, FromBeforeGroupsAndRegionThresholdsLoadWithTheirDefaults) {
  const char* name = "v2-2026-11-29-resize.pefm";
  ASSERT_EQ(format_version_of(name), 2u);
  const auto model = load_fixture(name);
  ASSERT_NO_FATAL_FAILURE(expect_fixture_model(model));
  EXPECT_EQ(model->config.resize, pefm::Resize::kLanczos);
  expect_conformal_without_groups(model->calibration);
  expect_regions_at_the_image_threshold(model->calibration);
}

// Version 2 with a region threshold (commit 13a3efb) but still without calibration.groups
// (commit d47d203): the region threshold as stored, groups == images.
TEST(Version2ModelFiles, WithARegionThresholdFromBeforeGroupsLoadWithEveryImageAlone) {
  const char* name = "v2-2026-11-30-regions.pefm";
  ASSERT_EQ(format_version_of(name), 2u);
  const auto model = load_fixture(name);
  ASSERT_NO_FATAL_FAILURE(expect_fixture_model(model));
  EXPECT_EQ(model->config.resize, pefm::Resize::kBilinear);
  const auto& cal = model->calibration;
  expect_conformal_without_groups(cal);
  EXPECT_EQ(cal.region_threshold, 0.625);
  EXPECT_EQ(cal.region_rate_target, 0.0001);
  EXPECT_DOUBLE_EQ(cal.region_rate, 2.0 / 28672);
  EXPECT_DOUBLE_EQ(cal.region_image_rate, 1.0 / 7);
  EXPECT_EQ(cal.region_pixels, 28672);
  EXPECT_DOUBLE_EQ(cal.region_raw(0.5), 0.625);
  EXPECT_DOUBLE_EQ(cal.region_raw(0.25), 0.4375);  // 0.25 + 0.5 * (0.625 - 0.25)
}

// The analytic shapes the loader checks against are the network's own.
TEST(MappingShapes, AreExactlyTheParametersOfTheNetwork) {
  for (const auto pe : {pefm::PeMode::kAdd, pefm::PeMode::kConcat}) {
    const int64_t cs = 32, ct = 96, latent = 5;
    pefm::DualMapping net(cs, ct, pefm::encoded_channels(cs, pe), pefm::encoded_channels(ct, pe), latent);
    const auto want = pefm::dual_mapping_shapes(cs, ct, pefm::encoded_channels(cs, pe), pefm::encoded_channels(ct, pe), latent);
    const auto state = pefm::module_state(*net);
    ASSERT_EQ(state.size(), want.size());
    for (const auto& [name, t] : state) {
      ASSERT_TRUE(want.count(name)) << name;
      EXPECT_EQ(t.sizes(), c10::IntArrayRef(want.at(name))) << name;
    }
  }
}

// Training checkpoints hold the optimiser as plain tensors with checked shapes and ranges.
class CraftedCheckpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = pefm::Model::create(pefm_test::tiny_config());
    trainer_ = std::make_unique<pefm::Trainer>(model_, pefm::TrainOptions{}, torch::kCPU);
    trainer_->add_images(torch::randn({4, 3, 64, 64}));
    trainer_->train_epoch();
    state_ = trainer_->state();
  }
  std::string restore_error(const std::map<std::string, torch::Tensor>& state) {
    pefm::Model fresh = pefm::Model::create(pefm_test::tiny_config());
    pefm::Trainer t(fresh, pefm::TrainOptions{}, torch::kCPU);
    try {
      t.restore(state);
    } catch (const std::exception& e) {
      return e.what();
    }
    return "(no error)";
  }
  pefm::Model model_;
  std::unique_ptr<pefm::Trainer> trainer_;
  std::map<std::string, torch::Tensor> state_;
};

TEST_F(CraftedCheckpoint, RoundTripRestoresEveryMoment) {
  ASSERT_EQ(restore_error(state_), "(no error)");
  EXPECT_TRUE(state_.count("adam.0.0.exp_avg_sq"));
  EXPECT_EQ(state_.at("adam.2.0.step").item<int64_t>(), 1);
}

// Was: a shorter optimiser storage corrupted the heap in Adam::step.
TEST_F(CraftedCheckpoint, MomentOfTheWrongShapeIsRefused) {
  auto s = state_;
  s["adam.1.3.exp_avg"] = s["adam.1.3.exp_avg"].flatten().slice(0, 0, 2).clone();
  const auto msg = restore_error(s);
  EXPECT_NE(msg.find("'adam.1.3.exp_avg' has"), std::string::npos) << msg;
}

// Was: epochs_done = -1e15 trained forever.
TEST_F(CraftedCheckpoint, CountersOutOfRangeAreRefused) {
  for (const int64_t bad : {int64_t{-1000000000000000}, int64_t{-1}, int64_t{1} << 50}) {
    auto s = state_;
    s["epochs_done"] = torch::tensor({bad}, torch::kInt64);
    EXPECT_NE(restore_error(s).find("'epochs_done' = " + std::to_string(bad) + " is outside"), std::string::npos) << bad;
    s = state_;
    s["adam.0.0.step"] = torch::tensor({bad}, torch::kInt64);
    EXPECT_NE(restore_error(s).find("'adam.0.0.step' = "), std::string::npos) << bad;
  }
  auto s = state_;
  s["adam.0.0.exp_avg_sq"] = -s["adam.0.0.exp_avg_sq"] - 1;
  EXPECT_NE(restore_error(s).find("negative"), std::string::npos);
}

TEST_F(CraftedCheckpoint, TorchScriptOptimiserStateOfOlderVersionsIsNotLoaded) {
  const auto msg = restore_error({{"optimizer.0", torch::zeros({16}, torch::kUInt8)},
                                  {"epochs_done", torch::tensor({int64_t{1}})}});
  EXPECT_NE(msg.find("older pefm"), std::string::npos) << msg;
}

TEST_F(CraftedCheckpoint, UnknownEntriesAreRefused) {
  auto s = state_;
  s["adam.0.999.exp_avg"] = torch::zeros({1});
  s["adam.0.999.exp_avg_sq"] = torch::zeros({1});
  s["adam.0.999.step"] = torch::tensor({int64_t{1}});
  EXPECT_NE(restore_error(s).find("parameters this model does not have"), std::string::npos);
  s = state_;
  s["surprise"] = torch::zeros({1});
  EXPECT_NE(restore_error(s).find("unknown entry 'surprise'"), std::string::npos);
}

}  // namespace

// `valid` other than 0 or 1, and header flags (none is defined): refused, not guessed at.
TEST_F(CraftedModel, CalibrationValidOtherThanZeroOrOneAndHeaderFlagsAreRefused) {
  auto msg = refused(crafted([](pefm::Container& c) { c.meta["calibration.valid"] = "2"; }));
  EXPECT_NE(msg.find("calibration.valid '2' is not 0 or 1"), std::string::npos) << msg;
  std::string flagged = bytes_;
  flagged[12] = 1;  // "PEFMMODL" | u32 version | u32 flags
  const size_t body = flagged.size() - 4 - 8;
  const uint32_t crc = pefm::crc32(flagged.data(), body);
  std::memcpy(flagged.data() + body, &crc, 4);
  msg = refused(flagged);
  EXPECT_NE(msg.find("has header flags 1 set"), std::string::npos) << msg;
}
