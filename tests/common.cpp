#include "common.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <ATen/Context.h>
#include <torch/torch.h>

#include "pefm/calibration_maps.h"
#include "pefm/detector.h"
#include "pefm/device.h"
#include "pefm/preprocess.h"
#include "pefm/trainer.h"

namespace pefm_test {

namespace {

uint32_t key_hash(const std::string& key) {
  uint32_t h = 0;
  for (unsigned char c : key) h = h * 31u + c;
  return h;
}

// u in [0, 1) exactly as numpy computes it in make_golden.py.
double formula_u(uint32_t h, uint64_t i) {
  return static_cast<double>((i * 2654435761ULL + h) % 4294967296ULL) / 4294967296.0;
}

}  // namespace

bool cuda_required() {
  const char* env = std::getenv("PEFM_REQUIRE_CUDA");
  return env && std::string(env) == "1";
}

bool gpu_device_present() {
  // /dev/nvidiactl exists wherever the NVIDIA driver exposes a GPU, whatever its number
  // (a container may be given only /dev/nvidia3).
  std::error_code ec;
  if (std::filesystem::exists("/dev/nvidiactl", ec)) return true;
  for (const auto& e : std::filesystem::directory_iterator("/dev", ec)) {
    const auto name = e.path().filename().string();
    if (name.size() > 6 && name.compare(0, 6, "nvidia") == 0 && std::isdigit(static_cast<unsigned char>(name[6]))) return true;
  }
  return false;
}

bool shared_required() {
  const char* env = std::getenv("PEFM_REQUIRE_SHARED");
  return env && std::string(env) == "1";
}

std::string shared_dir_searched() {
  if (const char* env = std::getenv("PEFM_SHARED_DIR"); env && *env) return env;
  return std::string(PEFM_SOURCE_DIR) + "/../shared";
}

bool prepare_cuda_test() {
  if (!pefm::cuda_available()) return false;
  at::globalContext().setAllowTF32CuDNN(false);
  at::globalContext().setAllowTF32CuBLAS(false);
  return true;
}

std::string data_dir() { return std::string(PEFM_SOURCE_DIR) + "/tests/data"; }

std::string shared_dir() {
  const auto dir = shared_dir_searched();
  return std::filesystem::is_directory(dir) ? dir : "";
}

std::string shared_file(const std::string& relative) {
  const auto dir = shared_dir();
  if (dir.empty()) return "";
  const auto path = dir + "/" + relative;
  return std::filesystem::exists(path) ? path : "";
}

torch::Tensor formula_tensor(const std::string& key, c10::IntArrayRef shape, double scale) {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  const auto h = key_hash(key);
  auto t = torch::empty({n}, torch::kFloat32);
  auto* p = t.data_ptr<float>();
  for (int64_t i = 0; i < n; ++i) p[i] = static_cast<float>((formula_u(h, i) - 0.5) * 0.2 * scale);
  return t.view(shape);
}

void fill_formula(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  auto fill = [](const std::string& key, torch::Tensor& t) {
    if (key.size() >= 19 && key.compare(key.size() - 19, 19, "num_batches_tracked") == 0) {
      t.zero_();
      return;
    }
    const auto h = key_hash(key);
    auto values = torch::empty({t.numel()}, torch::kFloat64);
    auto* p = values.data_ptr<double>();
    const bool var = key.size() >= 11 && key.compare(key.size() - 11, 11, "running_var") == 0;
    const bool weight = key.size() >= 6 && key.compare(key.size() - 6, 6, "weight") == 0;
    const int64_t fan_in = t.dim() > 1 ? t.numel() / t.size(0) : 1;
    for (int64_t i = 0; i < t.numel(); ++i) {
      const double u = formula_u(h, static_cast<uint64_t>(i));
      if (var) p[i] = 0.5 + u;
      else if (weight && t.dim() > 1) p[i] = (u - 0.5) * 2.0 * std::sqrt(6.0 / fan_in);
      else if (weight) p[i] = 0.5 + 0.5 * u;
      else p[i] = (u - 0.5) * 0.2;
    }
    t.copy_(values.to(torch::kFloat32).view(t.sizes()));
  };
  for (auto& p : module.named_parameters(true)) fill(p.key(), p.value());
  for (auto& b : module.named_buffers(true)) fill(b.key(), b.value());
}

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "pefm-test-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

long rss_kib() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return 0;
}

pefm::ModelConfig tiny_config() {
  pefm::ModelConfig c;
  c.source_arch = "mobilenet_v2";
  c.target_arch = "resnet18";
  c.image_size = 64;
  c.latent = {8, 8, 8};
  return c;
}

std::shared_ptr<pefm::Model> tiny_model(uint64_t seed) {
  torch::manual_seed(seed);
  return std::make_shared<pefm::Model>(pefm::Model::create(tiny_config()));
}

namespace {

torch::Tensor texture_set(int64_t h, int64_t w, bool web, int count, uint64_t seed) {
  std::vector<torch::Tensor> out;
  for (int i = 0; i < count; ++i) out.push_back(web ? web_texture(h, w, seed + i) : texture_image(h, w, seed + i));
  return torch::stack(out);
}

}  // namespace

std::shared_ptr<pefm::Model> trained_texture_model(int64_t h, int64_t w, bool web) {
  auto model = tiny_model(11);
  pefm::TrainOptions opts;
  opts.batch_size = 4;
  opts.lr = 3e-3;
  pefm::Trainer trainer(*model, opts, torch::kCPU);
  trainer.add_images(pefm::preprocess(texture_set(h, w, web, 12, 100), {}, 64));
  for (int e = 0; e < 30; ++e) trainer.train_epoch();
  return model;
}

void calibrate_on_textures(const std::shared_ptr<pefm::Model>& model, int64_t h, int64_t w, bool web) {
  pefm::Detector det(model, {"cpu"});  // shares the model: its weights stay in it
  const auto r = det.detect(texture_set(h, w, web, 6, 500));
  model->calibration = pefm::calibration_from_normal(r.maps, r.scores);
}

torch::Tensor web_texture(int64_t h, int64_t w, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const auto xs = torch::arange(w, torch::kFloat32).view({1, w});
  auto img = (0.5 + 0.25 * torch::sin(xs * (2 * M_PI / 12))).expand({h, w}).unsqueeze(2).repeat({1, 1, 3});
  img = img + 0.03 * torch::randn({h, w, 3}, gen, torch::TensorOptions());
  return (img.clamp(0, 1) * 255).round().to(torch::kUInt8);
}

pefm::FrameView rgb_view(const torch::Tensor& img) {
  pefm::FrameView v;
  v.format = pefm::FrameFormat::kRGB;
  v.height = static_cast<int>(img.size(0));
  v.width = static_cast<int>(img.size(1));
  v.planes[0] = img.data_ptr<uint8_t>();
  v.strides[0] = v.width * 3;
  return v;
}

torch::Tensor map_of(const pefm::FrameResult& r) { return torch::tensor(r.map).view({r.map_height, r.map_width}); }

torch::Tensor texture_image(int64_t h, int64_t w, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const auto ys = torch::arange(h, torch::kFloat32).view({h, 1});
  const auto xs = torch::arange(w, torch::kFloat32).view({1, w});
  auto base = 0.5 + 0.25 * torch::sin(xs * 0.6 + ys * 0.15);
  auto img = base.unsqueeze(2).repeat({1, 1, 3});
  img = img + 0.03 * torch::randn({h, w, 3}, gen, torch::TensorOptions());
  return (img.clamp(0, 1) * 255).round().to(torch::kUInt8);
}

torch::Tensor paste_patch(const torch::Tensor& img, int64_t y, int64_t x, int64_t size) {
  auto out = img.clone();
  using torch::indexing::Slice;
  out.index_put_({Slice(y, y + size), Slice(x, x + size)}, 250);
  out.index_put_({Slice(y + size / 3, y + 2 * size / 3), Slice(x, x + size)}, 10);
  return out;
}

Result run(const std::vector<std::string>& argv, const std::vector<std::string>& env,
           const std::function<void(pid_t)>& on_start, bool stdout_only) {
  int fds[2];
  if (pipe(fds) != 0) throw std::runtime_error("pipe");
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 1);
    if (stdout_only) {
      const int null = open("/dev/null", O_WRONLY);
      dup2(null, 2);
    } else {
      dup2(fds[1], 2);
    }
    close(fds[0]);
    close(fds[1]);
    for (const auto& e : env) putenv(const_cast<char*>(e.c_str()));
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(fds[1]);
  std::thread watcher;
  if (on_start) watcher = std::thread(on_start, pid);
  Result r;
  char buf[4096];
  for (ssize_t n; (n = read(fds[0], buf, sizeof(buf))) > 0;) r.output.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  // Joined before the child is reaped: until waitpid its pid cannot be reused, so a late
  // signal from the watcher reaches this child (or its zombie) and nothing else.
  if (watcher.joinable()) watcher.join();
  int status = 0;
  waitpid(pid, &status, 0);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void spit(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

torch::Tensor read_bmp(const std::string& path) {
  const auto b = slurp(path);
  auto u32 = [&](size_t o) {
    uint32_t v;
    std::memcpy(&v, b.data() + o, 4);
    return v;
  };
  auto i32 = [&](size_t o) {
    int32_t v;
    std::memcpy(&v, b.data() + o, 4);
    return v;
  };
  if (b.size() < 54 || b[0] != 'B' || b[1] != 'M') throw std::runtime_error(path + ": not a BMP");
  const uint32_t offset = u32(10);
  const int32_t w = i32(18), h_signed = i32(22);
  const int bpp = static_cast<unsigned char>(b[28]) | (static_cast<unsigned char>(b[29]) << 8);
  const uint32_t compression = u32(30);
  if ((bpp != 24 && bpp != 32) || (compression != 0 && compression != 3)) {
    throw std::runtime_error(path + ": only uncompressed 24/32-bit BMP is supported");
  }
  const int64_t h = std::abs(h_signed);
  const int64_t bytes_pp = bpp / 8;
  const int64_t row = (w * bytes_pp + 3) / 4 * 4;
  if (static_cast<size_t>(offset + row * h) > b.size()) throw std::runtime_error(path + ": truncated BMP");
  auto img = torch::empty({h, w, 3}, torch::kUInt8);
  auto* p = img.data_ptr<uint8_t>();
  for (int64_t y = 0; y < h; ++y) {
    const int64_t src_y = h_signed > 0 ? h - 1 - y : y;  // positive height: bottom-up
    const auto* src = reinterpret_cast<const unsigned char*>(b.data()) + offset + src_y * row;
    for (int64_t x = 0; x < w; ++x) {
      p[(y * w + x) * 3 + 0] = src[x * bytes_pp + 2];
      p[(y * w + x) * 3 + 1] = src[x * bytes_pp + 1];
      p[(y * w + x) * 3 + 2] = src[x * bytes_pp + 0];
    }
  }
  return img;
}

}  // namespace pefm_test
