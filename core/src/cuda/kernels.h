// Internal: CUDA kernels with plain-C++ launchers (no LibTorch types, so this header
// compiles with or without a CUDA-enabled LibTorch). Each has a CPU twin that uses the
// same per-pixel code, for testing the arithmetic on machines without a GPU.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

namespace pefm {
namespace cuda {

// Element type of a tensor the kernels read or write.
enum class Elem { kFloat, kHalf, kBFloat16 };

struct FrameDesc {
  const void* data;
  bool is_float;        // float in 0..1, else uint8 in 0..255
  int n, h, w, c;
  int64_t stride_n, stride_h, stride_w;  // in elements; the channel stride is 1
  int rgb[3];           // channel index of R, G, B (all 0 for gray)
};

// One axis of Lanczos taps (resample.h, AxisTaps) where the kernel can read them: output
// i reads inputs lo[i] .. lo[i] + count[i] - 1, weights at [i * max_taps + j].
struct TapsView {
  int max_taps;
  const int32_t* lo;
  const int32_t* count;
  const float* weights;   // float weights (the kernel reads `fixed`; may be null)
  const int32_t* fixed;   // PIL's fixed-point weights
};
struct LanczosTaps {
  TapsView x, y;
};

// Channel selection + resize + ImageNet normalisation: frame -> [n, 3, size, size] of
// `out_elem` (float, half or bf16). With `lanczos` (device pointers) PIL's Lanczos on 8
// bits (float frames quantised first) in PIL's two passes: rows into `scratch` (a device
// buffer of lanczos_scratch_bytes, [n, h, size, 3] uint8, rounded as PIL stores them),
// then columns; without, one fused antialiased bilinear kernel (PyTorch/PIL weights).
cudaError_t launch_preprocess(const FrameDesc& frame, void* out, Elem out_elem, int size, const LanczosTaps* lanczos,
                              unsigned char* scratch, cudaStream_t stream);
int64_t lanczos_scratch_bytes(const FrameDesc& frame, int size);

// The same per-pixel code and element dispatch on the host (`lanczos` host pointers), for
// tests on machines without a GPU.
void preprocess_host(const FrameDesc& frame, void* out, Elem out_elem, int size, const LanczosTaps* lanczos);

// A YUV 4:2:0 frame's planes where the kernel reads them, and YuvMatrix's constants as
// float (the values LibTorch's CPU conversion computes with).
struct YuvDesc {
  const unsigned char* y;
  const unsigned char* u;
  const unsigned char* v;  // NV12: u + 1
  int64_t y_stride, u_stride, v_stride;  // bytes per row (NV12: u_stride = v_stride)
  int c_step;                  // bytes from one chroma sample to the next: 1 (I420), 2 (NV12)
  int h, w;
  float y_offset, y_range, c_range, cr_r, cb_b, kr, kb;
  float g_div;  // 1 - kr - kb, computed in double
};

// YUV -> [h, w, 3] RGB (packed, contiguous): float in 0..1 when `out_float` (equal to
// frame_input's CPU conversion), else uint8, those values quantised as the Lanczos path
// quantises float frames. The frame goes up as its planes (1.5 bytes a pixel, not 12).
cudaError_t launch_yuv_to_rgb(const YuvDesc& frame, void* out, bool out_float, cudaStream_t stream);
void yuv_to_rgb_host(const YuvDesc& frame, void* out, bool out_float);

// One scale of the mapping residual: features and their mappings, contiguous NCHW,
// [n, cs, h, w] for the source pair and [n, ct, h, w] for the target pair.
struct ResidualScale {
  const void* s_hat;
  const void* s;
  const void* t_hat;
  const void* t;
  int cs, ct, h, w;
};

// Fused anomaly map: per scale the residual 0.5 * (|s_hat - s|^2 + |t_hat - t|^2) summed
// over channels in float32 (one kernel per scale, into `scratch`: n * sum(h*w) floats), then
// one kernel that upsamples the three residual maps bilinearly to size x size (PyTorch's
// align_corners=false) and fuses them (mean, or product when `product`) into `out`
// ([n, size, size] float32). Replaces about fifteen LibTorch kernels with four.
cudaError_t launch_anomaly_map(const ResidualScale scales[3], int n, Elem elem, bool product, int size,
                               float* scratch, float* out, cudaStream_t stream);

// The same per-pixel code and element dispatch on the host, for tests.
void anomaly_map_host(const ResidualScale scales[3], int n, Elem elem, bool product, int size, float* out);

}  // namespace cuda
}  // namespace pefm
