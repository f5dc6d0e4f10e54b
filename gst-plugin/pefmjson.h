// GstPefmMeta as JSON, one set of field names for everything that writes results:
// pefmpublish's lines and pefm-results' lines (pipelines/). nlohmann-json, no LibTorch.
#ifndef PEFM_GST_JSON_H
#define PEFM_GST_JSON_H

#include <gst/gst.h>

#include <cmath>

#include "gstpefmmeta.h"
#include "pefm/json_text.h"

namespace pefm {

// Scores rounded to 6 decimals (what a float holds); NaN stays NaN and is written null.
double json_rounded(double value);

// "decision" ("anomalous", "normal", or "uninspected" with "skip_reason"), "score",
// "raw_score", "threshold", "region_threshold", "region_level", "calibrated", "map" [width,
// height], "regions" [region_json each], in continuous mode "web_row", and "model" (name,
// sha256) when the meta names it, added to `line`.
// Without a meta: "decision": "no-meta" and an "error".
void add_meta_json(Json* line, const GstPefmMeta* meta);

// A region's fields, the one spelling of them (GstPefmRegion's), in order: `field(name,
// value)` for x, y, width, height, area, peak; in continuous mode also web_y, web_height,
// web_x, web_width, closed_by, and with pixels-per-mm web_y_mm, web_x_mm, height_mm,
// width_mm. The JSON lines and the element's messages both write regions through it.
template <typename Field>
void visit_region_fields(const GstPefmRegion& r, Field&& field) {
  field("x", r.x);
  field("y", r.y);
  field("width", r.width);
  field("height", r.height);
  field("area", r.area);
  field("peak", static_cast<double>(r.peak));
  if (r.web_height == 0) return;  // continuous line-scan mode: the region's whole extent on the web
  field("web_y", r.web_y);
  field("web_height", r.web_height);
  field("web_x", r.web_x);
  field("web_width", r.web_width);
  field("closed_by", r.closed_by ? r.closed_by : "");
  if (!std::isfinite(r.web_y_mm)) return;
  field("web_y_mm", r.web_y_mm);
  field("web_x_mm", r.web_x_mm);
  field("height_mm", r.height_mm);
  field("width_mm", r.width_mm);
}

// visit_region_fields as a JSON object, decimals rounded (json_rounded).
Json region_json(const GstPefmRegion& r);

// The model a meta names, {"name", "sha256"}; null when it names none.
Json model_json(const GstPefmMeta* meta);

// A buffer's time stamp in nanoseconds, null when it has none.
Json json_time(GstClockTime t);

}  // namespace pefm

#endif  // PEFM_GST_JSON_H
