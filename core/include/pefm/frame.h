// Raw video frames as the element sees them: pixel format, planes and strides. No
// LibTorch and no GStreamer types, so both sides of the element boundary can use it.
#pragma once

#include <cstdint>

namespace pefm {

enum class FrameFormat {
  kRGB, kBGR, kRGBA, kBGRA, kRGBx, kBGRx, kARGB, kABGR, kxRGB, kxBGR,
  kGray8,
  kI420,  // planar Y, U, V; chroma halved in both directions
  kNV12,  // planar Y, interleaved UV; chroma halved in both directions
  kGray16,  // 16-bit little-endian gray (GRAY16_LE) with `bit_depth` significant low bits
};

struct FrameView {
  FrameFormat format = FrameFormat::kRGB;
  int width = 0, height = 0;
  uint8_t* planes[3] = {nullptr, nullptr, nullptr};
  int strides[3] = {0, 0, 0};
  // YUV formats: the colour matrix (Kr, Kb) and whether luma spans 0..255 (else 16..235).
  double kr = 0.2126, kb = 0.0722;
  bool full_range = false;
  // kGray16: the bits the camera fills (12 for Mono12 in 16-bit words), 8..16.
  int bit_depth = 16;
};

// A 16-bit gray sample of `bit_depth` significant bits on the 8-bit range models are
// trained on: v * 255 / (2^bit_depth - 1), rounded, values above the range at 255. The one
// mapping: pefmfilter's GRAY16_LE frames and pefm-train's 16-bit images both go through it.
inline uint8_t gray16_to_8(uint16_t v, int bit_depth) {
  const uint32_t max = (1u << bit_depth) - 1u;
  return v >= max ? uint8_t{255} : static_cast<uint8_t>((v * 255u + max / 2) / max);
}

bool is_yuv(FrameFormat f);
// Bytes per pixel of plane 0 for packed formats (1 for gray and the Y plane of YUV).
int pixel_stride(FrameFormat f);
// Byte offsets of R, G, B inside a packed pixel (gray and YUV: all 0).
void rgb_offsets(FrameFormat f, int offsets[3]);

// The one YUV <-> RGB conversion of pefm (the detector's input and the overlay drawn into
// YUV frames both use it): Y'CbCr with luma weights Kr, Kb (BT.601, BT.709, BT.2020) in
// full (0..255) or limited (Y' 16..235, C 16..240) 8-bit range. RGB is 0..1, unclamped.
struct YuvMatrix {
  explicit YuvMatrix(const FrameView& frame);

  double kr, kb;
  // 8-bit Y' = y_offset + y_range * Y and Cb = 128 + c_range * (B - Y) / cb_b (Cr alike):
  // Y in 0..1, the colour differences in -0.5..0.5.
  double y_offset, y_range, c_range;
  // Inverse: R = Y + cr_r * Cr, B = Y + cb_b * Cb, G = (Y - kr R - kb B) / (1 - kr - kb).
  double cr_r, cb_b;

  void to_yuv(const double rgb[3], double yuv[3]) const;  // RGB 0..1 -> 8-bit Y', Cb, Cr
};

}  // namespace pefm
