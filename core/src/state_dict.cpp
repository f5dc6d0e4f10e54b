#include "pefm/state_dict.h"

#include <cstring>
#include <sstream>
#include <stdexcept>

#include <torch/serialize.h>
#include <torch/torch.h>

#include "pefm/file_util.h"
#include "pth_reader.h"

namespace pefm {

namespace {

std::string shape_str(c10::IntArrayRef sizes) {
  std::ostringstream s;
  s << sizes;
  return s.str();
}

}  // namespace

namespace {

torch::ScalarType scalar_type(pth::DType t) {
  switch (t) {
    case pth::DType::kFloat32: return torch::kFloat32;
    case pth::DType::kFloat64: return torch::kFloat64;
    case pth::DType::kFloat16: return torch::kFloat16;
    case pth::DType::kBFloat16: return torch::kBFloat16;
    case pth::DType::kInt64: return torch::kInt64;
    case pth::DType::kInt32: return torch::kInt32;
    case pth::DType::kInt16: return torch::kInt16;
    case pth::DType::kInt8: return torch::kInt8;
    case pth::DType::kUInt8: return torch::kUInt8;
    case pth::DType::kBool: return torch::kBool;
  }
  throw std::logic_error("unhandled pth dtype");
}

// Largest weights file read (WideResNet50-2 in full is about 270 MB).
constexpr uint64_t kMaxWeightsFileBytes = uint64_t{2} << 30;

}  // namespace

// pefm's own bounded reader (pth_reader.cpp), not torch::pickle_load: LibTorch 1.13 does not
// check a tensor's storage against its shape, so a crafted file could make the copy below
// read heap memory into the weights.
TensorDict read_state_dict(const std::string& path) {
  const auto bytes = read_bounded_file(path, "weights file", kMaxWeightsFileBytes);
  if (bytes.empty()) throw std::runtime_error("weights file '" + path + "' is empty");
  return state_dict_from_bytes(bytes, path);
}

TensorDict state_dict_from_bytes(const std::string& bytes, const std::string& origin) {
  TensorDict dict;
  for (const auto& r : pth::read_pth(bytes, origin)) {
    // The reader has checked that every element the view reaches lies inside the storage and
    // that the view has no more elements than the storage. Only the reachable range is copied.
    const auto type = scalar_type(r.dtype);
    const auto elem = static_cast<int64_t>(pth::element_size(r.dtype));
    int64_t numel = 1, reach = 0;  // reach: elements from the offset to one past the last read
    for (size_t d = 0; d < r.sizes.size(); ++d) {
      numel *= r.sizes[d];
      reach += (r.sizes[d] - 1) * r.strides[d];
    }
    reach = numel == 0 ? 0 : reach + 1;
    auto range = torch::empty({reach}, torch::TensorOptions().dtype(type));
    const auto* from = r.storage + r.storage_offset * elem;
    if (type == torch::kBool) {
      // Any byte but 0 or 1 in a bool is undefined behaviour for the code that reads it.
      auto* to = range.data_ptr<bool>();
      for (int64_t i = 0; i < reach; ++i) to[i] = from[i] != 0;
    } else if (reach > 0) {
      std::memcpy(range.data_ptr(), from, static_cast<size_t>(reach * elem));
    }
    auto t = range.as_strided(r.sizes, r.strides, 0).clone(torch::MemoryFormat::Contiguous);
    if (t.is_floating_point() && !torch::isfinite(t).all().item<bool>()) {
      throw std::runtime_error("weights file '" + origin + "': tensor '" + r.name + "' contains NaN or Inf");
    }
    dict[r.name] = std::move(t);
  }
  return dict;
}

void write_state_dict(const TensorDict& dict, const std::string& path) {
  c10::Dict<std::string, torch::Tensor> d;
  for (const auto& [key, tensor] : dict) d.insert(key, tensor.cpu());
  const auto bytes = torch::pickle_save(c10::IValue(d));
  write_file_atomically(path, std::string(bytes.begin(), bytes.end()));
}

void load_state_dict(torch::nn::Module& module, const TensorDict& dict, const std::string& origin,
                     const std::function<bool(const std::string&)>& ignorable) {
  torch::NoGradGuard no_grad;
  auto params = module.named_parameters(/*recurse=*/true);
  auto buffers = module.named_buffers(/*recurse=*/true);
  std::map<std::string, torch::Tensor> targets;
  for (const auto& p : params) targets[p.key()] = p.value();
  for (const auto& b : buffers) targets[b.key()] = b.value();

  for (const auto& [key, dst] : targets) {
    const auto it = dict.find(key);
    if (it == dict.end()) {
      throw std::runtime_error("'" + origin + "' is missing key '" + key + "' (shape " +
                               shape_str(dst.sizes()) + ")");
    }
    const auto& src = it->second;
    if (src.sizes() != dst.sizes()) {
      throw std::runtime_error("'" + origin + "': key '" + key + "' has shape " +
                               shape_str(src.sizes()) + ", expected " + shape_str(dst.sizes()));
    }
    if (src.is_floating_point() != dst.is_floating_point()) {
      throw std::runtime_error("'" + origin + "': key '" + key + "' has dtype " +
                               std::string(c10::toString(src.scalar_type())) + ", expected " +
                               std::string(c10::toString(dst.scalar_type())));
    }
  }
  for (const auto& [key, src] : dict) {
    if (targets.count(key) == 0 && !(ignorable && ignorable(key))) {
      throw std::runtime_error("'" + origin + "' has unexpected key '" + key + "' (shape " +
                               shape_str(src.sizes()) + ")");
    }
  }
  for (auto& [key, dst] : targets) dst.copy_(dict.at(key));
}

void move_module(torch::nn::Module& module, torch::Device device, torch::ScalarType dtype) {
  torch::NoGradGuard no_grad;
  const auto move = [&](torch::Tensor& t) {
    t.set_data(t.to(device, t.is_floating_point() ? dtype : t.scalar_type()));
  };
  for (auto& p : module.parameters(true)) move(p);
  for (auto& b : module.buffers(true)) move(b);
  // Biases that BatchNorm folding gave to bias-less convolutions live outside the
  // parameter list (see fold_conv_bn).
  for (auto& m : module.modules(true)) {
    if (auto* conv = m->as<torch::nn::Conv2dImpl>(); conv && conv->bias.defined() &&
        (conv->bias.device() != device || conv->bias.scalar_type() != conv->weight.scalar_type())) {
      conv->bias = conv->bias.to(device, conv->weight.scalar_type());
    }
  }
}

TensorDict module_state(const torch::nn::Module& module) {
  TensorDict out;
  for (const auto& p : module.named_parameters(true)) out[p.key()] = p.value().detach();
  for (const auto& b : module.named_buffers(true)) out[b.key()] = b.value().detach();
  return out;
}

}  // namespace pefm
