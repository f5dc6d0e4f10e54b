// Internal: CUDA kernels with plain-C++ launchers (no LibTorch types, so this header
// compiles with or without a CUDA-enabled LibTorch). Each has a CPU twin that uses the
// same per-pixel code, for testing the arithmetic on machines without a GPU.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

namespace pefm {
namespace cuda {

struct FrameDesc {
  const void* data;
  bool is_float;        // float in 0..1, else uint8 in 0..255
  int n, h, w, c;
  int64_t stride_n, stride_h, stride_w;  // in elements; the channel stride is 1
  int rgb[3];           // channel index of R, G, B (all 0 for gray)
};

// Fused channel selection + antialiased bilinear resize (PyTorch/PIL weights) +
// ImageNet normalisation: frame -> [n, 3, size, size] float or half.
cudaError_t launch_preprocess(const FrameDesc& frame, void* out, bool half_out, int size,
                              cudaStream_t stream);

// The same arithmetic on the host, float output, for tests.
void preprocess_host(const FrameDesc& frame, float* out, int size);

}  // namespace cuda
}  // namespace pefm
