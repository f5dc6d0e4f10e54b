// pefm-demo-data: writes a small synthetic inspection data set in MVTec AD layout
// (brushed-metal textures; scratches and spots as defects, with masks). For demos and
// smoke tests on machines without real data; not a benchmark.
#include <cmath>
#include <filesystem>
#include <iostream>
#include <random>

#include <torch/torch.h>

#include "cli.h"

namespace {

using namespace pefm;
namespace fs = std::filesystem;

// Brushed metal: horizontal streaks, slow shading, pixel noise.
torch::Tensor texture(int64_t size, std::mt19937_64& rng) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(rng());
  const auto streaks = torch::randn({size, 1}, gen, torch::TensorOptions()).repeat({1, size});
  const auto smooth = torch::conv1d(streaks.t().unsqueeze(1), torch::ones({1, 1, 5}) / 5.0, {}, 1, 2).squeeze(1).t();
  const auto ys = torch::linspace(0, 1, size).view({size, 1}), xs = torch::linspace(0, 1, size).view({1, size});
  auto img = 0.55 + 0.06 * smooth + 0.08 * torch::sin(3.0 * xs + 2.0 * ys) +
             0.03 * torch::randn({size, size}, gen, torch::TensorOptions());
  return img.clamp(0, 1);
}

// Draws a defect into img (in place) and returns its mask.
torch::Tensor defect(torch::Tensor& img, const std::string& kind, std::mt19937_64& rng) {
  const int64_t n = img.size(0);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  const auto ys = torch::arange(n, torch::kFloat32).view({n, 1}), xs = torch::arange(n, torch::kFloat32).view({1, n});
  torch::Tensor mask;
  if (kind == "scratch") {
    const double x0 = n * (0.2 + 0.6 * u(rng)), y0 = n * (0.2 + 0.6 * u(rng));
    const double angle = M_PI * u(rng), len = n * (0.2 + 0.25 * u(rng));
    const double dx = std::cos(angle), dy = std::sin(angle);
    const auto t = ((xs - x0) * dx + (ys - y0) * dy).clamp(-len / 2, len / 2);
    const auto dist = ((xs - x0 - t * dx).pow(2) + (ys - y0 - t * dy).pow(2)).sqrt();
    mask = dist < 1.8;
    img.masked_fill_(mask, 0.95);
  } else {
    const double cx = n * (0.2 + 0.6 * u(rng)), cy = n * (0.2 + 0.6 * u(rng));
    const double rx = n * (0.03 + 0.04 * u(rng)), ry = n * (0.03 + 0.04 * u(rng));
    mask = ((xs - cx) / rx).pow(2) + ((ys - cy) / ry).pow(2) < 1.0;
    img.masked_fill_(mask, 0.15);
  }
  return mask;
}

void save(const torch::Tensor& gray01, const fs::path& path) {
  io::write_png(path.string(), cli::to_image((gray01 * 255).round().to(torch::kUInt8).unsqueeze(2)));
}

int run(int argc, char** argv) {
  cli::Args args("pefm-demo-data", "--out DIR [options]",
                 "Writes a synthetic inspection data set in MVTec AD layout: train/good, test/good,\n"
                 "test/scratch, test/spot and ground_truth masks.");
  args.option("out", "DIR", "output folder (created)", "", true);
  args.option("train", "N", "normal training images", "60");
  args.option("test", "N", "test images per type (good, scratch, spot)", "10");
  args.option("size", "PX", "image size", "192");
  args.option("seed", "N", "random seed", "1");
  if (!args.parse(argc, argv)) return 0;
  const fs::path out = args.get("out");
  const auto size = args.integer("size", 32, 4096);
  std::mt19937_64 rng(static_cast<uint64_t>(args.integer("seed", 0, INT64_MAX)));
  for (const char* d : {"train/good", "test/good", "test/scratch", "test/spot", "ground_truth/scratch", "ground_truth/spot"}) {
    fs::create_directories(out / d);
  }
  const auto name = [](int64_t i) {
    const auto digits = std::to_string(i);
    return std::string(digits.size() < 3 ? 3 - digits.size() : 0, '0') + digits;
  };
  for (int64_t i = 0, n = args.integer("train", 1, 100000); i < n; ++i) save(texture(size, rng), out / "train/good" / (name(i) + ".png"));
  const auto n_test = args.integer("test", 1, 100000);
  for (int64_t i = 0; i < n_test; ++i) save(texture(size, rng), out / "test/good" / (name(i) + ".png"));
  for (const std::string kind : {"scratch", "spot"}) {
    for (int64_t i = 0; i < n_test; ++i) {
      auto img = texture(size, rng);
      const auto mask = defect(img, kind, rng);
      save(img, out / "test" / kind / (name(i) + ".png"));
      save(mask.to(torch::kFloat32), out / "ground_truth" / kind / (name(i) + "_mask.png"));
    }
  }
  std::cout << "wrote a synthetic data set to " << out.string() << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return pefm::cli::run_main("pefm-demo-data", run, argc, argv); }
