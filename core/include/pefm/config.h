// Model configuration: everything that defines a PEFM model's shape.
#pragma once

#include <array>
#include <cstdint>
#include <string>

namespace pefm {

// How the position code enters the mapping network (docs/architecture.md, step 4).
enum class PeMode { kAdd, kConcat, kNone };
// How the three per-scale residual maps are fused (docs/architecture.md, step 7).
enum class Fusion { kMean, kProduct };
// How frames are resized to S x S (docs/architecture.md, step 1). kLanczos: PIL's Lanczos (a = 3,
// widened by the scale when shrinking) with PIL's 8-bit fixed-point arithmetic and its
// rounding between the horizontal and the vertical pass, as the authors' runs resized
// (`T.Resize(S, Image.ANTIALIAS)`). kBilinear: antialiased bilinear (PIL's / LibTorch's
// weights, no rounding), what pefm used before; model files without the key have it.
enum class Resize { kLanczos, kBilinear };
// Arithmetic of the networks. Maps and scores are float32 whatever the precision.
//   kFp16: CUDA only. kBf16: CPU (faster where the CPU has AVX512-BF16 or AMX, e.g. AMD
//   Zen 4, Intel Sapphire Rapids, slower elsewhere: bench/RESULTS.md) and CUDA.
enum class Precision { kFp32, kFp16, kBf16 };

std::string to_string(PeMode mode);
std::string to_string(Fusion fusion);
std::string to_string(Precision precision);
std::string to_string(Resize resize);
// Parse helpers throw std::invalid_argument naming `what` and the accepted values.
PeMode parse_pe_mode(const std::string& text, const std::string& what = "pe");
Fusion parse_fusion(const std::string& text, const std::string& what = "fusion");
Precision parse_precision(const std::string& text, const std::string& what = "precision");
Resize parse_resize(const std::string& text, const std::string& what = "resize");

// Limits of a model's sizes, for models trained here and models read from files alike (the
// paper uses 256 px and latent widths 200/400/800). They bound what a model file can make
// pefm allocate or compute per frame: at 1024 px ResNet34 -> ResNet50 takes about 1 GB and
// 16x the 256 px time; larger pictures are inspected by tiling. Widths of 2048 make a
// model file of about 0.6 GB.
constexpr int64_t kMaxImageSize = 1024;
constexpr int64_t kMaxLatent = 2048;

struct ModelConfig {
  std::string source_arch = "resnet34";
  std::string target_arch = "resnet50";
  int64_t image_size = 256;
  PeMode pe = PeMode::kAdd;
  std::array<int64_t, 3> latent = {200, 400, 800};
  Fusion fusion = Fusion::kMean;
  Resize resize = Resize::kLanczos;

  // Throws std::invalid_argument when a field is out of range or an arch is unknown.
  void validate() const;
};

// Where and how a detector runs (Detector, FrameDetector).
struct DetectorOptions {
  std::string device = "auto";  // auto | cpu | cuda | cuda:N
  Precision precision = Precision::kFp32;
  // Fold BatchNorm into the convolutions of the detector's inference copy.
  bool fold_batchnorm = true;
  // Activation and weight layout. kAuto: NHWC (channels-last) on the CPU, where LibTorch
  // 2.x runs every convolution in oneDNN, in fp32 as in bf16 (bench/RESULTS.md); NCHW on
  // CUDA until a GPU run shows NHWC faster there (pefm-bench --layout, bench/gpu-check.sh).
  enum class Layout { kAuto, kNchw, kNhwc };
  Layout layout = Layout::kAuto;
};

}  // namespace pefm
