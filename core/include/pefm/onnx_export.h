// A pefm model as one ONNX graph, for runtimes other than LibTorch (ONNX Runtime,
// OpenCV dnn, TensorRT, OpenVINO): docs/onnx.md.
//
//   input  "image"        float32 [N, 3, S, S]: RGB resized to S x S by the model's filter,
//                         then (x - mean) / std per channel (pefm's preprocessing)
//   output "anomaly_map"  float32 [N, 1, S, S]: the map on the calibrated 0..1 scale
//                         (0.5: the threshold; the raw map for an uncalibrated model)
//   output "score"        float32 [N, 1]: the image score, the map's maximum
//
// N is left open. The calibration, the preprocessing and the settings are the model's
// metadata properties (pefm.* keys).
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "pefm/model.h"

namespace pefm {

// The opset the graph is written for.
constexpr int64_t kOnnxOpset = 13;

// The ONNX ModelProto bytes of `model` (BatchNorm folded, float32). Throws
// std::invalid_argument when the graph cannot reproduce pefm's map: an image size whose
// taps do not divide it (ONNX Resize would sample them at other positions).
std::string onnx_model_bytes(const Model& model);

// The metadata properties onnx_model_bytes writes.
std::map<std::string, std::string> onnx_metadata(const Model& model);

}  // namespace pefm
