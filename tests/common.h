// Helpers shared by the test suites.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <sys/types.h>

#include <torch/nn/module.h>
#include <torch/types.h>

#include "pefm/frame.h"
#include "pefm/frame_result.h"
#include "pefm/model.h"
#include "sanitized.h"

namespace pefm_test {

// Folder with the project's committed test data (tests/data).
std::string data_dir();
// ../shared beside the checkout, or $PEFM_SHARED_DIR; empty when absent.
std::string shared_dir();
// A path under shared_dir(), or "" when the file is absent (see PEFM_SHARED_OR_SKIP).
std::string shared_file(const std::string& relative);
// Where shared data is looked for ($PEFM_SHARED_DIR or ../shared beside the checkout),
// whether or not it exists.
std::string shared_dir_searched();

// Test waits (bus messages, pulls) are scaled by this: 4 under the sanitizers, which run
// the same work several times slower.
constexpr int kTimeoutScale = kSanitized ? 4 : 1;

// GPU tests begin with PEFM_CUDA_OR_SKIP(): without CUDA they skip, unless CUDA is
// expected, which makes that a failure: PEFM_REQUIRE_CUDA=1 (set by bench/gpu-check.sh), or
// an NVIDIA device node on this machine (/dev/nvidiactl, /dev/nvidiaN) -- a build whose CUDA silently stayed
// off (libtorch_cuda not linked) cannot pass as "skipped" where there is a GPU. With CUDA it
// turns TF32 off: cuDNN would otherwise round fp32 convolution inputs to a 10-bit mantissa
// on Ampere and later GPUs, and fp32 CUDA results are compared at fp32 tolerances.
bool cuda_required();
bool gpu_device_present();
bool prepare_cuda_test();
#define PEFM_CUDA_OR_SKIP()                                                                     \
  do {                                                                                          \
    if (!pefm_test::prepare_cuda_test()) {                                                      \
      if (pefm_test::cuda_required())                                                           \
        FAIL() << "PEFM_REQUIRE_CUDA=1, but CUDA is not available (libtorch_cuda not linked?)";   \
      if (pefm_test::gpu_device_present())                                                      \
        FAIL() << "this machine has an NVIDIA GPU (/dev/nvidia*), but CUDA is not available";     \
      GTEST_SKIP() << "no CUDA device in this build/machine";                                   \
    }                                                                                           \
  } while (0)

// Real-data tests declare what they need from ../shared (shared_dir()) with
// PEFM_SHARED_OR_SKIP(var, "models/x.pth"): `var` is its path. When it is absent the test
// skips naming where it looked; with PEFM_REQUIRE_SHARED=1 (CI) that is a failure, so a
// wrong ../shared path cannot turn the real-data tests into silent skips.
bool shared_required();
#define PEFM_SHARED_OR_SKIP(var, relative)                                                       \
  const std::string var = pefm_test::shared_file(relative);                                     \
  if (var.empty()) {                                                                            \
    if (pefm_test::shared_required())                                                           \
      FAIL() << "PEFM_REQUIRE_SHARED=1, but " << (relative) << " is not in '"                   \
             << pefm_test::shared_dir_searched() << "'";                                        \
    GTEST_SKIP() << (relative) << " is not in '" << pefm_test::shared_dir_searched()            \
                 << "' (set PEFM_SHARED_DIR)";                                                  \
  }

// Fills every parameter and buffer with the integer formula of tests/data/make_golden.py.
void fill_formula(torch::nn::Module& module);
torch::Tensor formula_tensor(const std::string& key, c10::IntArrayRef shape, double scale);

// kSanitized (sanitized.h): RSS bounds do not hold under ASan, and uninstrumented
// programs cannot load the instrumented plugin.

// Resident set size of this process, KiB.
long rss_kib();

// A fresh temporary folder, removed by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Tiny random-init model: mobilenet_v2 -> resnet18, 64 px, latent 8/8/8.
pefm::ModelConfig tiny_config();
std::shared_ptr<pefm::Model> tiny_model(uint64_t seed = 1);

// tiny_model(11) trained for a few seconds on h x w texture_image()s (seeds 100..111), or
// web_texture()s with `web`, uncalibrated; calibrate_on_textures() then calibrates it on
// six clean ones (500..505).
std::shared_ptr<pefm::Model> trained_texture_model(int64_t h, int64_t w, bool web = false);
void calibrate_on_textures(const std::shared_ptr<pefm::Model>& model, int64_t h, int64_t w, bool web = false);

// A line-scan web's texture [H, W, 3] uint8: the same along every row (stripes 12 px apart
// across, mild noise), so that every tile on a grid of multiples of 12 px looks alike.
torch::Tensor web_texture(int64_t h, int64_t w, uint64_t seed);

// Synthetic inspection image [H, W, 3] uint8: a smooth striped texture with mild noise.
torch::Tensor texture_image(int64_t h, int64_t w, uint64_t seed);
// Copy of `img` with a bright square of `size` px at (y, x).
torch::Tensor paste_patch(const torch::Tensor& img, int64_t y, int64_t x, int64_t size);

// A contiguous [H, W, 3] uint8 RGB tensor as the frame the core reads (no copy).
pefm::FrameView rgb_view(const torch::Tensor& img);
// A FrameResult's map as an [h, w] tensor.
torch::Tensor map_of(const pefm::FrameResult& r);

// Decodes an uncompressed 24/32-bit BMP into [H, W, 3] uint8 RGB.
torch::Tensor read_bmp(const std::string& path);

// A program's exit status (128 + signal when killed) and what it printed.
struct Result {
  int status = -1;
  std::string output;
};

// Runs argv with stdout+stderr captured (stdout only, stderr discarded, with
// `stdout_only`); `env` entries are added to the environment. `on_start(pid)` runs in the
// parent while the child works (to send signals).
Result run(const std::vector<std::string>& argv, const std::vector<std::string>& env = {},
           const std::function<void(pid_t)>& on_start = nullptr, bool stdout_only = false);

std::string slurp(const std::string& path);
void spit(const std::string& path, const std::string& bytes);

}  // namespace pefm_test
