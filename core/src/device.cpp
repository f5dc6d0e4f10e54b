#include "pefm/device.h"

#include <sched.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <ATen/Parallel.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <torch/cuda.h>
#include <torch/version.h>

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

namespace {

// The file a shared library `name` (e.g. "libtorch_cuda.so", or a versioned file
// "libtorch_cuda.so.2.11" that a link points to) was mapped from, or "".
std::string mapped_library(const std::string& name) {
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);) {
    const auto slash = line.rfind('/');
    if (slash != std::string::npos && line.compare(slash + 1, name.size(), name) == 0 &&
        (line.size() == slash + 1 + name.size() || line[slash + 1 + name.size()] == '.'))
      return line.substr(line.find('/'));
  }
  return "";
}

std::string file_and_size(const std::string& path) {
  struct stat st {};
  if (path.empty()) return "(not mapped)";
  if (::stat(path.c_str(), &st) != 0) return path;
  std::ostringstream s;
  s << path << ", " << (st.st_size + (1 << 19)) / (1 << 20) << " MB";
  return s.str();
}

}  // namespace

std::string runtime_report() {
  std::ostringstream r;
  r << "LibTorch: " << TORCH_VERSION << " (" << file_and_size(mapped_library("libtorch_cpu.so")) << ")\n";
  // libtorch_cuda registers its hooks from a static initialiser when it is loaded; a build
  // whose linker dropped it has the default hooks, which know of no CUDA at all.
  const bool registered = at::CUDAHooksRegistry()->Has("CUDAHooks");
  r << "CUDA: ";
  if (!registered) {
    r << (PEFM_TORCH_CUDA ? "linked against a CUDA LibTorch but NOT registered: libtorch_cuda was not loaded"
                          : "not registered (a CPU LibTorch, or libtorch_cuda was not loaded)");
  } else {
    const auto& hooks = at::detail::getCUDAHooks();
    const long runtime = hooks.hasCUDART() ? hooks.versionCUDART() : 0;
    r << "compiled in and registered (" << file_and_size(mapped_library("libtorch_cuda.so")) << "; CUDA runtime "
      << runtime / 1000 << "." << runtime % 1000 / 10 << ")";
#if PEFM_TORCH_CUDA
    int count = 0;
    const cudaError_t err = cudaGetDeviceCount(&count);
    r << "; devices: " << (err == cudaSuccess ? count : 0);
    if (err != cudaSuccess) r << " (cudaGetDeviceCount: " << cudaGetErrorString(err) << ")";
    cudaGetLastError();  // the query's error is not sticky, but do not leave it behind
#else
    r << "; devices: " << hooks.getNumGPUs();
#endif
  }
  r << "\npefm CUDA kernels: ";
  if (PEFM_WITH_CUDA_KERNELS)
    r << "compiled for " << PEFM_CUDA_ARCHS;
  else
    r << "not compiled (no nvcc at build time, or -Dcuda=disabled)";
  r << "\nCPU threads: " << at::get_num_threads() << "\n";
  return r.str();
}

}  // namespace pefm
