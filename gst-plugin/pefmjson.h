// GstPefmMeta as JSON, one set of field names for everything that writes results:
// pefmpublish's lines and pefm-results' lines (pipelines/). nlohmann-json, no LibTorch.
#ifndef PEFM_GST_JSON_H
#define PEFM_GST_JSON_H

#include <gst/gst.h>

#include "gstpefmmeta.h"
#include "pefm/json_text.h"

namespace pefm {

// Scores rounded to 6 decimals (what a float holds); NaN stays NaN and is written null.
double json_rounded(double value);

// "decision" ("anomalous", "normal", or "uninspected" with "skip_reason"), "score",
// "raw_score", "threshold", "region_threshold", "region_level", "calibrated", "map" [width,
// height], "regions" [region_json each], and in continuous mode "web_row", added to `line`.
// Without a meta: "decision": "no-meta" and an "error".
void add_meta_json(Json* line, const GstPefmMeta* meta);

// {x, y, width, height, area, peak}; in continuous mode also web_y, web_height, web_x,
// web_width, closed_by, and with pixels-per-mm web_y_mm, web_x_mm, height_mm, width_mm.
Json region_json(const GstPefmRegion& r);

// A buffer's time stamp in nanoseconds, null when it has none.
Json json_time(GstClockTime t);

}  // namespace pefm

#endif  // PEFM_GST_JSON_H
