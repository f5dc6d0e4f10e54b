// Fused preprocessing kernel; see kernels.h.
#include <stdexcept>

#include "../pixel_constants.h"
#include "dispatch.cuh"

namespace pefm {
namespace cuda {

namespace {

struct Axis {
  float scale, support, invscale;
};

__host__ __device__ inline Axis make_axis(int in, int out) {
  // PyTorch's _upsample_bilinear2d_aa (align_corners=false): scale = in / out,
  // triangle filter widened by the scale when downsampling.
  Axis a;
  a.scale = static_cast<float>(in) / static_cast<float>(out);
  a.support = a.scale >= 1.0f ? a.scale : 1.0f;
  a.invscale = a.scale >= 1.0f ? 1.0f / a.scale : 1.0f;
  return a;
}

__host__ __device__ inline float triangle(float x) {
  x = x < 0.0f ? -x : x;
  return x < 1.0f ? 1.0f - x : 0.0f;
}

__host__ __device__ inline void taps(const Axis& a, int i, int in, int* lo, int* hi, float* center) {
  *center = a.scale * (i + 0.5f);
  int l = static_cast<int>(*center - a.support + 0.5f);
  int h = static_cast<int>(*center + a.support + 0.5f);
  *lo = l < 0 ? 0 : l;
  *hi = h > in ? in : h;
}

__host__ __device__ inline float load(const FrameDesc& f, int64_t offset) {
  return f.is_float ? static_cast<const float*>(f.data)[offset]
                    : static_cast<const unsigned char*>(f.data)[offset] * (1.0f / 255.0f);
}

// Normalised R, G, B of output pixel (ox, oy) of image n.
__host__ __device__ inline void pixel(const FrameDesc& f, int size, int n, int oy, int ox, float rgb[3]) {
  const Axis ax = make_axis(f.w, size), ay = make_axis(f.h, size);
  int x0, x1, y0, y1;
  float cx, cy;
  taps(ax, ox, f.w, &x0, &x1, &cx);
  taps(ay, oy, f.h, &y0, &y1, &cy);
  float acc[3] = {0.0f, 0.0f, 0.0f};
  float wsum_x = 0.0f, wsum_y = 0.0f;
  for (int x = x0; x < x1; ++x) wsum_x += triangle((x - cx + 0.5f) * ax.invscale);
  for (int y = y0; y < y1; ++y) {
    const float wy = triangle((y - cy + 0.5f) * ay.invscale);
    wsum_y += wy;
    if (wy == 0.0f) continue;
    const int64_t row = n * f.stride_n + y * f.stride_h;
    for (int x = x0; x < x1; ++x) {
      const float w = wy * triangle((x - cx + 0.5f) * ax.invscale);
      const int64_t p = row + x * f.stride_w;
      for (int c = 0; c < 3; ++c) acc[c] += w * load(f, p + f.rgb[c]);
    }
  }
  const float norm = (wsum_x > 0.0f && wsum_y > 0.0f) ? 1.0f / (wsum_x * wsum_y) : 0.0f;
  const float mean[3] = {kImageNetMeanR, kImageNetMeanG, kImageNetMeanB};
  const float stdv[3] = {kImageNetStdR, kImageNetStdG, kImageNetStdB};
  for (int c = 0; c < 3; ++c) rgb[c] = (acc[c] * norm - mean[c]) / stdv[c];
}

__host__ __device__ inline int clip8(int v) {
  const int s = v >> resample::kPrecisionBits;  // arithmetic shift, as PIL
  return s < 0 ? 0 : s > 255 ? 255 : s;
}

// A frame value as 8 bits: float frames quantised (round half to even, as the CPU path's
// torch::round), so every format reaches PIL's 8-bit arithmetic.
__host__ __device__ inline int sample8(const FrameDesc& f, int64_t offset) {
  if (!f.is_float) return static_cast<const unsigned char*>(f.data)[offset];
  const float v = rintf(static_cast<const float*>(f.data)[offset] * 255.0f);
  return v < 0.0f ? 0 : v > 255.0f ? 255 : static_cast<int>(v);
}

// Normalised R, G, B of output pixel (ox, oy) of image n, PIL's Lanczos: for each tap row
// the horizontal fixed-point sum rounded to 8 bits (as PIL's first pass stores it), then
// the vertical sum of those (rounded again).
__host__ __device__ inline void pixel_lanczos(const FrameDesc& f, const LanczosTaps& t, int n, int oy, int ox,
                                              float rgb[3]) {
  const int xlo = t.x.lo[ox], xn = t.x.count[ox], ylo = t.y.lo[oy], yn = t.y.count[oy];
  const int64_t kx = static_cast<int64_t>(ox) * t.x.max_taps, ky = static_cast<int64_t>(oy) * t.y.max_taps;
  constexpr int half = 1 << (resample::kPrecisionBits - 1);  // the rounding, as PIL
  const float mean[3] = {kImageNetMeanR, kImageNetMeanG, kImageNetMeanB};
  const float stdv[3] = {kImageNetStdR, kImageNetStdG, kImageNetStdB};
  for (int c = 0; c < 3; ++c) {
    int acc = half;
    for (int j = 0; j < yn; ++j) {
      const int64_t row = n * f.stride_n + static_cast<int64_t>(ylo + j) * f.stride_h + f.rgb[c];
      int h = half;
      for (int i = 0; i < xn; ++i) h += sample8(f, row + static_cast<int64_t>(xlo + i) * f.stride_w) * t.x.fixed[kx + i];
      acc += clip8(h) * t.y.fixed[ky + j];
    }
    const float v = clip8(acc) * (1.0f / 255.0f);
    rgb[c] = (v - mean[c]) / stdv[c];
  }
}

// Output pixel i (over n, y, x) of the [n, 3, size, size] result.
template <typename Out>
__host__ __device__ inline void preprocess_at(const FrameDesc& f, const LanczosTaps* lanczos, Out* out, int size,
                                              int64_t i) {
  const int64_t plane = static_cast<int64_t>(size) * size;
  const int n = static_cast<int>(i / plane);
  const int oy = static_cast<int>((i % plane) / size);
  const int ox = static_cast<int>(i % size);
  float rgb[3];
  if (lanczos)
    pixel_lanczos(f, *lanczos, n, oy, ox, rgb);
  else
    pixel(f, size, n, oy, ox, rgb);
  Out* o = out + n * 3 * plane + static_cast<int64_t>(oy) * size + ox;
  for (int c = 0; c < 3; ++c) store(o + c * plane, rgb[c]);
}

// `lanczos` by value (its pointers are device pointers); has_lanczos false: bilinear.
template <typename Out>
__global__ void preprocess_kernel(FrameDesc f, LanczosTaps lanczos, bool has_lanczos, Out* out, int size) {
  const int64_t total = static_cast<int64_t>(size) * size * f.n;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    preprocess_at(f, has_lanczos ? &lanczos : nullptr, out, size, i);
  }
}

}  // namespace

cudaError_t launch_preprocess(const FrameDesc& frame, void* out, Elem out_elem, int size,
                              const LanczosTaps* lanczos, cudaStream_t stream) {
  const int64_t total = static_cast<int64_t>(frame.n) * size * size;
  if (total == 0) return cudaSuccess;
  const int threads = 256;
  const int64_t wanted = (total + threads - 1) / threads;
  const int blocks = static_cast<int>(wanted < 65535 ? wanted : 65535);
  const bool known = dispatch_elem(out_elem, [&](auto tag) {
    using Out = decltype(tag);
    preprocess_kernel<Out><<<blocks, threads, 0, stream>>>(frame, lanczos ? *lanczos : LanczosTaps{}, lanczos != nullptr,
                                                           static_cast<Out*>(out), size);
  });
  return known ? cudaGetLastError() : cudaErrorInvalidValue;
}

void preprocess_host(const FrameDesc& frame, void* out, Elem out_elem, int size, const LanczosTaps* lanczos) {
  const int64_t total = static_cast<int64_t>(frame.n) * size * size;
  const bool known = dispatch_elem(out_elem, [&](auto tag) {
    using Out = decltype(tag);
    for (int64_t i = 0; i < total; ++i) preprocess_at(frame, lanczos, static_cast<Out*>(out), size, i);
  });
  if (!known) throw std::invalid_argument("preprocess_host: unknown element type");
}

}  // namespace cuda
}  // namespace pefm
