#include "pefm/onnx_export.h"

#include <cmath>
#include <map>
#include <sstream>
#include <stdexcept>

#include <torch/torch.h>

#include "nn_util.h"
#include "onnx_graph.h"
#include "pefm/model_file.h"
#include "pefm/position_encoding.h"
#include "pefm/postprocess.h"
#include "pefm/state_dict.h"
#include "pixel_constants.h"

#include "pefm-config.h"

namespace pefm {

namespace {

using onnx::Attribute;

// F.normalize(x, p=2, dim=1, eps=1e-12) as pefm runs it: x / max(|x|, 1e-12), as
// x / sqrt(sum x^2 + 1e-24), which is the same float wherever |x| > 1e-8 and zero for an
// all-zero vector. The channel sum and its broadcast back over the channels are 1x1
// convolutions with weights 1: OpenCV's dnn (4.6) broadcasts neither a reduction nor a
// division over channels.
std::string l2_normalize(onnx::Graph& g, const std::string& x, int64_t channels, const std::string& name) {
  const auto sq = g.node("Mul", {x, x}, name + ".squared");
  const auto sum = g.conv1x1(sq, torch::ones({1, channels, 1, 1}), {}, name + ".sum");
  const auto norm = g.node("Sqrt", {g.node("Add", {sum, g.scalar("tiny", 1e-24f)}, name + ".sum_floor")}, name + ".norm");
  const auto spread = g.conv1x1(norm, torch::ones({channels, 1, 1, 1}), {}, name + ".norm_per_channel");
  return g.node("Div", {x, spread}, name);
}

// The features as an encoder sees them (apply_position_encoding), `code` the position
// code: a constant [C, h, w] without a batch axis, which every runtime broadcasts (OpenCV's
// dnn 4.6 adds a constant with one only to a batch of one). For concat, 0 * f + code is the
// code with the features' batch size, as Concat needs.
std::string with_position(onnx::Graph& g, const std::string& f, const std::string& code, PeMode mode,
                          const std::string& name) {
  if (mode == PeMode::kNone) return f;
  if (mode == PeMode::kAdd) return g.node("Add", {f, code}, name);
  const auto zeros = g.node("Mul", {f, g.scalar("zero", 0.0f)}, name + ".zeros");
  return g.node("Concat", {f, g.node("Add", {zeros, code}, name + ".batched")}, name, {Attribute::Int("axis", 1)});
}

// 0.5 * sum over channels of (a - b)^2, [N, 1, h, w]: a 1x1 convolution with weights 0.5
// sums the channels (every runtime has it; reductions over one axis vary between them).
std::string half_squared_distance(onnx::Graph& g, const std::string& a, const std::string& b, int64_t channels,
                                  const std::string& name) {
  const auto diff = g.node("Sub", {a, b}, name + ".diff");
  const auto sq = g.node("Mul", {diff, diff}, name + ".squared");
  return g.conv1x1(sq, torch::full({1, channels, 1, 1}, 0.5f), {}, name);
}

std::string fmt(double v) {
  std::ostringstream out;
  out.precision(17);
  out << v;
  return out.str();
}

}  // namespace

std::map<std::string, std::string> onnx_metadata(const Model& model) {
  std::map<std::string, std::string> meta;
  for (const auto& [k, v] : model_metadata(model)) meta["pefm." + k] = v;
  const auto& cal = model.calibration;
  const auto s = std::to_string(model.config.image_size);
  meta["pefm.onnx.input"] = "image: float32 [N, 3, " + s + ", " + s + "], RGB in 0..1 resized to " + s + "x" + s +
                            " (" + to_string(model.config.resize) + ", config.resize), then (x - mean) / std per channel";
  meta["pefm.onnx.mean"] = fmt(kImageNetMeanR) + "," + fmt(kImageNetMeanG) + "," + fmt(kImageNetMeanB);
  meta["pefm.onnx.std"] = fmt(kImageNetStdR) + "," + fmt(kImageNetStdG) + "," + fmt(kImageNetStdB);
  meta["pefm.onnx.outputs"] = cal.valid ? "anomaly_map [N, 1, S, S] and score [N, 1] on the calibrated 0..1 scale"
                                        : "anomaly_map [N, 1, S, S] and score [N, 1], raw (the model is not calibrated)";
  if (cal.valid) {
    meta["pefm.onnx.image_threshold"] = "0.5";
    // Regions as the element cuts them at its default region-threshold (0.5).
    meta["pefm.onnx.region_level"] = fmt(region_level(cal, Thresholds{}));
  }
  meta["pefm.onnx.opset"] = std::to_string(kOnnxOpset);
  return meta;
}

std::string onnx_model_bytes(const Model& model) {
  TORCH_CHECK(model.net, "ONNX export needs a model with its network");
  const auto& cfg = model.config;
  const int64_t size = cfg.image_size;
  // The graph's own copy, BatchNorm folded as the detector folds it.
  PefmNet net(cfg);
  load_state_dict(*net, module_state(*model.net), "model");
  net->eval();
  net->fold_batchnorm();
  torch::NoGradGuard no_grad;

  onnx::Graph g("pefm");
  g.input("image", {"N", 3, size, size});
  const auto source = net->source().onnx_taps(g, "image", "source");
  const auto target = net->target().onnx_taps(g, "image", "target");
  const auto cs = net->source().tap_channels(), ct = net->target().tap_channels();
  const auto no_roi = g.constant("no_roi", torch::empty({0}, torch::kFloat32));
  std::string fused;
  for (int k = 0; k < 3; ++k) {
    const int64_t h = net->source().tap_size(k, size);
    if (h * (size / h) != size || net->target().tap_size(k, size) != h) {
      throw std::invalid_argument("ONNX export: image size " + std::to_string(size) + " is not a multiple of tap " +
                                  std::to_string(k) + "'s size " + std::to_string(h) +
                                  "; ONNX Resize would not sample the map where pefm does (use a multiple of 16)");
    }
    const auto scale = "scale" + std::to_string(k);
    const auto s = l2_normalize(g, source[k], cs[k], scale + ".source");
    const auto t = l2_normalize(g, target[k], ct[k], scale + ".target");
    auto& dual = *net->mapping(k).as<DualMappingImpl>();
    const auto mapping = "mapping." + std::to_string(k);
    // One constant per channel count: a pair of one architecture shares it.
    std::map<int64_t, std::string> codes;
    const auto code = [&](int64_t d) {
      auto& name = codes[d];
      if (name.empty() && cfg.pe != PeMode::kNone) {
        name = g.constant(scale + ".position_code", position_encoding(d, h, h).contiguous());
      }
      return name;
    };
    const auto in_s = with_position(g, s, code(cs[k]), cfg.pe, scale + ".source_position");
    const auto in_t = with_position(g, t, code(ct[k]), cfg.pe, scale + ".target_position");
    const auto enc_s = g.module(in_s, *dual.encoder_s, mapping + ".encoder_s");
    const auto enc_t = g.module(in_t, *dual.encoder_t, mapping + ".encoder_t");
    const auto s_hat = g.module(g.conv(enc_t, *dual.shared, mapping + ".shared"), *dual.decoder_s, mapping + ".decoder_s");
    const auto t_hat = g.module(g.conv(enc_s, *dual.shared, mapping + ".shared"), *dual.decoder_t, mapping + ".decoder_t");
    const auto residual =
        g.node("Add", {half_squared_distance(g, s_hat, s, cs[k], scale + ".source_residual"),
                       half_squared_distance(g, t_hat, t, ct[k], scale + ".target_residual")},
               scale + ".residual");
    // Bilinear, align_corners=false: half_pixel (pytorch_half_pixel differs only for a
    // 1-pixel output).
    const auto f = static_cast<float>(size / h);
    const auto up = g.node("Resize",
                           {residual, no_roi, g.constant(scale + ".factors", torch::tensor({1.0f, 1.0f, f, f}))},
                           scale + ".upsampled",
                           {Attribute::String("mode", "linear"),
                            Attribute::String("coordinate_transformation_mode", "half_pixel")});
    if (fused.empty()) {
      fused = up;
    } else {
      fused = g.node(cfg.fusion == Fusion::kMean ? "Add" : "Mul", {fused, up}, "fused");
    }
  }
  if (cfg.fusion == Fusion::kMean) fused = g.node("Div", {fused, g.scalar("three", 3.0f)}, "fused_mean");

  // normalize_map: ((raw - threshold) * (0.5 / span) + 0.5) clamped to 0..1, in float32.
  const auto& cal = model.calibration;
  std::string map;
  if (cal.valid) {
    const auto centred = g.node("Sub", {fused, g.scalar("threshold", static_cast<float>(cal.threshold))}, "centred");
    const auto scaled = g.node(
        "Mul", {centred, g.scalar("half_over_span", static_cast<float>(0.5 / (cal.threshold - cal.base)))}, "scaled");
    const auto shifted = g.node("Add", {scaled, g.scalar("half", 0.5f)}, "shifted");
    map = g.clip01(shifted, "clamped", "anomaly_map");
  } else {
    map = g.node("Identity", {fused}, "", {}, "anomaly_map");
  }
  const auto peak = g.node("GlobalMaxPool", {map}, "peak");
  g.node("Flatten", {peak}, "", {Attribute::Int("axis", 1)}, "score");
  g.output("anomaly_map", {"N", 1, size, size});
  g.output("score", {"N", 1});
  return g.serialize(kOnnxOpset, "pefm-export", PEFM_VERSION, onnx_metadata(model));
}

}  // namespace pefm
