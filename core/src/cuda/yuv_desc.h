// Internal: a YUV FrameView as the conversion kernel reads it (kernels.h, YuvDesc), with
// YuvMatrix's constants rounded to float as LibTorch's CPU conversion rounds them. One
// description for the device frame (frame_input.cpp) and the host twin's tests.
#pragma once

#include "kernels.h"
#include "pefm/frame.h"

namespace pefm {
namespace cuda {

inline YuvDesc describe_yuv(const FrameView& f) {
  const YuvMatrix m(f);
  const bool nv12 = f.format == FrameFormat::kNV12;
  YuvDesc d{};
  d.y = f.planes[0];
  d.u = f.planes[1];
  d.v = nv12 ? f.planes[1] + 1 : f.planes[2];
  d.y_stride = f.strides[0];
  d.u_stride = f.strides[1];
  d.v_stride = nv12 ? f.strides[1] : f.strides[2];
  d.c_step = nv12 ? 2 : 1;
  d.h = f.height;
  d.w = f.width;
  d.y_offset = static_cast<float>(m.y_offset);
  d.y_range = static_cast<float>(m.y_range);
  d.c_range = static_cast<float>(m.c_range);
  d.cr_r = static_cast<float>(m.cr_r);
  d.cb_b = static_cast<float>(m.cb_b);
  d.kr = static_cast<float>(m.kr);
  d.kb = static_cast<float>(m.kb);
  d.g_div = static_cast<float>(1.0 - m.kr - m.kb);
  return d;
}

}  // namespace cuda
}  // namespace pefm
