#include "onnx_graph.h"

#include <cstring>
#include <stdexcept>
#include <variant>

#include <torch/torch.h>

#include "nn_util.h"

namespace pefm {
namespace onnx {

namespace {

// Protobuf wire format: a field is a varint key (number << 3 | wire type) and a value.
// Repeated numbers are written unpacked, which onnx.proto (proto2) declares.
class Proto {
 public:
  void varint(int field, int64_t v) {
    key(field, 0);
    raw_varint(static_cast<uint64_t>(v));
  }
  void fixed32(int field, float v) {
    static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "a fixed32 is little-endian: the float's bits as is");
    key(field, 5);
    uint32_t bits;
    std::memcpy(&bits, &v, 4);
    for (int i = 0; i < 4; ++i) out_.push_back(static_cast<char>((bits >> (8 * i)) & 0xff));
  }
  void bytes(int field, const std::string& v) {
    key(field, 2);
    raw_varint(v.size());
    out_ += v;
  }
  const std::string& str() const { return out_; }

 private:
  void key(int field, int wire) { raw_varint(static_cast<uint64_t>(field) << 3 | static_cast<uint64_t>(wire)); }
  void raw_varint(uint64_t v) {
    while (v >= 0x80) {
      out_.push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    out_.push_back(static_cast<char>(v));
  }
  std::string out_;
};

// TensorProto.DataType and TypeProto / ValueInfoProto of a float32 tensor.
constexpr int64_t kFloat = 1, kInt64 = 7;

std::string value_info(const std::string& name, const std::vector<Dim>& dims) {
  Proto shape;
  for (const auto& d : dims) {
    Proto dim;
    if (d.param.empty()) {
      dim.varint(1, d.value);
    } else {
      dim.bytes(2, d.param);
    }
    shape.bytes(1, dim.str());
  }
  Proto tensor;
  tensor.varint(1, kFloat);
  tensor.bytes(2, shape.str());
  Proto type;
  type.bytes(1, tensor.str());
  Proto info;
  info.bytes(1, name);
  info.bytes(2, type.str());
  return info.str();
}

std::vector<int64_t> pair_of(const torch::ExpandingArray<2>& a) { return {a->at(0), a->at(1)}; }

}  // namespace

Attribute Attribute::Float(std::string name, float v) {
  Attribute a;
  a.name = std::move(name);
  a.type = Type::kFloat;
  a.f = v;
  return a;
}
Attribute Attribute::Int(std::string name, int64_t v) {
  Attribute a;
  a.name = std::move(name);
  a.type = Type::kInt;
  a.i = v;
  return a;
}
Attribute Attribute::String(std::string name, std::string v) {
  Attribute a;
  a.name = std::move(name);
  a.type = Type::kString;
  a.s = std::move(v);
  return a;
}
Attribute Attribute::Ints(std::string name, std::vector<int64_t> v) {
  Attribute a;
  a.name = std::move(name);
  a.type = Type::kInts;
  a.ints = std::move(v);
  return a;
}

std::string Graph::unique(const std::string& hint) {
  auto name = hint;
  for (int n = 1; used_.count(name); ++n) name = hint + "_" + std::to_string(n);
  used_.insert(name);
  return name;
}

void Graph::input(const std::string& name, const std::vector<Dim>& dims) {
  used_.insert(name);
  inputs_.push_back(value_info(name, dims));
}

void Graph::output(const std::string& name, const std::vector<Dim>& dims) { outputs_.push_back(value_info(name, dims)); }

std::string Graph::constant(const std::string& hint, const torch::Tensor& value) {
  TORCH_CHECK(value.scalar_type() == torch::kFloat32 || value.scalar_type() == torch::kInt64,
              "ONNX constant '", hint, "': float32 or int64 only, got ", value.scalar_type());
  const auto t = value.detach().to(torch::kCPU).contiguous();
  const auto name = unique(hint);
  bytes_ += static_cast<uint64_t>(t.numel() * t.element_size());
  TORCH_CHECK(bytes_ < kMaxBytes, "ONNX export: the constants exceed ", kMaxBytes >> 20,
              " MiB, more than one protobuf message may hold");
  Proto p;
  for (const auto d : t.sizes()) p.varint(1, d);
  p.varint(2, t.scalar_type() == torch::kFloat32 ? kFloat : kInt64);
  p.bytes(8, name);
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "raw_data is little-endian: copied as is");
  p.bytes(9, std::string(static_cast<const char*>(t.data_ptr()), t.numel() * t.element_size()));
  initializers_.push_back(p.str());
  return name;
}

std::string Graph::scalar(const std::string& hint, float value) {
  auto& name = scalars_[{hint, value}];
  if (name.empty()) name = constant(hint, torch::tensor(value, torch::kFloat32));
  return name;
}

std::string Graph::node(const std::string& op, const std::vector<std::string>& inputs, const std::string& hint,
                        std::vector<Attribute> attributes, const std::string& out) {
  const auto name = out.empty() ? unique(hint) : out;
  used_.insert(name);
  Proto p;
  for (const auto& in : inputs) p.bytes(1, in);
  p.bytes(2, name);
  p.bytes(3, name);
  p.bytes(4, op);
  for (const auto& a : attributes) {
    Proto q;
    q.bytes(1, a.name);
    switch (a.type) {
      case Attribute::Type::kFloat:
        q.fixed32(2, a.f);
        break;
      case Attribute::Type::kInt:
        q.varint(3, a.i);
        break;
      case Attribute::Type::kString:
        q.bytes(4, a.s);
        break;
      case Attribute::Type::kInts:
        for (const auto v : a.ints) q.varint(8, v);
        break;
    }
    q.varint(20, static_cast<int64_t>(a.type));
    p.bytes(5, q.str());
  }
  nodes_.push_back(p.str());
  return name;
}

std::string Graph::conv1x1(const std::string& x, const torch::Tensor& weight, const torch::Tensor& bias,
                           const std::string& hint) {
  TORCH_CHECK(weight.dim() == 4 && weight.size(2) == 1 && weight.size(3) == 1, "ONNX export of '", hint,
              "': not a 1x1 convolution: ", weight.sizes());
  std::vector<std::string> in = {x, constant(hint + ".weight", weight.to(torch::kFloat32))};
  if (bias.defined()) in.push_back(constant(hint + ".bias", bias.to(torch::kFloat32)));
  return node("Conv", in, hint,
              {Attribute::Ints("kernel_shape", {1, 1}), Attribute::Ints("strides", {1, 1}),
               Attribute::Ints("pads", {0, 0, 0, 0}), Attribute::Ints("dilations", {1, 1}), Attribute::Int("group", 1)});
}

std::string Graph::module_constant(const std::string& hint, const torch::Tensor& value) {
  auto& name = by_tensor_[value.unsafeGetTensorImpl()];
  if (name.empty()) name = constant(hint, value.to(torch::kFloat32));
  return name;
}

std::string Graph::conv(const std::string& x, const torch::nn::Conv2dImpl& conv, const std::string& hint) {
  const auto& o = conv.options;
  TORCH_CHECK(std::holds_alternative<torch::enumtype::kZeros>(o.padding_mode()), "ONNX export of '", hint,
              "': only zero padding");
  const auto* pad = std::get_if<torch::ExpandingArray<2>>(&o.padding());
  TORCH_CHECK(pad, "ONNX export of '", hint, "': only explicit padding");
  const auto p = pair_of(*pad);
  std::vector<std::string> in = {x, module_constant(hint + ".weight", conv.weight)};
  if (conv.bias.defined()) in.push_back(module_constant(hint + ".bias", conv.bias));
  return node("Conv", in, hint,
              {Attribute::Ints("kernel_shape", pair_of(o.kernel_size())), Attribute::Ints("strides", pair_of(o.stride())),
               Attribute::Ints("pads", {p[0], p[1], p[0], p[1]}), Attribute::Ints("dilations", pair_of(o.dilation())),
               Attribute::Int("group", o.groups())});
}

std::string Graph::relu6(const std::string& x, const std::string& hint) {
  const auto above = node("Relu", {node("Sub", {x, scalar("six", 6.0f)}, hint + ".minus6")}, hint + ".above6");
  return node("Sub", {node("Relu", {x}, hint + ".relu"), above}, hint);
}

std::string Graph::clip01(const std::string& x, const std::string& hint, const std::string& out) {
  const auto one = scalar("one", 1.0f);
  const auto gap = node("Relu", {node("Sub", {one, node("Relu", {x}, hint + ".relu")}, hint + ".gap")}, hint + ".gap_relu");
  return node("Sub", {one, gap}, hint, {}, out);
}

std::string Graph::batch_norm(const std::string& x, const torch::nn::BatchNorm2dImpl& bn, const std::string& hint) {
  return node("BatchNormalization",
              {x, module_constant(hint + ".weight", bn.weight), module_constant(hint + ".bias", bn.bias),
               module_constant(hint + ".running_mean", bn.running_mean),
               module_constant(hint + ".running_var", bn.running_var)},
              hint, {Attribute::Float("epsilon", static_cast<float>(bn.options.eps()))});
}

std::string Graph::module(const std::string& x, torch::nn::Module& m, const std::string& hint) {
  if (auto* c = m.as<torch::nn::Conv2dImpl>()) return conv(x, *c, hint);
  if (auto* bn = m.as<torch::nn::BatchNorm2dImpl>()) return batch_norm(x, *bn, hint);
  if (m.as<torch::nn::ReLUImpl>()) return node("Relu", {x}, hint);
  if (m.as<torch::nn::ReLU6Impl>()) return relu6(x, hint);
  if (m.as<torch::nn::DropoutImpl>()) return x;
  if (auto* seq = m.as<SeqImpl>()) {
    auto y = x;
    for (size_t i = 0; i < seq->size(); ++i) {
      if (!seq->skips(i)) y = module(y, *seq->ptr(i), hint + "." + std::to_string(i));
    }
    return y;
  }
  if (auto* seq = m.as<torch::nn::SequentialImpl>()) {
    auto y = x;
    for (size_t i = 0; i < seq->size(); ++i) y = module(y, *seq->ptr(i), hint + "." + std::to_string(i));
    return y;
  }
  throw std::logic_error("ONNX export: no rule for module '" + hint + "' (" + m.name() + ")");
}

std::string Graph::serialize(int64_t opset, const std::string& producer, const std::string& version,
                             const std::map<std::string, std::string>& metadata) const {
  Proto graph;
  for (const auto& n : nodes_) graph.bytes(1, n);
  graph.bytes(2, name_);
  for (const auto& t : initializers_) graph.bytes(5, t);
  for (const auto& i : inputs_) graph.bytes(11, i);
  for (const auto& o : outputs_) graph.bytes(12, o);
  Proto model;
  // ir_version and producer_name first: pefm-export recognises its own files by them.
  model.varint(1, 7);
  model.bytes(2, producer);
  model.bytes(3, version);
  Proto op;
  op.varint(2, opset);
  model.bytes(8, op.str());
  model.bytes(7, graph.str());
  for (const auto& [k, v] : metadata) {
    Proto entry;
    entry.bytes(1, k);
    entry.bytes(2, v);
    model.bytes(14, entry.str());
  }
  return model.str();
}

}  // namespace onnx
}  // namespace pefm
