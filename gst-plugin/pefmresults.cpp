#ifdef HAVE_CONFIG_H
#include "pefm-config.h"
#endif

#include "pefmresults.h"

#include <gst/video/gstvideometa.h>
#ifdef PEFM_HAVE_GST_ANALYTICS
/* gstanalyticsmeta.h (1.26) includes "config.h" when HAVE_CONFIG_H is defined, as it is
 * here for pefm-config.h: hide it from that header. */
#pragma push_macro("HAVE_CONFIG_H")
#undef HAVE_CONFIG_H
#include <gst/analytics/analytics.h>
#pragma pop_macro("HAVE_CONFIG_H")
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "pefmjson.h"

PefmWebScale::PefmWebScale (double pixels_per_mm, double lines_per_mm)
{
  if (pixels_per_mm > 0) {
    mm_per_pixel = 1.0 / pixels_per_mm;
    mm_per_line = 1.0 / (lines_per_mm > 0 ? lines_per_mm : pixels_per_mm);
  }
}

bool
pefm_mm_scale_too_small (double v)
{
  /* read from the bits: where denormals are flushed to zero (LibTorch may set that), a
   * denormal compares equal to 0 */
  guint64 bits;
  memcpy (&bits, &v, sizeof bits);
  return (bits << 1) != 0 && !(v >= 1e-3);
}

std::string
pefm_printf (const char *format, double v)
{
  gchar *text = g_strdup_printf (format, v);
  std::string out (text);
  g_free (text);
  return out;
}

/* A score as a confidence in 0..1: an uncalibrated model's raw score can exceed 1. */
static double
confidence (float score)
{
  return std::clamp (static_cast < double >(score), 0.0, 1.0);
}

/* A region's box in DL Streamer's "detection" form (gvametaconvert, gvawatermark and
 * gvapython read it): corners normalised to the frame, its peak as confidence. */
static GstStructure *
detection_structure (const pefm::FrameRegion & g, int frame_width, int frame_height)
{
  const double w = std::max (1, frame_width), h = std::max (1, frame_height);
  return gst_structure_new ("detection",
      "x_min", G_TYPE_DOUBLE, g.x / w, "y_min", G_TYPE_DOUBLE, g.y / h,
      "x_max", G_TYPE_DOUBLE, (g.x + g.width) / w, "y_max", G_TYPE_DOUBLE, (g.y + g.height) / h,
      "confidence", G_TYPE_DOUBLE, confidence (g.peak),
      "label_id", G_TYPE_INT, 0, "label", G_TYPE_STRING, "anomaly", NULL);
}

/* The frame's decision in DL Streamer's classification form (a classifier's result on a
 * ROI): anomalous (1) or normal (0), its score as confidence, and the model's file name
 * (gvametaconvert keeps such a structure only with both label and model_name). */
static GstStructure *
classification_structure (const pefm::FrameResult & r, const char *model_name)
{
  return gst_structure_new ("classification",
      "attribute_name", G_TYPE_STRING, "frame",
      "label", G_TYPE_STRING, r.anomalous ? "anomalous" : "normal",
      "label_id", G_TYPE_INT, r.anomalous ? 1 : 0, "confidence", G_TYPE_DOUBLE, confidence (r.score),
      "model_name", G_TYPE_STRING, model_name ? model_name : "", NULL);
}

#ifdef PEFM_HAVE_GST_ANALYTICS
/* GStreamer 1.24's analytics metadata: one classification entry for the frame (class
 * "anomalous" or "normal") and one object-detection entry per region (type "anomaly"),
 * each region related to the frame's classification as a part of it. */
static void
attach_analytics (GstBuffer * buf, const pefm::FrameResult & r)
{
  GstAnalyticsRelationMeta *rmeta = gst_buffer_add_analytics_relation_meta (buf);
  GstAnalyticsClsMtd cls;
  if (!rmeta || !gst_analytics_relation_meta_add_one_cls_mtd (rmeta, static_cast < gfloat > (confidence (r.score)),
          g_quark_from_static_string (r.anomalous ? "anomalous" : "normal"), &cls))
    return;
  const GQuark anomaly = g_quark_from_static_string ("anomaly");
  for (const auto & g:r.regions) {
    GstAnalyticsODMtd od;
    if (gst_analytics_relation_meta_add_od_mtd (rmeta, anomaly, g.x, g.y, g.width, g.height,
            static_cast < gfloat > (confidence (g.peak)), &od))
      gst_analytics_relation_meta_set_relation (rmeta, GST_ANALYTICS_REL_TYPE_IS_PART_OF, od.id, cls.id);
  }
}
#endif

GstPefmRegion
pefm_gst_region (const pefm::FrameRegion & g, const PefmWebScale & scale)
{
  GstPefmRegion r { g.x, g.y, g.width, g.height, static_cast < guint64 > (g.area), g.peak,
    0, 0, 0, 0, NAN, NAN, NAN, NAN, NULL };
  if (g.web_height > 0) {
    r.web_y = static_cast < guint64 > (g.web_y);
    r.web_height = static_cast < guint64 > (g.web_height);
    r.web_x = g.web_x;
    r.web_width = g.web_width;
    r.web_y_mm = g.web_y * scale.mm_per_line;
    r.web_x_mm = g.web_x * scale.mm_per_pixel;
    r.height_mm = g.web_height * scale.mm_per_line;
    r.width_mm = g.web_width * scale.mm_per_pixel;
    r.closed_by = g_intern_string (g.closed_by.c_str ());
  }
  return r;
}

/* A region as a "region" structure, with GstPefmRegion's field names. */
static GstStructure *
region_structure (const pefm::FrameRegion & g, const PefmWebScale & scale)
{
  GstStructure *s = gst_structure_new_empty ("region");
  pefm::visit_region_fields (pefm_gst_region (g, scale),[s](const char *name, auto value) {
        using T = decltype (value);
        if constexpr (std::is_same_v < T, const char *>)
          gst_structure_set (s, name, G_TYPE_STRING, value, NULL);
        else if constexpr (std::is_same_v < T, double >)
          gst_structure_set (s, name, G_TYPE_DOUBLE, value, NULL);
        else if constexpr (std::is_same_v < T, guint64 >)
          gst_structure_set (s, name, G_TYPE_UINT64, value, NULL);
        else
          gst_structure_set (s, name, G_TYPE_INT, static_cast < gint > (value), NULL);
      });
  return s;
}

/* The regions as a GST_TYPE_ARRAY of "region" structures, into @s as @field. */
static void
set_region_array (GstStructure * s, const char *field, const std::vector < pefm::FrameRegion > &regions,
    const PefmWebScale & scale)
{
  GValue boxes = G_VALUE_INIT;
  g_value_init (&boxes, GST_TYPE_ARRAY);
  for (const auto & g:regions) {
    GValue box = G_VALUE_INIT;
    g_value_init (&box, GST_TYPE_STRUCTURE);
    g_value_take_boxed (&box, region_structure (g, scale));
    gst_value_array_append_and_take_value (&boxes, &box);
  }
  gst_structure_take_value (s, field, &boxes);
}

/* One ROI meta per region, with its "pefm", "detection" and "classification" params, and
 * one for the whole frame with its "classification" alone: the frame's decision reaches a
 * DL Streamer pipeline also when there is no region to carry it. */
static void
attach_regions (GstBuffer * buf, const pefm::FrameResult & r, int width, int height, const char *model_name)
{
  GstVideoRegionOfInterestMeta *frame = gst_buffer_add_video_region_of_interest_meta (buf, "frame", 0, 0,
      static_cast < guint > (std::max (width, 0)), static_cast < guint > (std::max (height, 0)));
  gst_video_region_of_interest_meta_add_param (frame, classification_structure (r, model_name));
  for (const auto & g:r.regions) {
    GstVideoRegionOfInterestMeta *roi = gst_buffer_add_video_region_of_interest_meta (buf, "anomaly",
        g.x, g.y, g.width, g.height);
    GstStructure *param = gst_structure_new ("pefm", "score", G_TYPE_DOUBLE, static_cast < double >(g.peak),
        "area", G_TYPE_UINT64, static_cast < guint64 > (g.area), NULL);
    if (g.web_height > 0)
      gst_structure_set (param, "web_y", G_TYPE_UINT64, static_cast < guint64 > (g.web_y),
          "web_height", G_TYPE_UINT64, static_cast < guint64 > (g.web_height), NULL);
    gst_video_region_of_interest_meta_add_param (roi, param);
    gst_video_region_of_interest_meta_add_param (roi, detection_structure (g, width, height));
    gst_video_region_of_interest_meta_add_param (roi, classification_structure (r, model_name));
  }
}

GstPefmMeta *
pefm_attach_results (GstBuffer * buf, const PefmFrameReport & report, bool calibrated, int width, int height,
    const PefmWebScale & scale)
{
  GstPefmMeta *meta = gst_buffer_add_pefm_meta (buf);
  meta->threshold = static_cast < gfloat > (report.thresholds.image);
  meta->region_threshold = static_cast < gfloat > (report.thresholds.region);
  meta->calibrated = calibrated;
  meta->model_name = report.model_name;
  meta->model_sha256 = report.model_sha256;
  if (!report.result) {
    meta->inspected = FALSE;
    meta->skip_reason = report.skip_reason;
    return meta;
  }
  const pefm::FrameResult & r = *report.result;
  meta->raw_score = r.raw_score;
  meta->score = r.score;
  meta->region_level = r.region_level;
  meta->anomalous = r.anomalous;
  gst_pefm_meta_set_map (meta, r.map_width, r.map_height, r.map.data (), r.map_scale_x, r.map_scale_y);
  std::vector < GstPefmRegion > regions;
  for (const auto & g:r.regions)
    regions.push_back (pefm_gst_region (g, scale));
  gst_pefm_meta_set_regions (meta, static_cast < guint > (regions.size ()), regions.data ());
  attach_regions (buf, r, width, height, report.model_name);
#ifdef PEFM_HAVE_GST_ANALYTICS
  attach_analytics (buf, r);
#endif
  if (report.web) {
    meta->continuous = TRUE;
    meta->web_row = static_cast < guint64 > (report.web->web_row);
  }
  return meta;
}

GstStructure *
pefm_frame_structure (const PefmFrameReport & report, const GstSegment * segment, GstClockTime pts,
    const pefm::Calibration & cal, const PefmWebScale & scale)
{
  const pefm::FrameResult *result = report.result;
  GstStructure *s = gst_structure_new ("pefm",
      "timestamp", G_TYPE_UINT64, pts,
      "running-time", G_TYPE_UINT64, gst_segment_to_running_time (segment, GST_FORMAT_TIME, pts),
      "stream-time", G_TYPE_UINT64, gst_segment_to_stream_time (segment, GST_FORMAT_TIME, pts),
      "frame", G_TYPE_UINT64, report.frame,
      "inspected", G_TYPE_BOOLEAN, result != nullptr,
      "threshold", G_TYPE_DOUBLE, report.thresholds.image,
      "region-threshold", G_TYPE_DOUBLE, report.thresholds.region, NULL);
  if (report.model_name && report.model_sha256)
    gst_structure_set (s, "model", G_TYPE_STRING, report.model_name, "model-sha256", G_TYPE_STRING,
        report.model_sha256, NULL);
  if (!result) {
    gst_structure_set (s, "reason", G_TYPE_STRING, report.skip_reason, NULL);
    return s;
  }
  gst_structure_set (s,
      "score", G_TYPE_DOUBLE, static_cast < double >(result->score),
      "raw-score", G_TYPE_DOUBLE, static_cast < double >(result->raw_score),
      "anomalous", G_TYPE_BOOLEAN, result->anomalous,
      "regions", G_TYPE_UINT, static_cast < guint > (result->regions.size ()), NULL);
  /* the rate holds at the calibrated threshold only */
  if (cal.valid && cal.method == "conformal" && report.thresholds.image == 0.5)
    gst_structure_set (s, "stated-false-alarm-rate", G_TYPE_DOUBLE, cal.false_alarm_bound, NULL);
  set_region_array (s, "boxes", result->regions, scale);
  if (report.web)
    gst_structure_set (s, "web-row", G_TYPE_UINT64, static_cast < guint64 > (report.web->web_row),
        "web-rows", G_TYPE_UINT64, static_cast < guint64 > (report.web->rows), NULL);
  return s;
}

GstStructure *
pefm_web_structure (const char *reason, guint64 next_row, guint dropped,
    const std::vector < pefm::FrameRegion > &regions, const PefmWebScale & scale)
{
  GstStructure *s = gst_structure_new ("pefm-web",
      "event", G_TYPE_STRING, g_str_equal (reason, "eos") ? "end" : "discontinuity",
      "reason", G_TYPE_STRING, reason,
      "web-row", G_TYPE_UINT64, next_row,
      "dropped-buffers", G_TYPE_UINT, dropped, NULL);
  set_region_array (s, "boxes", regions, scale);
  return s;
}

GstStructure *
pefm_calibration_structure (const pefm::Calibration & cal)
{
  GstStructure *s = gst_structure_new ("pefm-calibration",
      "calibrated", G_TYPE_BOOLEAN, cal.valid,
      "method", G_TYPE_STRING, cal.valid ? cal.method.c_str () : "",
      "images", G_TYPE_INT64, cal.valid ? cal.images : static_cast < gint64 > (0), NULL);
  if (!cal.valid)
    return s;
  if (cal.method == "conformal")
    gst_structure_set (s,
        "asked-false-alarm-rate", G_TYPE_DOUBLE, cal.false_alarm_target,
        "stated-false-alarm-rate", G_TYPE_DOUBLE, cal.false_alarm_bound,
        "false-alarm-upper95", G_TYPE_DOUBLE, cal.false_alarm_upper95,
        "folds", G_TYPE_INT64, cal.folds, "groups", G_TYPE_INT64, cal.groups, NULL);
  if (std::isfinite (cal.region_threshold) && std::isfinite (cal.region_rate_target))
    gst_structure_set (s,
        "asked-pixel-false-alarm-rate", G_TYPE_DOUBLE, cal.region_rate_target,
        "pixel-false-alarm-rate", G_TYPE_DOUBLE, cal.region_rate,
        "images-with-regions", G_TYPE_DOUBLE, cal.region_image_rate, NULL);
  return s;
}

GstStructure *
pefm_stats_structure (const PefmStats & st)
{
  return gst_structure_new ("pefm-stats",
      "frames", G_TYPE_UINT64, st.frames, "inspected", G_TYPE_UINT64, st.inspected,
      "skipped-late", G_TYPE_UINT64, st.skipped_late, "skipped-interval", G_TYPE_UINT64, st.skipped_interval,
      "latency", G_TYPE_UINT64, st.latency, "processing-max", G_TYPE_UINT64, st.processing_max, NULL);
}
