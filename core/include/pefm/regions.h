// The one region labeller and box rule, for whole frames (postprocess) and line-scan webs
// (web_regions, web_stream). No LibTorch.
#pragma once

#include <cstdint>
#include <vector>

namespace pefm {

// The 8-connected components of the cells of a rows x width grid whose score is at or
// above `level`, numbered 0, 1, ... in the scan order of their first cell. `comp` gets each
// cell's component, -1 outside any. Returns the count.
int32_t label_components(const float* scores, int64_t rows, int64_t width, float level, std::vector<int32_t>* comp);

// Map cells [first, first + count) along an axis as the frame pixels they cover, where
// `map_len` cells span `frame_len` pixels: [floor(first * frame_len / map_len),
// ceil((first + count) * frame_len / map_len)), exact (integer arithmetic), the end clamped
// to `limit`.
struct FrameSpan {
  int64_t begin = 0, end = 0;
};
FrameSpan frame_span(int64_t first, int64_t count, int64_t frame_len, int64_t map_len, int64_t limit);

}  // namespace pefm
