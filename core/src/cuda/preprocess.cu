// Preprocessing kernels (Lanczos in two passes, bilinear fused); see kernels.h.
#include <stdexcept>
#include <vector>

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
// torch::round), so every format reaches PIL's 8-bit arithmetic. NaN reads as 0 (the
// caller marks such frames: preprocess.cpp).
__host__ __device__ inline int sample8(const FrameDesc& f, int64_t offset) {
  if (!f.is_float) return static_cast<const unsigned char*>(f.data)[offset];
  const float v = rintf(static_cast<const float*>(f.data)[offset] * 255.0f);
  return v >= 0.0f ? (v <= 255.0f ? static_cast<int>(v) : 255) : 0;
}

constexpr int kHalf = 1 << (resample::kPrecisionBits - 1);  // the rounding, as PIL

// PIL's first (horizontal) pass, element i over (n, y, ox) of `mid` ([n, h, size, 3]
// uint8): R, G and B of input row y resampled to column ox, rounded to 8 bits.
__host__ __device__ inline void lanczos_row_at(const FrameDesc& f, const TapsView& tx, unsigned char* mid, int size,
                                               int64_t i) {
  const int ox = static_cast<int>(i % size);
  const int64_t ny = i / size;  // n * h + y
  const int64_t row = (ny / f.h) * f.stride_n + (ny % f.h) * f.stride_h;
  const int lo = tx.lo[ox], cnt = tx.count[ox];
  const int32_t* k = tx.fixed + static_cast<int64_t>(ox) * tx.max_taps;
  for (int c = 0; c < 3; ++c) {
    int acc = kHalf;
    const int64_t p = row + static_cast<int64_t>(lo) * f.stride_w + f.rgb[c];
    for (int j = 0; j < cnt; ++j) acc += sample8(f, p + j * f.stride_w) * k[j];
    mid[i * 3 + c] = static_cast<unsigned char>(clip8(acc));
  }
}

// PIL's second (vertical) pass, output pixel i over (n, oy, ox): the rows' 8-bit values
// resampled, rounded to 8 bits again, then scaled and normalised.
template <typename Out>
__host__ __device__ inline void lanczos_column_at(const unsigned char* mid, int h, const TapsView& ty, Out* out,
                                                  int size, int64_t i) {
  const int64_t plane = static_cast<int64_t>(size) * size;
  const int64_t n = i / plane;
  const int oy = static_cast<int>((i % plane) / size), ox = static_cast<int>(i % size);
  const int lo = ty.lo[oy], cnt = ty.count[oy];
  const int32_t* k = ty.fixed + static_cast<int64_t>(oy) * ty.max_taps;
  const float mean[3] = {kImageNetMeanR, kImageNetMeanG, kImageNetMeanB};
  const float stdv[3] = {kImageNetStdR, kImageNetStdG, kImageNetStdB};
  Out* o = out + n * 3 * plane + static_cast<int64_t>(oy) * size + ox;
  for (int c = 0; c < 3; ++c) {
    int acc = kHalf;
    const unsigned char* m = mid + ((n * h + lo) * size + ox) * 3 + c;
    for (int j = 0; j < cnt; ++j) acc += m[static_cast<int64_t>(j) * size * 3] * k[j];
    const float v = clip8(acc) * (1.0f / 255.0f);
    store(o + c * plane, (v - mean[c]) / stdv[c]);
  }
}

// Output pixel i (over n, y, x) of the [n, 3, size, size] result, antialiased bilinear.
template <typename Out>
__host__ __device__ inline void bilinear_at(const FrameDesc& f, Out* out, int size, int64_t i) {
  const int64_t plane = static_cast<int64_t>(size) * size;
  const int n = static_cast<int>(i / plane);
  const int oy = static_cast<int>((i % plane) / size);
  const int ox = static_cast<int>(i % size);
  float rgb[3];
  pixel(f, size, n, oy, ox, rgb);
  Out* o = out + n * 3 * plane + static_cast<int64_t>(oy) * size + ox;
  for (int c = 0; c < 3; ++c) store(o + c * plane, rgb[c]);
}

__global__ void lanczos_rows_kernel(FrameDesc f, TapsView tx, unsigned char* mid, int size) {
  PEFM_GRID_LOOP(i, static_cast<int64_t>(f.n) * f.h * size) lanczos_row_at(f, tx, mid, size, i);
}

template <typename Out>
__global__ void lanczos_columns_kernel(const unsigned char* mid, int n, int h, TapsView ty, Out* out, int size) {
  PEFM_GRID_LOOP(i, static_cast<int64_t>(n) * size * size) lanczos_column_at(mid, h, ty, out, size, i);
}

template <typename Out>
__global__ void bilinear_kernel(FrameDesc f, Out* out, int size) {
  PEFM_GRID_LOOP(i, static_cast<int64_t>(f.n) * size * size) bilinear_at(f, out, size, i);
}

}  // namespace

int64_t lanczos_scratch_bytes(const FrameDesc& frame, int size) {
  return static_cast<int64_t>(frame.n) * frame.h * size * 3;
}

cudaError_t launch_preprocess(const FrameDesc& frame, void* out, Elem out_elem, int size, const LanczosTaps* lanczos,
                              unsigned char* scratch, cudaStream_t stream) {
  const int64_t total = static_cast<int64_t>(frame.n) * size * size;
  if (total == 0) return cudaSuccess;
  if (lanczos && !scratch) return cudaErrorInvalidValue;
  const int threads = 256;
  if (lanczos) {
    const int64_t rows = static_cast<int64_t>(frame.n) * frame.h * size;
    lanczos_rows_kernel<<<blocks_for(rows, threads), threads, 0, stream>>>(frame, lanczos->x, scratch, size);
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  const bool known = dispatch_elem(out_elem, [&](auto tag) {
    using Out = decltype(tag);
    if (lanczos)
      lanczos_columns_kernel<Out><<<blocks_for(total, threads), threads, 0, stream>>>(scratch, frame.n, frame.h, lanczos->y,
                                                                                      static_cast<Out*>(out), size);
    else
      bilinear_kernel<Out><<<blocks_for(total, threads), threads, 0, stream>>>(frame, static_cast<Out*>(out), size);
  });
  return known ? cudaGetLastError() : cudaErrorInvalidValue;
}

void preprocess_host(const FrameDesc& frame, void* out, Elem out_elem, int size, const LanczosTaps* lanczos) {
  const int64_t total = static_cast<int64_t>(frame.n) * size * size;
  std::vector<unsigned char> mid;
  if (lanczos) {
    mid.resize(static_cast<size_t>(lanczos_scratch_bytes(frame, size)));
    for (int64_t i = 0; i < static_cast<int64_t>(mid.size() / 3); ++i) lanczos_row_at(frame, lanczos->x, mid.data(), size, i);
  }
  const bool known = dispatch_elem(out_elem, [&](auto tag) {
    using Out = decltype(tag);
    for (int64_t i = 0; i < total; ++i) {
      if (lanczos)
        lanczos_column_at(mid.data(), frame.h, lanczos->y, static_cast<Out*>(out), size, i);
      else
        bilinear_at(frame, static_cast<Out*>(out), size, i);
    }
  });
  if (!known) throw std::invalid_argument("preprocess_host: unknown element type");
}

}  // namespace cuda
}  // namespace pefm
