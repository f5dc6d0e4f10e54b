// End-to-end tests of pefm-train, pefm-eval and pefm-bench, run as a user would run them.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <tuple>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "common.h"
#include "pefm-io/image_io.h"
#if __has_include("gstpefmmeta.h")  // built with the element: the tools are compared with it in-process
#include <gst/app/gstappsink.h>
#include <gst/gst.h>

#include "gstpefmmeta.h"
#define PEFM_TEST_WITH_ELEMENT 1
#endif
#include "pefm/backbone.h"
#include "pefm/calibration.h"
#include "pefm/detector.h"
#include "pefm/frame_detector.h"
#include "pefm/metrics.h"
#include "pefm/model_file.h"
#include "pefm/pe_choice.h"
#include "pefm/state_dict.h"

namespace {

namespace fs = std::filesystem;

using pefm_test::Result;
using pefm_test::run;

// Whether child `pid` has ended, without reaping it (run() reaps it).
bool exited(pid_t pid) {
  siginfo_t info{};
  return waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid;
}

// Runs `argv` and sends `sig` to it as soon as `ckpt` exists: a point the program defines (a
// complete checkpoint is in place), not one a sleep picks. The wait also ends when the
// program exits; its bound (scaled for the sanitizers) only stops a program that hangs.
Result run_until_checkpoint(const std::vector<std::string>& argv, const std::string& ckpt, int sig = SIGINT) {
  return run(argv, {}, [&](pid_t pid) {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(120 * pefm_test::kTimeoutScale);
    while (!fs::exists(ckpt) && !exited(pid) && std::chrono::steady_clock::now() < give_up)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    kill(pid, sig);
  });
}

// A JSON text as a strict reader sees it: one value, valid UTF-8, no NaN; a failure says
// why and shows the text.
nlohmann::json parse_json(const std::string& text) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    ADD_FAILURE() << "not valid JSON (" << e.what() << "):\n" << text;
    return nlohmann::json::object();
  }
}

void write_image(const std::string& path, const torch::Tensor& hwc) {
  const auto t = hwc.contiguous();
  pefm::io::Image img{static_cast<int>(t.size(1)), static_cast<int>(t.size(0)), static_cast<int>(t.size(2)),
                      std::vector<uint8_t>(t.data_ptr<uint8_t>(), t.data_ptr<uint8_t>() + t.numel())};
  pefm::io::write_png(path, img);
}

class Cli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new pefm_test::TempDir();
    // Formula-filled whole torchvision networks (tail keys included), as exported files.
    for (const char* arch : {"mobilenet_v2", "resnet18"}) {
      auto b = pefm::make_backbone(arch, pefm::BackboneHead::kClassifier);
      pefm_test::fill_formula(*b);
      pefm::write_state_dict(pefm::module_state(*b), dir_->file(std::string(arch) + ".pth"));
    }
    fs::create_directories(dir_->file("good"));
    for (int i = 0; i < 10; ++i) {
      write_image(dir_->file("good/" + std::to_string(100 + i) + ".png"), pefm_test::texture_image(60, 76, i));
    }
    // MVTec layout: test/good, test/patch + ground_truth/patch.
    const auto cat = dir_->file("cat");
    for (const char* d : {"/test/good", "/test/patch", "/ground_truth/patch"}) fs::create_directories(cat + d);
    for (int i = 0; i < 3; ++i) {
      const auto clean = pefm_test::texture_image(60, 76, 50 + i);
      write_image(cat + "/test/good/00" + std::to_string(i) + ".png", clean);
      write_image(cat + "/test/patch/00" + std::to_string(i) + ".png", pefm_test::paste_patch(clean, 20, 10 + 10 * i, 16));
      auto mask = torch::zeros({60, 76, 1}, torch::kUInt8);
      mask.slice(0, 20, 36).slice(1, 10 + 10 * i, 26 + 10 * i).fill_(255);
      write_image(cat + "/ground_truth/patch/00" + std::to_string(i) + "_mask.png", mask);
    }
  }
  static void TearDownTestSuite() { delete dir_; }

  static std::string train_bin() { return std::getenv("PEFM_TRAIN_BIN"); }
  static std::string eval_bin() { return std::getenv("PEFM_EVAL_BIN"); }
  static std::string bench_bin() { return std::getenv("PEFM_BENCH_BIN"); }
  // pipelines/pefm-results, when the examples are built (else empty).
  static std::string results_bin() {
    const char* bin = std::getenv("PEFM_RESULTS_BIN");
    return bin ? bin : "";
  }
  // pefm-bench on the tiny random-weight shapes of the other tests.
  static std::vector<std::string> tiny_bench(std::vector<std::string> extra) {
    std::vector<std::string> argv = {bench_bin(), "--source", "mobilenet_v2", "--target", "resnet18",
                                     "--image-size", "64", "--latent", "8,8,8", "--device", "cpu"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return argv;
  }
  static std::vector<std::string> tiny_train(const std::string& data, const std::string& out, int epochs) {
    return {train_bin(), "--data", data, "--output", out,
            "--source", "mobilenet_v2=" + dir_->file("mobilenet_v2.pth"),
            "--target", "resnet18=" + dir_->file("resnet18.pth"),
            "--image-size", "64", "--latent", "8,8,8", "--epochs", std::to_string(epochs),
            "--batch-size", "4", "--device", "cpu", "--folds", "0", "--val-fraction", "0.2"};
  }

  // Runs make_args(epochs) and interrupts it at its first checkpoint, mid-training. SIGINT
  // goes out once the checkpoint exists, but a loaded machine may deliver it only after the
  // last epoch (40 on cached features are over quickly): then it runs again with 400, so
  // the test does not depend on how fast the signal lands. Returns the epochs of the
  // interrupted run (`stopped_at`: those it completed), or 0 after a test failure.
  static int interrupted_run(const std::function<std::vector<std::string>(int)>& make_args, const std::string& ckpt,
                             int64_t* stopped_at) {
    for (int epochs = 40; epochs <= 400; epochs *= 10) {
      const auto args = make_args(epochs);
      fs::remove(args[std::find(args.begin(), args.end(), "--output") - args.begin() + 1]);
      fs::remove(ckpt);
      const auto r = run_until_checkpoint(args, ckpt);
      EXPECT_TRUE(r.status == 130 || r.status == 0) << r.output;
      if (r.status == 130 && fs::exists(ckpt)) {
        *stopped_at = pefm::load_checkpoint(ckpt).trainer_state.at("epochs_done").item<int64_t>();
        // Stopped during calibration, the resumed run would only calibrate: resume not tested.
        if (*stopped_at < epochs) return epochs;
      }
    }
    ADD_FAILURE() << "the interruption came after the last epoch, even of 400";
    return 0;
  }

  static pefm_test::TempDir* dir_;
  pefm_test::TempDir out_;
};
pefm_test::TempDir* Cli::dir_ = nullptr;

TEST_F(Cli, HelpListsEveryOptionAndUnknownOptionsFail) {
  const auto h = run({train_bin(), "--help"});
  EXPECT_EQ(h.status, 0);
  for (const char* opt : {"--data", "--output", "--source", "--target", "--image-size", "--epochs", "--batch-size",
                          "--lr", "--weight-decay", "--latent", "--pe", "--device", "--seed", "--val-fraction",
                          "--folds", "--groups", "--false-alarm-rate", "--threads", "--resume", "--bit-depth"}) {
    EXPECT_NE(h.output.find(opt), std::string::npos) << opt;
  }
  const auto bad = run({train_bin(), "--bogus", "1"});
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.output.find("unknown option '--bogus'"), std::string::npos) << bad.output;
  const auto e = run({eval_bin(), "--help"});
  EXPECT_EQ(e.status, 0);
  for (const char* opt : {"--model", "--data", "--device", "--json", "--save-maps", "--bit-depth"}) {
    EXPECT_NE(e.output.find(opt), std::string::npos) << opt;
  }
}

TEST_F(Cli, TrainsACalibratedModelAndReportsSkippedFiles) {
  // A corrupt file among the good ones is reported by name and skipped.
  const auto data = out_.file("data");
  fs::copy(dir_->file("good"), data);
  pefm_test::spit(data + "/broken.png", "\x89PNG\r\n\x1a\nnot really");
  const auto model = out_.file("m.pt");
  const auto r = run(tiny_train(data, model, 2));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("skipped: cannot decode '" + data + "/broken.png'"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("8 train, 2 held out, 1 skipped"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("epoch 2/2"), std::string::npos) << r.output;
  const auto m = pefm::load_model(model);
  EXPECT_TRUE(m.calibration.valid);
  EXPECT_EQ(m.calibration.images, 2);
  EXPECT_EQ(m.config.image_size, 64);
  EXPECT_EQ(m.training.at("epochs"), "2");
  EXPECT_EQ(m.training.at("skipped_images"), "1");
  EXPECT_FALSE(fs::exists(model + ".ckpt")) << "checkpoint is removed after a completed run";
}

// A hold-out of one image has no spread for mean + 3 std: said, not silently used.
TEST_F(Cli, AThresholdFromOneHeldOutImageIsWarnedAbout) {
  auto args = tiny_train(dir_->file("good"), out_.file("m.pt"), 1);
  *(std::find(args.begin(), args.end(), "--val-fraction") + 1) = "0.1";
  const auto r = run(args);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("WARNING: the threshold rests on 1 image: mean + 3 std has no spread"), std::string::npos)
      << r.output;
}

TEST_F(Cli, EmptyAndMissingFoldersAreErrorsNamingTheFolder) {
  fs::create_directories(out_.file("empty"));
  pefm_test::spit(out_.file("empty/readme.txt"), "no images");
  auto r = run(tiny_train(out_.file("empty"), out_.file("m.pt"), 1));
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.output.find("'" + out_.file("empty") + "' holds no image files"), std::string::npos) << r.output;
  r = run(tiny_train(out_.file("missing"), out_.file("m.pt"), 1));
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.output.find(out_.file("missing") + "' is not a folder"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(out_.file("m.pt")));
}

TEST_F(Cli, AllImagesBrokenIsAnError) {
  fs::create_directories(out_.file("bad"));
  pefm_test::spit(out_.file("bad/a.png"), "x");
  pefm_test::spit(out_.file("bad/b.jpg"), "");
  const auto r = run(tiny_train(out_.file("bad"), out_.file("m.pt"), 1));
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.output.find("no readable images"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("2 skipped"), std::string::npos) << r.output;
}

TEST_F(Cli, MissingBackboneWeightsSayWhereItLooked) {
  const auto r = run({train_bin(), "--data", dir_->file("good"), "--output", out_.file("m.pt"), "--source", "resnet34"},
                     {"PEFM_BACKBONE_DIR=" + out_.path()});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find(out_.file("resnet34.pth")), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("export_backbones.py"), std::string::npos) << r.output;
}

TEST_F(Cli, InterruptLeavesNoModelAndResumeFinishes) {
  const auto model = out_.file("m.pt");
  const auto ckpt = model + ".ckpt";
  // Interrupt once the first epoch's checkpoint exists.
  const auto r = run_until_checkpoint(tiny_train(dir_->file("good"), model, 400), ckpt);
  ASSERT_EQ(r.status, 130) << r.output;
  EXPECT_NE(r.output.find("interrupted: no model written"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(model));
  ASSERT_TRUE(fs::exists(ckpt));
  const auto done = pefm::load_checkpoint(ckpt);
  const auto epochs_done = done.trainer_state.at("epochs_done").item<int64_t>();
  EXPECT_GE(epochs_done, 1);
  // Resume to a smaller total so it finishes quickly.
  auto args = tiny_train(dir_->file("good"), model, static_cast<int>(epochs_done) + 2);
  args.push_back("--resume");
  const auto resumed = run(args);
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  EXPECT_EQ(resumed.output.find("epoch 1/"), std::string::npos) << "resume must not redo epoch 1";
  EXPECT_NE(resumed.output.find("epoch " + std::to_string(epochs_done + 2) + "/"), std::string::npos) << resumed.output;
  EXPECT_TRUE(fs::exists(model));
  EXPECT_FALSE(fs::exists(ckpt));
}

// kill -9 cannot be caught: what protects the user is that models and checkpoints are
// only ever renamed into place complete.
TEST_F(Cli, SigkillKeepsThePreviousModelAndResumeWorks) {
  const auto model = out_.file("m.pt");
  const auto ckpt = model + ".ckpt";
  ASSERT_EQ(run(tiny_train(dir_->file("good"), model, 1)).status, 0);
  const auto previous = pefm_test::slurp(model);
  const auto r = run_until_checkpoint(tiny_train(dir_->file("good"), model, 400), ckpt, SIGKILL);
  ASSERT_EQ(r.status, 128 + SIGKILL) << r.output;
  EXPECT_EQ(pefm_test::slurp(model), previous) << "the previous model must survive untouched";
  EXPECT_EQ(pefm::load_model(model).training.at("epochs"), "1");
  const auto done = pefm::load_checkpoint(ckpt).trainer_state.at("epochs_done").item<int64_t>();
  auto args = tiny_train(dir_->file("good"), model, static_cast<int>(done) + 1);
  args.push_back("--resume");
  const auto resumed = run(args);
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  EXPECT_EQ(pefm::load_model(model).training.at("epochs"), std::to_string(done + 1));
}

// Every tensor and the calibration of two model files, compared.
void expect_same_model(const std::string& a_path, const std::string& b_path) {
  const auto a = pefm::load_model(a_path), b = pefm::load_model(b_path);
  const auto sa = pefm::module_state(*a.net), sb = pefm::module_state(*b.net);
  ASSERT_EQ(sa.size(), sb.size());
  for (const auto& [k, t] : sa) {
    ASSERT_TRUE(sb.count(k)) << k;
    EXPECT_TRUE(torch::allclose(t, sb.at(k), 1e-5, 1e-7)) << k << " differs by " << (t - sb.at(k)).abs().max().item<double>();
  }
  EXPECT_NEAR(a.calibration.threshold, b.calibration.threshold, 1e-5 * std::abs(a.calibration.threshold));
  EXPECT_NEAR(a.calibration.base, b.calibration.base, 1e-5 * std::abs(a.calibration.base));
}

// An interrupted and resumed run gives the model an uninterrupted run gives (same seed,
// same data): same weights, same calibration, wherever the interruption fell.
TEST_F(Cli, ResumedRunEqualsAnUninterruptedRun) {
  const auto model = out_.file("resumed.pt");
  const auto ckpt = model + ".ckpt";
  int64_t stopped_at = -1;
  const int epochs = interrupted_run([&](int n) { return tiny_train(dir_->file("good"), model, n); }, ckpt, &stopped_at);
  ASSERT_GT(epochs, 0);
  const auto straight = out_.file("straight.pt");
  ASSERT_EQ(run(tiny_train(dir_->file("good"), straight, epochs)).status, 0);
  auto args = tiny_train(dir_->file("good"), model, epochs);
  args.push_back("--resume");
  const auto resumed = run(args);
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  SCOPED_TRACE("interrupted after epoch " + std::to_string(stopped_at));
  expect_same_model(straight, model);
}

// --resume with a setting that changes what is trained is refused, naming the setting, and
// the checkpoint is kept for the right command.
TEST_F(Cli, ResumeWithChangedSettingsIsRefusedNamingTheSetting) {
  const auto model = out_.file("m.pt");
  const auto ckpt = model + ".ckpt";
  const auto r = run_until_checkpoint(tiny_train(dir_->file("good"), model, 400), ckpt);
  ASSERT_EQ(r.status, 130) << r.output;
  const auto before = pefm_test::slurp(ckpt);
  const auto with = [&](const std::string& option, const std::string& value) {
    auto args = tiny_train(dir_->file("good"), model, 400);
    for (size_t i = 0; i + 1 < args.size(); ++i) {
      if (args[i] == option) args[i + 1] = value;
    }
    if (std::find(args.begin(), args.end(), option) == args.end()) {
      args.push_back(option);
      args.push_back(value);
    }
    args.push_back("--resume");
    return run(args);
  };
  // Other backbone weights (a copy elsewhere is another file): the fold models would be
  // built from them, the shipped model keeps the checkpoint's.
  const auto other_weights = out_.file("other.pth");
  fs::copy_file(dir_->file("mobilenet_v2.pth"), other_weights);
  for (const auto& [option, value, says] :
       {std::tuple<std::string, std::string, std::string>{"--lr", "0.01", "lr="},
        {"--source", "mobilenet_v2=" + other_weights, "source_weights="},
        {"--batch-size", "2", "batch_size="},
        {"--val-fraction", "0.5", "val_fraction="},
        {"--latent", "8,8,16", "another model configuration: latent 8,8,8 (this run: 8,8,16)"},
        {"--image-size", "96", "image-size 64 (this run: 96)"}}) {
    const auto refused = with(option, value);
    EXPECT_EQ(refused.status, 2) << option << "\n" << refused.output;
    EXPECT_NE(refused.output.find(says), std::string::npos) << option << "\n" << refused.output;
    EXPECT_EQ(pefm_test::slurp(ckpt), before) << option << " touched the checkpoint";
  }
  // Fewer epochs than the checkpoint holds: the fold models would train fewer than the
  // model shipped, so the resume is refused. The same folder by another name and the same
  // numbers written otherwise are the same settings (the refusal that comes is the epochs').
  auto ck = pefm::load_checkpoint(ckpt);
  ck.trainer_state["epochs_done"] = torch::tensor(int64_t{5});
  pefm::save_checkpoint(ck.model, ck.trainer_state, ckpt);
  auto fewer = tiny_train(dir_->file("good") + "/./", model, 3);
  fewer.insert(fewer.end(), {"--lr", "0.0003", "--weight-decay", "1e-05", "--false-alarm-rate", "1e-2", "--resume"});
  const auto refused = run(fewer);
  EXPECT_EQ(refused.status, 2) << refused.output;
  EXPECT_NE(refused.output.find("holds 5 trained epochs, this run asks for --epochs 3"), std::string::npos)
      << refused.output;
  EXPECT_EQ(refused.output.find("epoch 1/"), std::string::npos) << refused.output;
}

// Mean and sample standard deviation, computed here rather than by the code under test.
std::pair<double, double> mean_std(const std::vector<double>& v) {
  double sum = 0;
  for (double x : v) sum += x;
  const double mean = sum / static_cast<double>(v.size());
  double sq = 0;
  for (double x : v) sq += (x - mean) * (x - mean);
  return {mean, std::sqrt(sq / static_cast<double>(v.size() - 1))};
}

// The calibration pefm-train stores, recomputed from its definition (threshold = mean + 3
// sample std of the calibration images' scores, base = median pixel score): with
// --val-fraction 0 the calibration images are all the training images, read and scored here.
TEST_F(Cli, CalibrationIsRecomputedFromTheImagesScores) {
  const auto model = out_.file("m.pt");
  auto args = tiny_train(dir_->file("good"), model, 1);
  *(std::find(args.begin(), args.end(), "--val-fraction") + 1) = "0";
  const auto r = run(args);
  ASSERT_EQ(r.status, 0) << r.output;
  auto m = std::make_shared<pefm::Model>(pefm::load_model(model));
  const auto cal = m->calibration;
  ASSERT_TRUE(cal.valid);
  ASSERT_EQ(cal.images, 10);
  pefm::Detector det(m, {"cpu"});
  std::vector<double> scores, pixels;
  for (const auto& e : fs::directory_iterator(dir_->file("good"))) {
    const auto img = pefm::io::read_image(e.path().string());
    const auto t = torch::from_blob(const_cast<uint8_t*>(img.pixels.data()), {1, img.height, img.width, img.channels},
                                    torch::kUInt8);
    const auto d = det.detect(t);
    scores.push_back(d.scores[0].item<double>());
    const auto flat = d.maps.flatten().to(torch::kFloat64).contiguous();
    pixels.insert(pixels.end(), flat.data_ptr<double>(), flat.data_ptr<double>() + flat.numel());
  }
  const auto [mean, sd] = mean_std(scores);
  EXPECT_NEAR(cal.threshold, mean + 3 * sd, 1e-4 * std::abs(cal.threshold));
  std::sort(pixels.begin(), pixels.end());
  const double mid = 0.5 * static_cast<double>(pixels.size() - 1);
  const auto lo = static_cast<size_t>(mid);
  const double median = pixels[lo] + (pixels[std::min(lo + 1, pixels.size() - 1)] - pixels[lo]) * (mid - lo);
  EXPECT_NEAR(cal.base, median, 1e-4 * std::abs(median));
}

// --tile N trains on native N x N tiles cut as pefmfilter cuts frames, and records N so
// that pefmfilter tile-size=-1 uses it; tiles below pefmfilter's minimum are refused.
TEST_F(Cli, TileTrainsOnTilesCutAsTheElementCutsFramesAndRecordsTheSize) {
  const auto model = out_.file("tiles.pt");
  auto args = tiny_train(dir_->file("good"), model, 1);
  args.insert(args.end(), {"--tile", "32"});
  const auto r = run(args);
  ASSERT_EQ(r.status, 0) << r.output;
  // 60x76 images: rows at 0 and 28, columns at 0, 32 and 44 (the last flush with the edge).
  EXPECT_NE(r.output.find("tiles: 10 images -> 60 tiles of 32 px"), std::string::npos) << r.output;
  EXPECT_EQ(pefm::tile_origins(60, 32, 0), (std::vector<int>{0, 28}));
  EXPECT_EQ(pefm::tile_origins(76, 32, 0), (std::vector<int>{0, 32, 44}));
  const pefm::FrameDetector det(std::make_shared<pefm::Model>(pefm::load_model(model)), {"cpu"});
  EXPECT_EQ(det.trained_tile(), 32);
  args = tiny_train(dir_->file("good"), out_.file("small.pt"), 1);
  args.insert(args.end(), {"--tile", "16"});
  const auto refused = run(args);
  EXPECT_EQ(refused.status, 2) << refused.output;
  EXPECT_NE(refused.output.find("--tile 16 is below the minimum of 32 pixels"), std::string::npos) << refused.output;
}

// --pe auto trains each variant briefly on four fifths of the images, scores synthetic
// defects pasted into the other fifth, applies its rule (none unless a code gains
// significantly), and records the choice and its evidence in the model.
TEST_F(Cli, PeAutoChoosesFromSyntheticDefectsAndRecordsTheEvidence) {
  const auto model = out_.file("auto.pt");
  auto args = tiny_train(dir_->file("good"), model, 3);
  args.insert(args.end(), {"--pe", "auto"});
  const auto r = run(args);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("add, none and concat each trained 1 epochs on 6 images, scored on 2 held-out images, a "
                          "synthetic defect of appearance and one of position in each and a misaligned copy of each"),
            std::string::npos) << r.output;  // 8 training images after the 0.2 hold-out; a third of 3 epochs
  const auto m = pefm::load_model(model);
  const auto chosen = m.training.at("pe_auto");
  EXPECT_EQ(chosen, pefm::to_string(m.config.pe));
  EXPECT_NE(r.output.find("pe auto: chose " + chosen), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("pe auto: add's gain over none by kind of defect: blotch "), std::string::npos) << r.output;
  const auto evidence = parse_json(m.training.at("pe_auto_evidence"));
  ASSERT_EQ(evidence.at("trials").size(), 3u) << evidence;
  // Formula-filled backbones find synthetic defects no better than chance: said, and recorded.
  double best_auroc = 0;
  for (const auto& t : evidence.at("trials"))
    if (t.at("pixel_auroc").is_number()) best_auroc = std::max(best_auroc, t.at("pixel_auroc").get<double>());
  EXPECT_EQ(evidence.at("weak_evidence").get<bool>(), best_auroc < pefm::kWeakEvidenceAuroc) << evidence;
  const bool weak = best_auroc < pefm::kWeakEvidenceAuroc;
  EXPECT_EQ(r.output.find("pe auto: WARNING: the synthetic defects were barely found") != std::string::npos, weak)
      << r.output;
  // The rule: none unless add or concat is eligible (pooled merit no worse, and a per-image
  // gain over none above two standard errors on the appearance defects, or on the position
  // defects without losing more than two on the appearance ones); then the larger sum.
  std::string best = "none";
  double best_gain = -1e9, none_merit = NAN;
  for (const auto& t : evidence.at("trials")) {
    ASSERT_TRUE(t.at("pixel_auroc").is_number()) << t;
    ASSERT_TRUE(t.at("aupro").is_number()) << t;
    if (t.at("pe") == "none") none_merit = (t.at("pixel_auroc").get<double>() + t.at("aupro").get<double>()) / 2;
  }
  for (const auto& t : evidence.at("trials")) {
    if (t.at("pe") == "none") continue;
    ASSERT_TRUE(t.at("gain_over_none").is_number()) << t;
    // The gain by kind of defect: the 2 probe images hold a pasted patch and a blotch (the
    // appearance kinds in turn), and each a moved patch.
    const auto& by_kind = t.at("gain_by_kind");
    ASSERT_EQ(by_kind.size(), 3u) << t;
    EXPECT_EQ(by_kind.at("cut-paste").at("images").get<int>(), 1) << t;
    EXPECT_EQ(by_kind.at("blotch").at("images").get<int>(), 1) << t;
    EXPECT_EQ(by_kind.at("shift").at("images").get<int>(), 2) << t;
    // Without --groups each image is its own unit: the appearance gain is its kinds' gains
    // weighted by their images; the position gain is shift's.
    double weighted = 0, images = 0;
    for (const auto& [kind, g] : by_kind.items()) {
      if (kind == "shift") continue;
      weighted += g.at("gain").get<double>() * g.at("images").get<double>();
      images += g.at("images").get<double>();
    }
    EXPECT_NEAR(t.at("gain_over_none").get<double>(), weighted / images, 1e-9) << t;
    EXPECT_NEAR(t.at("position_gain_over_none").get<double>(), by_kind.at("shift").at("gain").get<double>(), 1e-9) << t;
    const double gain = t.at("gain_over_none").get<double>(), se = t.at("gain_se").get<double>();
    const double moved = t.at("position_gain_over_none").get<double>(), moved_se = t.at("position_gain_se").get<double>();
    const double merit = (t.at("pixel_auroc").get<double>() + t.at("aupro").get<double>()) / 2;
    const bool eligible =
        (gain > 2 * se || (moved > 2 * moved_se && moved >= pefm::kMinPositionGain && gain >= -2 * se)) &&
        merit >= none_merit;
    EXPECT_EQ(t.at("eligible").get<bool>(), eligible) << t;
    if (eligible && gain + moved > best_gain) best_gain = gain + moved, best = t.at("pe").get<std::string>();
  }
  EXPECT_EQ(evidence.at("rule_choice").get<std::string>(), best) << evidence;
  // at chance level the code is not taken, whatever the rule says
  EXPECT_EQ(chosen, weak ? std::string("none") : best) << evidence;
  // The gains again, from each probe's own scores: the variant's AUROC minus none's.
  const auto& probes = evidence.at("probes");
  ASSERT_EQ(probes.size(), 4u) << evidence;
  EXPECT_EQ(probes[0].at("kind"), "cut-paste");
  EXPECT_EQ(probes[1].at("kind"), "blotch");
  EXPECT_EQ(probes[2].at("kind"), "shift");
  EXPECT_EQ(probes[3].at("kind"), "shift");
  EXPECT_EQ(probes[2].at("file"), probes[0].at("file")) << "each image holds one defect of each kind";
  for (const auto& t : evidence.at("trials")) {
    if (t.at("pe") == "none") continue;
    const auto pe = t.at("pe").get<std::string>();
    std::vector<double> d;
    for (const auto& p : probes) d.push_back(p.at("pixel_auroc").at(pe).get<double>() - p.at("pixel_auroc").at("none").get<double>());
    // two units each: mean and sd / sqrt(2)
    EXPECT_NEAR(t.at("gain_over_none").get<double>(), (d[0] + d[1]) / 2, 1e-12) << t;
    EXPECT_NEAR(t.at("gain_se").get<double>(), std::abs(d[0] - d[1]) / 2, 1e-12) << t;
    EXPECT_NEAR(t.at("position_gain_over_none").get<double>(), (d[2] + d[3]) / 2, 1e-12) << t;
    EXPECT_NEAR(t.at("position_gain_se").get<double>(), std::abs(d[2] - d[3]) / 2, 1e-12) << t;
  }
  EXPECT_EQ(evidence.at("choice").get<std::string>(), chosen);
  EXPECT_EQ(evidence.at("probe_images").get<int>(), 2);
  EXPECT_EQ(evidence.at("probe_units").get<int>(), 2);  // without --groups: each image its own
  EXPECT_EQ(evidence.at("features_extracted_by").get<std::string>(), "add");  // the first trained, shared after
  // An unknown mode is refused naming the option and the choices.
  args = tiny_train(dir_->file("good"), out_.file("bad.pt"), 1);
  args.insert(args.end(), {"--pe", "sometimes"});
  const auto refused = run(args);
  EXPECT_EQ(refused.status, 2) << refused.output;
  EXPECT_NE(refused.output.find("--pe"), std::string::npos) << refused.output;
}

// stdout carries results only: progress (bars, epoch lines) goes to stderr; with --json -
// the JSON is all of stdout; --version answers.
TEST_F(Cli, StdoutCarriesResultsProgressGoesToStderrAndJsonDashIsAllOfStdout) {
  for (const auto& bin : {train_bin(), eval_bin(), bench_bin()}) {
    const auto v = run({bin, "--version"});
    EXPECT_EQ(v.status, 0) << v.output;
    EXPECT_NE(v.output.find(" 0.1.0\nLibTorch: " TORCH_VERSION " ("), std::string::npos) << v.output;
    EXPECT_NE(v.output.find("\nCUDA: "), std::string::npos) << v.output;
  }
  const auto model = out_.file("m.pt");
  const auto train = run(tiny_train(dir_->file("good"), model, 2), {}, nullptr, /*stdout_only=*/true);
  ASSERT_EQ(train.status, 0) << train.output;
  EXPECT_EQ(train.output.find("epoch 1/2"), std::string::npos) << "progress on stdout:\n" << train.output;
  EXPECT_NE(train.output.find("calibration"), std::string::npos) << "the summary belongs on stdout:\n" << train.output;
  const auto json = run(tiny_bench({"--batch-sizes", "1", "--iterations", "1", "--warmup", "0", "--json", "-"}), {},
                        nullptr, /*stdout_only=*/true);
  ASSERT_EQ(json.status, 0) << json.output;
  // parse() takes one JSON text and nothing after it but white space.
  const auto bench = parse_json(json.output);
  EXPECT_EQ(std::count(json.output.begin(), json.output.end(), '\n'), 1) << "more than the JSON on stdout:\n" << json.output;
  ASSERT_EQ(bench.at("batches").size(), 1u) << json.output;
  EXPECT_EQ(bench.at("batches")[0].at("batch"), 1) << json.output;
  const auto report = run({eval_bin(), "--model", model, "--data", dir_->file("cat"), "--device", "cpu", "--json", "-"},
                          {}, nullptr, /*stdout_only=*/true);
  ASSERT_EQ(report.status, 0) << report.output;
  EXPECT_TRUE(parse_json(report.output).at("image_auroc").is_number()) << report.output;
  EXPECT_EQ(report.output.find("image AUROC"), std::string::npos) << "the human report belongs on stderr:\n" << report.output;
}

// File and folder names are bytes: a control character, a quote or a byte that is not
// UTF-8 in one must still give JSON that a strict reader accepts (U+FFFD for the bad byte).
TEST_F(Cli, EvalJsonIsValidWhateverTheDataFolderIsCalled) {
  const auto model = out_.file("m.pt");
  ASSERT_EQ(run(tiny_train(dir_->file("good"), model, 1)).status, 0);
  const auto data = out_.file("cat \"q\" \x01\xff");
  fs::copy(dir_->file("cat"), data, fs::copy_options::recursive);
  const auto json = out_.file("report.json");
  const auto r = run({eval_bin(), "--model", model, "--data", data, "--device", "cpu", "--json", json});
  ASSERT_EQ(r.status, 0) << r.output;
  const auto text = pefm_test::slurp(json);
  const auto report = parse_json(text);
  EXPECT_EQ(report.value("data", ""), out_.file("cat \"q\" \x01\xEF\xBF\xBD")) << text;
  EXPECT_EQ(report.value("images", 0), 6) << text;
}

// pefm-results writes one strict JSON line per frame, with the --names label verbatim
// (invalid UTF-8 replaced), and the scores, decision, map size and regions.
TEST_F(Cli, ResultsLinesAreValidJsonWhateverTheFileNames) {
  if (results_bin().empty()) GTEST_SKIP() << "pefm-results was not built (-Dexamples=disabled)";
  if (!std::getenv("GST_PLUGIN_PATH_1_0")) GTEST_SKIP() << "the pefm plugin was not built";
  const auto model = out_.file("m.pt");
  ASSERT_EQ(run(tiny_train(dir_->file("good"), model, 1)).status, 0);
  const auto names = out_.file("names.txt");
  std::ofstream(names, std::ios::binary) << "a \"b\"\x01.png\n\xff\xfe.png\n";
  const auto r = run({results_bin(), "--names", names,
                      "videotestsrc num-buffers=3 ! video/x-raw,format=RGB,width=64,height=48 ! pefmfilter model=" +
                          model + " ! appsink name=results"},
                     {}, nullptr, /*stdout_only=*/true);
  ASSERT_EQ(r.status, 0) << r.output;
  std::istringstream lines(r.output);
  std::vector<nlohmann::json> frames;
  for (std::string line; std::getline(lines, line);) frames.push_back(parse_json(line));
  ASSERT_EQ(frames.size(), 3u) << r.output;
  EXPECT_EQ(frames[0].value("file", ""), "a \"b\"\x01.png") << r.output;
  EXPECT_EQ(frames[1].value("file", ""), "\xEF\xBF\xBD\xEF\xBF\xBD.png") << r.output;
  EXPECT_FALSE(frames[2].contains("file")) << r.output;
  for (size_t i = 0; i < frames.size(); ++i) {
    const auto& f = frames[i];
    EXPECT_EQ(f.value("frame", -1), static_cast<int>(i)) << r.output;
    EXPECT_TRUE(f.value("score", nlohmann::json()).is_number()) << r.output;
    EXPECT_TRUE(f.value("anomalous", nlohmann::json()).is_boolean()) << r.output;
    EXPECT_TRUE(f.value("regions", nlohmann::json()).is_array()) << r.output;
    EXPECT_EQ(f.value("map", nlohmann::json()).size(), 2u) << r.output;
  }
}

// pipelines/pefm_meta.py reads GstPefmMeta from Python through the GstPefm typelib: the
// same decisions, scores and regions as pefm-results (C) on the same frames, and the heat
// map as bytes whose largest value is the frame's score.
TEST_F(Cli, PythonReadsTheMetaThroughIntrospectionAsTheCApiDoes) {
  const char* typelib_dir = std::getenv("PEFM_TYPELIB_DIR");
  if (results_bin().empty() || !typelib_dir)
    GTEST_SKIP() << "built without the examples or without GObject introspection (-Dintrospection)";
  const std::string python = "/usr/bin/python3";  // Debian's, with python3-gi
  ASSERT_EQ(access(python.c_str(), X_OK), 0) << "no " << python << " (Debian: python3-gi)";
  const auto model = out_.file("m.pt");
  ASSERT_EQ(run(tiny_train(dir_->file("good"), model, 1)).status, 0);
  const std::string pipeline = "videotestsrc num-buffers=4 pattern=ball ! video/x-raw,format=RGB,width=64,height=48 ! "
                               "pefmfilter model=" + model + " threshold=0.3 region-threshold=0.2 ! appsink name=results";
  const auto c = run({results_bin(), pipeline}, {}, nullptr, /*stdout_only=*/true);
  ASSERT_EQ(c.status, 0) << c.output;
  const std::string lib_path = std::string("LD_LIBRARY_PATH=") + typelib_dir;
  const std::string gi_path = std::string("GI_TYPELIB_PATH=") + typelib_dir;
  const auto py = run({python, std::string(PEFM_SOURCE_DIR) + "/pipelines/pefm_meta.py", pipeline},
                      {lib_path, gi_path}, nullptr, /*stdout_only=*/true);
  ASSERT_EQ(py.status, 0) << py.output << run({python, std::string(PEFM_SOURCE_DIR) + "/pipelines/pefm_meta.py",
                                                pipeline}, {lib_path, gi_path}).output;
  std::istringstream c_lines(c.output), py_lines(py.output);
  int frames = 0, with_regions = 0;
  for (std::string cl, pl; std::getline(c_lines, cl) && std::getline(py_lines, pl); ++frames) {
    const auto a = parse_json(cl), b = parse_json(pl);
    EXPECT_EQ(b.at("frame"), a.at("frame"));
    EXPECT_EQ(b.at("decision"), a.at("decision"));
    EXPECT_NEAR(a.at("region_threshold").get<double>(), 0.2, 1e-6);
    EXPECT_NEAR(b.at("region_threshold").get<double>(), a.at("region_threshold").get<double>(), 1e-6);
    EXPECT_NEAR(b.at("region_level").get<double>(), a.at("region_level").get<double>(), 1e-6);
    with_regions += !a.at("regions").empty();
    EXPECT_NEAR(b.at("score").get<double>(), a.at("score").get<double>(), 1e-6);
    EXPECT_EQ(b.at("regions"), a.at("regions")) << pl << "\n" << cl;
    EXPECT_EQ(b.at("map"), a.at("map"));
    EXPECT_EQ(a.at("model").at("name"), "m.pt");
    EXPECT_EQ(a.at("model").at("sha256").get<std::string>().size(), 64u);
    EXPECT_EQ(b.at("model"), a.at("model"));
    const int w = a.at("map")[0], h = a.at("map")[1];
    EXPECT_GT(w * h, 0);
    EXPECT_EQ(b.at("map_values"), w * h);
    EXPECT_NEAR(b.at("map_max").get<double>(), a.at("score").get<double>(), 1e-5) << pl;
  }
  EXPECT_EQ(frames, 4) << c.output << py.output;
  EXPECT_GT(with_regions, 0) << "no frame held a region: the comparison saw no boxes\n" << c.output;

  // The meta is read-only from Python: a count or pointer written there would let the C
  // side read past its arrays. Values come through accessors, the map and regions as copies.
  const std::string script =
      "import gi\ngi.require_version('Gst', '1.0')\ngi.require_version('GstPefm', '1.0')\n"
      "from gi.repository import Gst, GstPefm, GLib\nGst.init(None)\n"
      "buf = Gst.Buffer.new_allocate(None, 4, None)  # the meta lives as long as its buffer\n"
      "m = GstPefm.buffer_add_pefm_meta(buf)\n"
      "for field, value in (('n_regions', 1000), ('map_width', 1000), ('score', 2.0)):\n"
      "    try:\n        setattr(m, field, value)\n        print('wrote', field)\n"
      "    except (RuntimeError, TypeError, AttributeError):\n        print('refused', field)\n"
      "m.share_map(2, 2, GLib.Bytes.new(b'\\0' * 12), 1.0, 1.0)  # 3 floats for 2 x 2: not taken\n"
      "print('map', len(m.get_map()), 'regions', len(m.get_regions()), 'region', m.get_region(0))\n";
  const auto guard = run({python, "-c", script}, {lib_path, gi_path}, nullptr, /*stdout_only=*/true);
  ASSERT_EQ(guard.status, 0) << guard.output;
  EXPECT_EQ(guard.output, "refused n_regions\nrefused map_width\nrefused score\nmap 0 regions 0 region None\n");
}

// Image decisions at the model's own threshold and at the best-F1 threshold: the JSON's
// operating point agrees with the per-image decisions of --scores, and both with the
// model's calibrated threshold.
TEST_F(Cli, EvalReportsTheOperatingPointAndPerImageScores) {
  const auto model = out_.file("m.pt");
  ASSERT_EQ(run(tiny_train(dir_->file("good"), model, 2)).status, 0);
  const auto json = out_.file("report.json"), csv = out_.file("scores.csv"), jsonl = out_.file("scores.jsonl");
  auto r = run({eval_bin(), "--model", model, "--data", dir_->file("cat"), "--device", "cpu", "--json", json,
                "--scores", csv});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("at the model's threshold: false alarms"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("at the best-F1 threshold"), std::string::npos) << r.output;
  const auto report = parse_json(pefm_test::slurp(json));
  const auto& op = report.at("operating_point");
  for (const char* key : {"threshold", "false_alarm_rate", "miss_rate", "precision", "recall", "f1",
                          "stated_false_alarm_rate", "calibration_method"})
    EXPECT_TRUE(op.contains(key)) << key << " missing in " << op;
  EXPECT_DOUBLE_EQ(op.at("threshold").get<double>(), 0.5);  // the calibrated threshold, normalised
  EXPECT_EQ(op.at("good_images"), 3);
  EXPECT_EQ(op.at("defective_images"), 3);
  EXPECT_TRUE(report.at("best_f1").at("f1").is_number()) << report;

  // The CSV: a header and one row per image; its decisions give the same counts.
  std::istringstream rows(pefm_test::slurp(csv));
  std::string line;
  ASSERT_TRUE(std::getline(rows, line));
  EXPECT_EQ(line, "file,type,score,raw_score,decision,regions");
  int false_alarms = 0, misses = 0, n = 0;
  for (; std::getline(rows, line); ++n) {
    std::vector<std::string> f;
    std::istringstream cells(line);
    for (std::string c; std::getline(cells, c, ',');) f.push_back(c);
    ASSERT_EQ(f.size(), 6u) << line;
    EXPECT_EQ(f[4] == "anomalous", std::stod(f[2]) >= 0.5) << line;
    false_alarms += f[1] == "good" && f[4] == "anomalous";
    misses += f[1] != "good" && f[4] == "normal";
  }
  EXPECT_EQ(n, 6);
  EXPECT_EQ(op.at("false_alarms"), false_alarms);
  EXPECT_EQ(op.at("misses"), misses);
  EXPECT_DOUBLE_EQ(op.at("false_alarm_rate").get<double>(), false_alarms / 3.0);

  // Any other name: JSON lines with the same fields.
  r = run({eval_bin(), "--model", model, "--data", dir_->file("cat"), "--device", "cpu", "--scores", jsonl});
  ASSERT_EQ(r.status, 0) << r.output;
  std::istringstream jl(pefm_test::slurp(jsonl));
  int lines = 0;
  for (; std::getline(jl, line); ++lines) {
    const auto j = parse_json(line);
    for (const char* key : {"file", "type", "score", "raw_score", "decision", "regions"})
      EXPECT_TRUE(j.contains(key)) << line;
  }
  EXPECT_EQ(lines, 6);
  // A file that is not a scores file is not overwritten.
  r = run({eval_bin(), "--model", model, "--data", dir_->file("cat"), "--device", "cpu", "--scores", model});
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("--scores"), std::string::npos) << r.output;
}

// pefm-eval measures what pefmfilter does with a model: for a tiled model (tiles cut,
// blended across their overlap and normalised as the element does), the heat map it
// writes for each test image is the map the element attaches to that image's frame, bit
// for bit, with the same score, decision and number of regions.
TEST_F(Cli, EvalOfATiledModelGivesTheElementsMaps) {
#ifndef PEFM_TEST_WITH_ELEMENT
  GTEST_SKIP() << "built without the element";
#else
  if (!std::getenv("GST_PLUGIN_PATH_1_0")) GTEST_SKIP() << "the pefm plugin was not built";
  const auto model = out_.file("tiles.pt");
  auto args = tiny_train(dir_->file("good"), model, 1);
  args.insert(args.end(), {"--tile", "32"});
  ASSERT_EQ(run(args).status, 0);
  const auto maps = out_.file("heat"), scores = out_.file("scores.jsonl");
  const auto r = run({eval_bin(), "--model", model, "--data", dir_->file("cat"), "--device", "cpu", "--tile-overlap",
                      "8", "--region-threshold", "0.3", "--heat-maps", maps, "--scores", scores});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("tiles of 32 px overlapping by 8"), std::string::npos) << r.output;
  gst_init(nullptr, nullptr);
  std::istringstream lines(pefm_test::slurp(scores));
  int images = 0, anomalous = 0, with_regions = 0;
  for (std::string line; std::getline(lines, line); ++images) {
    const auto e = parse_json(line);
    const auto file = e.at("file").get<std::string>();
    // pefm-eval's map: a .npy of float32 [h, w] with a 128-byte header (short shapes)
    const auto npy = pefm_test::slurp(maps + "/" + e.at("type").get<std::string>() + "_" +
                                      fs::path(file).stem().string() + ".npy");
    ASSERT_EQ(npy.compare(0, 6, "\x93NUMPY"), 0) << file;
    const auto header_end = npy.find('\n') + 1;
    // the header's text only: the magic's bytes would make the JUnit XML invalid
    const auto header = npy.substr(10, header_end - 10);
    ASSERT_EQ(header_end % 64, 0u) << header;
    EXPECT_NE(npy.find("'descr': '<f4'"), std::string::npos);
    EXPECT_NE(header.find("'shape': (120, 152)"), std::string::npos) << header;  // 60x76 at 64/32
    ASSERT_EQ(npy.size() - header_end, 120u * 152u * 4u) << file;

    GError* error = nullptr;
    GstElement* pipeline = gst_parse_launch(
        ("filesrc location=\"" + file + "\" ! pngdec ! videoconvert ! video/x-raw,format=RGB ! pefmfilter device=cpu "
         "tile-overlap=8 region-threshold=0.3 model=\"" + model + "\" ! appsink name=sink").c_str(),
        &error);
    ASSERT_NE(pipeline, nullptr) << (error ? error->message : "");
    GstElement* sink = gst_bin_get_by_name(GST_BIN(pipeline), "sink");
    gst_element_set_state(pipeline, GST_STATE_PLAYING);
    GstSample* sample = gst_app_sink_try_pull_sample(GST_APP_SINK(sink), 60 * GST_SECOND);
    const GstPefmMeta* m = sample ? gst_buffer_get_pefm_meta(gst_sample_get_buffer(sample)) : nullptr;
    EXPECT_NE(m, nullptr) << file;
    if (m) {
      EXPECT_EQ(m->map_width, 152u);
      EXPECT_EQ(m->map_height, 120u);
      if (m->map_width == 152u && m->map_height == 120u) {
        EXPECT_EQ(std::memcmp(m->map, npy.data() + header_end, 120u * 152u * 4u), 0)
            << file << ": pefm-eval's map is not the element's";
      }
      EXPECT_FLOAT_EQ(m->score, e.at("score").get<float>()) << file;
      EXPECT_EQ(m->anomalous ? "anomalous" : "normal", e.at("decision").get<std::string>()) << file;
      EXPECT_EQ(static_cast<int64_t>(m->n_regions), e.at("regions").get<int64_t>()) << file;
      anomalous += m->anomalous;
      with_regions += m->n_regions > 0;
    }
    if (sample) gst_sample_unref(sample);
    gst_element_set_state(pipeline, GST_STATE_NULL);
    gst_object_unref(sink);
    gst_object_unref(pipeline);
  }
  EXPECT_EQ(images, 6);
  // Both decisions and both region counts occur, so the comparison saw each case.
  EXPECT_GT(anomalous, 0);
  EXPECT_LT(anomalous, images);
  EXPECT_GT(with_regions, 0);

  // Tilings the element refuses are refused before any work, naming the option.
  auto bad = run({eval_bin(), "--model", model, "--data", dir_->file("cat"), "--tile-size", "8"});
  EXPECT_EQ(bad.status, 2) << bad.output;
  EXPECT_NE(bad.output.find("--tile-size 8 is below the minimum of 32 pixels"), std::string::npos) << bad.output;
  bad = run({eval_bin(), "--model", model, "--data", dir_->file("cat"), "--tile-overlap", "20"});
  EXPECT_EQ(bad.status, 2) << bad.output;
  EXPECT_NE(bad.output.find("--tile-overlap 20 must be at most half the tile size 32"), std::string::npos) << bad.output;
  // Images of another size give tiled maps of another size: resized for the metrics alone,
  // and said.
  const auto mixed = out_.file("mixed");
  fs::copy(dir_->file("cat"), mixed, fs::copy_options::recursive);
  write_image(mixed + "/test/good/009.png", pefm_test::texture_image(64, 96, 9));
  const auto json = out_.file("mixed.json");
  const auto m = run({eval_bin(), "--model", model, "--data", mixed, "--device", "cpu", "--json", json});
  ASSERT_EQ(m.status, 0) << m.output;
  EXPECT_NE(m.output.find("009.png' gives a 192x128 heat map"), std::string::npos) << m.output;
  const auto report = parse_json(pefm_test::slurp(json));
  EXPECT_TRUE(report.at("maps_resized_for_metrics").get<bool>()) << report;
  EXPECT_EQ(report.at("map_size"), nlohmann::json::array({152, 120})) << report;
  EXPECT_EQ(report.at("tile_size"), 32) << report;
  EXPECT_EQ(report.at("images"), 7) << report;
#endif
}

// The region threshold: set by pefm-train from normal pixel scores at the asked rate,
// stated, and measured by pefm-eval at any region-threshold (pixel false alarms, overlap,
// good images holding a region), as the element would cut the regions.
TEST_F(Cli, RegionThresholdIsSetFromNormalPixelsAndEvalMeasuresIt) {
  const auto model = out_.file("m.pt");
  auto args = tiny_train(dir_->file("good"), model, 1);
  args.insert(args.end(), {"--pixel-false-alarm-rate", "0.01"});
  auto r = run(args);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("regions      threshold"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("(asked: 1 %)"), std::string::npos) << r.output;
  const auto cal = pefm::load_model(model).calibration;
  EXPECT_DOUBLE_EQ(cal.region_rate_target, 0.01);
  EXPECT_GT(cal.region_threshold, cal.base);
  EXPECT_NE(cal.region_threshold, cal.threshold);
  EXPECT_GT(cal.region_pixels, 0);
  EXPECT_LE(cal.region_rate, 0.01 + 1.0 / static_cast<double>(cal.region_pixels));
  EXPECT_GE(cal.region_image_rate, 0.0);

  const auto json = out_.file("report.json");
  const auto eval_at = [&](const char* setting) {
    return run({eval_bin(), "--model", model, "--data", dir_->file("cat"), "--device", "cpu", "--json", json,
                "--region-threshold", setting});
  };
  r = eval_at("0.5");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("regions at region-threshold 0.5"), std::string::npos) << r.output;
  const auto at_half = parse_json(pefm_test::slurp(json)).at("region_operating_point");
  for (const char* key : {"good_images_with_regions", "good_pixel_rate", "pixel_false_alarm_rate", "pixel_recall",
                          "region_overlap",
                          "defects_touched", "asked_pixel_false_alarm_rate", "calibration_pixel_rate"})
    EXPECT_TRUE(at_half.at(key).is_number()) << key << " in " << at_half;
  EXPECT_DOUBLE_EQ(at_half.at("raw_threshold").get<double>(), cal.region_threshold);
  EXPECT_DOUBLE_EQ(at_half.at("asked_pixel_false_alarm_rate").get<double>(), 0.01);
  // Region-threshold 0 cuts at the median normal pixel: every good image holds a region.
  r = eval_at("0");
  ASSERT_EQ(r.status, 0) << r.output;
  const auto at_zero = parse_json(pefm_test::slurp(json)).at("region_operating_point");
  EXPECT_GT(at_zero.at("raw_threshold").get<double>(), cal.base);  // just above it
  EXPECT_NEAR(at_zero.at("raw_threshold").get<double>(), cal.base, 1e-5 * (cal.threshold - cal.base));
  EXPECT_DOUBLE_EQ(at_zero.at("good_images_with_regions").get<double>(), 1.0);
  EXPECT_GT(at_zero.at("pixel_false_alarm_rate").get<double>(), at_half.at("pixel_false_alarm_rate").get<double>());
  EXPECT_GE(at_zero.at("pixel_recall").get<double>(), at_half.at("pixel_recall").get<double>());
  // Values outside the scale are refused by name.
  r = eval_at("1.5");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("--region-threshold"), std::string::npos) << r.output;
  args.back() = "0.9";
  r = run(args);
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("--pixel-false-alarm-rate"), std::string::npos) << r.output;
}

// A test set without ground_truth/: image metrics and decisions, pixel metrics absent.
TEST_F(Cli, EvalWithoutMasksReportsImageMetricsAndPixelMetricsAsAbsent) {
  const auto model = out_.file("m.pt");
  ASSERT_EQ(run(tiny_train(dir_->file("good"), model, 1)).status, 0);
  const auto data = out_.file("no-masks");
  fs::create_directories(data);
  fs::copy(dir_->file("cat") + "/test", data + "/test", fs::copy_options::recursive);
  const auto json = out_.file("report.json");
  const auto r = run({eval_bin(), "--model", model, "--data", data, "--device", "cpu", "--json", json});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("image metrics only"), std::string::npos) << r.output;
  const auto report = parse_json(pefm_test::slurp(json));
  EXPECT_TRUE(report.at("image_auroc").is_number()) << report;
  EXPECT_TRUE(report.at("pixel_auroc").is_null()) << report;
  EXPECT_TRUE(report.at("aupro").is_null()) << report;
  EXPECT_EQ(report.at("pixel_metrics").get<std::string>().rfind("absent", 0), 0u) << report;
  EXPECT_TRUE(report.at("operating_point").is_object()) << report;
  const auto& regions = report.at("region_operating_point");
  EXPECT_TRUE(regions.at("good_images_with_regions").is_number()) << report;
  EXPECT_TRUE(regions.at("pixel_false_alarm_rate").is_null()) << report;
  EXPECT_TRUE(regions.at("region_overlap").is_null()) << report;
}

// Chromium (Debian's `chromium`) for rendering checks, or empty: PEFM_CHROMIUM, else PATH.
std::string find_chromium() {
  if (const char* c = std::getenv("PEFM_CHROMIUM"); c && *c) return c;
  for (const char* dir : {"/usr/bin", "/usr/local/bin"}) {
    for (const char* name : {"chromium", "chromium-browser"}) {
      const auto p = std::string(dir) + "/" + name;
      if (::access(p.c_str(), X_OK) == 0) return p;
    }
  }
  return "";
}

size_t count_of(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// --report writes one page that needs nothing else: charts as inline SVG, pictures as
// data: URIs, no script, no address; file names from the test set escaped; it renders in
// a real browser (headless Chromium) with the charts drawn.
TEST_F(Cli, EvalReportIsOneSelfContainedPageThatRendersInABrowser) {
  const auto model = out_.file("m.pt");
  ASSERT_EQ(run(tiny_train(dir_->file("good"), model, 2)).status, 0);
  const auto data = out_.file("report-cat");
  fs::copy(dir_->file("cat"), data, fs::copy_options::recursive);
  // A stranger's file name: markup and quotes must stay text.
  fs::copy_file(data + "/test/good/000.png", data + "/test/good/<b>x&'\"y.png");
  const auto page = out_.file("page.html"), json = out_.file("page.json");
  auto r = run({eval_bin(), "--model", model, "--data", data, "--device", "cpu", "--report", page, "--json", json});
  ASSERT_EQ(r.status, 0) << r.output;
  // Up to 4 misses (else the 4 lowest-scoring defective images) and up to 4 false alarms
  // (else the 4 highest-scoring good ones): 3 defective and 4 good images here.
  const auto op = parse_json(pefm_test::slurp(json)).at("operating_point");
  const auto misses = op.at("misses").get<size_t>(), alarms = op.at("false_alarms").get<size_t>();
  const size_t pictures = (misses > 0 ? std::min<size_t>(misses, 4) : 3) + (alarms > 0 ? std::min<size_t>(alarms, 4) : 4);
  const auto html = pefm_test::slurp(page);
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_EQ(count_of(html, "<svg"), 3u) << "ROC, PRO and histogram";
  EXPECT_NE(html.find("<td>patch</td>"), std::string::npos);
  EXPECT_NE(html.find("<td>overall</td>"), std::string::npos);
  EXPECT_NE(html.find("<td>the model's own</td>"), std::string::npos) << "decisions at the model's threshold";
  EXPECT_EQ(count_of(html, "src='data:image/png;base64,"), pictures) << op;
  EXPECT_EQ(count_of(html, "src="), pictures) << "nothing but embedded pictures is loaded";
  for (const char* outside : {"http:", "https:", "<script", "<link", "url(http", "file:"}) {
    EXPECT_EQ(html.find(outside), std::string::npos) << outside;
  }
  EXPECT_NE(html.find("&lt;b&gt;x&amp;&#39;&quot;y.png"), std::string::npos);
  EXPECT_EQ(html.find("<b>x"), std::string::npos);
  // A second run replaces its own page; a page option naming another kind of file is refused.
  r = run({eval_bin(), "--model", model, "--data", data, "--device", "cpu", "--report", page});
  EXPECT_EQ(r.status, 0) << r.output;
  r = run({eval_bin(), "--model", model, "--data", data, "--device", "cpu", "--report", model});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("--report"), std::string::npos) << r.output;

  // Without masks: no PRO chart, said on the page.
  const auto no_masks = out_.file("report-no-masks");
  fs::create_directories(no_masks);
  fs::copy(data + "/test", no_masks + "/test", fs::copy_options::recursive);
  const auto page2 = out_.file("page2.html");
  r = run({eval_bin(), "--model", model, "--data", no_masks, "--device", "cpu", "--report", page2});
  ASSERT_EQ(r.status, 0) << r.output;
  const auto html2 = pefm_test::slurp(page2);
  EXPECT_EQ(count_of(html2, "<svg"), 2u);
  EXPECT_NE(html2.find("No ground-truth masks"), std::string::npos);

  const auto chromium = find_chromium();
  if (chromium.empty()) GTEST_SKIP() << "no chromium (apt-get install chromium, or set PEFM_CHROMIUM): not rendered";
  const auto shot = out_.file("shot.png");
  r = run({chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           "--user-data-dir=" + out_.file("chromium-profile"), "--window-size=1200,1400", "--screenshot=" + shot,
           "file://" + page});
  ASSERT_TRUE(fs::exists(shot)) << r.output;
  const auto img = pefm::io::read_image(shot);
  EXPECT_EQ(img.width, 1200);
  EXPECT_EQ(img.height, 1400);
  // The ROC curve's blue (#1565c0) and the histogram's green bars must be drawn.
  size_t blue = 0, green = 0;
  for (size_t p = 0; p + 2 < img.pixels.size(); p += 3) {
    const int cr = img.pixels[p], cg = img.pixels[p + 1], cb = img.pixels[p + 2];
    blue += cr < 60 && cg > 80 && cg < 130 && cb > 160;
    green += cg > cr + 40 && cg > cb + 40;
  }
  EXPECT_GT(blue, 200u) << "ROC curve not drawn";
  EXPECT_GT(green, 200u) << "histogram not drawn";
}

// The default threshold: cross-fitted scores (each image scored by a model of the folds
// that did not train on it) and their conformal quantile for --false-alarm-rate; too few
// images for the rate asked are said, with the rate they support.
TEST_F(Cli, CrossFittedThresholdStatesItsFalseAlarmRate) {
  const auto with_folds = [&](const std::string& out, const std::string& rate) {
    auto args = tiny_train(dir_->file("good"), out, 1);
    const auto folds = std::find(args.begin(), args.end(), "--folds");
    *(folds + 1) = "3";
    args.erase(std::find(args.begin(), args.end(), "--val-fraction"), std::find(args.begin(), args.end(), "--val-fraction") + 2);
    args.insert(args.end(), {"--false-alarm-rate", rate});
    return args;
  };
  const auto model = out_.file("m.pt");
  auto first = with_folds(model, "0.25");
  first.insert(first.end(), {"--pixel-false-alarm-rate", "0.02", "--train-scores", out_.file("train.csv")});
  auto r = run(first);
  ASSERT_EQ(r.status, 0) << r.output;
  for (const char* says : {"fold 1/3: trained on", "fold 3/3: trained on", "3 cross-fitting folds",
                           "exceeds it with probability <= 18.18 %"})
    EXPECT_NE(r.output.find(says), std::string::npos) << says << "\n" << r.output;
  EXPECT_EQ(r.output.find("too few images"), std::string::npos) << r.output;
  const auto cal = pefm::load_model(model).calibration;
  EXPECT_EQ(cal.method, "conformal");
  EXPECT_EQ(cal.images, 10);  // every image, none held out
  EXPECT_EQ(cal.folds, 3);
  EXPECT_DOUBLE_EQ(cal.false_alarm_target, 0.25);
  EXPECT_NEAR(cal.false_alarm_bound, 2.0 / 11, 1e-9);  // rank ceil(11 * 0.75) = 9 of 10
  EXPECT_NEAR(cal.val_false_positive_rate, 0.1, 1e-9);  // one cross-fitted score above the 9th
  EXPECT_DOUBLE_EQ(cal.false_alarm_upper95, pefm::clopper_pearson_upper(1, 10));  // n - k = 1
  EXPECT_NE(r.output.find("with 95 % probability over these calibration images the rate is <="), std::string::npos)
      << r.output;
  EXPECT_EQ(pefm::load_model(model).training.at("folds"), "3");
  // The region threshold comes from the pixel rate, not from the image rate.
  EXPECT_DOUBLE_EQ(cal.region_rate_target, 0.02);
  EXPECT_LE(cal.region_rate, 0.02 + 1.0 / static_cast<double>(cal.region_pixels));
  // The audit: every image once, with the fold that held it out; one of the ten lies above
  // the threshold, as the stated rank says.
  std::istringstream csv(pefm_test::slurp(out_.file("train.csv")));
  std::string line;
  std::getline(csv, line);
  EXPECT_EQ(line, "file,group,fold,score,normalised,rank,scored_by");
  std::set<std::string> files;
  std::map<int, int> per_fold;
  int above = 0, rank = 0;
  double last = INFINITY;
  while (std::getline(csv, line)) {
    std::vector<std::string> f;
    std::stringstream fields(line);
    for (std::string v; std::getline(fields, v, ',');) f.push_back(v);
    ASSERT_EQ(f.size(), 7u) << line;
    files.insert(f[0]);
    EXPECT_EQ(f[1], "") << line;  // no --groups
    ++per_fold[std::stoi(f[2])];
    const double score = std::stod(f[3]);
    EXPECT_LE(score, last) << line;  // most anomalous first
    last = score;
    EXPECT_EQ(std::stoi(f[5]), ++rank) << line;
    EXPECT_EQ(f[6], "out-of-fold") << line;
    above += score > cal.threshold;
  }
  EXPECT_EQ(files.size(), 10u);
  EXPECT_EQ(per_fold.size(), 3u);
  EXPECT_EQ(above, 1);
  EXPECT_NE(r.output.find("check these are really good parts"), std::string::npos) << r.output;
  const auto record = parse_json(pefm::load_model(model).training.at("train_audit"));
  EXPECT_EQ(record.at("scored_by"), "out-of-fold");
  EXPECT_EQ(record.at("images").get<int>(), 10);
  EXPECT_EQ(record.at("top").size(), 5u);

  // 10 images cannot support 1 %: said, with what they support (1/11) and what is needed.
  r = run(with_folds(out_.file("few.pt"), "0.01"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("too few images for 1.00 %: 10 images support 9.09 % at best"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("99 are needed"), std::string::npos) << r.output;
  EXPECT_NEAR(pefm::load_model(out_.file("few.pt")).calibration.false_alarm_bound, 1.0 / 11, 1e-9);

  // More folds than images is refused before any training.
  auto many = with_folds(out_.file("x.pt"), "0.1");
  *(std::find(many.begin(), many.end(), "--folds") + 1) = "11";
  r = run(many);
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("--folds 11 needs at least 11 source images; the --data folders hold 10"), std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find("epoch 1/"), std::string::npos) << r.output;

  // A hold-out and cross-fitting are exclusive; one fold cannot cross-fit.
  auto both = with_folds(out_.file("x.pt"), "0.1");
  both.insert(both.end(), {"--val-fraction", "0.2"});
  r = run(both);
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("--val-fraction applies with --folds 0 only"), std::string::npos) << r.output;
  auto one = with_folds(out_.file("x.pt"), "0.1");
  *(std::find(one.begin(), one.end(), "--folds") + 1) = "1";
  r = run(one);
  EXPECT_EQ(r.status, 2) << r.output;
}

// --groups: images of one part (several captures) never straddle a split, and the stated
// rate counts parts. Seven, two and one images: with 3 folds, each fold scores a whole part.
TEST_F(Cli, GroupsKeepAPartOnOneSideOfEverySplit) {
  const auto write_groups = [&](const std::string& name, const std::string& extra, int last) {
    std::ofstream f(out_.file(name));
    // As a spreadsheet writes it: a byte order mark, CRLF, spaces around the fields.
    f << "\xEF\xBB\xBF# captures of three parts\r\nfile , group\r\n" << extra;
    for (int i = 0; i <= last; ++i) {
      // Relative to the groups file's folder (7 of them), or absolute.
      const auto image = dir_->file("good/" + std::to_string(100 + i) + ".png");
      f << (i < 7 ? fs::relative(image, out_.path()).string() + " , " : image + ",") << (i < 7 ? "A" : i < 9 ? "B" : "C")
        << "\r\n";
    }
    f << dir_->file("cat/test/good/000.png") << ",D\n";  // not a training image: ignored
    return out_.file(name);
  };
  const auto groups = write_groups("groups.csv", "", 9);
  auto args = tiny_train(dir_->file("good"), out_.file("m.pt"), 1);
  *(std::find(args.begin(), args.end(), "--folds") + 1) = "3";
  args.erase(std::find(args.begin(), args.end(), "--val-fraction"), std::find(args.begin(), args.end(), "--val-fraction") + 2);
  args.insert(args.end(), {"--false-alarm-rate", "0.26", "--groups", groups});
  auto r = run(args);
  ASSERT_EQ(r.status, 0) << r.output;
  for (const char* says : {"groups: 10 images in 3 groups (1 entries name no training image: ignored)",
                           "trained on 3, scored 7", "trained on 8, scored 2", "trained on 9, scored 1",
                           "a new normal image of a new group exceeds it", "10 images in 3 groups, each scored",
                           "did not train on its group", "over these calibration groups"})
    EXPECT_NE(r.output.find(says), std::string::npos) << says << "\n" << r.output;
  const auto model = pefm::load_model(out_.file("m.pt"));
  EXPECT_EQ(model.calibration.groups, 3);
  EXPECT_EQ(model.calibration.images, 10);
  // (0 + 1) / (3 + 1) <= 0.26: the largest score (any image below it would add at least
  // 1/7 of a group: 0.29).
  EXPECT_NEAR(model.calibration.false_alarm_bound, 0.25, 1e-9);
  EXPECT_EQ(model.training.at("groups").rfind("10 images in 3 groups, ", 0), 0u) << model.training.at("groups");
  EXPECT_EQ(model.training.at("groups_file"), groups);
  // pefm-eval says what the stated rate counts.
  const auto json = out_.file("eval.json");
  r = run({eval_bin(), "--model", out_.file("m.pt"), "--data", dir_->file("cat"), "--device", "cpu", "--json", json});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("with 95 % confidence over its calibration groups"), std::string::npos) << r.output;
  EXPECT_EQ(parse_json(pefm_test::slurp(json)).at("operating_point").at("calibration_groups"), 3);

  // A hold-out takes whole parts too: 7, 2 or 1 images, never round(0.34 * 10) = 3.
  auto hold = tiny_train(dir_->file("good"), out_.file("h.pt"), 1);
  *(std::find(hold.begin(), hold.end(), "--val-fraction") + 1) = "0.34";
  hold.insert(hold.end(), {"--groups", groups});
  r = run(hold);
  ASSERT_EQ(r.status, 0) << r.output;
  const auto held = std::stoi(pefm::load_model(out_.file("h.pt")).training.at("val_images"));
  EXPECT_TRUE(held == 7 || held == 2 || held == 1) << held;

  // --pe auto's probe images are whole groups too: of 3 groups, one (never images of two).
  auto probe = tiny_train(dir_->file("good"), out_.file("p.pt"), 3);
  *(std::find(probe.begin(), probe.end(), "--val-fraction") + 1) = "0";
  probe.insert(probe.end(), {"--groups", groups, "--pe", "auto"});
  r = run(probe);
  ASSERT_EQ(r.status, 0) << r.output;
  const auto evidence = parse_json(pefm::load_model(out_.file("p.pt")).training.at("pe_auto_evidence"));
  EXPECT_EQ(evidence.at("probe_units").get<int>(), 1) << evidence;
  std::set<std::string> probed;
  for (const auto& p : evidence.at("probes")) probed.insert(fs::path(p.at("file").get<std::string>()).filename());
  const std::set<std::string> a = {"100.png", "101.png", "102.png", "103.png", "104.png", "105.png", "106.png"},
                              b = {"107.png", "108.png"}, c = {"109.png"};
  EXPECT_TRUE(probed == a || probed == b || probed == c) << evidence.at("probes");

  // An image without a group, a malformed line, an image in two groups: refused, named.
  const auto refused = [&](const std::string& file, const std::string& says) {
    auto a = args;
    *(std::find(a.begin(), a.end(), "--groups") + 1) = file;
    const auto e = run(a);
    EXPECT_EQ(e.status, 2) << e.output;
    EXPECT_NE(e.output.find(says), std::string::npos) << says << "\n" << e.output;
    EXPECT_EQ(e.output.find("epoch 1/"), std::string::npos) << e.output;
  };
  refused(write_groups("missing.csv", "", 8), "gives no group for 1 of the 10 training images, e.g. '");
  refused(write_groups("missing.csv", "", 8), "109.png");
  refused(write_groups("bad.csv", "no comma here\n", 9), "bad.csv' line 3: expected IMAGE,GROUP");
  refused(write_groups("twice.csv", dir_->file("good/109.png") + ",A\n", 9), "109.png' is already in group 'A'");
  refused(out_.file("absent.csv"), "cannot open --groups file '" + out_.file("absent.csv") + "'");
  // Files that are not a groups file: a folder, a FIFO (no writer: reading would block
  // forever), an endless device, a NUL inside a line, a line beyond the bound.
  refused(out_.path(), "--groups file '" + out_.path() + "' is a folder");
  const auto fifo = out_.file("fifo.csv");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  refused(fifo, "--groups file '" + fifo + "' is not a regular file");
  refused("/dev/zero", "--groups file '/dev/zero' is not a regular file");
  {
    std::ofstream f(out_.file("nul.csv"));
    f << dir_->file("good/100.png") << ",A\n" << dir_->file("good/101.png") << std::string("\0,B\n", 4);
  }
  refused(out_.file("nul.csv"), "nul.csv' line 2: holds a NUL byte");
  pefm_test::spit(out_.file("long.csv"), std::string(9000, 'x') + ",A\n");
  refused(out_.file("long.csv"), "long.csv' line 1: longer than 8192 bytes");
}

// The training-set audit on real images: a defective part (MVTec AD transistor, misplaced:
// the transistor missing) slipped into a folder of good ones comes first, scored by a fold model that never saw it, and
// that out-of-fold score is above what the shipped model, which trained on it, gives it.
TEST_F(Cli, TrainingAuditPutsADefectivePartInTheGoodFolderFirst) {
  PEFM_SHARED_OR_SKIP(source, "models/mobilenet_v2_torchvision_imagenet.pth");
  PEFM_SHARED_OR_SKIP(target, "models/mobilenet_v2_tfslim_imagenet.pth");
  PEFM_SHARED_OR_SKIP(defect, "datasets/mvtec-transistor/test/misplaced/003.png");
  PEFM_SHARED_OR_SKIP(mask, "datasets/mvtec-transistor/ground_truth/misplaced/003_mask.png");
  PEFM_SHARED_OR_SKIP(good, "datasets/mvtec-transistor/train/good");
  const auto data = out_.file("good");
  fs::create_directories(data);
  std::vector<fs::path> goods;
  for (const auto& e : fs::directory_iterator(good)) goods.push_back(e.path());
  std::sort(goods.begin(), goods.end());
  ASSERT_GE(goods.size(), 15u);
  for (size_t i = 0; i < 15; ++i) fs::copy_file(goods[i], data + "/" + goods[i].filename().string());
  const auto slipped = data + "/" + goods[7].stem().string() + "b.png";  // named like a good one
  fs::copy_file(defect, slipped);

  const auto model = out_.file("m.pt"), scores = out_.file("train.jsonl");
  auto r = run({train_bin(), "--data", data, "--output", model, "--source", "mobilenet_v2=" + source,
                "--target", "mobilenet_v2=" + target, "--image-size", "128", "--latent", "32,64,128",
                "--epochs", "60", "--batch-size", "8", "--device", "cpu", "--folds", "4", "--train-scores", scores});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("1. " + slipped), std::string::npos) << r.output;
  std::istringstream lines(pefm_test::slurp(scores));
  std::string line;
  std::vector<nlohmann::json> rows;
  while (std::getline(lines, line)) rows.push_back(parse_json(line));
  ASSERT_EQ(rows.size(), 16u);
  EXPECT_EQ(rows[0].at("file"), slipped) << rows[0] << "\n" << r.output;
  EXPECT_EQ(rows[0].at("rank"), 1);
  EXPECT_EQ(rows[0].at("scored_by"), "out-of-fold");
  EXPECT_TRUE(rows[0].at("group").is_null());
  const int fold = rows[0].at("fold").get<int>();
  EXPECT_TRUE(fold >= 1 && fold <= 4) << rows[0];
  EXPECT_EQ(parse_json(pefm::load_model(model).training.at("train_audit")).at("top")[0].at("file"), slipped);

  // The shipped model's score of the same image, through pefm-eval.
  const auto cat = out_.file("cat");
  for (const char* d : {"/test/good", "/test/misplaced", "/ground_truth/misplaced"}) fs::create_directories(cat + d);
  fs::copy_file(goods[20], cat + "/test/good/000.png");
  fs::copy_file(defect, cat + "/test/misplaced/000.png");
  fs::copy_file(mask, cat + "/ground_truth/misplaced/000_mask.png");
  const auto eval_scores = out_.file("eval.jsonl");
  r = run({eval_bin(), "--model", model, "--data", cat, "--device", "cpu", "--scores", eval_scores});
  ASSERT_EQ(r.status, 0) << r.output;
  std::istringstream evals(pefm_test::slurp(eval_scores));
  double shipped = NAN;
  while (std::getline(evals, line)) {
    const auto e = parse_json(line);
    if (e.at("type") == "misplaced") shipped = e.at("raw_score").get<double>();
  }
  ASSERT_TRUE(std::isfinite(shipped)) << pefm_test::slurp(eval_scores);
  EXPECT_GT(rows[0].at("score").get<double>(), shipped) << "the fold model never saw it; the shipped model trained on it";
}

// --resize bilinear and --fusion product: recorded in the model, and pefm-eval scores each
// image as a detector of that model does (the same raw score), so neither is lost between
// training and evaluation.
TEST_F(Cli, BilinearResizeAndProductFusionAreTrainedRecordedAndEvaluated) {
  const auto model = out_.file("m.pt");
  auto args = tiny_train(dir_->file("good"), model, 1);
  args.insert(args.end(), {"--resize", "bilinear", "--fusion", "product"});
  auto r = run(args);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("bilinear resize"), std::string::npos) << r.output;
  auto m = std::make_shared<pefm::Model>(pefm::load_model(model));
  EXPECT_EQ(m->config.resize, pefm::Resize::kBilinear);
  EXPECT_EQ(m->config.fusion, pefm::Fusion::kProduct);
  const auto scores = out_.file("scores.jsonl");
  r = run({eval_bin(), "--model", model, "--data", dir_->file("cat"), "--device", "cpu", "--scores", scores});
  ASSERT_EQ(r.status, 0) << r.output;
  pefm::Detector det(m, {"cpu"});
  std::istringstream lines(pefm_test::slurp(scores));
  int checked = 0;
  for (std::string line; std::getline(lines, line);) {
    const auto e = parse_json(line);
    const auto img = pefm::io::read_image(e.at("file").get<std::string>());
    const auto t = torch::from_blob(const_cast<uint8_t*>(img.pixels.data()), {1, img.height, img.width, img.channels},
                                    torch::kUInt8);
    const double want = det.detect(t).scores[0].item<double>();
    EXPECT_NEAR(e.at("raw_score").get<double>(), want, 1e-5 * std::max(1.0, std::abs(want))) << line;
    ++checked;
  }
  EXPECT_EQ(checked, 6);
  // Another filter or fusion than the model's gives other scores: the check above can fail.
  auto lanczos = std::make_shared<pefm::Model>(pefm::load_model(model));
  lanczos->config.resize = pefm::Resize::kLanczos;
  const auto img = pefm::io::read_image(dir_->file("cat/test/patch/000.png"));
  const auto t = torch::from_blob(const_cast<uint8_t*>(img.pixels.data()), {1, img.height, img.width, img.channels},
                                  torch::kUInt8);
  EXPECT_NE(pefm::Detector(lanczos, {"cpu"}).detect(t).scores[0].item<double>(), det.detect(t).scores[0].item<double>());
}

// An interrupted --pe auto run resumes with the choice and the evidence it made before the
// interruption: the search is not run again, and the model says where the choice came from.
TEST_F(Cli, AResumedPeAutoRunKeepsItsChoiceAndEvidence) {
  const auto model = out_.file("m.pt");
  const auto ckpt = model + ".ckpt";
  const auto with_auto = [&](int epochs) {
    auto a = tiny_train(dir_->file("good"), model, epochs);
    a.insert(a.end(), {"--pe", "auto"});
    return a;
  };
  int64_t stopped_at = -1;
  const int epochs = interrupted_run(with_auto, ckpt, &stopped_at);
  ASSERT_GT(epochs, 0);
  auto args = with_auto(epochs);
  const auto before = pefm::load_checkpoint(ckpt).model.training;
  ASSERT_FALSE(before.at("pe_auto").empty());
  args.push_back("--resume");
  const auto resumed = run(args);
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  EXPECT_EQ(resumed.output.find("pe auto: add, none and concat each trained"), std::string::npos)
      << "the search ran again:\n" << resumed.output;
  EXPECT_NE(resumed.output.find("(auto, from the checkpoint)"), std::string::npos) << resumed.output;
  const auto m = pefm::load_model(model);
  EXPECT_EQ(m.training.at("pe_auto"), before.at("pe_auto"));
  EXPECT_EQ(m.training.at("pe_auto_evidence"), before.at("pe_auto_evidence"));
  EXPECT_EQ(pefm::to_string(m.config.pe), before.at("pe_auto"));
}

TEST_F(Cli, ResumeWithoutCheckpointOrWithOtherSettingsFails) {
  auto args = tiny_train(dir_->file("good"), out_.file("m.pt"), 2);
  args.push_back("--resume");
  const auto r = run(args);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.output.find("no checkpoint"), std::string::npos) << r.output;
}

TEST_F(Cli, EvalReportsMetricsJsonAndPictures) {
  const auto model = out_.file("m.pt");
  ASSERT_EQ(run(tiny_train(dir_->file("good"), model, 3)).status, 0);
  const auto json = out_.file("report.json");
  const auto r = run({eval_bin(), "--model", model, "--data", dir_->file("cat"), "--device", "cpu", "--json", json,
                      "--save-maps", out_.file("maps")});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("image AUROC"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("patch"), std::string::npos) << r.output;
  const auto text = pefm_test::slurp(json);
  const auto report = parse_json(text);
  EXPECT_EQ(report.at("images"), 6) << text;
  EXPECT_TRUE(report.at("seconds").is_number()) << text;
  for (const auto* scope : {&report, &report.at("per_type").at("patch")}) {
    for (const char* key : {"image_auroc", "pixel_auroc", "aupro"}) {
      EXPECT_GE(scope->at(key).get<double>(), 0.0) << key << " in " << text;
      EXPECT_LE(scope->at(key).get<double>(), 1.0) << key << " in " << text;
    }
  }
  // Image and pixel AUROC recomputed here from the model's maps: the Mann-Whitney statistic
  // (ties counted half), masks resized to the map by nearest pixel centres (PIL's NEAREST),
  // as the authors' evaluation does.
  auto m = std::make_shared<pefm::Model>(pefm::load_model(model));
  pefm::Detector det(m, {"cpu"});
  const int64_t S = m->config.image_size;
  std::vector<double> normal_scores, defect_scores, normal_pixels, defect_pixels;
  for (const char* type : {"good", "patch"}) {
    for (const auto& e : fs::directory_iterator(dir_->file("cat") + "/test/" + type)) {
      const auto img = pefm::io::read_image(e.path().string());
      const auto t = torch::from_blob(const_cast<uint8_t*>(img.pixels.data()), {1, img.height, img.width, img.channels},
                                      torch::kUInt8);
      const auto d = det.detect(t);
      const bool defective = std::string(type) == "patch";
      (defective ? defect_scores : normal_scores).push_back(d.scores[0].item<double>());
      const auto map = d.maps[0].to(torch::kFloat64).contiguous();
      pefm::io::Image mask;
      if (defective) {
        mask = pefm::io::read_image(dir_->file("cat") + "/ground_truth/patch/" + e.path().stem().string() + "_mask.png",
                                    pefm::io::PixelFormat::kGray);
      }
      for (int64_t y = 0; y < S; ++y) {
        for (int64_t x = 0; x < S; ++x) {
          bool positive = false;
          if (defective) {
            const auto my = static_cast<int>((y + 0.5) * mask.height / S), mx = static_cast<int>((x + 0.5) * mask.width / S);
            positive = mask.pixels[static_cast<size_t>(my) * mask.width + mx] > 0.45 * 255;
          }
          (positive ? defect_pixels : normal_pixels).push_back(map[y][x].item<double>());
        }
      }
    }
  }
  const auto auroc = [](std::vector<double> neg, std::vector<double> pos) {
    // Rank-sum with average ranks for ties.
    std::vector<std::pair<double, bool>> all;
    for (double v : neg) all.emplace_back(v, false);
    for (double v : pos) all.emplace_back(v, true);
    std::sort(all.begin(), all.end());
    double rank_sum = 0;
    for (size_t i = 0; i < all.size();) {
      size_t j = i;
      while (j < all.size() && all[j].first == all[i].first) ++j;
      const double avg = 0.5 * static_cast<double>(i + 1 + j);
      for (size_t k = i; k < j; ++k) rank_sum += all[k].second ? avg : 0.0;
      i = j;
    }
    const double np = static_cast<double>(pos.size()), nn = static_cast<double>(neg.size());
    return (rank_sum - np * (np + 1) / 2) / (np * nn);
  };
  EXPECT_NEAR(report.at("image_auroc").get<double>(), auroc(normal_scores, defect_scores), 1e-4);
  EXPECT_NEAR(report.at("pixel_auroc").get<double>(), auroc(normal_pixels, defect_pixels), 1e-4);
  int pictures = 0;
  for (const auto& e : fs::directory_iterator(out_.file("maps"))) {
    const auto img = pefm::io::read_image(e.path().string());
    EXPECT_EQ(img.width, 3 * img.height - 60) << "three square panels with a caption strip";
    ++pictures;
  }
  EXPECT_EQ(pictures, 6);

  // --pro-regions, on defects whose region has a hole: the same test images, each defect's
  // mask a 16 x 16 square ring whose 6 x 6 hole holds the image's hottest map pixel (away
  // from the border; the tiny model barely sees the pasted patch, so the ring is placed by
  // the map, not by the patch).
  // `filled` (the default, the PEFM authors' count) counts the hole's predicted pixels,
  // `exact` (MVTec's) does not. The JSON's AUPRO, overall and for the type, is pefm::aupro
  // of the model's maps with the count asked for, and the JSON names it.
  const auto ring = out_.file("ring");
  fs::copy(dir_->file("cat"), ring, fs::copy_options::recursive);
  std::vector<torch::Tensor> ring_frames, ring_masks;
  std::vector<std::string> ring_types, ring_names;
  for (const char* type_name : {"good", "patch"}) {
    for (int i = 0; i < 3; ++i) {
      ring_types.push_back(type_name);
      ring_names.push_back("00" + std::to_string(i));
      const auto img = pefm::io::read_image(ring + "/test/" + ring_types.back() + "/" + ring_names.back() + ".png");
      ring_frames.push_back(torch::from_blob(const_cast<uint8_t*>(img.pixels.data()),
                                             {1, img.height, img.width, img.channels}, torch::kUInt8)
                                .clone());
    }
  }
  // One batch in pefm-eval's order (types, then names sorted), as its --batch-size 16 runs it.
  const auto ring_maps = det.detect(ring_frames).maps.cpu();
  for (size_t k = 0; k < ring_frames.size(); ++k) {
    const int64_t h = ring_frames[k].size(1), w = ring_frames[k].size(2);
    auto mask = torch::zeros({h, w, 1}, torch::kUInt8);
    if (ring_types[k] == "patch") {
      const auto m = ring_maps[static_cast<int64_t>(k)].reshape({S, S});
      const int64_t my0 = 12 * S / h, my1 = (h - 12) * S / h, mx0 = 12 * S / w, mx1 = (w - 12) * S / w;
      const auto inside = m.slice(0, my0, my1).slice(1, mx0, mx1).contiguous();
      const int64_t at = inside.argmax().item<int64_t>();
      const int64_t cy = ((my0 + at / inside.size(1)) * h + h / 2) / S, cx = ((mx0 + at % inside.size(1)) * w + w / 2) / S;
      mask.slice(0, cy - 8, cy + 8).slice(1, cx - 8, cx + 8).fill_(255);
      mask.slice(0, cy - 3, cy + 3).slice(1, cx - 3, cx + 3).fill_(0);
      write_image(ring + "/ground_truth/patch/" + ring_names[k] + "_mask.png", mask);
    }
    // Resized as pefm-eval resizes masks: nearest pixel centres.
    ring_masks.push_back(
        torch::_upsample_nearest_exact2d(mask.permute({2, 0, 1}).unsqueeze(0).to(torch::kFloat32), {S, S})[0][0].gt(127));
  }
  const auto ring_truth = torch::stack(ring_masks);
  const double want_filled = pefm::aupro(ring_maps, ring_truth);
  const double want_exact = pefm::aupro(ring_maps, ring_truth, 1000, 0.3, pefm::ProRegions::kExact);
  ASSERT_GT(want_filled - want_exact, 0.01) << "the holes are not scored: this test set cannot tell the counts apart";
  for (const auto& [mode, want] :
       std::vector<std::pair<std::string, double>>{{"filled", want_filled}, {"exact", want_exact}}) {
    const auto e = run({eval_bin(), "--model", model, "--data", ring, "--device", "cpu", "--json", json,
                        "--pro-regions", mode});
    ASSERT_EQ(e.status, 0) << e.output;
    const auto rep = parse_json(pefm_test::slurp(json));
    EXPECT_EQ(rep.at("aupro_regions").get<std::string>(), mode);
    EXPECT_NEAR(rep.at("aupro").get<double>(), want, 1e-4) << mode;
    EXPECT_NEAR(rep.at("per_type").at("patch").at("aupro").get<double>(), want, 1e-4) << mode;
  }
  // Without the option: filled.
  ASSERT_EQ(run({eval_bin(), "--model", model, "--data", ring, "--device", "cpu", "--json", json}).status, 0);
  EXPECT_NEAR(parse_json(pefm_test::slurp(json)).at("aupro").get<double>(), want_filled, 1e-4);
}

TEST_F(Cli, EvalNamesAMissingMaskAndABadModel) {
  const auto cat = out_.file("cat");
  fs::copy(dir_->file("cat"), cat, fs::copy_options::recursive);
  fs::remove(cat + "/ground_truth/patch/001_mask.png");
  pefm_test::spit(out_.file("junk.pt"), "junk");
  auto r = run({eval_bin(), "--model", out_.file("junk.pt"), "--data", cat});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find("'" + out_.file("junk.pt") + "' is not a pefm model file"), std::string::npos) << r.output;
  const auto model = out_.file("m.pt");
  ASSERT_EQ(run(tiny_train(dir_->file("good"), model, 1)).status, 0);
  r = run({eval_bin(), "--model", model, "--data", cat});
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.output.find("no ground-truth mask '" + cat + "/ground_truth/patch/001_mask.png'"), std::string::npos)
      << r.output;
}

// Typos in output paths: refused before any work, the named file left byte-identical.
TEST_F(Cli, OutputTyposDestroyNothingAndAreFoundBeforeAnyWork) {
  const auto model = out_.file("m.pt");
  ASSERT_EQ(run(tiny_train(dir_->file("good"), model, 1)).status, 0);
  const auto model_bytes = pefm_test::slurp(model);
  // Was: --json naming the model overwrote it with JSON (rc 0).
  auto r = run({eval_bin(), "--model", model, "--data", dir_->file("cat"), "--device", "cpu", "--json", model});
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("--json '" + model + "' is the input"), std::string::npos) << r.output;
  EXPECT_EQ(pefm_test::slurp(model), model_bytes);
  // --save-maps inside the data set would write among the test images.
  r = run({eval_bin(), "--model", model, "--data", dir_->file("cat"), "--save-maps", dir_->file("cat/test/good")});
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("lies inside the input folder"), std::string::npos) << r.output;

  // Was: --output naming a training image overwrote the image after training.
  const auto data = out_.file("data");
  fs::copy(dir_->file("good"), data, fs::copy_options::recursive);
  const auto image = data + "/103.png";
  const auto image_bytes = pefm_test::slurp(image);
  r = run(tiny_train(data, image, 50));
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("--output '" + image + "'"), std::string::npos) << r.output;
  EXPECT_EQ(pefm_test::slurp(image), image_bytes);
  EXPECT_EQ(r.output.find("decoding"), std::string::npos) << "refused before reading images:\n" << r.output;
  // A folder, a missing folder, another kind of existing file: all before any work.
  for (const auto& [out, expect] : std::vector<std::pair<std::string, std::string>>{
           {out_.path(), "is a folder"},
           {out_.file("missing/m.pt"), "does not exist"},
           {dir_->file("resnet18.pth"), "is the input"}}) {
    r = run(tiny_train(dir_->file("good"), out, 50));
    EXPECT_EQ(r.status, 2) << out << "\n" << r.output;
    EXPECT_NE(r.output.find(expect), std::string::npos) << out << "\n" << r.output;
    // Refused before any work: no image read, no epoch run (what the tool prints for
    // each, not a clock, which a loaded machine would make flaky).
    EXPECT_EQ(r.output.find("decoding"), std::string::npos) << out << "\n" << r.output;
    EXPECT_EQ(r.output.find("epoch 1/"), std::string::npos) << out << "\n" << r.output;
  }
  pefm_test::spit(out_.file("notes.txt"), "precious notes");
  r = run(tiny_train(dir_->file("good"), out_.file("notes.txt"), 1));
  EXPECT_NE(r.output.find("exists and is not a pefm model file"), std::string::npos) << r.output;
  EXPECT_EQ(pefm_test::slurp(out_.file("notes.txt")), "precious notes");
}

// One bad entry in a folder is reported by name and skipped; it never fails the folder.
TEST_F(Cli, DanglingLinksAndLinkLoopsInDataAreSkippedByName) {
  const auto data = out_.file("links");
  fs::copy(dir_->file("good"), data, fs::copy_options::recursive);
  fs::create_symlink(data + "/nowhere.png", data + "/000-dangling.png");
  fs::create_symlink(data + "/zz-loop.png", data + "/zz-loop.png");
  const auto r = run(tiny_train(data, out_.file("m.pt"), 1));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("000-dangling.png"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("zz-loop.png"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("2 skipped"), std::string::npos) << r.output;
}

// Masks of another size than their image: an error naming both files (was: resized).
TEST_F(Cli, EvalRefusesAMaskOfAnotherSize) {
  const auto cat = out_.file("cat");
  fs::copy(dir_->file("cat"), cat, fs::copy_options::recursive);
  write_image(cat + "/ground_truth/patch/002_mask.png", torch::zeros({30, 38, 1}, torch::kUInt8));
  const auto model = out_.file("m.pt");
  ASSERT_EQ(run(tiny_train(dir_->file("good"), model, 1)).status, 0);
  const auto r = run({eval_bin(), "--model", model, "--data", cat, "--device", "cpu"});
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("'" + cat + "/ground_truth/patch/002_mask.png' is 38x30 but its image '" + cat +
                          "/test/patch/002.png' is 76x60"),
            std::string::npos)
      << r.output;
}

// Masks saved as 0/1 (common in other tools) are read as 0/255 are: nonzero is defect. A
// mask of more grey levels is refused naming it, and two outputs on one path are refused
// before any work.
TEST_F(Cli, EvalReadsNonzeroMaskPixelsAsDefectAndRefusesGreyMasksAndSharedOutputs) {
  const auto model = out_.file("m.pt");
  ASSERT_EQ(run(tiny_train(dir_->file("good"), model, 1)).status, 0);
  const auto eval_json = [&](const std::string& data, const std::string& json) {
    const auto r = run({eval_bin(), "--model", model, "--data", data, "--device", "cpu", "--json", json});
    EXPECT_EQ(r.status, 0) << r.output;
    return parse_json(pefm_test::slurp(json));
  };
  const auto ones = out_.file("ones");
  fs::copy(dir_->file("cat"), ones, fs::copy_options::recursive);
  for (int i = 0; i < 3; ++i) {
    const auto path = ones + "/ground_truth/patch/00" + std::to_string(i) + "_mask.png";
    const auto img = pefm::io::read_image(path, pefm::io::PixelFormat::kGray);
    auto mask = torch::from_blob(const_cast<uint8_t*>(img.pixels.data()), {img.height, img.width, 1}, torch::kUInt8);
    write_image(path, mask.gt(0).to(torch::kUInt8));
  }
  const auto as_255 = eval_json(dir_->file("cat"), out_.file("a.json"));
  const auto as_1 = eval_json(ones, out_.file("b.json"));
  EXPECT_EQ(as_1.at("pixel_metrics"), "measured");
  EXPECT_DOUBLE_EQ(as_1.at("pixel_auroc").get<double>(), as_255.at("pixel_auroc").get<double>());
  EXPECT_DOUBLE_EQ(as_1.at("aupro").get<double>(), as_255.at("aupro").get<double>());

  auto grey = torch::zeros({60, 76, 1}, torch::kUInt8);
  grey.slice(0, 20, 36).slice(1, 10, 26).fill_(255);
  grey.slice(0, 20, 22).slice(1, 10, 26).fill_(128);  // an antialiased edge
  write_image(ones + "/ground_truth/patch/000_mask.png", grey);
  auto r = run({eval_bin(), "--model", model, "--data", ones, "--device", "cpu"});
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("'" + ones + "/ground_truth/patch/000_mask.png' is not binary: it holds 2 nonzero grey levels"),
            std::string::npos) << r.output;

  const auto same = out_.file("same.out");
  for (const auto& [first, second, says] :
       {std::tuple<std::string, std::string, std::string>{"--json", "--scores", "--scores '" + same + "' is also --json's"},
        {"--report", "--scores", "--report '" + same + "' is also --scores's"}}) {
    r = run({eval_bin(), "--model", model, "--data", dir_->file("cat"), "--device", "cpu", first, same, second, same});
    EXPECT_EQ(r.status, 2) << r.output;
    EXPECT_NE(r.output.find(says), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(same)) << "written before the refusal";
  }
}

TEST_F(Cli, BenchReportsEveryBatchSizeAndTheLayoutInJson) {
  for (const std::string precision : {"fp32", "bf16"}) {
    const auto json = out_.file("bench-" + precision + ".json");
    const auto r = run(tiny_bench({"--batch-sizes", "1,3", "--iterations", "2", "--warmup", "0", "--precision",
                                   precision, "--json", json}));
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_NE(r.output.find("per batch, ms: preprocess"), std::string::npos) << r.output;
    const auto text = pefm_test::slurp(json);
    const auto j = parse_json(text);
    ASSERT_EQ(j.at("batches").size(), 2u) << text;
    EXPECT_EQ(j.at("batches")[0].at("batch"), 1) << text;
    EXPECT_EQ(j.at("batches")[1].at("batch"), 3) << text;
    EXPECT_EQ(j.at("precision"), precision) << text;
    // the CPU runs NHWC by default
    EXPECT_EQ(j.at("channels_last"), true) << text;
    EXPECT_EQ(j.at("resident"), false) << text;
  }
  // the detector alone: frames made on its device, maps left there
  const auto resident_json = out_.file("bench-resident.json");
  const auto resident = run(tiny_bench({"--batch-sizes", "2", "--iterations", "1", "--resident", "--json", resident_json}));
  ASSERT_EQ(resident.status, 0) << resident.output;
  EXPECT_NE(resident.output.find("frames and maps on the device"), std::string::npos) << resident.output;
  EXPECT_EQ(parse_json(pefm_test::slurp(resident_json)).at("resident"), true);
  const auto nchw = run(tiny_bench({"--batch-sizes", "1", "--iterations", "1", "--layout", "nchw"}));
  ASSERT_EQ(nchw.status, 0) << nchw.output;
  EXPECT_NE(nchw.output.find("fp32, BN folded, on "), std::string::npos) << nchw.output;
  const auto bad = run(tiny_bench({"--layout", "nchwc"}));
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.output.find("--layout must be auto, nchw or nhwc, got 'nchwc'"), std::string::npos) << bad.output;
}

TEST_F(Cli, BenchSoakRunsEveryFrameThroughTheElementAndChecksRss) {
  if (!std::getenv("GST_PLUGIN_PATH_1_0")) GTEST_SKIP() << "the pefm plugin was not built";
  const auto json = out_.file("soak.json");
  // ASan's quarantine grows RSS by design: the bound is only meaningful without it.
  const std::string bound = pefm_test::kSanitized ? "100000" : "16";
  const auto r = run(tiny_bench({"--soak", "60", "--soak-warmup", "10", "--soak-max-growth", bound, "--json", json}));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("frames 60 in"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("messages after preroll 59"), std::string::npos) << r.output;
  const auto text = pefm_test::slurp(json);
  const auto soak = parse_json(text).at("soak");
  EXPECT_EQ(soak.at("frames"), 60) << text;
  EXPECT_EQ(soak.at("max_growth_mib").get<double>(), std::stod(bound)) << text;
  EXPECT_EQ(soak.at("ok"), true) << text;
  const auto bad = run(tiny_bench({"--soak", "0"}));
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.output.find("--soak must be an integer in 1.."), std::string::npos) << bad.output;
}

}  // namespace
