#include "pefm/device.h"

#include <sched.h>

#include <cstdlib>
#include <stdexcept>

#include <ATen/Parallel.h>
#include <torch/cuda.h>

#include "pefm-config.h"
#if PEFM_TORCH_CUDA
#include <c10/cuda/CUDAFunctions.h>
#include <cuda_runtime_api.h>
#endif

namespace pefm {

bool cuda_available() { return torch::cuda::is_available(); }

torch::Device resolve_device(const std::string& text) {
  if (text == "auto") {
    return cuda_available() ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
  }
  if (text == "cpu") return torch::Device(torch::kCPU);
  int index = 0;
  if (text == "cuda") {
    index = 0;
  } else if (text.rfind("cuda:", 0) == 0 && text.size() > 5 &&
             text.find_first_not_of("0123456789", 5) == std::string::npos &&
             text.size() < 9) {
    index = std::stoi(text.substr(5));
  } else {
    throw std::invalid_argument("device: '" + text + "' is not auto, cpu, cuda or cuda:N");
  }
  if (!cuda_available()) {
    throw std::runtime_error("device '" + text +
                             "' requested, but CUDA is not available (this LibTorch has "
                             "no CUDA support or no GPU is visible); use device=cpu or auto");
  }
  const auto count = static_cast<int>(torch::cuda::device_count());
  if (index >= count) {
    throw std::runtime_error("device '" + text + "' requested, but only " +
                             std::to_string(count) + " CUDA device(s) are visible");
  }
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
}

int usable_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
  return 1;
}

int default_cpu_threads() {
  if (const char* env = std::getenv("OMP_NUM_THREADS"); env && *env) {
    char* end = nullptr;
    const long n = std::strtol(env, &end, 10);
    if (*end == '\0' && n > 0 && n <= 4096) return static_cast<int>(n);
  }
  return usable_cpus();
}

void use_cpu_threads(int threads) {
  if (threads <= 0) threads = default_cpu_threads();
  if (at::get_num_threads() != threads) at::set_num_threads(threads);
}

std::string device_name(const torch::Device& device) {
  if (device.is_cpu()) {
    return "CPU (" + std::to_string(at::get_num_threads()) + " threads)";
  }
#if PEFM_TORCH_CUDA
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, device.index()) == cudaSuccess) {
    return std::string(prop.name) + " (" + device.str() + ")";
  }
#endif
  return device.str();
}

}  // namespace pefm
