#include "pefm/config.h"

#include <stdexcept>

#include "pefm/backbone.h"

namespace pefm {

namespace {

[[noreturn]] void bad_value(const std::string& what, const std::string& text,
                            const char* accepted) {
  throw std::invalid_argument(what + ": '" + text + "' is not one of " + accepted);
}

}  // namespace

std::string to_string(PeMode mode) {
  switch (mode) {
    case PeMode::kAdd: return "add";
    case PeMode::kConcat: return "concat";
    case PeMode::kNone: return "none";
  }
  return "?";
}

std::string to_string(Fusion fusion) {
  return fusion == Fusion::kMean ? "mean" : "product";
}

std::string to_string(Precision precision) {
  switch (precision) {
    case Precision::kFp32: return "fp32";
    case Precision::kFp16: return "fp16";
    case Precision::kBf16: return "bf16";
  }
  return "?";
}

std::string to_string(Resize resize) { return resize == Resize::kLanczos ? "lanczos" : "bilinear"; }

Resize parse_resize(const std::string& text, const std::string& what) {
  if (text == "lanczos") return Resize::kLanczos;
  if (text == "bilinear") return Resize::kBilinear;
  bad_value(what, text, "lanczos, bilinear");
}

PeMode parse_pe_mode(const std::string& text, const std::string& what) {
  if (text == "add") return PeMode::kAdd;
  if (text == "concat") return PeMode::kConcat;
  if (text == "none") return PeMode::kNone;
  bad_value(what, text, "add, concat, none");
}

Fusion parse_fusion(const std::string& text, const std::string& what) {
  if (text == "mean") return Fusion::kMean;
  if (text == "product") return Fusion::kProduct;
  bad_value(what, text, "mean, product");
}

Precision parse_precision(const std::string& text, const std::string& what) {
  if (text == "fp32") return Precision::kFp32;
  if (text == "fp16") return Precision::kFp16;
  if (text == "bf16") return Precision::kBf16;
  bad_value(what, text, "fp32, fp16, bf16");
}

void ModelConfig::validate() const {
  for (const auto* arch : {&source_arch, &target_arch}) {
    if (!is_supported_backbone(*arch)) {
      std::string list;
      for (const auto& a : supported_backbones()) list += (list.empty() ? "" : ", ") + a;
      throw std::invalid_argument("unknown backbone '" + *arch + "' (supported: " + list + ")");
    }
  }
  // The deepest tap is 1/16 of the input: below 32 px it degenerates to one pixel.
  if (image_size < 32 || image_size > kMaxImageSize || image_size % 16 != 0) {
    throw std::invalid_argument("image size " + std::to_string(image_size) + " must be a multiple of 16 between 32 and " +
                                std::to_string(kMaxImageSize));
  }
  for (int k = 0; k < 3; ++k) {
    if (latent[k] < 1 || latent[k] > kMaxLatent) {
      throw std::invalid_argument("latent width " + std::to_string(latent[k]) + " of scale " + std::to_string(k) +
                                  " must be in 1.." + std::to_string(kMaxLatent));
    }
  }
}

}  // namespace pefm
