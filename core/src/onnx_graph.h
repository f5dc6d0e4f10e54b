// Internal: an ONNX graph built node by node and written as an ONNX ModelProto, with the
// protobuf wire encoding done here (no protobuf library: pefm writes, never reads, ONNX).
// Field numbers follow onnx/onnx.proto (IR version 7, the one opset 13 belongs to).
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <torch/types.h>

namespace torch::nn {
class Module;
class Conv2dImpl;
class BatchNorm2dImpl;
}  // namespace torch::nn

namespace pefm {
namespace onnx {

struct Attribute {
  enum class Type { kFloat = 1, kInt = 2, kString = 3, kInts = 7 };
  std::string name;
  Type type = Type::kInt;
  float f = 0.0f;
  int64_t i = 0;
  std::string s;
  std::vector<int64_t> ints;

  static Attribute Float(std::string name, float v);
  static Attribute Int(std::string name, int64_t v);
  static Attribute String(std::string name, std::string v);
  static Attribute Ints(std::string name, std::vector<int64_t> v);
};

// A dimension of a graph input or output: a size, or a name for a size left open.
struct Dim {
  int64_t value = 0;
  std::string param;
  Dim(int64_t v) : value(v) {}  // NOLINT(google-explicit-constructor): {"batch", 3, S, S}
  Dim(const char* p) : param(p) {}  // NOLINT(google-explicit-constructor)
};

class Graph {
 public:
  explicit Graph(std::string name) : name_(std::move(name)) {}

  // A float32 graph input or output.
  void input(const std::string& name, const std::vector<Dim>& dims);
  void output(const std::string& name, const std::vector<Dim>& dims);
  // A constant (float32 or int64, copied): returns its value name, `hint` made unique.
  std::string constant(const std::string& hint, const torch::Tensor& value);
  // A float32 scalar constant, one per hint and value however often it is asked for.
  std::string scalar(const std::string& hint, float value);
  // A module's weight or buffer as a float32 constant, written once however many nodes use
  // it (a mapping network's shared coder serves both directions).
  std::string module_constant(const std::string& hint, const torch::Tensor& value);
  // One node; returns the name of its (single) output: `out` as given when not empty (a
  // graph output's name), else `hint` made unique.
  std::string node(const std::string& op, const std::vector<std::string>& inputs, const std::string& hint,
                   std::vector<Attribute> attributes = {}, const std::string& out = "");

  // A 1x1 convolution with explicit weights [out, in, 1, 1] and bias [out] (undefined: none).
  std::string conv1x1(const std::string& x, const torch::Tensor& weight, const torch::Tensor& bias,
                      const std::string& hint);
  // min(max(x, 0), 6) as Relu(x) - Relu(x - 6): exact up to 6, within half an ulp of x
  // above. OpenCV's dnn (4.6) reads Clip only in its opset-6 form, which opset 13 has not.
  std::string relu6(const std::string& x, const std::string& hint);
  // min(max(x, 0), 1) as 1 - Relu(1 - Relu(x)): never outside 0..1, within half an ulp of 1
  // inside.
  std::string clip01(const std::string& x, const std::string& hint, const std::string& out = "");

  // Layers of LibTorch modules (eval mode): their weights become constants.
  std::string conv(const std::string& x, const torch::nn::Conv2dImpl& conv, const std::string& hint);
  std::string batch_norm(const std::string& x, const torch::nn::BatchNorm2dImpl& bn, const std::string& hint);
  // Conv2d, BatchNorm2d, ReLU, ReLU6 and Dropout (identity), and Sequentials of them and
  // of pefm's foldable Seq (a BatchNorm it folded is skipped). Throws std::logic_error for
  // any other module: the graph would otherwise differ from forward() silently.
  std::string module(const std::string& x, torch::nn::Module& m, const std::string& hint);

  // ModelProto bytes: IR version 7, the default domain at `opset`, producer `producer`
  // (version `version`), metadata_props in key order.
  std::string serialize(int64_t opset, const std::string& producer, const std::string& version,
                        const std::map<std::string, std::string>& metadata) const;

 private:
  std::string unique(const std::string& hint);

  std::string name_;
  // A protobuf message holds less than 2 GiB; the graph's text and nodes need some of it.
  static constexpr uint64_t kMaxBytes = (uint64_t{2} << 30) - (uint64_t{64} << 20);

  std::set<std::string> used_;
  std::map<std::pair<std::string, float>, std::string> scalars_;
  std::map<const void*, std::string> by_tensor_;
  uint64_t bytes_ = 0;
  std::vector<std::string> nodes_, initializers_, inputs_, outputs_;  // encoded protos
};

}  // namespace onnx
}  // namespace pefm
