#include "pefm/web_regions.h"

#include <algorithm>
#include <cstddef>
#include <limits>
#include <numeric>
#include <stdexcept>

#include "pefm/regions.h"

namespace pefm {

namespace {

// The extent of a region while it grows.
struct Extent {
  int64_t y0 = std::numeric_limits<int64_t>::max(), y1 = -1;
  int x0 = std::numeric_limits<int>::max(), x1 = -1;
  int64_t area = 0;
  float peak = -std::numeric_limits<float>::infinity();

  bool empty() const { return area == 0; }
  void add(int64_t y, int x, float v) {
    y0 = std::min(y0, y), y1 = std::max(y1, y), x0 = std::min(x0, x), x1 = std::max(x1, x);
    ++area;
    peak = std::max(peak, v);
  }
  void merge(const Extent& e) {
    if (e.empty()) return;
    y0 = std::min(y0, e.y0), y1 = std::max(y1, e.y1), x0 = std::min(x0, e.x0), x1 = std::max(x1, e.x1);
    area += e.area;
    peak = std::max(peak, e.peak);
  }
  static Extent of(const WebRegion& r) {
    Extent e;
    if (r.area == 0) return e;
    e.y0 = r.y, e.y1 = r.y + r.height - 1, e.x0 = r.x, e.x1 = r.x + r.width - 1;
    e.area = r.area;
    e.peak = r.peak;
    return e;
  }
  WebRegion region(const std::string& why) const {
    WebRegion r;
    if (!empty()) {
      r.y = y0, r.height = y1 - y0 + 1, r.x = x0, r.width = x1 - x0 + 1;
      r.area = area;
      r.peak = peak;
    }
    r.closed_by = why;
    return r;
  }
};

// Union-find over small integer ids.
struct Sets {
  std::vector<size_t> parent;
  explicit Sets(size_t n) : parent(n) { std::iota(parent.begin(), parent.end(), size_t{0}); }
  size_t find(size_t i) {
    while (parent[i] != i) i = parent[i] = parent[parent[i]];
    return i;
  }
  void unite(size_t a, size_t b) {
    a = find(a), b = find(b);
    if (a != b) parent[std::max(a, b)] = std::min(a, b);
  }
};

void sort_regions(std::vector<WebRegion>* regions) {
  std::sort(regions->begin(), regions->end(),
            [](const WebRegion& a, const WebRegion& b) { return a.y != b.y ? a.y < b.y : a.x < b.x; });
}

}  // namespace

WebRegions::WebRegions(int width, int64_t max_open_rows) : width_(width), max_open_rows_(max_open_rows) {
  if (width <= 0) throw std::invalid_argument("web regions need a positive map width");
  if (max_open_rows < 1) throw std::invalid_argument("web regions need a bound of at least one row");
}

std::vector<WebRegion> WebRegions::add_band(int64_t first_row, const float* scores, int64_t rows, float level) {
  if (!scores || rows <= 0) throw std::invalid_argument("a web band needs at least one row of scores");
  if (first_row < 0 || (next_row_ >= 0 && first_row < next_row_)) {
    throw std::invalid_argument("web band at row " + std::to_string(first_row) + " goes back before row " +
                                std::to_string(next_row_));
  }
  std::vector<WebRegion> out;
  if (next_row_ >= 0 && first_row > next_row_) out = close_all("gap");

  // The band's own 8-connected components, numbered in scan order.
  const int64_t W = width_;
  const auto n = static_cast<size_t>(rows * W);
  std::vector<int32_t> comp;
  const int32_t count = label_components(scores, rows, W, level, &comp);
  std::vector<Extent> extents(static_cast<size_t>(count));
  std::vector<bool> reaches_bottom(static_cast<size_t>(count), false);
  for (size_t p = 0; p < n; ++p) {
    if (comp[p] < 0) continue;
    const auto id = static_cast<size_t>(comp[p]);
    const int64_t y = static_cast<int64_t>(p) / W, x = static_cast<int64_t>(p) % W;
    extents[id].add(first_row + y, static_cast<int>(x), scores[p]);
    if (y == rows - 1) reaches_bottom[id] = true;
  }

  // Nodes: the open regions (0..O-1), then the band's components. An open region and a
  // component are one region when a pixel of the component's first row touches one of the
  // open region's pixels in the previous row (8-connected across the boundary).
  const size_t O = open_.size(), C = extents.size();
  Sets sets(O + C);
  for (size_t o = 0; o < O; ++o) {
    for (int x : open_[o].last_row_columns) {
      for (int nx = std::max(0, x - 1); nx <= std::min(width_ - 1, x + 1); ++nx) {
        if (comp[static_cast<size_t>(nx)] >= 0) sets.unite(o, O + static_cast<size_t>(comp[static_cast<size_t>(nx)]));
      }
    }
  }
  // Each group's extent, whether it goes on past the band, and its columns in the last row.
  std::vector<Extent> group(O + C);
  std::vector<bool> continues(O + C, false), used(O + C, false);
  std::vector<std::vector<int>> bottom_columns(O + C);
  for (size_t o = 0; o < O; ++o) {
    const size_t g = sets.find(o);
    group[g].merge(Extent::of(open_[o].region));
    used[g] = true;
  }
  for (size_t c = 0; c < C; ++c) {
    const size_t g = sets.find(O + c);
    group[g].merge(extents[c]);
    used[g] = true;
    if (reaches_bottom[c]) continues[g] = true;
  }
  const int64_t last = (rows - 1) * W;
  for (int64_t x = 0; x < W; ++x) {
    const int32_t c = comp[static_cast<size_t>(last + x)];
    if (c >= 0) bottom_columns[sets.find(O + static_cast<size_t>(c))].push_back(static_cast<int>(x));
  }

  std::vector<Open> still_open;
  next_row_ = first_row + rows;
  for (size_t g = 0; g < O + C; ++g) {
    if (!used[g] || sets.find(g) != g) continue;
    if (group[g].empty()) continue;  // a streak's fresh remainder that did not go on
    if (!continues[g]) {
      out.push_back(group[g].region("ended"));
      continue;
    }
    if (group[g].y1 - group[g].y0 + 1 > max_open_rows_) {
      // An endless streak: its part so far is reported; what follows is a new region.
      out.push_back(group[g].region("max-rows"));
      still_open.push_back({Extent().region(""), std::move(bottom_columns[g])});
      continue;
    }
    still_open.push_back({group[g].region(""), std::move(bottom_columns[g])});
  }
  open_ = std::move(still_open);
  sort_regions(&out);
  return out;
}

std::vector<WebRegion> WebRegions::end_unless_continued(const float* next_row, float level) {
  if (!next_row) throw std::invalid_argument("end_unless_continued needs the next row's scores");
  std::vector<WebRegion> out;
  std::vector<Open> still_open;
  for (auto& o : open_) {
    bool goes_on = false;
    for (int x : o.last_row_columns) {
      for (int nx = std::max(0, x - 1); nx <= std::min(width_ - 1, x + 1) && !goes_on; ++nx) {
        goes_on = next_row[nx] >= level;
      }
      if (goes_on) break;
    }
    if (goes_on) {
      still_open.push_back(std::move(o));
    } else if (o.region.area > 0) {  // not the fresh remainder of a streak reported at its bound
      o.region.closed_by = "ended";
      out.push_back(o.region);
    }
  }
  open_ = std::move(still_open);
  sort_regions(&out);
  return out;
}

std::vector<WebRegion> WebRegions::close_all(const std::string& why) {
  std::vector<WebRegion> out;
  for (const auto& o : open_) {
    if (o.region.area == 0) continue;  // the fresh remainder of a streak reported at its bound
    WebRegion r = o.region;
    r.closed_by = why;
    out.push_back(r);
  }
  open_.clear();
  sort_regions(&out);
  return out;
}

}  // namespace pefm
