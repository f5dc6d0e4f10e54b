// Choosing where the detector runs.
#pragma once

#include <string>

#include <torch/types.h>

#include "pefm/threads.h"

namespace pefm {

// "auto" (first CUDA device when LibTorch has one, else CPU), "cpu", "cuda" or "cuda:N".
// Throws std::invalid_argument for malformed text and std::runtime_error when the
// requested CUDA device does not exist in this build or on this machine.
torch::Device resolve_device(const std::string& text);

bool cuda_available();

// Human-readable device name ("CPU (2 threads)", "NVIDIA H200"), for logs and benchmarks.
std::string device_name(const torch::Device& device);

}  // namespace pefm
