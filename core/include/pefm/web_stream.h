// Line-scan continuous mode: an endless web arriving as buffers of rows, inspected as one
// picture. Tiles lie on a grid fixed to the web (not to each buffer), so a tile straddling
// two buffers is scored with the rows of both and the heat map has no seam: the map of a
// web fed in buffers equals the map of the same web fed whole (tiled_map). A buffer's
// results are ready once every tile that touches its rows has been scored, so rows are
// held back (held_rows_bound); anomalous regions are merged across buffers (WebRegions)
// and each is reported once, with the buffer where it ends, with its whole extent on the
// web. No LibTorch types: the element uses it directly.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "pefm/frame.h"
#include "pefm/frame_result.h"
#include "pefm/stream_context.h"
#include "pefm/tiling.h"

namespace pefm {

class FrameDetector;

// One buffer of the web, scored.
struct WebBuffer {
  uint64_t tag = 0;     // what the caller gave WebStream::push
  int64_t web_row = 0;  // its first row on the web
  int rows = 0;
  Thresholds thresholds;  // what it was decided at (given to push)
  // The map, scores and decision of the buffer's own rows (as FrameDetector::process gives
  // them for a frame); `regions`: the regions reported with this buffer (those that end in
  // it, or are closed by finish()), each with its whole extent on the web (FrameRegion's
  // web_* fields) and, in x/y/width/height, the part inside this buffer.
  FrameResult result;
};

class WebStream {
 public:
  // `tiles.size` > 0 (frame pixels) or kTileAsTrained of a tiled model; `max_region_rows`: the most web rows a region may stay
  // open before its part so far is reported ("max-rows"), at least 1. Throws
  // std::invalid_argument naming tile-size or the bound.
  WebStream(std::shared_ptr<FrameDetector> detector, const TileOptions& tiles, int64_t max_region_rows);
  ~WebStream();
  WebStream(const WebStream&) = delete;
  WebStream& operator=(const WebStream&) = delete;

  // At most how many rows after a buffer's last row must arrive before its results are
  // ready: a tile's height and a tile step to score the last tiles touching it, and the
  // frame rows of one map row to see whether its regions go on.
  static int64_t held_rows_bound(const TileOptions& tiles, int64_t model_input);
  int64_t held_rows_bound() const;

  // Adds a buffer (`frame.height` rows) whose first row is web row `web_row`, tagged `tag`,
  // to be decided at `thresholds`. The first buffer, or the first after finish() or drop(),
  // starts a web anywhere; later ones must continue it: the same width and format, starting
  // where the last one ended (else std::invalid_argument: a discontinuity is the caller's
  // to report, with finish()). Also throws what FrameDetector::process throws (bad frames,
  // tilings, Cancelled). Whatever it throws, the web is dropped with every result not yet
  // taken (start again with the next buffer). The context's CPU threads apply.
  void push(const FrameView& frame, int64_t web_row, uint64_t tag, const Thresholds& thresholds,
            StreamContext* context = nullptr);

  // The buffers whose results are ready, oldest first (each once).
  std::vector<WebBuffer> take_ready();

  // Ends the web (end of stream, discontinuity): the rows left are scored (the last tile
  // flush with the web's end, as for a whole frame), every pending buffer becomes ready and
  // the regions still open close with `why`, reported with the last buffer. Returns the
  // open regions that had no buffer to go with (closed, with web extents only). The
  // context's CPU threads apply.
  std::vector<FrameRegion> finish(const std::string& why, StreamContext* context = nullptr);

  // Forgets the web without scoring the rest (flush): returns the tags of the buffers that
  // were pending in `dropped` (results ready and not taken are forgotten too), and the
  // regions that were open, closed with `why` (web extents only).
  std::vector<FrameRegion> drop(const std::string& why, std::vector<uint64_t>* dropped = nullptr);

  size_t pending() const;
  // Results ready and not yet taken.
  size_t ready() const;
  // Web row the next buffer must start at; -1 when no web is open.
  int64_t next_row() const;
  // Frame rows of pixels held now (the memory the web costs beyond the pending buffers).
  int64_t held_rows() const;

 private:
  void push_checked(const FrameView& frame, int64_t web_row, uint64_t tag, const Thresholds& thresholds,
                    StreamContext* context);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pefm
