// pefm-demo-data: writes a small synthetic inspection data set in MVTec AD layout
// (brushed-metal textures; scratches and spots as defects, with masks). For demos and
// smoke tests on machines without real data; not a benchmark.
#include <cmath>
#include <filesystem>
#include <iostream>
#include <random>
#include <stdexcept>

#include <torch/torch.h>

#include "cli.h"

namespace {

using namespace pefm;
namespace fs = std::filesystem;

// Brushed metal: horizontal streaks, slow shading, pixel noise; h x w (shading on the
// scale of the width, so that a tall web continues what a square image shows).
torch::Tensor texture(int64_t h, int64_t w, std::mt19937_64& rng) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(rng());
  const auto streaks = torch::randn({h, 1}, gen, torch::TensorOptions()).repeat({1, w});
  const auto smooth = torch::conv1d(streaks.t().unsqueeze(1), torch::ones({1, 1, 5}) / 5.0, {}, 1, 2).squeeze(1).t();
  const auto ys = torch::linspace(0, (h - 1.0) / (w - 1.0), h).view({h, 1}), xs = torch::linspace(0, 1, w).view({1, w});
  auto img = 0.55 + 0.06 * smooth + 0.08 * torch::sin(3.0 * xs + 2.0 * ys) +
             0.03 * torch::randn({h, w}, gen, torch::TensorOptions());
  return img.clamp(0, 1);
}
torch::Tensor texture(int64_t size, std::mt19937_64& rng) { return texture(size, size, rng); }

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

// A dark elliptic spot centred at (cy, cx) with radii (ry, rx), drawn into img.
void spot(torch::Tensor& img, double cy, double cx, double ry, double rx) {
  const int64_t h = img.size(0), w = img.size(1);
  const auto ys = torch::arange(h, torch::kFloat32).view({h, 1}), xs = torch::arange(w, torch::kFloat32).view({1, w});
  img.masked_fill_(((xs - cx) / rx).pow(2) + ((ys - cy) / ry).pow(2) < 1.0, 0.15);
}

// A line-scan web as consecutive strips: train/good/NNN.png, strips of a clean web (train
// with pefm-train --tile), and web/NNNNN.png, another web with a spot across the boundary
// of its two middle strips and a smaller one inside strip 1.
void write_web(const fs::path& out, int64_t strips, int64_t rows, int64_t width, std::mt19937_64& rng) {
  fs::create_directories(out / "train/good");
  fs::create_directories(out / "web");
  const auto number = [](int64_t i, size_t digits) {
    const auto d = std::to_string(i);
    return std::string(d.size() < digits ? digits - d.size() : 0, '0') + d;
  };
  const auto clean = texture(strips * rows, width, rng);
  for (int64_t i = 0; i < strips; ++i) save(clean.slice(0, i * rows, (i + 1) * rows), out / "train/good" / (number(i, 3) + ".png"));
  auto web = texture(strips * rows, width, rng);
  const double boundary = static_cast<double>(strips / 2 * rows);
  spot(web, boundary, width * 0.4, rows * 0.12, width * 0.02 + 3);
  spot(web, rows * 1.5, width * 0.7, rows * 0.06, width * 0.01 + 2);
  for (int64_t i = 0; i < strips; ++i) save(web.slice(0, i * rows, (i + 1) * rows), out / "web" / (number(i, 5) + ".png"));
  std::cout << "wrote " << strips << " strips of a clean web to " << (out / "train/good").string() << " and of a web to "
            << (out / "web").string() << " (" << width << " x " << rows << " each): a spot across web row "
            << static_cast<int64_t>(boundary) << " (strips " << strips / 2 - 1 << " and " << strips / 2
            << ") and one inside strip 1\n";
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
  args.option("web", "N", "instead: a line-scan web of N consecutive strips (train/good, web/)", "0");
  args.option("strip-rows", "R", "with --web: rows per strip", "128");
  args.option("width", "PX", "with --web: web width", "512");
  if (!args.parse(argc, argv)) return 0;
  const fs::path out = args.get("out");
  if (const auto strips = args.integer("web", 0, 100000); strips > 0) {
    std::mt19937_64 rng(static_cast<uint64_t>(args.integer("seed", 0, INT64_MAX)));
    if (strips < 2) throw std::invalid_argument("--web needs at least 2 strips");
    write_web(out, strips, args.integer("strip-rows", 8, 4096), args.integer("width", 32, 16384), rng);
    return 0;
  }
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
