// Regions of an endless web (line-scan continuous mode): the anomalous areas of a map that
// arrives in bands of rows, merged across band boundaries and reported once, when they end,
// with their whole extent in web rows. No LibTorch: the element uses it directly.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace pefm {

// A region of the web, in map pixels: rows are web rows of the map (counted from the first
// row of the stream), columns map columns.
struct WebRegion {
  int64_t y = 0, height = 0;  // first web row, rows
  int x = 0, width = 0;       // first column, columns
  int64_t area = 0;           // map pixels covered
  float peak = 0.0f;          // highest score inside
  // Why it was reported: "ended" (no pixel in the next row), "max-rows" (open for longer
  // than the bound: the part seen so far; what follows starts a new region), "gap" (a
  // discontinuity in the stream), "flush" or "eos" (the stream stopped while it was open).
  std::string closed_by;
};

class WebRegions {
 public:
  // `width`: map columns of every band; `max_open_rows`: the longest a region may stay open
  // before its part so far is reported (at least 1).
  WebRegions(int width, int64_t max_open_rows);

  // Adds the band of map rows [first_row, first_row + rows) (`scores`, row-major, `rows` x
  // width; a pixel belongs to a region when its score is at or above `level`) and returns
  // the regions that ended in it or before it: 8-connected areas, merged with the regions
  // left open by the previous band when the bands meet. A band that does not start where
  // the previous one ended closes the open regions first ("gap"). Throws
  // std::invalid_argument for a size that does not match or a band that goes backwards.
  std::vector<WebRegion> add_band(int64_t first_row, const float* scores, int64_t rows, float level);

  // Looks one row ahead: `next_row` (width scores, the row the next band will start with,
  // cut at `level`) decides which open regions go on. Those that do not are reported now
  // ("ended"), in the band where they end, instead of with the next band.
  std::vector<WebRegion> end_unless_continued(const float* next_row, float level);

  // Reports every open region with `why` ("flush", "eos", "gap") and forgets them.
  std::vector<WebRegion> close_all(const std::string& why);

  // Regions still open (touching the last row added) and the web row the next band must
  // start at (-1 before the first band).
  size_t open_count() const { return open_.size(); }
  int64_t next_row() const { return next_row_; }

 private:
  struct Open {
    WebRegion region;
    std::vector<int> last_row_columns;  // its columns in the last row added
  };
  int width_;
  int64_t max_open_rows_;
  int64_t next_row_ = -1;
  std::vector<Open> open_;
};

}  // namespace pefm
