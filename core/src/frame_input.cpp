#include "pefm/frame_input.h"

#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "pefm-config.h"

#if PEFM_TORCH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif
#if PEFM_WITH_CUDA_KERNELS && PEFM_TORCH_CUDA
#include "cuda/kernels.h"
#include "cuda/yuv_desc.h"
#endif

namespace pefm {

struct StreamContext::Impl {
#if PEFM_TORCH_CUDA
  std::optional<c10::cuda::CUDAStream> stream;
#endif
  torch::Tensor staging;  // pinned host memory, the last frame's shape

  // The pinned buffer, `sizes` of `type`, free to be written. It is rewritten only by the
  // next frame, after the detector has synchronised on the download of this frame's map.
  torch::Tensor& stage(c10::IntArrayRef sizes, torch::ScalarType type) {
#if PEFM_TORCH_CUDA
    // After an error or a cancelled frame the last upload may still be in flight.
    if (staging.defined() && stream) stream->synchronize();
#endif
    if (!staging.defined() || staging.sizes() != sizes || staging.scalar_type() != type) {
      staging = torch::empty(sizes, torch::TensorOptions().dtype(type).pinned_memory(true));
    }
    return staging;
  }

  // Copies `host` into the pinned buffer and starts its upload on the current stream.
  torch::Tensor upload(const torch::Tensor& host, const torch::Device& device) {
    stage(host.sizes(), host.scalar_type()).copy_(host);
    return staging.to(device, /*non_blocking=*/true);
  }
};

StreamContext::StreamContext() : impl_(std::make_unique<Impl>()) {}
StreamContext::~StreamContext() = default;

struct FrameInput::StreamScope {
#if PEFM_TORCH_CUDA
  explicit StreamScope(c10::cuda::CUDAStream stream) : guard(stream) {}
  c10::cuda::CUDAStreamGuard guard;
#endif
};

FrameInput::FrameInput() = default;
FrameInput::FrameInput(FrameInput&&) noexcept = default;
FrameInput::~FrameInput() = default;

namespace {

void check_frame(const FrameView& f) {
  if (f.width <= 0 || f.height <= 0) {
    throw std::invalid_argument("frame is empty (" + std::to_string(f.width) + "x" + std::to_string(f.height) + ")");
  }
  if (!f.planes[0] || f.strides[0] <= 0) throw std::invalid_argument("frame has no pixel data");
  if (f.format == FrameFormat::kGray16 && (f.bit_depth < 8 || f.bit_depth > 16)) {
    throw std::invalid_argument("16-bit gray frame with " + std::to_string(f.bit_depth) + " significant bits (8..16)");
  }
  if (is_yuv(f.format) && (!f.planes[1] || (f.format == FrameFormat::kI420 && !f.planes[2]))) {
    throw std::invalid_argument("YUV frame lacks chroma planes");
  }
}

// GRAY16_LE: its 8-bit values (gray16_to_8), in a tensor of their own, through a table of
// every 16-bit value (a lookup instead of a division a pixel).
FrameInput gray16_pixels(const FrameView& f) {
  thread_local int table_depth = 0;
  thread_local std::vector<uint8_t> table(65536);
  if (table_depth != f.bit_depth) {
    for (uint32_t v = 0; v < 65536; ++v) table[v] = gray16_to_8(static_cast<uint16_t>(v), f.bit_depth);
    table_depth = f.bit_depth;
  }
  FrameInput in;
  in.pixels = torch::empty({f.height, f.width, 1}, torch::kUInt8);
  uint8_t* out = in.pixels.data_ptr<uint8_t>();
  for (int y = 0; y < f.height; ++y) {
    const uint8_t* row = f.planes[0] + static_cast<size_t>(y) * f.strides[0];
    for (int x = 0; x < f.width; ++x) *out++ = table[row[2 * x] | row[2 * x + 1] << 8];
  }
  in.channels = ChannelMap::gray();
  return in;
}

// Packed formats: a view of the frame's memory.
FrameInput packed_pixels(const FrameView& f) {
  if (f.format == FrameFormat::kGray16) return gray16_pixels(f);
  const int64_t c = pixel_stride(f.format);
  FrameInput in;
  in.pixels = torch::from_blob(f.planes[0], {f.height, f.width, c}, {f.strides[0], c, 1}, torch::kUInt8);
  if (f.format == FrameFormat::kGray8) {
    in.channels = ChannelMap::gray();
  } else {
    int off[3];
    rgb_offsets(f.format, off);
    in.channels = ChannelMap{static_cast<int>(c), {off[0], off[1], off[2]}};
  }
  return in;
}

// I420 / NV12: float RGB through YuvMatrix, chroma repeated (nearest).
FrameInput yuv_pixels(const FrameView& f) {
  const int64_t h = f.height, w = f.width, ch = (h + 1) / 2, cw = (w + 1) / 2;
  const auto u8 = torch::kUInt8;
  const auto y = torch::from_blob(f.planes[0], {h, w}, {f.strides[0], 1}, u8).to(torch::kFloat32);
  torch::Tensor u, v;
  if (f.format == FrameFormat::kI420) {
    u = torch::from_blob(f.planes[1], {ch, cw}, {f.strides[1], 1}, u8);
    v = torch::from_blob(f.planes[2], {ch, cw}, {f.strides[2], 1}, u8);
  } else {
    const auto uv = torch::from_blob(f.planes[1], {ch, cw, 2}, {f.strides[1], 2, 1}, u8);
    u = uv.select(2, 0);
    v = uv.select(2, 1);
  }
  const auto up = [&](const torch::Tensor& c) {
    return c.to(torch::kFloat32).repeat_interleave(2, 0).repeat_interleave(2, 1).slice(0, 0, h).slice(1, 0, w);
  };
  const YuvMatrix m(f);
  const auto Y = (y - m.y_offset) / m.y_range;
  const auto Cb = (up(u) - 128.0) / m.c_range, Cr = (up(v) - 128.0) / m.c_range;
  const auto R = Y + m.cr_r * Cr;
  const auto B = Y + m.cb_b * Cb;
  const auto G = (Y - m.kr * R - m.kb * B) / (1.0 - m.kr - m.kb);
  FrameInput in;
  in.pixels = torch::stack({R, G, B}, 2).clamp(0.0, 1.0).contiguous();
  in.channels = ChannelMap::rgb_order();
  return in;
}

#if PEFM_WITH_CUDA_KERNELS && PEFM_TORCH_CUDA
// I420 / NV12 on a CUDA stream: the planes go up as they are (1.5 bytes a pixel) and a
// kernel converts them, to the CPU conversion's floats for bilinear models and to the 8
// bits the Lanczos path would quantise those floats to otherwise.
torch::Tensor yuv_on_device(const FrameView& f, const torch::Device& device, StreamContext::Impl& context,
                            Resize resize) {
  const int64_t h = f.height, w = f.width, ch = (h + 1) / 2, cw = (w + 1) / 2;
  const bool nv12 = f.format == FrameFormat::kNV12;
  auto& host = context.stage({h * w + 2 * ch * cw}, torch::kUInt8);
  uint8_t* p = host.data_ptr<uint8_t>();
  const auto copy_rows = [&p](const uint8_t* plane, int stride, int64_t rows, int64_t bytes) {
    for (int64_t r = 0; r < rows; ++r, p += bytes) std::memcpy(p, plane + r * stride, static_cast<size_t>(bytes));
  };
  copy_rows(f.planes[0], f.strides[0], h, w);
  if (nv12) {
    copy_rows(f.planes[1], f.strides[1], ch, 2 * cw);
  } else {
    copy_rows(f.planes[1], f.strides[1], ch, cw);
    copy_rows(f.planes[2], f.strides[2], ch, cw);
  }
  const auto planes = host.to(device, /*non_blocking=*/true);
  FrameView on_device = f;  // the same frame, its planes packed in the device buffer
  on_device.planes[0] = planes.data_ptr<uint8_t>();
  on_device.planes[1] = on_device.planes[0] + h * w;
  on_device.planes[2] = nv12 ? nullptr : on_device.planes[1] + ch * cw;
  on_device.strides[0] = static_cast<int>(w);
  on_device.strides[1] = on_device.strides[2] = static_cast<int>(nv12 ? 2 * cw : cw);
  const bool as_float = resize != Resize::kLanczos;
  auto rgb = at::empty({h, w, 3}, planes.options().dtype(as_float ? torch::kFloat32 : torch::kUInt8));
  const auto err = cuda::launch_yuv_to_rgb(cuda::describe_yuv(on_device), rgb.data_ptr(), as_float,
                                           c10::cuda::getCurrentCUDAStream());
  TORCH_CHECK(err == cudaSuccess, "YUV conversion kernel failed: ", cudaGetErrorString(err));
  return rgb;
}
#endif

}  // namespace

FrameInput stream_scope(StreamContext* context, const torch::Device& device) {
  FrameInput in;
  if (!context || !device.is_cuda()) return in;
#if PEFM_TORCH_CUDA
  auto& impl = context->impl();
  if (!impl.stream) impl.stream = c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device.index());
  in.scope = std::make_unique<FrameInput::StreamScope>(*impl.stream);
#endif
  return in;
}

FrameInput frame_input(const FrameView& frame, const torch::Device& device, StreamContext* context, Resize resize) {
  check_frame(frame);
#if PEFM_WITH_CUDA_KERNELS && PEFM_TORCH_CUDA
  if (context && device.is_cuda() && is_yuv(frame.format)) {
    auto in = stream_scope(context, device);
    in.pixels = yuv_on_device(frame, device, context->impl(), resize);
    in.channels = ChannelMap::rgb_order();
    return in;
  }
#else
  (void)resize;
#endif
  auto in = is_yuv(frame.format) ? yuv_pixels(frame) : packed_pixels(frame);
  if (!context || !device.is_cuda()) return in;
  in.scope = std::move(stream_scope(context, device).scope);
  in.pixels = context->impl().upload(in.pixels, device);
  return in;
}

torch::Tensor frame_to_rgb(const FrameView& frame) {
  const auto in = frame_input(frame, torch::kCPU, nullptr, Resize::kBilinear);  // the CPU's floats
  if (in.pixels.scalar_type() == torch::kFloat32) return in.pixels;  // YUV, converted already
  const auto& rgb = in.channels.rgb;
  const auto order = torch::tensor({rgb[0], rgb[1], rgb[2]}, torch::kLong);
  return in.pixels.index_select(2, order).to(torch::kFloat32) / 255.0;
}

}  // namespace pefm
