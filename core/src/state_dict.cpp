#include "pefm/state_dict.h"

#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>

#include <torch/script.h>
#include <torch/serialize.h>
#include <torch/torch.h>

#include "pefm/model_file.h"

namespace pefm {

namespace {

std::string shape_str(c10::IntArrayRef sizes) {
  std::ostringstream s;
  s << sizes;
  return s.str();
}

}  // namespace

TensorDict read_state_dict(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open weights file '" + path + "'");
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.empty()) throw std::runtime_error("weights file '" + path + "' is empty");
  c10::IValue value;
  try {
    value = torch::pickle_load(bytes);
  } catch (const std::exception& e) {
    std::string what = e.what();
    what = what.substr(0, what.find('\n'));
    throw std::runtime_error("weights file '" + path +
                             "' is not a PyTorch state dict saved with torch.save (" + what + ")");
  }
  if (!value.isGenericDict()) {
    throw std::runtime_error("weights file '" + path + "' holds a " + value.tagKind() +
                             ", not a dict of tensors; save it with "
                             "torch.save(dict(model.state_dict()), path)");
  }
  TensorDict dict;
  for (const auto& item : value.toGenericDict()) {
    if (!item.key().isString()) {
      throw std::runtime_error("weights file '" + path + "' has a non-string key");
    }
    const auto key = item.key().toStringRef();
    if (!item.value().isTensor()) {
      throw std::runtime_error("weights file '" + path + "': entry '" + key + "' is a " +
                               item.value().tagKind() + ", not a tensor");
    }
    dict[key] = item.value().toTensor();
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
