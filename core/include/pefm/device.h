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

// What this process runs on, for --version and the CUDA link check: the LibTorch version
// and the library file it was loaded from, whether CUDA is compiled in *and registered*
// (libtorch_cuda loaded, its file and size, the CUDA runtime version) and how many devices
// answer (or why none does), and pefm's own kernels. Several lines, each "key: value".
std::string runtime_report();

}  // namespace pefm
