// Internal, nvcc only: one switch from Elem to the C++ element type, shared by every
// launcher and its host twin, so the type a kernel is instantiated for is the type its
// buffer was allocated with (kernel_elem() in torch_elem.h maps LibTorch's dtype to Elem).
//   dispatch_elem(elem, [&](auto tag) { using T = decltype(tag); ... });
// Also the kernels' one launch geometry: PEFM_GRID_LOOP and blocks_for.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels.h"

namespace pefm {
namespace cuda {
namespace {  // each .cu file its own copy: they call the headers' file-local intrinsics

__host__ __device__ inline float as_float(float v) { return v; }
__host__ __device__ inline float as_float(__half v) { return __half2float(v); }
__host__ __device__ inline float as_float(__nv_bfloat16 v) { return __bfloat162float(v); }

__host__ __device__ inline void store(float* p, float v) { *p = v; }
__host__ __device__ inline void store(__half* p, float v) { *p = __float2half_rn(v); }
__host__ __device__ inline void store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

// Inside a kernel: i over 0 .. total - 1, each thread taking every (grid size)-th element.
#define PEFM_GRID_LOOP(i, total)                                                              \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (total); \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

// Blocks of `threads` to launch over `total` elements: one element a thread, at most 65535
// blocks (the grid-stride loop covers the rest).
inline int blocks_for(int64_t total, int threads) {
  const int64_t wanted = (total + threads - 1) / threads;
  return static_cast<int>(wanted < 65535 ? wanted : 65535);
}

// Calls fn(T{}) with T the element type of `elem`; false for a value outside the enum.
template <typename Fn>
bool dispatch_elem(Elem elem, Fn&& fn) {
  switch (elem) {
    case Elem::kFloat: fn(float{}); return true;
    case Elem::kHalf: fn(__half{}); return true;
    case Elem::kBFloat16: fn(__nv_bfloat16{}); return true;
  }
  return false;
}

}  // namespace
}  // namespace cuda
}  // namespace pefm
