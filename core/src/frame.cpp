#include "pefm/frame.h"

namespace pefm {

bool is_yuv(FrameFormat f) { return f == FrameFormat::kI420 || f == FrameFormat::kNV12; }

int pixel_stride(FrameFormat f) {
  switch (f) {
    case FrameFormat::kRGB:
    case FrameFormat::kBGR:
      return 3;
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

}  // namespace pefm
