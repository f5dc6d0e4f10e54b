// Fused residual + upsampling + fusion kernels; see kernels.h.
#include <stdexcept>
#include <vector>

#include "dispatch.cuh"

namespace pefm {
namespace cuda {

namespace {

// Sum over channels of (a - b)^2 at pixel p of image n; planes of `hw` pixels.
template <typename T>
__host__ __device__ inline float squared_distance(const T* a, const T* b, int channels, int64_t hw, int n,
                                                  int64_t p) {
  const int64_t base = static_cast<int64_t>(n) * channels * hw + p;
  float acc = 0.0f;
  for (int c = 0; c < channels; ++c) {
    const float d = as_float(a[base + c * hw]) - as_float(b[base + c * hw]);
    acc += d * d;
  }
  return acc;
}

template <typename T>
__host__ __device__ inline float residual_at(const ResidualScale& r, int n, int64_t p) {
  const int64_t hw = static_cast<int64_t>(r.h) * r.w;
  return 0.5f * (squared_distance(static_cast<const T*>(r.s_hat), static_cast<const T*>(r.s), r.cs, hw, n, p) +
                 squared_distance(static_cast<const T*>(r.t_hat), static_cast<const T*>(r.t), r.ct, hw, n, p));
}

// PyTorch's bilinear source index (align_corners=false, output size given).
struct Tap {
  int i0, i1;
  float l0, l1;
};

__host__ __device__ inline Tap source_tap(int dst, int in, int out) {
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  float src = scale * (dst + 0.5f) - 0.5f;
  if (src < 0.0f) src = 0.0f;
  Tap t;
  t.i0 = static_cast<int>(src);
  t.i1 = t.i0 + (t.i0 < in - 1 ? 1 : 0);
  t.l1 = src - t.i0;
  t.l0 = 1.0f - t.l1;
  return t;
}

__host__ __device__ inline float upsampled(const float* map, int h, int w, int size, int oy, int ox) {
  const Tap ty = source_tap(oy, h, size), tx = source_tap(ox, w, size);
  const float* r0 = map + static_cast<int64_t>(ty.i0) * w;
  const float* r1 = map + static_cast<int64_t>(ty.i1) * w;
  return ty.l0 * (tx.l0 * r0[tx.i0] + tx.l1 * r0[tx.i1]) + ty.l1 * (tx.l0 * r1[tx.i0] + tx.l1 * r1[tx.i1]);
}

struct Maps {
  const float* map[3];  // [n, h_k, w_k] each
  int h[3], w[3];
};

__host__ __device__ inline float fused_at(const Maps& m, int n, bool product, int size, int oy, int ox) {
  float acc = 0.0f;
  for (int k = 0; k < 3; ++k) {
    const float* plane = m.map[k] + static_cast<int64_t>(n) * m.h[k] * m.w[k];
    const float u = upsampled(plane, m.h[k], m.w[k], size, oy, ox);
    acc = k == 0 ? u : (product ? acc * u : acc + u);
  }
  return product ? acc : acc / 3.0f;
}

template <typename T>
__global__ void residual_kernel(ResidualScale r, int n, float* out) {
  const int64_t hw = static_cast<int64_t>(r.h) * r.w;
  PEFM_GRID_LOOP(i, hw * n) out[i] = residual_at<T>(r, static_cast<int>(i / hw), i % hw);
}

__global__ void fuse_kernel(Maps m, int n, bool product, int size, float* out) {
  const int64_t plane = static_cast<int64_t>(size) * size;
  PEFM_GRID_LOOP(i, plane * n) {
    const int64_t q = i % plane;
    out[i] = fused_at(m, static_cast<int>(i / plane), product, size, static_cast<int>(q / size),
                      static_cast<int>(q % size));
  }
}

Maps scratch_maps(const ResidualScale scales[3], int n, float* scratch) {
  Maps m;
  int64_t offset = 0;
  for (int k = 0; k < 3; ++k) {
    m.map[k] = scratch + offset;
    m.h[k] = scales[k].h;
    m.w[k] = scales[k].w;
    offset += static_cast<int64_t>(n) * scales[k].h * scales[k].w;
  }
  return m;
}

}  // namespace

cudaError_t launch_anomaly_map(const ResidualScale scales[3], int n, Elem elem, bool product, int size,
                               float* scratch, float* out, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  const int threads = 256;
  const Maps m = scratch_maps(scales, n, scratch);
  for (int k = 0; k < 3; ++k) {
    const int64_t total = static_cast<int64_t>(n) * scales[k].h * scales[k].w;
    float* dst = const_cast<float*>(m.map[k]);
    const bool known = dispatch_elem(elem, [&](auto tag) {
      using T = decltype(tag);
      residual_kernel<T><<<blocks_for(total, threads), threads, 0, stream>>>(scales[k], n, dst);
    });
    if (!known) return cudaErrorInvalidValue;
  }
  const int64_t total = static_cast<int64_t>(n) * size * size;
  fuse_kernel<<<blocks_for(total, threads), threads, 0, stream>>>(m, n, product, size, out);
  return cudaGetLastError();
}

void anomaly_map_host(const ResidualScale scales[3], int n, Elem elem, bool product, int size, float* out) {
  int64_t scratch_size = 0;
  for (int k = 0; k < 3; ++k) scratch_size += static_cast<int64_t>(n) * scales[k].h * scales[k].w;
  std::vector<float> scratch(static_cast<size_t>(scratch_size));
  const Maps m = scratch_maps(scales, n, scratch.data());
  for (int k = 0; k < 3; ++k) {
    const int64_t hw = static_cast<int64_t>(scales[k].h) * scales[k].w;
    float* dst = const_cast<float*>(m.map[k]);
    const bool known = dispatch_elem(elem, [&](auto tag) {
      using T = decltype(tag);
      for (int b = 0; b < n; ++b) {
        for (int64_t p = 0; p < hw; ++p) dst[b * hw + p] = residual_at<T>(scales[k], b, p);
      }
    });
    if (!known) throw std::invalid_argument("anomaly_map_host: unknown element type");
  }
  for (int b = 0; b < n; ++b) {
    for (int y = 0; y < size; ++y) {
      for (int x = 0; x < size; ++x) {
        out[(static_cast<int64_t>(b) * size + y) * size + x] = fused_at(m, b, product, size, y, x);
      }
    }
  }
}

}  // namespace cuda
}  // namespace pefm
