#include "pefm/regions.h"

#include <algorithm>

namespace pefm {

int32_t label_components(const float* scores, int64_t rows, int64_t width, float level, std::vector<int32_t>* comp) {
  const auto n = static_cast<size_t>(rows * width);
  comp->assign(n, -1);
  int32_t count = 0;
  std::vector<int64_t> stack;
  for (size_t start = 0; start < n; ++start) {
    if ((*comp)[start] >= 0 || !(scores[start] >= level)) continue;
    (*comp)[start] = count;
    stack.push_back(static_cast<int64_t>(start));
    while (!stack.empty()) {
      const int64_t p = stack.back();
      stack.pop_back();
      const int64_t y = p / width, x = p % width;
      for (int64_t dy = -1; dy <= 1; ++dy) {
        for (int64_t dx = -1; dx <= 1; ++dx) {
          const int64_t ny = y + dy, nx = x + dx;
          if (ny < 0 || ny >= rows || nx < 0 || nx >= width) continue;
          const auto q = static_cast<size_t>(ny * width + nx);
          if ((*comp)[q] < 0 && scores[q] >= level) {
            (*comp)[q] = count;
            stack.push_back(static_cast<int64_t>(q));
          }
        }
      }
    }
    ++count;
  }
  return count;
}

FrameSpan frame_span(int64_t first, int64_t count, int64_t frame_len, int64_t map_len, int64_t limit) {
  FrameSpan s;
  s.begin = first * frame_len / map_len;
  s.end = std::min(limit, ((first + count) * frame_len + map_len - 1) / map_len);
  return s;
}

}  // namespace pefm
