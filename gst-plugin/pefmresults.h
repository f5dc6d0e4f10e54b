/* pefmfilter's results writer: a frame's results as GstPefmMeta, ROI metas (pefm's and DL
 * Streamer's params), GStreamer 1.24 analytics metas, and the structures of its messages
 * and properties. Regions are spelled one way everywhere (visit_region_fields, shared
 * with pefmpublish's JSON). No element state, no LibTorch. */
#ifndef __PEFM_RESULTS_H__
#define __PEFM_RESULTS_H__

#include <gst/gst.h>

#include <string>
#include <vector>

#include "gstpefmmeta.h"
#include "pefm/calibration.h"
#include "pefm/frame_result.h"
#include "pefm/web_stream.h"

/* Millimetres per web pixel across (pixels-per-mm) and along (lines-per-mm, else
 * pixels-per-mm) the web; NaN when pixels-per-mm is not set. */
struct PefmWebScale
{
  double mm_per_pixel = NAN, mm_per_line = NAN;
  PefmWebScale () = default;
  PefmWebScale (double pixels_per_mm, double lines_per_mm);
};

/* Whether a millimetre scale (pixels-per-mm, lines-per-mm) is neither 0 ("not set") nor at
 * least 0.001, one pixel a metre: below, millimetres overflow what JSON can carry. */
bool pefm_mm_scale_too_small (double v);

/* printf into a std::string (%g in messages, where std::to_string rounds to 0). */
std::string pefm_printf (const char *format, double v);

/* One frame's results for the meta and the "pefm" message. @result NULL: the frame was let
 * through uninspected, for @skip_reason. */
struct PefmFrameReport
{
  guint64 frame = 0;
  pefm::Thresholds thresholds;
  const pefm::FrameResult *result = nullptr;
  const char *skip_reason = nullptr;
  const pefm::WebBuffer *web = nullptr;       /* continuous mode: the buffer's place on the web */
  const char *model_name = nullptr;           /* the model's file name and SHA-256 (interned) */
  const char *model_sha256 = nullptr;
};

/* The `stats` property's counters: frames = inspected + skipped_late + skipped_interval;
 * the latency the LATENCY query adds and the longest frame, in nanoseconds. */
struct PefmStats
{
  guint64 frames = 0, inspected = 0, skipped_late = 0, skipped_interval = 0;
  GstClockTime latency = 0, processing_max = 0;
};

/* A region as GstPefmMeta carries it (the web fields in continuous mode). */
GstPefmRegion pefm_gst_region (const pefm::FrameRegion & g, const PefmWebScale & scale);

/* Attaches @report's results to @buf: a GstPefmMeta (inspected or not); for each region an
 * "anomaly" ROI meta with its "pefm", "detection" and "classification" params; for an
 * inspected frame a whole-frame "frame" ROI meta with the frame's "classification" only
 * (and the analytics metas where built with them). @width x @height: the frame (the buffer's rows in
 * continuous mode). */
GstPefmMeta *pefm_attach_results (GstBuffer * buf, const PefmFrameReport & report, bool calibrated,
    int width, int height, const PefmWebScale & scale);

/* The "pefm" element message's structure for @report of the buffer at @pts: timestamp,
 * running-time, stream-time, frame, inspected, threshold, region-threshold, model and
 * model-sha256 (when known); for inspected
 * frames score, raw-score, anomalous, regions (their count), boxes (an array of "region"
 * structures with #GstPefmRegion's field names), in continuous mode web-row and web-rows,
 * and "stated-false-alarm-rate" when @cal is conformal and the threshold 0.5; for frames
 * let through uninspected, reason. */
GstStructure *pefm_frame_structure (const PefmFrameReport & report, const GstSegment * segment, GstClockTime pts,
    const pefm::Calibration & cal, const PefmWebScale & scale);

/* The "pefm-web" message's structure: event ("end" at EOS, else "discontinuity"), reason,
 * web-row (where the next web starts), dropped-buffers (a flush's) and boxes (the regions
 * that were open). */
GstStructure *pefm_web_structure (const char *reason, guint64 next_row, guint dropped,
    const std::vector < pefm::FrameRegion > &regions, const PefmWebScale & scale);

/* The `stats` property's structure. */
GstStructure *pefm_stats_structure (const PefmStats & stats);

/* The `calibration` property: how @cal decides and the false-alarm rates it states. */
GstStructure *pefm_calibration_structure (const pefm::Calibration & cal);

#endif /* __PEFM_RESULTS_H__ */
