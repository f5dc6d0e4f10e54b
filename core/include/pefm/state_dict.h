// Reading torchvision state dicts (`torch.save(dict(model.state_dict()), path)`) and
// loading them into modules by name.
#pragma once

#include <functional>
#include <map>
#include <string>

#include <torch/nn/module.h>
#include <torch/types.h>

namespace pefm {

using TensorDict = std::map<std::string, torch::Tensor>;

// Reads a .pth file holding a plain dict of tensors (torch.save's zip format) with pefm's
// own bounded reader: no code in the file runs, every tensor's storage is checked against
// its shape before a byte is copied, non-finite weights are refused. Throws
// std::runtime_error naming the file (and the tensor) when it is missing, unreadable, not a
// torch.save archive, not a dict of tensors, or inconsistent.
TensorDict read_state_dict(const std::string& path);
// The same from bytes in memory (`origin` names them in errors); used by the fuzzer.
TensorDict state_dict_from_bytes(const std::string& bytes, const std::string& origin);

// Writes a dict of tensors in the same format (readable by torch.load).
void write_state_dict(const TensorDict& dict, const std::string& path);

// Copies every parameter and buffer of `module` from `dict`, matching by name.
// A key the module has but the dict lacks, a dict key the module lacks (unless
// `ignorable(key)`), or a shape mismatch throws std::runtime_error naming the key and
// `origin` (usually the file name).
void load_state_dict(torch::nn::Module& module, const TensorDict& dict,
                     const std::string& origin,
                     const std::function<bool(const std::string&)>& ignorable = nullptr);

// Moves `module` to `device`, casting floating-point parameters and buffers to `dtype`.
// Unlike torch::nn::Module::to(device, dtype), integer buffers (BatchNorm's
// num_batches_tracked) keep their type, so the module still loads and saves by name.
void move_module(torch::nn::Module& module, torch::Device device, torch::ScalarType dtype);

// All parameters and buffers of `module` by name (detached, on the module's device).
TensorDict module_state(const torch::nn::Module& module);

}  // namespace pefm
