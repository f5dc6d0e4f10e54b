// Choosing where the detector runs.
#pragma once

#include <string>

#include <torch/types.h>

namespace pefm {

// "auto" (first CUDA device when LibTorch has one, else CPU), "cpu", "cuda" or "cuda:N".
// Throws std::invalid_argument for malformed text and std::runtime_error when the
// requested CUDA device does not exist in this build or on this machine.
torch::Device resolve_device(const std::string& text);

bool cuda_available();

// CPU threads LibTorch uses for the operators called from this thread on (its intra-op
// pool; with OpenMP the setting belongs to the calling thread). `threads` <= 0:
// default_cpu_threads(). Cheap when the count is already in force, so callers may apply
// it per frame.
void use_cpu_threads(int threads);
// CPUs this process may run on (its affinity mask: taskset, cgroup cpusets), at least 1.
int usable_cpus();
// OMP_NUM_THREADS when set (the user's choice for this process), else usable_cpus() --
// not LibTorch's own default, which can be 1 on a 2-core machine.
int default_cpu_threads();

// Human-readable device name ("CPU (2 threads)", "NVIDIA H200"), for logs and benchmarks.
std::string device_name(const torch::Device& device);

}  // namespace pefm
