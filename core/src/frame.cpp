#include "pefm/frame.h"

namespace pefm {

bool is_yuv(FrameFormat f) { return f == FrameFormat::kI420 || f == FrameFormat::kNV12; }

int pixel_stride(FrameFormat f) {
  switch (f) {
    case FrameFormat::kRGB:
    case FrameFormat::kBGR:
      return 3;
    case FrameFormat::kGray16:
      return 2;
    case FrameFormat::kGray8:
    case FrameFormat::kI420:
    case FrameFormat::kNV12:
      return 1;
    default:
      return 4;
  }
}

void rgb_offsets(FrameFormat f, int offsets[3]) {
  static const int table[][3] = {
      {0, 1, 2},  // RGB
      {2, 1, 0},  // BGR
      {0, 1, 2},  // RGBA
      {2, 1, 0},  // BGRA
      {0, 1, 2},  // RGBx
      {2, 1, 0},  // BGRx
      {1, 2, 3},  // ARGB
      {3, 2, 1},  // ABGR
      {1, 2, 3},  // xRGB
      {3, 2, 1},  // xBGR
  };
  const auto i = static_cast<int>(f);
  for (int c = 0; c < 3; ++c) offsets[c] = i < 10 ? table[i][c] : 0;
}

YuvMatrix::YuvMatrix(const FrameView& frame)
    : kr(frame.kr),
      kb(frame.kb),
      y_offset(frame.full_range ? 0.0 : 16.0),
      y_range(frame.full_range ? 255.0 : 219.0),
      c_range(frame.full_range ? 255.0 : 224.0),
      cr_r(2.0 * (1.0 - kr)),
      cb_b(2.0 * (1.0 - kb)) {}

void YuvMatrix::to_yuv(const double rgb[3], double yuv[3]) const {
  const double y = kr * rgb[0] + (1.0 - kr - kb) * rgb[1] + kb * rgb[2];
  yuv[0] = y_offset + y_range * y;
  yuv[1] = 128.0 + c_range * ((rgb[2] - y) / cb_b);
  yuv[2] = 128.0 + c_range * ((rgb[0] - y) / cr_r);
}

}  // namespace pefm
