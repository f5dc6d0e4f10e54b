// YUV 4:2:0 to packed RGB on the GPU; see kernels.h.
#include "dispatch.cuh"

namespace pefm {
namespace cuda {

namespace {

// One IEEE operation each, rounded to nearest: nvcc would otherwise contract a * b + c into
// one fused operation (a different rounding), and the result must equal LibTorch's CPU
// path, which rounds after every operation.
__host__ __device__ inline float add(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
__host__ __device__ inline float sub(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
__host__ __device__ inline float mul(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
__host__ __device__ inline float div(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}

__host__ __device__ inline float unit(float v) { return v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v; }

// Pixel i (over y, x) of the [h, w, 3] result: the operations of frame_input.cpp's CPU
// conversion in its order (chroma repeated, nearest), clamped to 0..1; as 8 bits the value
// times 255 rounded half to even, as the CPU's Lanczos path quantises float frames.
__host__ __device__ inline void yuv_at(const YuvDesc& f, void* out, bool out_float, int64_t i) {
  const int64_t y = i / f.w, x = i % f.w;
  const int64_t cx = (x / 2) * f.c_step;
  const float Y = div(sub(static_cast<float>(f.y[y * f.y_stride + x]), f.y_offset), f.y_range);
  const float Cb = div(sub(static_cast<float>(f.u[(y / 2) * f.u_stride + cx]), 128.0f), f.c_range);
  const float Cr = div(sub(static_cast<float>(f.v[(y / 2) * f.v_stride + cx]), 128.0f), f.c_range);
  const float R = add(Y, mul(f.cr_r, Cr));
  const float B = add(Y, mul(f.cb_b, Cb));
  const float G = div(sub(sub(Y, mul(f.kr, R)), mul(f.kb, B)), f.g_div);
  const float rgb[3] = {unit(R), unit(G), unit(B)};
  for (int k = 0; k < 3; ++k) {
    if (out_float) {
      static_cast<float*>(out)[i * 3 + k] = rgb[k];
    } else {
      const float q = rintf(mul(rgb[k], 255.0f));
      static_cast<unsigned char*>(out)[i * 3 + k] = static_cast<unsigned char>(q);
    }
  }
}

__global__ void yuv_kernel(YuvDesc f, void* out, bool out_float) {
  PEFM_GRID_LOOP(i, static_cast<int64_t>(f.h) * f.w) yuv_at(f, out, out_float, i);
}

}  // namespace

cudaError_t launch_yuv_to_rgb(const YuvDesc& frame, void* out, bool out_float, cudaStream_t stream) {
  const int64_t total = static_cast<int64_t>(frame.h) * frame.w;
  if (total == 0) return cudaSuccess;
  const int threads = 256;
  yuv_kernel<<<blocks_for(total, threads), threads, 0, stream>>>(frame, out, out_float);
  return cudaGetLastError();
}

void yuv_to_rgb_host(const YuvDesc& frame, void* out, bool out_float) {
  const int64_t total = static_cast<int64_t>(frame.h) * frame.w;
  for (int64_t i = 0; i < total; ++i) yuv_at(frame, out, out_float, i);
}

}  // namespace cuda
}  // namespace pefm
