#include "pefmjson.h"

#include <cmath>
#include <type_traits>

namespace pefm {

double json_rounded(double value) { return std::round(value * 1e6) / 1e6; }

Json json_time(GstClockTime t) { return GST_CLOCK_TIME_IS_VALID(t) ? Json(static_cast<uint64_t>(t)) : Json(nullptr); }

Json region_json(const GstPefmRegion& r) {
  Json region = Json::object();
  visit_region_fields(r, [&region](const char* name, auto value) {
    if constexpr (std::is_floating_point_v<decltype(value)>)
      region[name] = json_rounded(value);
    else
      region[name] = value;
  });
  return region;
}

void add_meta_json(Json* line, const GstPefmMeta* m) {
  Json& j = *line;
  if (!m) {
    j["decision"] = "no-meta";
    j["error"] = "no pefm metadata on this buffer";
    return;
  }
  if (!m->inspected) {
    j["decision"] = "uninspected";
    j["skip_reason"] = m->skip_reason ? m->skip_reason : "";
  } else {
    j["decision"] = m->anomalous ? "anomalous" : "normal";
  }
  j["score"] = json_rounded(m->score);
  j["raw_score"] = json_rounded(m->raw_score);
  j["threshold"] = json_rounded(m->threshold);
  j["region_threshold"] = json_rounded(m->region_threshold);
  j["region_level"] = json_rounded(m->region_level);
  j["anomalous"] = static_cast<bool>(m->anomalous);
  j["calibrated"] = static_cast<bool>(m->calibrated);
  j["map"] = {m->map_width, m->map_height};
  auto regions = Json::array();
  for (guint i = 0; i < m->n_regions; ++i) {
    regions.push_back(region_json(m->regions[i]));
  }
  j["regions"] = std::move(regions);
  if (m->continuous) j["web_row"] = m->web_row;
  if (m->model_name) j["model"] = model_json(m);
}

Json model_json(const GstPefmMeta* m) {
  if (!m || !m->model_name) return nullptr;
  return {{"name", m->model_name}, {"sha256", m->model_sha256 ? Json(m->model_sha256) : Json(nullptr)}};
}

}  // namespace pefm
