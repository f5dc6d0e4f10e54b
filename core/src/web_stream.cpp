#include "pefm/web_stream.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <optional>
#include <stdexcept>

#include <torch/torch.h>

#include "frame_detector_impl.h"
#include "pefm/detector.h"
#include "pefm/frame_detector.h"
#include "pefm/frame_input.h"
#include "pefm/postprocess.h"
#include "pefm/regions.h"
#include "pefm/web_regions.h"
#include "tiled_map.h"

namespace pefm {

namespace {

struct Pending {
  uint64_t tag;
  int64_t row;  // first frame row, counted from the web's first row
  int rows;
  Thresholds thresholds;
};

}  // namespace

struct WebStream::Impl {
  Impl(std::shared_ptr<FrameDetector> owner, const TileOptions& tiles, int64_t max_region_rows)
      : owner(std::move(owner)), detector(this->owner->impl().detector), tiles(tiles), max_region_rows(max_region_rows) {}

  std::shared_ptr<FrameDetector> owner;
  Detector& detector;
  TileOptions tiles;
  int64_t max_region_rows;

  // The open web; `open` false until its first buffer.
  bool open = false;
  int width = 0;
  FrameFormat format = FrameFormat::kRGB;
  int64_t web_row0 = 0;  // web row of the web's first row
  int64_t total = 0;     // frame rows received
  torch::Tensor pixels;  // frame rows [pixel_row0, total), on the detector's device
  int64_t pixel_row0 = 0;
  ChannelMap channels;
  std::optional<TileLayout> layout;  // grid tiles: their height, map rows unbounded
  int64_t next_tile = 0;             // top row of the next grid tile to score
  int64_t last_tile = -1;            // top row of the last one scored
  torch::Tensor acc, wsum;           // map rows [acc_row0, acc_row0 + acc.size(0)), detector's device
  int64_t acc_row0 = 0;
  std::deque<Pending> pending;
  std::vector<WebBuffer> ready;
  std::optional<WebRegions> regions;

  double scale() const { return static_cast<double>(detector.image_size()) / tiles.size; }
  int step() const { return tile_step(tiles.size, tiles.overlap); }
  int64_t map_row(int64_t frame_row) const { return std::llround(static_cast<double>(frame_row) * scale()); }

  // Closes the web; `drop_ready` also forgets the results not yet taken (after an error).
  void reset(bool drop_ready = false) {
    if (drop_ready) ready.clear();
    open = false;
    pixels = torch::Tensor();
    pixel_row0 = total = 0;
    layout.reset();
    next_tile = 0;
    last_tile = -1;
    acc = wsum = torch::Tensor();
    acc_row0 = 0;
    pending.clear();
    regions.reset();
  }

  // acc and wsum cover map rows up to `end`.
  void grow(int64_t end) {
    const int64_t have = acc.defined() ? acc_row0 + acc.size(0) : acc_row0;
    if (end <= have) return;
    const auto extra = torch::zeros({end - have, layout->map_w}, torch::TensorOptions().device(detector.device()));
    acc = acc.defined() ? torch::cat({acc, extra}) : extra;
    wsum = wsum.defined() ? torch::cat({wsum, extra}) : extra.clone();
  }

  void score(const TileLayout& l, const std::vector<int64_t>& tops, StreamContext* context) {
    if (tops.empty()) return;
    grow(l.map_row(tops.back()) + l.fit_h);
    const auto stop_if_cancelled = [context] {
      if (context && context->cancelled()) throw Cancelled("web abandoned: the element is stopping");
    };
    blend_tiles(detector, l, pixels, pixel_row0, channels, tops, acc, wsum, acc_row0, stop_if_cancelled);
  }

  // Scores the grid tiles the rows received allow (at the end, the rest) and returns the
  // first map row that is not final.
  int64_t advance(bool at_end, StreamContext* context) {
    std::vector<int64_t> tops;
    while (next_tile + tiles.size <= total) {
      tops.push_back(next_tile);
      last_tile = next_tile;
      next_tile += step();
    }
    score(*layout, tops, context);
    if (!at_end) return last_tile < 0 ? 0 : map_row(last_tile);
    // As tiled_map cuts a whole frame of `total` rows: one more tile flush with the end, or
    // a single tile of the whole height when the web is shorter than a tile.
    const int64_t map_h = std::max<int64_t>(1, map_row(total));
    const int th = static_cast<int>(std::min<int64_t>(tiles.size, total));
    if (last_tile < 0 || last_tile + tiles.size < total) {
      const TileLayout end_layout(detector, tiles, width, th, map_h);
      score(end_layout, {total - th}, context);
    }
    return map_h;
  }

  FrameRegion to_frame(const WebRegion& w, const Pending* p) const {
    const FrameSpan ys = frame_span(w.y, w.height, tiles.size, detector.image_size(), total);
    const FrameSpan xs = frame_span(w.x, w.width, width, layout->map_w, width);
    const int64_t y0 = ys.begin, y1 = ys.end;
    const int x0 = static_cast<int>(xs.begin), x1 = static_cast<int>(xs.end);
    FrameRegion g;
    g.web_y = web_row0 + y0;
    g.web_height = std::max<int64_t>(1, y1 - y0);
    g.web_x = x0;
    g.web_width = std::max(1, x1 - x0);
    g.area = std::llround(static_cast<double>(w.area) * (static_cast<double>(width) / layout->map_w) / scale());
    g.peak = w.peak;
    g.closed_by = w.closed_by;
    g.x = x0;
    g.width = g.web_width;
    if (p) {  // the part inside the buffer it is reported with
      const int64_t top = std::clamp<int64_t>(y0, p->row, p->row + p->rows - 1);
      const int64_t bottom = std::clamp<int64_t>(y1, top + 1, p->row + p->rows);
      g.y = static_cast<int>(top - p->row);
      g.height = static_cast<int>(bottom - top);
    }
    return g;
  }

  // The blended raw map of map rows [m0, m1).
  torch::Tensor blended(int64_t m0, int64_t m1) const {
    return acc.slice(0, m0 - acc_row0, m1 - acc_row0) / wsum.slice(0, m0 - acc_row0, m1 - acc_row0).clamp_min(1e-6);
  }

  // Makes the pending buffers whose map rows (and, unless `at_end`, the next map row) are
  // below `final_row` ready; at the end, the last one takes the open regions closed `why`.
  void release(int64_t final_row, bool at_end, const std::string& why) {
    const auto& cal = detector.calibration();
    while (!pending.empty()) {
      const Pending p = pending.front();
      const int64_t m0 = map_row(p.row), m1 = map_row(p.row + p.rows);
      const bool last = pending.size() == 1;
      if (!at_end && m1 + 1 > final_row) break;
      WebBuffer b;
      b.tag = p.tag;
      b.web_row = web_row0 + p.row;
      b.rows = p.rows;
      b.thresholds = p.thresholds;
      b.result = score_map(blended(m0, m1), cal, p.thresholds, width, p.rows);
      auto ended = regions->add_band(m0, b.result.map.data(), m1 - m0, b.result.region_level);
      std::vector<WebRegion> more;
      if (!last) {
        const auto& next = pending[1];
        const auto row = normalized_map(blended(m1, m1 + 1), cal);
        more = regions->end_unless_continued(row.data_ptr<float>(), region_level(cal, next.thresholds));
      } else if (at_end) {
        more = regions->close_all(why);
      }
      ended.insert(ended.end(), more.begin(), more.end());
      for (const auto& w : ended) b.result.regions.push_back(to_frame(w, &p));
      std::sort(b.result.regions.begin(), b.result.regions.end(),
                [](const FrameRegion& a, const FrameRegion& c) { return a.peak > c.peak; });
      ready.push_back(std::move(b));
      pending.pop_front();
    }
    // Forget what no later buffer needs: map rows already released, pixel rows above the
    // last grid tile (a tile flush with the end starts at or below it).
    const int64_t keep_map = pending.empty() ? final_row : map_row(pending.front().row);
    if (acc.defined() && keep_map > acc_row0) {
      const int64_t cut = std::min<int64_t>(keep_map - acc_row0, acc.size(0));
      acc = acc.slice(0, cut).clone();
      wsum = wsum.slice(0, cut).clone();
      acc_row0 += cut;
    }
    const int64_t keep_pixels = std::max<int64_t>(0, last_tile);
    if (pixels.defined() && keep_pixels > pixel_row0) {
      pixels = pixels.slice(0, keep_pixels - pixel_row0).clone();
      pixel_row0 = keep_pixels;
    }
  }
};

WebStream::WebStream(std::shared_ptr<FrameDetector> detector, const TileOptions& asked, int64_t max_region_rows) {
  if (!detector) throw std::invalid_argument("continuous mode needs a detector");
  const TileOptions tiles = detector->resolve(asked);
  if (tiles.size <= 0) {
    throw std::invalid_argument("continuous mode needs tile-size > 0 (tiles on a grid fixed to the web), got " +
                                std::to_string(tiles.size));
  }
  if (max_region_rows < 1) {
    throw std::invalid_argument("max-region-rows must be at least 1, got " + std::to_string(max_region_rows));
  }
  impl_ = std::make_unique<Impl>(std::move(detector), tiles, max_region_rows);
}

WebStream::~WebStream() = default;

int64_t WebStream::held_rows_bound(const TileOptions& tiles, int64_t model_input) {
  const int64_t step = tile_step(tiles.size, tiles.overlap);
  const int64_t map_row_rows = (tiles.size + model_input - 1) / std::max<int64_t>(1, model_input);
  return tiles.size + step + map_row_rows + 1;
}

int64_t WebStream::held_rows_bound() const {
  return held_rows_bound(impl_->tiles, impl_->detector.image_size());
}

void WebStream::push(const FrameView& frame, int64_t web_row, uint64_t tag, const Thresholds& thresholds,
                     StreamContext* context) {
  auto& d = *impl_;
  try {
    push_checked(frame, web_row, tag, thresholds, context);
  } catch (...) {
    d.reset(true);
    throw;
  }
}

void WebStream::push_checked(const FrameView& frame, int64_t web_row, uint64_t tag, const Thresholds& thresholds,
                             StreamContext* context) {
  auto& d = *impl_;
  if (d.open && (frame.width != d.width || frame.format != d.format || web_row != d.web_row0 + d.total)) {
    throw std::invalid_argument("a " + std::to_string(frame.width) + "x" + std::to_string(frame.height) +
                                " buffer at web row " + std::to_string(web_row) + " does not continue the web (" +
                                std::to_string(d.width) + " wide, next row " + std::to_string(d.web_row0 + d.total) +
                                "): end it first");
  }
  d.owner->impl().fail_if_injected();
  check_tiles(d.tiles, frame.width, frame.height, d.detector.image_size());
  apply_context_threads(context);
  if (frame.height * d.scale() < 1.0) {
    throw std::invalid_argument("tile-size " + std::to_string(d.tiles.size) + ": a buffer of " +
                                std::to_string(frame.height) + " rows is less than one heat-map row; continuous mode "
                                "needs buffers of at least tile-size / model input (" +
                                std::to_string(d.tiles.size) + " / " + std::to_string(d.detector.image_size()) +
                                ") rows");
  }
  {
    torch::InferenceMode guard;
    const auto input = frame_input(frame, d.detector.device(), context, d.detector.model().config.resize);
    if (!d.open) {
      d.open = true;
      d.width = frame.width;
      d.format = frame.format;
      d.web_row0 = web_row;
      d.channels = input.channels;
      d.pixels = input.pixels.clone();
      d.layout.emplace(d.detector, d.tiles, frame.width, d.tiles.size, INT64_MAX / 4);
      d.regions.emplace(static_cast<int>(d.layout->map_w),
                        std::max<int64_t>(1, static_cast<int64_t>(std::ceil(d.max_region_rows * d.scale()))));
    } else {
      d.pixels = torch::cat({d.pixels, input.pixels});
    }
    d.pending.push_back({tag, d.total, frame.height, thresholds});
    d.total += frame.height;
    d.release(d.advance(false, context), false, "");
  }
}

std::vector<WebBuffer> WebStream::take_ready() {
  std::vector<WebBuffer> out;
  out.swap(impl_->ready);
  return out;
}

std::vector<FrameRegion> WebStream::finish(const std::string& why, StreamContext* context) {
  auto& d = *impl_;
  std::vector<FrameRegion> orphans;
  if (!d.open) return orphans;
  apply_context_threads(context);
  try {
    torch::InferenceMode guard;
    const auto scope = stream_scope(context, d.detector.device());  // where the pixels were uploaded
    if (d.pending.empty()) {
      for (const auto& w : d.regions->close_all(why)) orphans.push_back(d.to_frame(w, nullptr));
    } else {
      d.release(d.advance(true, context), true, why);
    }
  } catch (...) {
    d.reset(true);
    throw;
  }
  d.reset();
  return orphans;
}

std::vector<FrameRegion> WebStream::drop(const std::string& why, std::vector<uint64_t>* dropped) {
  auto& d = *impl_;
  std::vector<FrameRegion> closed;
  if (d.open) {
    for (const auto& w : d.regions->close_all(why)) closed.push_back(d.to_frame(w, nullptr));
    if (dropped) {
      for (const auto& b : d.ready) dropped->push_back(b.tag);
      for (const auto& p : d.pending) dropped->push_back(p.tag);
    }
  }
  d.reset(true);
  return closed;
}

size_t WebStream::pending() const { return impl_->pending.size(); }
size_t WebStream::ready() const { return impl_->ready.size(); }
int64_t WebStream::next_row() const { return impl_->open ? impl_->web_row0 + impl_->total : -1; }
int64_t WebStream::held_rows() const {
  return impl_->pixels.defined() ? impl_->pixels.size(0) : 0;
}

}  // namespace pefm
