// pefm-export: its ONNX graphs run in OpenCV's dnn (in this process) and in ONNX Runtime
// (tests/onnx/check_onnxruntime.py, PyPI's onnxruntime) and give pefm's maps and scores on
// real images; its refusals.
#include <sys/stat.h>

#include <gtest/gtest.h>
#include <opencv2/dnn.hpp>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "common.h"
#include "pefm-io/image_io.h"
#include "pefm/calibration_maps.h"
#include "pefm/detector.h"
#include "pefm/model_file.h"
#include "pefm/postprocess.h"
#include "pefm/preprocess.h"

namespace {

namespace fs = std::filesystem;

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

std::string export_bin() { return env("PEFM_EXPORT_BIN"); }

// The interpreter of a Python with onnx and onnxruntime (pipelines/fetch-onnxruntime.sh),
// empty when the build found none or it has gone since.
std::string onnx_python() {
  const auto p = env("PEFM_ONNX_PYTHON");
  return fs::exists(p) ? p : "";
}

// Four real images of two data sets: grey MTD tiles (a good one, a blowhole) and RGB MVTec
// AD transistors (a good one, a misplaced one), of sizes unlike the network's.
const char* const kImages[] = {"datasets/mtd/test/good/011.png", "datasets/mtd/test/blowhole/000.png",
                               "datasets/mvtec-transistor/test/good/000.png",
                               "datasets/mvtec-transistor/test/misplaced/000.png"};

struct Case {
  std::string name, source, target;
  pefm::PeMode pe;
  bool calibrated;
  pefm::Fusion fusion = pefm::Fusion::kMean;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

// The two kinds of pair (MobileNetV2 with the shared ImageNet weights; the paper's ResNet34
// -> ResNet50, randomly initialised: no ResNet weights can be downloaded here) with each
// position-encoding mode; one model uncalibrated (raw maps), one fusing by product.
const Case kCases[] = {
    {"mobilenet_add", "mobilenet_v2", "mobilenet_v2", pefm::PeMode::kAdd, true},
    {"mobilenet_none", "mobilenet_v2", "mobilenet_v2", pefm::PeMode::kNone, true},
    {"mobilenet_concat", "mobilenet_v2", "mobilenet_v2", pefm::PeMode::kConcat, true},
    {"resnet_add", "resnet34", "resnet50", pefm::PeMode::kAdd, true},
    {"resnet_none_uncalibrated", "resnet34", "resnet50", pefm::PeMode::kNone, false},
    {"resnet_concat", "resnet34", "resnet50", pefm::PeMode::kConcat, true},
    {"mobilenet_add_product", "mobilenet_v2", "mobilenet_v2", pefm::PeMode::kAdd, true, pefm::Fusion::kProduct},
};

// Untrained BatchNorms are the identity, which a wrong folding would not show: random
// statistics and affine terms for every BatchNorm of `m`.
void randomize_batchnorms(torch::nn::Module& m) {
  torch::NoGradGuard no_grad;
  for (auto& child : m.modules()) {
    if (auto* bn = child->as<torch::nn::BatchNorm2dImpl>()) {
      bn->running_mean.normal_(0.0, 0.1);
      bn->running_var.uniform_(0.5, 2.0);
      bn->weight.uniform_(0.5, 1.5);
      bn->bias.normal_(0.0, 0.1);
    }
  }
}

// One case's model exported, with pefm's own results on the images, made once for the
// cases that read it.
struct Exported {
  std::string model, onnx, check_dir;
  torch::Tensor inputs, maps, scores;  // [N, 3, S, S], [N, 1, S, S], [N, 1]: pefm in this process
  double tolerance = 1e-4;             // absolute; for raw maps 1e-4 of their largest value
};

class OnnxExport : public ::testing::TestWithParam<Case> {
 protected:
  static void SetUpTestSuite() { dir_ = new pefm_test::TempDir(); }
  static void TearDownTestSuite() {
    delete dir_;
    cache_.clear();
  }

  // nullptr after a test failure (reported) or for a file missing from ../shared (`missing`).
  static const Exported* exported(const Case& c, std::string* missing) {
    if (auto it = cache_.find(c.name); it != cache_.end()) return &it->second;
    const auto need = [missing](const std::string& rel) {
      const auto path = pefm_test::shared_file(rel);
      if (path.empty() && missing->empty()) *missing = rel;
      return path;
    };
    std::vector<std::string> images;
    for (const char* rel : kImages) images.push_back(need(rel));
    std::string source_weights, target_weights;
    if (c.source == "mobilenet_v2") {
      source_weights = need("models/mobilenet_v2_torchvision_imagenet.pth");
      target_weights = need("models/mobilenet_v2_tfslim_imagenet.pth");
    }
    if (!missing->empty()) return nullptr;
    pefm::ModelConfig cfg;
    cfg.source_arch = c.source;
    cfg.target_arch = c.target;
    cfg.pe = c.pe;
    cfg.latent = {32, 48, 64};
    cfg.fusion = c.fusion;
    torch::manual_seed(20261205);
    auto model = std::make_shared<pefm::Model>(pefm::Model::create(cfg, source_weights, target_weights));
    randomize_batchnorms(model->net->mappings());
    if (source_weights.empty()) randomize_batchnorms(model->net->source());
    if (target_weights.empty()) randomize_batchnorms(model->net->target());

    Exported e;
    const auto s = cfg.image_size;
    std::vector<torch::Tensor> xs;
    for (const auto& path : images) {
      const auto img = pefm::io::read_image(path);
      const auto hwc = torch::from_blob(const_cast<uint8_t*>(img.pixels.data()),
                                        {img.height, img.width, img.channels}, torch::kUInt8);
      xs.push_back(pefm::preprocess(hwc.unsqueeze(0), pefm::ChannelMap::rgb_order(), s, torch::kFloat32, cfg.resize));
    }
    e.inputs = torch::cat(xs);
    const auto raw = pefm::Detector(model, {"cpu"}).detect_preprocessed(e.inputs);
    if (c.calibrated) {
      auto& cal = model->calibration = pefm::calibration_from_normal(raw.maps, raw.scores);
      // A stated rate and a region threshold of their own, as pefm-train writes them, so
      // that the metadata carries every field a user decides with.
      cal.method = "conformal";
      cal.false_alarm_target = 0.2;
      cal.false_alarm_bound = 0.2;
      cal.false_alarm_upper95 = 0.5;
      cal.folds = 2;
      cal.groups = cal.images;
      cal.region_threshold = 0.5 * (cal.base + cal.threshold);
      cal.region_rate_target = 0.001;
      cal.region_rate = 0.001;
      cal.region_image_rate = 0.5;
      cal.region_pixels = raw.maps.numel();
      cal.validate();
    }
    auto maps = torch::empty({e.inputs.size(0), 1, s, s});
    auto scores = torch::empty({e.inputs.size(0), 1});
    for (int64_t i = 0; i < e.inputs.size(0); ++i) {
      maps[i][0] = pefm::normalized_map(raw.maps[i], model->calibration);
      scores[i][0] = model->calibration.score(raw.scores[i].item<float>());
    }
    e.maps = maps;
    e.scores = scores;
    if (!c.calibrated) e.tolerance = 1e-4 * std::max(1.0, maps.max().item<double>());
    // The calibrated scale must be used, not pinned at an end, for the comparison to mean much.
    if (c.calibrated) {
      const auto inside = (maps > 0.01).logical_and(maps < 0.99).to(torch::kFloat32).mean().item<double>();
      EXPECT_GT(inside, 0.2) << c.name << ": too little of the map between 0 and 1";
    } else {
      EXPECT_GT(maps.std().item<double>(), 10 * e.tolerance) << c.name << ": a flat raw map";
    }

    e.model = dir_->file(c.name + ".pt");
    e.onnx = dir_->file(c.name + ".onnx");
    e.check_dir = dir_->file(c.name + "-check");
    pefm::save_model(*model, e.model);
    std::vector<std::string> argv = {export_bin(), e.model, "--onnx", e.onnx, "--check-out", e.check_dir};
    for (const auto& path : images) argv.insert(argv.end(), {"--check-images", path});
    const auto r = pefm_test::run(argv);
    EXPECT_EQ(r.status, 0) << r.output;
    if (r.status != 0) return nullptr;
    return &cache_.emplace(c.name, std::move(e)).first->second;
  }

  static pefm_test::TempDir* dir_;
  static std::map<std::string, Exported> cache_;
};
pefm_test::TempDir* OnnxExport::dir_ = nullptr;
std::map<std::string, Exported> OnnxExport::cache_;

#define PEFM_EXPORTED_OR_SKIP(var)                                \
  std::string missing_;                                           \
  const Exported* var = exported(GetParam(), &missing_);          \
  if (!missing_.empty()) {                                        \
    PEFM_SHARED_OR_SKIP(absent_, missing_);                       \
  }                                                               \
  ASSERT_NE(var, nullptr)

// Runs the graph `onnx` in OpenCV's dnn on `inputs` [N, 3, S, S], the whole batch at once and
// then one image (the batch axis is open), and expects pefm's `maps` and `scores` within
// `tolerance`; prints the differences.
void expect_opencv_matches(const std::string& label, const std::string& onnx, const torch::Tensor& inputs,
                           const torch::Tensor& maps, const torch::Tensor& scores, double tolerance) {
  auto net = cv::dnn::readNetFromONNX(onnx);
  net.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
  net.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
  const auto x = inputs.contiguous();
  const auto n = static_cast<int>(x.size(0)), s = static_cast<int>(x.size(2));
  for (int batch : {n, 1}) {
    const int sizes[] = {batch, 3, s, s};
    cv::Mat blob(4, sizes, CV_32F, x.data_ptr<float>());
    net.setInput(blob, "image");
    std::vector<cv::Mat> outs;
    net.forward(outs, std::vector<cv::String>{"anomaly_map", "score"});
    ASSERT_EQ(outs.size(), 2u) << label;
    ASSERT_EQ(outs[0].total(), static_cast<size_t>(batch) * s * s) << label;
    ASSERT_EQ(outs[1].total(), static_cast<size_t>(batch)) << label;
    const auto map = torch::from_blob(outs[0].ptr<float>(), {batch, 1, s, s}).clone();
    const auto score = torch::from_blob(outs[1].ptr<float>(), {batch, 1}).clone();
    const auto dm = (map - maps.slice(0, 0, batch)).abs().max().item<double>();
    const auto ds = (score - scores.slice(0, 0, batch)).abs().max().item<double>();
    EXPECT_LT(dm, tolerance) << label << ", batch " << batch;
    EXPECT_LT(ds, tolerance) << label << ", batch " << batch;
    std::cout << "[ measure  ] " << label << " OpenCV " << CV_VERSION << " batch " << batch
              << ": max |map - pefm| " << dm << ", max |score - pefm| " << ds << "\n";
  }
}

TEST_P(OnnxExport, OpenCvDnnGivesPefmsMapsAndScores) {
  PEFM_EXPORTED_OR_SKIP(e);
  expect_opencv_matches(GetParam().name, e->onnx, e->inputs, e->maps, e->scores, e->tolerance);
}

// A float32 .npy file (format 1.0, C order) as pefm-export writes it.
torch::Tensor read_npy(const std::string& path) {
  const auto bytes = pefm_test::slurp(path);
  const auto end = bytes.find('\n');
  const auto open = bytes.find("'shape': (");
  if (bytes.compare(0, 6, "\x93NUMPY") != 0 || end == std::string::npos || open == std::string::npos) {
    ADD_FAILURE() << path << " is not an .npy file";
    return {};
  }
  std::vector<int64_t> shape;
  for (size_t at = open + 10; bytes[at] != ')';) {
    size_t used = 0;
    shape.push_back(std::stoll(bytes.substr(at), &used));
    at += used;
    while (bytes[at] == ',' || bytes[at] == ' ') ++at;
  }
  // As numpy spells a shape: "(4, 1, 256, 256)", "(4,)".
  std::string spelled;
  for (size_t i = 0; i < shape.size(); ++i) spelled += (i > 0 ? ", " : "") + std::to_string(shape[i]);
  if (shape.size() == 1) spelled += ",";
  EXPECT_EQ(bytes.substr(open + 10, spelled.size() + 1), spelled + ")") << path;
  return torch::from_blob(const_cast<char*>(bytes.data() + end + 1), shape, torch::kFloat32).clone();
}

TEST_P(OnnxExport, OnnxRuntimeGivesPefmsMapsScoresAndMetadata) {
  PEFM_EXPORTED_OR_SKIP(e);
  // The script compares ONNX Runtime with the tool's --check-out: pefm's results, as here.
  EXPECT_TRUE(torch::allclose(read_npy(e->check_dir + "/image.npy"), e->inputs, 0, 1e-6));
  EXPECT_TRUE(torch::allclose(read_npy(e->check_dir + "/anomaly_map.npy"), e->maps, 0, e->tolerance / 10));
  EXPECT_TRUE(torch::allclose(read_npy(e->check_dir + "/score.npy"), e->scores, 0, e->tolerance / 10));
  if (onnx_python().empty()) {
    GTEST_SKIP() << "no Python with onnx and onnxruntime: run pipelines/fetch-onnxruntime.sh and reconfigure";
  }
  const auto model = pefm::load_model(e->model);
  const auto& cal = model.calibration;
  std::vector<std::string> argv = {onnx_python(),
                                   std::string(PEFM_SOURCE_DIR) + "/tests/onnx/check_onnxruntime.py",
                                   e->onnx,
                                   e->check_dir,
                                   "--tolerance",
                                   std::to_string(e->tolerance),
                                   "--meta",
                                   "pefm.config.pe=" + pefm::to_string(model.config.pe),
                                   "--meta",
                                   "pefm.config.source_arch=" + model.config.source_arch,
                                   "--meta",
                                   "pefm.calibration.valid=" + std::string(cal.valid ? "1" : "0")};
  const auto number = [](double v) {
    std::ostringstream out;
    out.precision(17);
    out << v;
    return out.str();
  };
  argv.insert(argv.end(), {"--meta", "pefm.config.image_size=" + std::to_string(model.config.image_size), "--meta",
                           "pefm.config.resize=" + pefm::to_string(model.config.resize), "--meta",
                           "pefm.config.fusion=" + pefm::to_string(model.config.fusion), "--meta",
                           "pefm.onnx.mean=0.48500001430511475,0.45600000023841858,0.40599998831748962", "--meta",
                           "pefm.onnx.std=0.22900000214576721,0.22400000691413879,0.22499999403953552"});
  if (cal.valid) {
    argv.insert(argv.end(), {"--meta", "pefm.onnx.image_threshold=0.5", "--meta", "pefm.calibration.method=conformal",
                             "--meta-number", "pefm.calibration.false_alarm_target=0.2", "--meta-number",
                             "pefm.calibration.threshold=" + number(cal.threshold), "--meta-number",
                             "pefm.calibration.base=" + number(cal.base), "--meta-number",
                             "pefm.onnx.region_level=" + number(pefm::region_level(cal, {}))});
  }
  const auto r = pefm_test::run(argv);
  EXPECT_EQ(r.status, 0) << r.output;
  std::cout << r.output;
}

INSTANTIATE_TEST_SUITE_P(Pairs, OnnxExport, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

// Needs nothing from ../shared: a random tiny model (MobileNetV2 -> ResNet18, 64 px, random
// BatchNorm statistics) on synthetic textures, so the graph runs wherever pefm builds.
TEST(Export, ARandomModelsGraphGivesPefmsMapsWithoutSharedData) {
  pefm_test::TempDir dir;
  auto model = pefm_test::tiny_model(5);
  randomize_batchnorms(*model->net);
  const auto s = model->config.image_size;
  std::vector<torch::Tensor> xs;
  for (int i = 0; i < 3; ++i) {
    xs.push_back(pefm::preprocess(pefm_test::texture_image(70, 90, 40 + i).unsqueeze(0), pefm::ChannelMap::rgb_order(),
                                  s, torch::kFloat32, model->config.resize));
  }
  const auto inputs = torch::cat(xs);
  const auto raw = pefm::Detector(model, {"cpu"}).detect_preprocessed(inputs);
  model->calibration = pefm::calibration_from_normal(raw.maps, raw.scores);
  auto maps = torch::empty({inputs.size(0), 1, s, s});
  auto scores = torch::empty({inputs.size(0), 1});
  for (int64_t i = 0; i < inputs.size(0); ++i) {
    maps[i][0] = pefm::normalized_map(raw.maps[i], model->calibration);
    scores[i][0] = model->calibration.score(raw.scores[i].item<float>());
  }
  pefm::save_model(*model, dir.file("m.pt"));
  const auto r = pefm_test::run({export_bin(), dir.file("m.pt"), "--onnx", dir.file("m.onnx")});
  ASSERT_EQ(r.status, 0) << r.output;
  expect_opencv_matches("tiny random model", dir.file("m.onnx"), inputs, maps, scores, 1e-4);
  // Written again: replaced (a new file renamed over it), not left as it was.
  struct stat first {}, second {};
  ASSERT_EQ(stat(dir.file("m.onnx").c_str(), &first), 0);
  ASSERT_EQ(pefm_test::run({export_bin(), dir.file("m.pt"), "--onnx", dir.file("m.onnx")}).status, 0);
  ASSERT_EQ(stat(dir.file("m.onnx").c_str(), &second), 0);
  EXPECT_NE(first.st_ino, second.st_ino);
}

TEST(Export, RefusalsNameTheOptionAndDestroyNothing) {
  pefm_test::TempDir dir;
  pefm::save_model(*pefm_test::tiny_model(3), dir.file("m.pt"));
  pefm_test::spit(dir.file("photo.png"), "not an onnx file");
  // A typo that names another file: refused, the file kept.
  auto r = pefm_test::run({export_bin(), dir.file("m.pt"), "--onnx", dir.file("photo.png")});
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("--onnx"), std::string::npos) << r.output;
  EXPECT_EQ(pefm_test::slurp(dir.file("photo.png")), "not an onnx file");
  // The model itself as the output: refused.
  r = pefm_test::run({export_bin(), dir.file("m.pt"), "--onnx", dir.file("m.pt")});
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_TRUE(pefm::load_model(dir.file("m.pt")).net);
  // Its own earlier export is replaced; --model works as the first argument does.
  r = pefm_test::run({export_bin(), "--model", dir.file("m.pt"), "--onnx", dir.file("m.onnx")});
  ASSERT_EQ(r.status, 0) << r.output;
  r = pefm_test::run({export_bin(), dir.file("m.pt"), "--onnx", dir.file("m.onnx")});
  EXPECT_EQ(r.status, 0) << r.output;
  // A missing or broken model: an error naming the file, no output.
  r = pefm_test::run({export_bin(), dir.file("none.pt"), "--onnx", dir.file("n.onnx")});
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("none.pt"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir.file("n.onnx")));
  // Arguments that go together, and a missing --onnx.
  r = pefm_test::run({export_bin(), dir.file("m.pt"), "--onnx", dir.file("n.onnx"), "--check-out", dir.file("c")});
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("--check-images"), std::string::npos) << r.output;
  r = pefm_test::run({export_bin(), dir.file("m.pt")});
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("--onnx"), std::string::npos) << r.output;
  r = pefm_test::run({export_bin(), dir.file("m.pt"), "--onnx", dir.file("n.onnx"), "--check-images",
                      dir.file("nothing-here"), "--check-out", dir.file("c")});
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("nothing-here"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir.file("n.onnx")));

  // --check-out: a folder holding files of its names that pefm-export did not write is
  // refused, before anything is written; its own earlier output is replaced.
  fs::create_directories(dir.file("images"));
  const auto part = pefm_test::texture_image(48, 60, 1).contiguous();
  pefm::io::write_png(dir.file("images/part.png"),
                      {60, 48, 3, std::vector<uint8_t>(part.data_ptr<uint8_t>(), part.data_ptr<uint8_t>() + part.numel())});
  fs::create_directories(dir.file("mine"));
  pefm_test::spit(dir.file("mine/score.npy"), "my own scores");
  r = pefm_test::run({export_bin(), dir.file("m.pt"), "--onnx", dir.file("n.onnx"), "--check-images",
                      dir.file("images"), "--check-out", dir.file("mine")});
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("score.npy"), std::string::npos) << r.output;
  EXPECT_EQ(pefm_test::slurp(dir.file("mine/score.npy")), "my own scores");
  EXPECT_FALSE(fs::exists(dir.file("n.onnx")));
  for (int i = 0; i < 2; ++i) {
    r = pefm_test::run({export_bin(), dir.file("m.pt"), "--onnx", dir.file("n.onnx"), "--check-images",
                        dir.file("images"), "--check-out", dir.file("check")});
    ASSERT_EQ(r.status, 0) << r.output;
  }
  EXPECT_EQ(read_npy(dir.file("check/anomaly_map.npy")).sizes(), (std::vector<int64_t>{1, 1, 64, 64}));
  EXPECT_EQ(read_npy(dir.file("check/score.npy")).sizes(), (std::vector<int64_t>{1, 1}));
  // More images than a check holds: refused before any work.
  fs::create_directories(dir.file("many"));
  const auto tiny = pefm_test::texture_image(8, 8, 2).contiguous();
  const pefm::io::Image small{8, 8, 3, std::vector<uint8_t>(tiny.data_ptr<uint8_t>(), tiny.data_ptr<uint8_t>() + tiny.numel())};
  for (int i = 0; i < 257; ++i) pefm::io::write_png(dir.file("many/" + std::to_string(i) + ".png"), small);
  r = pefm_test::run({export_bin(), dir.file("m.pt"), "--onnx", dir.file("b.onnx"), "--check-images", dir.file("many"),
                      "--check-out", dir.file("b")});
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("257"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir.file("b.onnx")));
  // An image that does not decode: an error naming it, and no output at all.
  pefm_test::spit(dir.file("images/broken.png"), "not a png");
  r = pefm_test::run({export_bin(), dir.file("m.pt"), "--onnx", dir.file("b.onnx"), "--check-images",
                      dir.file("images"), "--check-out", dir.file("b")});
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("broken.png"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir.file("b.onnx")));
  EXPECT_FALSE(fs::exists(dir.file("b")));
}

}  // namespace
