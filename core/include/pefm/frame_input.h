// Stage 1 of a frame's path: a raw frame (packed RGB/BGR/gray or YUV) as a tensor on the
// detector's device. Colour conversion uses YuvMatrix (frame.h), the one YUV matrix of pefm.
#pragma once

#include <memory>

#include <torch/types.h>

#include "pefm/frame.h"
#include "pefm/preprocess.h"
#include "pefm/stream_context.h"

namespace pefm {

// The frame as the detector reads it: [H, W, C] pixels and the channel map to read them
// with. Packed formats are wrapped without a copy (valid while the frame's memory is);
// YUV is converted to float RGB in 0..1 (on a CUDA stream for a Lanczos model: 8-bit RGB,
// see frame_input()).
struct FrameInput {
  FrameInput();
  FrameInput(FrameInput&&) noexcept;
  ~FrameInput();

  torch::Tensor pixels;
  ChannelMap channels;

  // On a CUDA detector with a StreamContext: the context's stream, current while this
  // lives (the detection queued under it runs there).
  struct StreamScope;
  std::unique_ptr<StreamScope> scope;
};

// Throws std::invalid_argument for an empty frame or missing planes. With a `context` on a
// CUDA `device`, the pixels go up through the context's pinned buffer on its stream (YUV
// as its planes, converted there: uint8 RGB for `resize` Lanczos, which quantises to 8
// bits anyway; else float); else they stay in host memory (the detector moves them).
FrameInput frame_input(const FrameView& frame, const torch::Device& device, StreamContext* context, Resize resize);

// With a `context` on a CUDA `device`: a FrameInput without pixels whose scope makes the
// context's stream current while it lives (work that continues a frame's, such as the end
// of a web); else an empty one.
FrameInput stream_scope(StreamContext* context, const torch::Device& device);

// The frame as float RGB in 0..1, [H, W, 3]: packed formats reordered, gray replicated,
// YUV converted with the frame's matrix (kr, kb) and range, chroma repeated (nearest). This
// is what the detector sees of a frame.
torch::Tensor frame_to_rgb(const FrameView& frame);

}  // namespace pefm
