/**
 * SECTION:element-pefmfilter
 * @title: pefmfilter
 *
 * Runs a PEFM anomaly detector (trained with pefm-train) on every frame. Each buffer
 * leaves with a #GstPefmMeta (image score, decision, heat map, regions) and one
 * #GstVideoRegionOfInterestMeta of type "anomaly" per anomalous region, with two params:
 * "pefm" (score, area) and DL Streamer's "detection" (x_min, y_min, x_max, y_max
 * normalised, confidence, label_id, label), which gvametaconvert and gvawatermark read; the heat map
 * and/or region contours can be drawn into the frame. Frames are processed in the
 * format they arrive in (RGB/BGR with or without alpha, GRAY8, I420, NV12).
 *
 * Every frame is inspected: QoS never drops a frame here (the base class's `qos`
 * property turns into skip-late). A frame is let through uninspected only when asked
 * (skip-late, inference-interval), and then it still carries a #GstPefmMeta with
 * `inspected` FALSE and the reason, a "pefm" message says so (emit-messages), and the
 * `stats` property counts it. The element answers the LATENCY query with the longest
 * processing time it has measured (a warm-up frame at negotiation, then every frame), so
 * live sinks schedule correctly; put a leaky queue before it when the source must never
 * block (pipelines/camera.sh). With overlay=none the frame is only read: after a tee
 * nothing is copied. Controllable properties follow their control sources.
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 filesrc location=in.mp4 ! decodebin ! videoconvert ! \
 *     pefmfilter model=cable.pt overlay=heatmap+contours ! videoconvert ! autovideosink
 * ]|
 * Line-scan strips, tiled at native resolution:
 * |[
 * gst-launch-1.0 ... ! pefmfilter model=strip.pt tile-size=512 tile-overlap=64 ! ...
 * ]|
 */
#ifdef HAVE_CONFIG_H
#include "pefm-config.h"
#endif

#include "gstpefmfilter.h"

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
#include <chrono>
#include <cmath>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <string>

#include "gstpefmmeta.h"
#include "gstpefmvideo.h"
#include "pefm/frame_detector.h"
#include "pefm/overlay.h"
#include "pefm/threads.h"
#include "pefmweb.h"

/* The element includes only pefm's LibTorch-free headers (and gst-plugin/meson.build
 * leaves LibTorch's include folders out): no LibTorch type crosses into GStreamer code,
 * and this file compiles in seconds. Every LibTorch header includes c10/macros/Macros.h. */
#ifdef C10_MACROS_MACROS_H_
#error "a LibTorch header reached gstpefmfilter.cpp through a pefm header"
#endif

GST_DEBUG_CATEGORY_STATIC (gst_pefm_filter_debug);
#define GST_CAT_DEFAULT gst_pefm_filter_debug

#define DEFAULT_PROP_MODEL NULL
#define DEFAULT_PROP_DEVICE "auto"
#define DEFAULT_PROP_PRECISION GST_PEFM_PRECISION_FP32
#define DEFAULT_PROP_THRESHOLD 0.5
#define DEFAULT_PROP_REGION_THRESHOLD 0.5
#define DEFAULT_PROP_OVERLAY PEFM_DEFAULT_OVERLAY
#define DEFAULT_PROP_OVERLAY_ALPHA PEFM_DEFAULT_OVERLAY_ALPHA
/* printf into a std::string (values in messages: %g, where std::to_string rounds to 0). */
static std::string
printf_string (const char *format, double v)
{
  gchar *text = g_strdup_printf (format, v);
  std::string out (text);
  g_free (text);
  return out;
}

/* The least pixels-per-mm / lines-per-mm other than 0: one pixel a metre. */
static constexpr double kMinPixelsPerMm = 1e-3;

/* Whether a millimetre scale is neither 0 ("not set") nor at least kMinPixelsPerMm. Read
 * from the bits: where denormals are flushed to zero (LibTorch may set that), a denormal
 * compares equal to 0. */
static bool
scale_too_small (double v)
{
  guint64 bits;
  memcpy (&bits, &v, sizeof bits);
  return (bits << 1) != 0 && !(v >= kMinPixelsPerMm);
}
#define DEFAULT_PROP_TILE_SIZE -1
#define DEFAULT_PROP_TILE_OVERLAP 0
#define DEFAULT_PROP_THREADS 0
#define DEFAULT_PROP_EMIT_MESSAGES FALSE
#define DEFAULT_PROP_MESSAGE_MODE GST_PEFM_MESSAGES_ALL
#define DEFAULT_PROP_SKIP_LATE FALSE
#define DEFAULT_PROP_INFERENCE_INTERVAL 1
#define DEFAULT_PROP_CONTINUOUS FALSE
#define DEFAULT_PROP_PIXELS_PER_MM 0.0
#define DEFAULT_PROP_LINES_PER_MM 0.0
#define DEFAULT_PROP_MAX_REGION_ROWS 65536

enum
{
  PROP_0,
  PROP_MODEL,
  PROP_DEVICE,
  PROP_PRECISION,
  PROP_THRESHOLD,
  PROP_REGION_THRESHOLD,
  PROP_OVERLAY,
  PROP_OVERLAY_ALPHA,
  PROP_TILE_SIZE,
  PROP_TILE_OVERLAP,
  PROP_THREADS,
  PROP_EMIT_MESSAGES,
  PROP_MESSAGE_MODE,
  PROP_SKIP_LATE,
  PROP_INFERENCE_INTERVAL,
  PROP_STATS,
  PROP_CALIBRATION,
  PROP_CONTINUOUS,
  PROP_PIXELS_PER_MM,
  PROP_LINES_PER_MM,
  PROP_MAX_REGION_ROWS,
};

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE ("sink",
    GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS (GST_VIDEO_CAPS_MAKE (PEFM_VIDEO_FORMATS)));
static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE ("src",
    GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS (GST_VIDEO_CAPS_MAKE (PEFM_VIDEO_FORMATS)));

/* C++ state lives behind a pointer: the instance struct is plain C. */
struct PefmState
{
  std::shared_ptr < pefm::FrameDetector > detector;
  /* this instance's CUDA stream and pinned upload buffer (shared detectors, own streams) */
  std::unique_ptr < pefm::StreamContext > stream;
  /* format and colour matrix of the negotiated caps, chosen once in set_info; each frame
   * adds its planes and size (frame_view) */
  pefm::FrameView negotiated;
  guint64 frames = 0;         /* frames inspected or let through, the frame number */
  /* counters of the `stats` property, under the object lock */
  guint64 inspected = 0, skipped_late = 0, skipped_interval = 0;
  /* QoS: running time before which a frame is already late downstream */
  GstClockTime earliest = GST_CLOCK_TIME_NONE;
  /* latency: longest processing time measured on real frames, what the LATENCY query
   * last answered, and whether that answer still comes from the warm-up frame (the first
   * inference, slowed by allocations: replaced, up or down, by the first real frame) */
  GstClockTime processing_max = 0;
  GstClockTime latency_reported = 0;
  bool latency_from_warmup = false;
  /* what the loaded model states about its threshold (the `calibration` property), set in
   * start under the object lock */
  pefm::DecisionInfo decision;
  /* continuous line-scan mode (the `continuous` property, read at start): the web and the
   * buffers it holds back */
  bool continuous = false;
  std::unique_ptr < PefmWeb > web;
  /* what the rows held back add to the LATENCY answer (continuous mode), under the object
   * lock */
  GstClockTime web_latency = 0;
};

struct _GstPefmFilter
{
  GstVideoFilter parent;

  /* properties, under the object lock */
  gchar *model;
  gchar *device;
  GstPefmPrecision precision;
  gdouble threshold;
  gdouble region_threshold;
  GstPefmOverlay overlay;
  gdouble overlay_alpha;
  gint tile_size;
  gint tile_overlap;
  /* start() .. stop(): what a tiling set while playing is checked against (under the lock) */
  gboolean started;
  gint trained_tile;            /* the loaded model's (tile-size=-1) */
  gint64 input_size;            /* the model's input, px */
  gint frame_width, frame_height;       /* negotiated; 0 before caps */
  gint threads;
  gboolean emit_messages;
  GstPefmMessageMode message_mode;
  gboolean skip_late;
  guint inference_interval;
  gboolean continuous;
  gdouble pixels_per_mm;
  gdouble lines_per_mm;
  gint max_region_rows;

  PefmState *state;
};

#define gst_pefm_filter_parent_class parent_class
G_DEFINE_TYPE_WITH_CODE (GstPefmFilter, gst_pefm_filter, GST_TYPE_VIDEO_FILTER,
    GST_DEBUG_CATEGORY_INIT (gst_pefm_filter_debug, "pefmfilter", 0,
        "PEFM anomaly detection"));
GST_ELEMENT_REGISTER_DEFINE (pefmfilter, "pefmfilter", GST_RANK_NONE, GST_TYPE_PEFM_FILTER);

#define GST_TYPE_PEFM_PRECISION (gst_pefm_precision_get_type ())
static GType
gst_pefm_precision_get_type (void)
{
  static GType type = 0;
  static const GEnumValue values[] = {
    {GST_PEFM_PRECISION_FP32, "32-bit float", "fp32"},
    {GST_PEFM_PRECISION_FP16, "16-bit float (CUDA only; falls back to fp32 on CPU)", "fp16"},
    {GST_PEFM_PRECISION_BF16, "bfloat16 (CPUs with AVX512-BF16 or AMX, and CUDA)", "bf16"},
    {0, NULL, NULL},
  };
  if (g_once_init_enter (&type))
    g_once_init_leave (&type, g_enum_register_static ("GstPefmPrecision", values));
  return type;
}

#define GST_TYPE_PEFM_MESSAGE_MODE (gst_pefm_message_mode_get_type ())
static GType
gst_pefm_message_mode_get_type (void)
{
  static GType type = 0;
  static const GEnumValue values[] = {
    {GST_PEFM_MESSAGES_ALL, "One message per frame", "all"},
    {GST_PEFM_MESSAGES_ANOMALOUS, "One message per anomalous frame", "anomalous"},
    {0, NULL, NULL},
  };
  if (g_once_init_enter (&type))
    g_once_init_leave (&type, g_enum_register_static ("GstPefmMessageMode", values));
  return type;
}

static void
gst_pefm_filter_set_property (GObject * object, guint prop_id, const GValue * value, GParamSpec * pspec)
{
  GstPefmFilter *self = GST_PEFM_FILTER (object);
  std::string refused;         /* a setting that would stop the playing stream, kept out */

  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_MODEL:
      g_free (self->model);
      self->model = g_value_dup_string (value);
      break;
    case PROP_DEVICE:
      g_free (self->device);
      self->device = g_value_dup_string (value);
      break;
    case PROP_PRECISION:
      self->precision = (GstPefmPrecision) g_value_get_enum (value);
      break;
    case PROP_THRESHOLD:
      self->threshold = g_value_get_double (value);
      break;
    case PROP_REGION_THRESHOLD:
      self->region_threshold = g_value_get_double (value);
      break;
    case PROP_OVERLAY:
      self->overlay = (GstPefmOverlay) g_value_get_enum (value);
      break;
    case PROP_OVERLAY_ALPHA:
      self->overlay_alpha = g_value_get_double (value);
      break;
    case PROP_TILE_SIZE:
    case PROP_TILE_OVERLAP:{
      const gint v = g_value_get_int (value);
      pefm::TileOptions tiles { prop_id == PROP_TILE_SIZE ? v : self->tile_size,
        prop_id == PROP_TILE_OVERLAP ? v : self->tile_overlap };
      const char *name = prop_id == PROP_TILE_SIZE ? "tile-size" : "tile-overlap";
      if (tiles.size == -1)
        tiles.size = self->trained_tile;
      /* 1..kMinTileSize-1 would cut a frame into thousands of network inputs */
      if (prop_id == PROP_TILE_SIZE && v > 0 && v < pefm::kMinTileSize) {
        refused = std::string (name) + " " + std::to_string (v) + " refused: below the minimum of " +
            std::to_string (pefm::kMinTileSize) + " pixels";
      } else if (self->started && tiles.size > 0) {
        /* while playing, checked now: at the next frame it would stop the stream (before
         * start, start() and the first frame name a bad setting) */
        try {
          if (self->frame_width > 0)
            pefm::check_tiles (tiles, self->frame_width, self->frame_height, self->input_size);
          else if (tiles.overlap > tiles.size / 2)
            throw std::invalid_argument ("tile-overlap " + std::to_string (tiles.overlap) +
                " is more than half the tile-size " + std::to_string (tiles.size));
        } catch (const std::invalid_argument & e) {
          refused = std::string (name) + " " + std::to_string (v) + " refused: " + e.what ();
        }
      }
      if (refused.empty ())
        (prop_id == PROP_TILE_SIZE ? self->tile_size : self->tile_overlap) = v;
      break;
    }
    case PROP_THREADS:
      self->threads = g_value_get_int (value);
      break;
    case PROP_EMIT_MESSAGES:
      self->emit_messages = g_value_get_boolean (value);
      break;
    case PROP_MESSAGE_MODE:
      self->message_mode = (GstPefmMessageMode) g_value_get_enum (value);
      break;
    case PROP_SKIP_LATE:
      self->skip_late = g_value_get_boolean (value);
      break;
    case PROP_INFERENCE_INTERVAL:
      self->inference_interval = g_value_get_uint (value);
      break;
    case PROP_CONTINUOUS:
      self->continuous = g_value_get_boolean (value);
      break;
    case PROP_PIXELS_PER_MM:
    case PROP_LINES_PER_MM:{
      /* 0 is "not set"; below one pixel a metre the millimetres overflow what JSON can carry */
      const double v = g_value_get_double (value);
      const char *name = prop_id == PROP_PIXELS_PER_MM ? "pixels-per-mm" : "lines-per-mm";
      if (scale_too_small (v) && self->started)
        refused = std::string (name) + " " + printf_string ("%g", v) + " refused: 0 (not set) or at least 0.001";
      else
        (prop_id == PROP_PIXELS_PER_MM ? self->pixels_per_mm : self->lines_per_mm) = v;
      break;
    }
    case PROP_MAX_REGION_ROWS:
      self->max_region_rows = g_value_get_int (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  const gint kept_size = self->tile_size, kept_overlap = self->tile_overlap;
  GST_OBJECT_UNLOCK (self);
  /* posted outside the object lock, which posting a message takes */
  if (!refused.empty () && refused.rfind ("tile", 0) == 0)
    GST_ELEMENT_WARNING (self, RESOURCE, SETTINGS,
        ("%s; keeping tile-size %d, tile-overlap %d", refused.c_str (), kept_size, kept_overlap), (NULL));
  else if (!refused.empty ())
    GST_ELEMENT_WARNING (self, RESOURCE, SETTINGS, ("%s; keeping the value before", refused.c_str ()), (NULL));
  if (!refused.empty ())
    GST_WARNING_OBJECT (self, "%s", refused.c_str ());     /* also before the element has a bus */
}

/* The `calibration` property: how the loaded model decides and the false-alarm rate it
 * states (pefm-train --false-alarm-rate), empty of rates for a model without one. */
static GstStructure *
calibration_structure (const pefm::DecisionInfo & d)
{
  GstStructure *s = gst_structure_new ("pefm-calibration",
      "calibrated", G_TYPE_BOOLEAN, d.calibrated,
      "method", G_TYPE_STRING, d.method.c_str (),
      "images", G_TYPE_INT64, d.images, NULL);
  if (d.method == "conformal")
    gst_structure_set (s,
        "asked-false-alarm-rate", G_TYPE_DOUBLE, d.false_alarm_target,
        "stated-false-alarm-rate", G_TYPE_DOUBLE, d.false_alarm_bound,
        "false-alarm-upper95", G_TYPE_DOUBLE, d.false_alarm_upper95,
        "folds", G_TYPE_INT64, d.folds,
        "groups", G_TYPE_INT64, d.groups, NULL);
  if (std::isfinite (d.region_rate_target))
    gst_structure_set (s,
        "asked-pixel-false-alarm-rate", G_TYPE_DOUBLE, d.region_rate_target,
        "pixel-false-alarm-rate", G_TYPE_DOUBLE, d.region_rate,
        "images-with-regions", G_TYPE_DOUBLE, d.region_image_rate, NULL);
  return s;
}

static void
gst_pefm_filter_get_property (GObject * object, guint prop_id, GValue * value, GParamSpec * pspec)
{
  GstPefmFilter *self = GST_PEFM_FILTER (object);

  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_MODEL: g_value_set_string (value, self->model); break;
    case PROP_DEVICE: g_value_set_string (value, self->device); break;
    case PROP_PRECISION: g_value_set_enum (value, self->precision); break;
    case PROP_THRESHOLD: g_value_set_double (value, self->threshold); break;
    case PROP_REGION_THRESHOLD: g_value_set_double (value, self->region_threshold); break;
    case PROP_OVERLAY: g_value_set_enum (value, self->overlay); break;
    case PROP_OVERLAY_ALPHA: g_value_set_double (value, self->overlay_alpha); break;
    case PROP_TILE_SIZE: g_value_set_int (value, self->tile_size); break;
    case PROP_TILE_OVERLAP: g_value_set_int (value, self->tile_overlap); break;
    case PROP_THREADS: g_value_set_int (value, self->threads); break;
    case PROP_EMIT_MESSAGES: g_value_set_boolean (value, self->emit_messages); break;
    case PROP_MESSAGE_MODE: g_value_set_enum (value, self->message_mode); break;
    case PROP_SKIP_LATE: g_value_set_boolean (value, self->skip_late); break;
    case PROP_INFERENCE_INTERVAL: g_value_set_uint (value, self->inference_interval); break;
    case PROP_CONTINUOUS: g_value_set_boolean (value, self->continuous); break;
    case PROP_PIXELS_PER_MM: g_value_set_double (value, self->pixels_per_mm); break;
    case PROP_LINES_PER_MM: g_value_set_double (value, self->lines_per_mm); break;
    case PROP_MAX_REGION_ROWS: g_value_set_int (value, self->max_region_rows); break;
    case PROP_STATS:
      g_value_take_boxed (value, gst_structure_new ("pefm-stats",
              "frames", G_TYPE_UINT64, self->state->frames,
              "inspected", G_TYPE_UINT64, self->state->inspected,
              "skipped-late", G_TYPE_UINT64, self->state->skipped_late,
              "skipped-interval", G_TYPE_UINT64, self->state->skipped_interval,
              "latency", G_TYPE_UINT64, self->state->latency_reported,
              "processing-max", G_TYPE_UINT64, self->state->processing_max, NULL));
      break;
    case PROP_CALIBRATION:
      g_value_take_boxed (value, calibration_structure (self->state->decision));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

static gboolean
gst_pefm_filter_start (GstBaseTransform * trans)
{
  GstPefmFilter *self = GST_PEFM_FILTER (trans);
  std::string model, device;
  GstPefmPrecision precision;

  GST_OBJECT_LOCK (self);
  self->state->decision = pefm::DecisionInfo ();      /* no stale model's, if loading fails */
  GST_OBJECT_UNLOCK (self);

  GST_OBJECT_LOCK (self);
  model = self->model ? self->model : "";
  device = self->device ? self->device : DEFAULT_PROP_DEVICE;
  precision = self->precision;
  const double mm[] = { self->pixels_per_mm, self->lines_per_mm };
  GST_OBJECT_UNLOCK (self);
  for (int i = 0; i < 2; ++i) {
    if (scale_too_small (mm[i])) {
      GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS, ("%s %g is below 0.001 (one pixel a metre): set 0 (not set) or "
              "a real scale", i == 0 ? "pixels-per-mm" : "lines-per-mm", mm[i]), (NULL));
      return FALSE;
    }
  }

  if (model.empty ()) {
    GST_ELEMENT_ERROR (self, RESOURCE, NOT_FOUND,
        ("No model: set the 'model' property to a file written by pefm-train"), (NULL));
    return FALSE;
  }
  pefm::DetectorOptions opts;
  opts.device = device;
  opts.precision = precision == GST_PEFM_PRECISION_FP16 ? pefm::Precision::kFp16
      : precision == GST_PEFM_PRECISION_BF16 ? pefm::Precision::kBf16 : pefm::Precision::kFp32;
  try {
    const std::string changed = pefm::settle_precision (opts);
    if (!changed.empty ())
      GST_ELEMENT_WARNING (self, RESOURCE, SETTINGS, ("%s", changed.c_str ()), (NULL));
  } catch (const std::exception & e) {
    GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS,
        ("Invalid device '%s' (property 'device')", device.c_str ()), ("%s", e.what ()));
    return FALSE;
  }
  try {
    self->state->detector = pefm::FrameDetector::acquire (model, opts);
    self->state->stream = std::make_unique < pefm::StreamContext > ();
    if (!self->state->detector->calibrated ())
      GST_ELEMENT_WARNING (self, RESOURCE, SETTINGS,
          ("Model '%s' has no calibration: scores are raw, not normalised; threshold and "
              "region-threshold apply to raw scores", model.c_str ()), (NULL));
    GST_INFO_OBJECT (self, "loaded %s on %s", model.c_str (),
        self->state->detector->device ().c_str ());
  } catch (const std::exception & e) {
    GST_ELEMENT_ERROR (self, RESOURCE, OPEN_READ,
        ("Could not load model '%s' (property 'model')", model.c_str ()), ("%s", e.what ()));
    return FALSE;
  }
  GST_OBJECT_LOCK (self);
  self->state->decision = self->state->detector->decision_info ();
  self->trained_tile = self->state->detector->trained_tile ();
  self->input_size = self->state->detector->input_size ();
  self->started = TRUE;
  self->state->frames = self->state->inspected = 0;
  self->state->skipped_late = self->state->skipped_interval = 0;
  self->state->earliest = GST_CLOCK_TIME_NONE;
  self->state->processing_max = self->state->latency_reported = 0;
  self->state->latency_from_warmup = false;
  self->state->continuous = self->continuous != FALSE;
  self->state->web_latency = 0;
  const bool skipping = self->skip_late || self->inference_interval > 1;
  GST_OBJECT_UNLOCK (self);
  self->state->web.reset ();
  if (self->state->continuous) {
    self->state->web = std::make_unique < PefmWeb > ();
    if (skipping)
      GST_ELEMENT_WARNING (self, RESOURCE, SETTINGS,
          ("continuous=true inspects every buffer of the web: skip-late and inference-interval are ignored"),
          (NULL));
  }
  return TRUE;
}

static gboolean
gst_pefm_filter_stop (GstBaseTransform * trans)
{
  GstPefmFilter *self = GST_PEFM_FILTER (trans);
  GST_OBJECT_LOCK (self);
  self->started = FALSE;
  self->trained_tile = self->frame_width = self->frame_height = 0;
  GST_OBJECT_UNLOCK (self);
  self->state->web.reset ();    /* buffers still held back are released */
  self->state->stream.reset ();
  self->state->detector.reset ();
  return TRUE;
}

static GstStateChangeReturn
gst_pefm_filter_change_state (GstElement * element, GstStateChange transition)
{
  GstPefmFilter *self = GST_PEFM_FILTER (element);

  /* A frame in progress is abandoned between tile batches, so deactivating the pads
   * (which waits for the streaming thread) does not wait for the whole frame. */
  const bool stopping = transition == GST_STATE_CHANGE_PAUSED_TO_READY && self->state->stream;
  if (stopping)
    self->state->stream->cancel (true);
  const GstStateChangeReturn ret = GST_ELEMENT_CLASS (parent_class)->change_state (element, transition);
  if (stopping && ret == GST_STATE_CHANGE_FAILURE && self->state->stream)
    self->state->stream->cancel (false);  /* still PAUSED: keep inspecting */
  return ret;
}

/* The frame as the core sees it: the negotiated format and colour matrix (set_info), and
 * this frame's planes. */
static pefm::FrameView
frame_view (GstPefmFilter * self, GstVideoFrame * frame)
{
  return pefm_frame_view (self->state->negotiated, frame);
}

/* Records one frame's processing time (`warmup`: the blank frame at negotiation, a first
 * estimate); when the answer of the LATENCY query changes, asks the pipeline to query again
 * (called outside the object lock). */
static void
note_processing_time (GstPefmFilter * self, GstClockTime spent, bool warmup)
{
  bool renegotiate = false;
  GST_OBJECT_LOCK (self);
  auto & st = *self->state;
  /* 10 % headroom, so that small variations do not redistribute latency on every frame */
  const GstClockTime with_headroom = spent + spent / 10;
  if (warmup) {
    if (st.processing_max == 0 && with_headroom != st.latency_reported) {
      st.latency_reported = with_headroom;
      st.latency_from_warmup = true;
      renegotiate = true;
    }
  } else {
    st.processing_max = std::max (st.processing_max, spent);
    if (st.latency_from_warmup || st.processing_max > st.latency_reported) {
      st.latency_reported = st.processing_max + st.processing_max / 10;
      st.latency_from_warmup = false;
      renegotiate = true;
    }
  }
  GST_OBJECT_UNLOCK (self);
  if (renegotiate)
    gst_element_post_message (GST_ELEMENT (self), gst_message_new_latency (GST_OBJECT (self)));
}

/* Runs the detector on one frame as configured: tile-size -1 resolved to the model's
 * training tile, the CPU thread count applied in this (the streaming) thread. Throws what
 * FrameDetector::process throws. */
static pefm::FrameResult
detect (GstPefmFilter * self, const pefm::FrameView & view, const pefm::Thresholds & thresholds,
    pefm::TileOptions tiles, int threads)
{
  auto & st = *self->state;
  if (tiles.size < 0)
    tiles.size = st.detector->trained_tile ();
  pefm::use_cpu_threads (threads);
  return st.detector->process (view, thresholds, tiles, st.stream.get ());
}

static GstClockTime
elapsed_since (std::chrono::steady_clock::time_point t0)
{
  return static_cast < GstClockTime > (std::chrono::duration_cast < std::chrono::nanoseconds >
      (std::chrono::steady_clock::now () - t0).count ());
}

static gboolean
gst_pefm_filter_set_info (GstVideoFilter * filter, GstCaps * incaps, GstVideoInfo * in_info,
    GstCaps * outcaps, GstVideoInfo * out_info)
{
  GstPefmFilter *self = GST_PEFM_FILTER (filter);

  (void) incaps;
  (void) outcaps;
  (void) out_info;
  pefm::FrameView negotiated;
  if (!pefm_frame_format_from_info (in_info, &negotiated)) {
    GST_ELEMENT_ERROR (self, STREAM, FORMAT, ("Unsupported video format %s",
            gst_video_format_to_string (GST_VIDEO_INFO_FORMAT (in_info))), (NULL));
    return FALSE;
  }
  self->state->negotiated = negotiated;
  if (GST_VIDEO_INFO_WIDTH (in_info) <= 0 || GST_VIDEO_INFO_HEIGHT (in_info) <= 0) {
    GST_ELEMENT_ERROR (self, STREAM, FORMAT, ("Frames of %dx%d pixels cannot be analysed",
            GST_VIDEO_INFO_WIDTH (in_info), GST_VIDEO_INFO_HEIGHT (in_info)), (NULL));
    return FALSE;
  }
  GST_OBJECT_LOCK (self);
  self->frame_width = GST_VIDEO_INFO_WIDTH (in_info);
  self->frame_height = GST_VIDEO_INFO_HEIGHT (in_info);
  GST_OBJECT_UNLOCK (self);
  GST_DEBUG_OBJECT (self, "negotiated %" GST_PTR_FORMAT, incaps);

  /* Warm-up: one blank frame of the negotiated size, so that the first LATENCY answer is a
   * measured time (the first inference is also the slowest: allocations, kernel choice). */
  if (self->state->detector) {
    GST_OBJECT_LOCK (self);
    const pefm::TileOptions tiles { self->tile_size, self->tile_overlap };
    const int threads = self->threads;
    GST_OBJECT_UNLOCK (self);
    GstBuffer *blank = gst_buffer_new_allocate (NULL, GST_VIDEO_INFO_SIZE (in_info), NULL);
    gst_buffer_memset (blank, 0, 0x80, GST_VIDEO_INFO_SIZE (in_info));
    GstVideoFrame frame;
    if (gst_video_frame_map (&frame, in_info, blank, GST_MAP_READ)) {
      try {
        const auto t0 = std::chrono::steady_clock::now ();
        detect (self, frame_view (self, &frame), pefm::Thresholds (), tiles, threads);
        note_processing_time (self, elapsed_since (t0), true);
      } catch (const std::exception & e) {
        /* the same settings fail the first real frame, with the error named there */
        GST_DEBUG_OBJECT (self, "warm-up frame failed: %s", e.what ());
      }
      gst_video_frame_unmap (&frame);
    }
    gst_buffer_unref (blank);
  }
  return TRUE;
}

/* A region's box in DL Streamer's "detection" form (gvametaconvert, gvawatermark and
 * gvapython read it): corners normalised to the frame, confidence in 0..1 (the region's
 * peak score, clamped: an uncalibrated model's raw peak can exceed 1). */
static GstStructure *
detection_structure (const pefm::FrameRegion & g, int frame_width, int frame_height)
{
  const double w = std::max (1, frame_width), h = std::max (1, frame_height);
  return gst_structure_new ("detection",
      "x_min", G_TYPE_DOUBLE, g.x / w, "y_min", G_TYPE_DOUBLE, g.y / h,
      "x_max", G_TYPE_DOUBLE, (g.x + g.width) / w, "y_max", G_TYPE_DOUBLE, (g.y + g.height) / h,
      "confidence", G_TYPE_DOUBLE, std::clamp (static_cast < double >(g.peak), 0.0, 1.0),
      "label_id", G_TYPE_INT, 0, "label", G_TYPE_STRING, "anomaly", NULL);
}

/* The frame's decision in DL Streamer's classification form (a classifier's result on a
 * ROI: label, label_id, confidence), on each region's ROI: the frame is anomalous (1) or
 * normal (0), with its normalised score clamped to 0..1 as confidence. */
static GstStructure *
classification_structure (const pefm::FrameResult & r)
{
  return gst_structure_new ("classification",
      "attribute_name", G_TYPE_STRING, "frame",
      "label", G_TYPE_STRING, r.anomalous ? "anomalous" : "normal",
      "label_id", G_TYPE_INT, r.anomalous ? 1 : 0,
      "confidence", G_TYPE_DOUBLE, std::clamp (static_cast < double >(r.score), 0.0, 1.0), NULL);
}

#ifdef PEFM_HAVE_GST_ANALYTICS
/* GStreamer 1.24's analytics metadata: one classification entry for the frame (class
 * "anomalous" or "normal", confidence the clamped score) and one object-detection entry
 * per region (type "anomaly", confidence its clamped peak), each region related to the
 * frame's classification as a part of it. */
static void
attach_analytics (GstBuffer * buf, const pefm::FrameResult & r)
{
  GstAnalyticsRelationMeta *rmeta = gst_buffer_add_analytics_relation_meta (buf);
  GstAnalyticsClsMtd cls;
  if (!rmeta || !gst_analytics_relation_meta_add_one_cls_mtd (rmeta,
          static_cast < gfloat > (std::clamp (static_cast < double >(r.score), 0.0, 1.0)),
          g_quark_from_static_string (r.anomalous ? "anomalous" : "normal"), &cls))
    return;
  const GQuark anomaly = g_quark_from_static_string ("anomaly");
  for (const auto & g:r.regions) {
    GstAnalyticsODMtd od;
    if (gst_analytics_relation_meta_add_od_mtd (rmeta, anomaly, g.x, g.y, g.width, g.height,
            static_cast < gfloat > (std::clamp (static_cast < double >(g.peak), 0.0, 1.0)), &od))
      gst_analytics_relation_meta_set_relation (rmeta, GST_ANALYTICS_REL_TYPE_IS_PART_OF, od.id, cls.id);
  }
}
#endif

/* Millimetres per web pixel across (pixels-per-mm) and along (lines-per-mm, else
 * pixels-per-mm) the web; NaN when pixels-per-mm is not set. */
struct WebScale
{
  double mm_per_pixel = NAN, mm_per_line = NAN;
  WebScale () = default;
  WebScale (double pixels_per_mm, double lines_per_mm)
  {
    if (pixels_per_mm > 0) {
      mm_per_pixel = 1.0 / pixels_per_mm;
      mm_per_line = 1.0 / (lines_per_mm > 0 ? lines_per_mm : pixels_per_mm);
    }
  }
};

static GstPefmRegion
gst_region (const pefm::FrameRegion & g, const WebScale & scale)
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

/* A region as the "region" structure of the messages (the field names of GstPefmRegion and
 * of pefm-results' JSON lines); the web fields in continuous mode, the millimetres when
 * pixels-per-mm is set. */
static GstStructure *
region_structure (const pefm::FrameRegion & g, const WebScale & scale)
{
  const GstPefmRegion r = gst_region (g, scale);
  GstStructure *s = gst_structure_new ("region", "x", G_TYPE_INT, r.x, "y", G_TYPE_INT, r.y,
      "width", G_TYPE_INT, r.width, "height", G_TYPE_INT, r.height, "area", G_TYPE_UINT64, r.area,
      "peak", G_TYPE_DOUBLE, static_cast < double >(r.peak), NULL);
  if (r.web_height > 0) {
    gst_structure_set (s, "web-y", G_TYPE_UINT64, r.web_y, "web-height", G_TYPE_UINT64, r.web_height,
        "web-x", G_TYPE_INT, r.web_x, "web-width", G_TYPE_INT, r.web_width,
        "closed-by", G_TYPE_STRING, r.closed_by, NULL);
    if (std::isfinite (r.web_y_mm))
      gst_structure_set (s, "web-y-mm", G_TYPE_DOUBLE, r.web_y_mm, "web-x-mm", G_TYPE_DOUBLE, r.web_x_mm,
          "height-mm", G_TYPE_DOUBLE, r.height_mm, "width-mm", G_TYPE_DOUBLE, r.width_mm, NULL);
  }
  return s;
}

/* The regions as a GST_TYPE_ARRAY of "region" structures, into @s as @field. */
static void
set_region_array (GstStructure * s, const char *field, const std::vector < pefm::FrameRegion > &regions,
    const WebScale & scale)
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

static GstPefmMeta *
attach_metadata (GstBuffer * buf, const pefm::FrameResult & r, const pefm::Thresholds & thresholds,
    bool calibrated, int frame_width, int frame_height, const WebScale & scale)
{
  GstPefmMeta *meta = gst_buffer_add_pefm_meta (buf);
  meta->raw_score = r.raw_score;
  meta->score = r.score;
  meta->threshold = static_cast < gfloat > (thresholds.image);
  meta->region_threshold = static_cast < gfloat > (thresholds.region);
  meta->region_level = r.region_level;
  meta->anomalous = r.anomalous;
  meta->calibrated = calibrated;
  gst_pefm_meta_set_map (meta, r.map_width, r.map_height, r.map.data (), r.map_scale_x, r.map_scale_y);
  std::vector < GstPefmRegion > regions;
  for (const auto & g:r.regions) {
    regions.push_back (gst_region (g, scale));
    GstVideoRegionOfInterestMeta *roi = gst_buffer_add_video_region_of_interest_meta (buf, "anomaly",
        g.x, g.y, g.width, g.height);
    GstStructure *param = gst_structure_new ("pefm",
        "score", G_TYPE_DOUBLE, static_cast < double >(g.peak),
        "area", G_TYPE_UINT64, static_cast < guint64 > (g.area), NULL);
    if (g.web_height > 0)
      gst_structure_set (param, "web-y", G_TYPE_UINT64, static_cast < guint64 > (g.web_y),
          "web-height", G_TYPE_UINT64, static_cast < guint64 > (g.web_height), NULL);
    gst_video_region_of_interest_meta_add_param (roi, param);
    gst_video_region_of_interest_meta_add_param (roi, detection_structure (g, frame_width, frame_height));
    gst_video_region_of_interest_meta_add_param (roi, classification_structure (r));
  }
  gst_pefm_meta_set_regions (meta, static_cast < guint > (regions.size ()), regions.data ());
#ifdef PEFM_HAVE_GST_ANALYTICS
  attach_analytics (buf, r);
#endif
  return meta;
}

/* The settings one frame is processed with, read under the object lock. */
struct FrameSettings
{
  pefm::Thresholds thresholds;
  pefm::OverlayMode overlay;
  double alpha;
  pefm::TileOptions tiles;
  int threads;
  bool emit, only_anomalous, skip_late;
  guint interval;
  WebScale scale;
  gint max_region_rows;
};

static void
post_frame_message (GstPefmFilter * self, GstBuffer * buf, guint64 frame_number,
    const pefm::Thresholds & thresholds, const pefm::FrameResult * result, const char *skip_reason,
    const WebScale & scale, const pefm::WebBuffer * web = nullptr)
{
  GstBaseTransform *trans = GST_BASE_TRANSFORM (self);
  const GstClockTime pts = GST_BUFFER_PTS (buf);
  GstStructure *s = gst_structure_new ("pefm",
      "timestamp", G_TYPE_UINT64, pts,
      "running-time", G_TYPE_UINT64, gst_segment_to_running_time (&trans->segment, GST_FORMAT_TIME, pts),
      "stream-time", G_TYPE_UINT64, gst_segment_to_stream_time (&trans->segment, GST_FORMAT_TIME, pts),
      "frame", G_TYPE_UINT64, frame_number,
      "inspected", G_TYPE_BOOLEAN, result != nullptr,
      "threshold", G_TYPE_DOUBLE, thresholds.image,
      "region-threshold", G_TYPE_DOUBLE, thresholds.region, NULL);
  if (result) {
    gst_structure_set (s,
        "score", G_TYPE_DOUBLE, static_cast < double >(result->score),
        "raw-score", G_TYPE_DOUBLE, static_cast < double >(result->raw_score),
        "anomalous", G_TYPE_BOOLEAN, result->anomalous,
        "regions", G_TYPE_UINT, static_cast < guint > (result->regions.size ()), NULL);
    /* the rate holds at the calibrated threshold only */
    if (self->state->decision.method == "conformal" && thresholds.image == 0.5)
      gst_structure_set (s, "stated-false-alarm-rate", G_TYPE_DOUBLE, self->state->decision.false_alarm_bound, NULL);
    /* the boxes, with the field names of GstPefmRegion and pefm-results' JSON lines */
    set_region_array (s, "boxes", result->regions, scale);
    if (web)
      gst_structure_set (s, "web-row", G_TYPE_UINT64, static_cast < guint64 > (web->web_row),
          "web-rows", G_TYPE_UINT64, static_cast < guint64 > (web->rows), NULL);
  } else {
    gst_structure_set (s, "reason", G_TYPE_STRING, skip_reason, NULL);
  }
  gst_element_post_message (GST_ELEMENT (self), gst_message_new_element (GST_OBJECT (self), s));
}

/* Why a frame is let through uninspected (GstPefmMeta.skip_reason, the message's reason). */
static const char kSkipInterval[] = "interval";
static const char kSkipLate[] = "late";

/* Why this frame is let through uninspected (kSkipInterval, kSkipLate), or NULL to inspect
 * it. */
static const char *
skip_reason (GstPefmFilter * self, GstBuffer * buf, const FrameSettings & fs, guint64 frame_number)
{
  if (fs.interval > 1 && frame_number % fs.interval != 0)
    return kSkipInterval;
  if (fs.skip_late) {
    GstBaseTransform *trans = GST_BASE_TRANSFORM (self);
    const GstClockTime rt = gst_segment_to_running_time (&trans->segment, GST_FORMAT_TIME, GST_BUFFER_PTS (buf));
    GST_OBJECT_LOCK (self);
    const GstClockTime earliest = self->state->earliest;
    GST_OBJECT_UNLOCK (self);
    const GstClockTime end = GST_CLOCK_TIME_IS_VALID (rt) && GST_BUFFER_DURATION_IS_VALID (buf)
        ? rt + GST_BUFFER_DURATION (buf) : rt;
    if (GST_CLOCK_TIME_IS_VALID (end) && GST_CLOCK_TIME_IS_VALID (earliest) && end <= earliest)
      return kSkipLate;
  }
  return nullptr;
}

/* Lets a frame through uninspected, with a GstPefmMeta and a message saying why. */
static void
pass_uninspected (GstPefmFilter * self, GstBuffer * buf, const FrameSettings & fs, guint64 frame_number,
    const char *why)
{
  auto & st = *self->state;
  GstPefmMeta *meta = gst_buffer_add_pefm_meta (buf);
  meta->inspected = FALSE;
  meta->skip_reason = why;
  meta->threshold = static_cast < gfloat > (fs.thresholds.image);
  meta->region_threshold = static_cast < gfloat > (fs.thresholds.region);
  meta->calibrated = st.detector->calibrated ();
  GST_OBJECT_LOCK (self);
  st.frames++;
  (why == kSkipLate ? st.skipped_late : st.skipped_interval)++;
  GST_OBJECT_UNLOCK (self);
  GST_LOG_OBJECT (self, "frame %" G_GUINT64_FORMAT " not inspected: %s", frame_number, why);
  if (fs.emit)
    post_frame_message (self, buf, frame_number, fs.thresholds, nullptr, why, fs.scale);
}

/* Maps @buf (for writing when @write), runs @work on the frame and records its processing
 * time; what @work throws is posted as the element's error naming @what ("frame 12"). */
static GstFlowReturn
run_on_frame (GstPefmFilter * self, GstBuffer * buf, bool write, const std::string & what,
    const std::function < void (const pefm::FrameView &) > &work)
{
  GstVideoFilter *filter = GST_VIDEO_FILTER (self);
  GstVideoFrame frame;
  if (!gst_video_frame_map (&frame, &filter->in_info, buf, write ? GST_MAP_READWRITE : GST_MAP_READ)) {
    GST_ELEMENT_ERROR (self, STREAM, FAILED, ("Cannot map %s for %s", what.c_str (),
            write ? "drawing" : "reading"), (NULL));
    return GST_FLOW_ERROR;
  }
  const pefm::FrameView view = frame_view (self, &frame);
  const auto t0 = std::chrono::steady_clock::now ();
  GstFlowReturn ret = GST_FLOW_OK;
  try {
    work (view);
  } catch (const pefm::Cancelled &) {
    GST_DEBUG_OBJECT (self, "%s abandoned: stopping", what.c_str ());
    ret = GST_FLOW_FLUSHING;
  } catch (const std::invalid_argument & e) {
    /* a frame or setting pefm refuses; what() names the property (tile-size, tile-overlap)
     * or what the frame lacks */
    GST_ELEMENT_ERROR (self, STREAM, FAILED, ("Cannot inspect %s (%dx%d): %s", what.c_str (), view.width,
            view.height, e.what ()), (NULL));
    ret = GST_FLOW_ERROR;
  } catch (const std::exception & e) {
    GST_ELEMENT_ERROR (self, STREAM, FAILED, ("Anomaly detection failed on %s", what.c_str ()),
        ("%s", e.what ()));
    ret = GST_FLOW_ERROR;
  }
  gst_video_frame_unmap (&frame);
  if (ret == GST_FLOW_OK)
    note_processing_time (self, elapsed_since (t0), false);
  return ret;
}

/* Maps the frame (read-only unless drawing: after a tee its memory is then shared, not
 * copied), runs the detector and draws the overlay. Errors are posted here. */
static GstFlowReturn
inspect_frame (GstPefmFilter * self, GstBuffer * buf, const FrameSettings & fs, guint64 frame_number,
    pefm::FrameResult * result)
{
  return run_on_frame (self, buf, fs.overlay != pefm::OverlayMode::kNone,
      "frame " + std::to_string (frame_number), [&](const pefm::FrameView & view) {
        *result = detect (self, view, fs.thresholds, fs.tiles, fs.threads);
        pefm::draw_overlay (view, *result, fs.overlay, fs.alpha, result->region_level);
      });
}

/* GST_FLOW_OK when caps are negotiated and a model is loaded; else the error, posted. */
static GstFlowReturn
check_ready (GstPefmFilter * self)
{
  if (!GST_VIDEO_FILTER (self)->negotiated) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION, (NULL), ("unknown format"));
    return GST_FLOW_NOT_NEGOTIATED;
  }
  if (!self->state->detector) {
    GST_ELEMENT_ERROR (self, CORE, FAILED, ("No model loaded"), (NULL));
    return GST_FLOW_ERROR;
  }
  return GST_FLOW_OK;
}

/* The settings the next frame is processed with, and its number, read under the object
 * lock (properties change from other threads). */
static FrameSettings
read_settings (GstPefmFilter * self, guint64 * frame_number)
{
  GST_OBJECT_LOCK (self);
  const FrameSettings fs { { self->threshold, self->region_threshold }, static_cast < pefm::OverlayMode > (self->overlay),
    self->overlay_alpha, { self->tile_size, self->tile_overlap }, self->threads, self->emit_messages != FALSE,
    self->message_mode == GST_PEFM_MESSAGES_ANOMALOUS, self->skip_late != FALSE, self->inference_interval,
    WebScale (self->pixels_per_mm, self->lines_per_mm), self->max_region_rows };
  *frame_number = self->state->frames;
  GST_OBJECT_UNLOCK (self);
  return fs;
}

/* An inspected frame's results out: its metadata, the counters, its message. */
static void
report_inspected (GstPefmFilter * self, GstBuffer * buf, const FrameSettings & fs, guint64 frame_number,
    const pefm::FrameResult & result)
{
  auto & st = *self->state;
  const GstVideoInfo *info = &GST_VIDEO_FILTER (self)->in_info;
  attach_metadata (buf, result, fs.thresholds, st.detector->calibrated (), GST_VIDEO_INFO_WIDTH (info),
      GST_VIDEO_INFO_HEIGHT (info), fs.scale);
  GST_OBJECT_LOCK (self);
  st.frames++;
  st.inspected++;
  GST_OBJECT_UNLOCK (self);
  if (fs.emit && (!fs.only_anomalous || result.anomalous))
    post_frame_message (self, buf, frame_number, fs.thresholds, &result, nullptr, fs.scale);
}

static GstFlowReturn
gst_pefm_filter_transform_ip (GstBaseTransform * trans, GstBuffer * buf)
{
  GstPefmFilter *self = GST_PEFM_FILTER (trans);
  GstFlowReturn ret = check_ready (self);
  if (ret != GST_FLOW_OK)
    return ret;
  guint64 frame_number;
  const FrameSettings fs = read_settings (self, &frame_number);
  if (const char *why = skip_reason (self, buf, fs, frame_number)) {
    pass_uninspected (self, buf, fs, frame_number, why);
    return GST_FLOW_OK;
  }
  pefm::FrameResult result;
  ret = inspect_frame (self, buf, fs, frame_number, &result);
  if (ret == GST_FLOW_OK)
    report_inspected (self, buf, fs, frame_number, result);
  return ret;
}

/* Continuous line-scan mode (continuous=true): buffers go into the web (PefmWeb) and come
 * out, in order, once every tile touching their rows has been scored; a discontinuity, a
 * new segment, new caps, EOS or different tiling ends the web first. */

static void gst_pefm_filter_before_transform (GstBaseTransform * trans, GstBuffer * buf);

static WebScale
current_scale (GstPefmFilter * self)
{
  GST_OBJECT_LOCK (self);
  const WebScale scale (self->pixels_per_mm, self->lines_per_mm);
  GST_OBJECT_UNLOCK (self);
  return scale;
}

/* A "pefm-web" element message: the web ended (`reason`: a discontinuity, a flush, "eos"
 * with regions no buffer took), where the next web starts, the buffers a flush dropped and
 * the regions that were open. */
static void
post_web_message (GstPefmFilter * self, const char *reason, guint64 next_row, guint dropped,
    const std::vector < pefm::FrameRegion > &regions, const WebScale & scale)
{
  GstStructure *s = gst_structure_new ("pefm-web",
      "event", G_TYPE_STRING, g_str_equal (reason, "eos") ? "end" : "discontinuity",
      "reason", G_TYPE_STRING, reason,
      "web-row", G_TYPE_UINT64, next_row,
      "dropped-buffers", G_TYPE_UINT, dropped, NULL);
  set_region_array (s, "boxes", regions, scale);
  GST_INFO_OBJECT (self, "web ended (%s) before row %" G_GUINT64_FORMAT ", %u buffers dropped, %zu regions closed",
      reason, next_row, dropped, regions.size ());
  gst_element_post_message (GST_ELEMENT (self), gst_message_new_element (GST_OBJECT (self), s));
}

/* Ends the open web (`why`): its held buffers become ready (push_ready sends them). */
static GstFlowReturn
end_web (GstPefmFilter * self, const char *why, const WebScale & scale)
{
  auto & st = *self->state;
  if (!st.web || !st.web->open ())
    return GST_FLOW_OK;
  std::vector < pefm::FrameRegion > orphans;
  try {
    orphans = st.web->finish (why, st.stream.get ());
  } catch (const pefm::Cancelled &) {
    return GST_FLOW_FLUSHING;
  } catch (const std::exception & e) {
    GST_ELEMENT_ERROR (self, STREAM, FAILED, ("Anomaly detection failed ending the web (%s)", why),
        ("%s", e.what ()));
    return GST_FLOW_ERROR;
  }
  if (!g_str_equal (why, "eos") || !orphans.empty ())
    post_web_message (self, why, st.web->next_row (), 0, orphans, scale);
  return GST_FLOW_OK;
}

/* A buffer of the web whose results are ready, out: drawn, its metadata, counted, its
 * message. */
static GstBuffer *
web_output (GstPefmFilter * self, GstBuffer * buf, const pefm::WebBuffer & web)
{
  auto & st = *self->state;
  GstVideoFilter *filter = GST_VIDEO_FILTER (self);
  guint64 frame_number;
  const FrameSettings fs = read_settings (self, &frame_number);
  buf = gst_buffer_make_writable (buf);
  if (fs.overlay != pefm::OverlayMode::kNone) {
    GstVideoFrame frame;
    if (gst_video_frame_map (&frame, &filter->in_info, buf, GST_MAP_READWRITE)) {
      try {
        pefm::draw_overlay (frame_view (self, &frame), web.result, fs.overlay, fs.alpha, web.result.region_level);
      } catch (const std::exception & e) {
        GST_WARNING_OBJECT (self, "overlay not drawn on frame %" G_GUINT64_FORMAT ": %s", frame_number, e.what ());
      }
      gst_video_frame_unmap (&frame);
    } else {
      GST_WARNING_OBJECT (self, "cannot map frame %" G_GUINT64_FORMAT " for drawing", frame_number);
    }
  }
  GstPefmMeta *meta = attach_metadata (buf, web.result, web.thresholds, st.detector->calibrated (),
      GST_VIDEO_INFO_WIDTH (&filter->in_info), web.rows, fs.scale);
  meta->continuous = TRUE;
  meta->web_row = static_cast < guint64 > (web.web_row);
  GST_OBJECT_LOCK (self);
  st.frames++;
  st.inspected++;
  GST_OBJECT_UNLOCK (self);
  /* message-mode=anomalous: also the buffers that report a web region (the end of a
   * defect can lie in a buffer that is not anomalous itself) */
  if (fs.emit && (!fs.only_anomalous || web.result.anomalous || !web.result.regions.empty ()))
    post_frame_message (self, buf, frame_number, web.thresholds, &web.result, nullptr, fs.scale, &web);
  return buf;
}

/* Sends every buffer of the web that is ready downstream (from events: EOS, new caps ...). */
static GstFlowReturn
push_ready (GstPefmFilter * self)
{
  GstFlowReturn ret = GST_FLOW_OK;
  GstBuffer *buf;
  pefm::WebBuffer web;
  while (self->state->web && self->state->web->pop (&buf, &web)) {
    const GstFlowReturn pushed = gst_pad_push (GST_BASE_TRANSFORM_SRC_PAD (self), web_output (self, buf, web));
    if (pushed != GST_FLOW_OK && ret == GST_FLOW_OK)
      ret = pushed;
  }
  return ret;
}

/* The latency the rows held back add: as many buffers of the negotiated height as the web
 * may hold back after a buffer, at the negotiated frame rate (none when it is variable).
 * Asks the pipeline to query again when it changes. */
static void
update_web_latency (GstPefmFilter * self, const pefm::TileOptions & tiles)
{
  const GstVideoInfo *info = &GST_VIDEO_FILTER (self)->in_info;
  GstClockTime latency = 0;
  if (tiles.size > 0 && GST_VIDEO_INFO_FPS_N (info) > 0 && GST_VIDEO_INFO_HEIGHT (info) > 0) {
    const gint64 rows = pefm::WebStream::held_rows_bound (tiles, self->state->detector->input_size ());
    const gint64 height = GST_VIDEO_INFO_HEIGHT (info);
    latency = gst_util_uint64_scale (static_cast < guint64 > ((rows + height - 1) / height) * GST_SECOND,
        GST_VIDEO_INFO_FPS_D (info), GST_VIDEO_INFO_FPS_N (info));
  }
  GST_OBJECT_LOCK (self);
  const bool changed = latency != self->state->web_latency;
  self->state->web_latency = latency;
  GST_OBJECT_UNLOCK (self);
  if (changed)
    gst_element_post_message (GST_ELEMENT (self), gst_message_new_latency (GST_OBJECT (self)));
}

/* A buffer into the web: a discontinuity or other tiling ends the web first; its rows are
 * scored as far as the web allows. Takes @buf. */
static GstFlowReturn
web_submit (GstPefmFilter * self, GstBuffer * buf)
{
  auto & st = *self->state;
  GstVideoFilter *filter = GST_VIDEO_FILTER (self);
  GstFlowReturn ret = check_ready (self);
  if (ret != GST_FLOW_OK) {
    gst_buffer_unref (buf);
    return ret;
  }
  gst_pefm_filter_before_transform (GST_BASE_TRANSFORM (self), buf);
  guint64 frame_number;
  const FrameSettings fs = read_settings (self, &frame_number);
  pefm::TileOptions tiles = fs.tiles;
  if (tiles.size < 0)
    tiles.size = st.detector->trained_tile ();
  if (const char *why = st.web->discontinuity (buf, GST_VIDEO_INFO_HEIGHT (&filter->in_info)))
    ret = end_web (self, why, fs.scale);
  if (ret == GST_FLOW_OK && !st.web->configured_as (tiles, fs.max_region_rows)) {
    if (st.web->open ())
      ret = end_web (self, "settings", fs.scale);
    try {
      if (ret == GST_FLOW_OK)
        st.web->configure (st.detector, tiles, fs.max_region_rows);
    } catch (const std::exception & e) {
      GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS, ("continuous=true: %s", e.what ()), (NULL));
      ret = GST_FLOW_ERROR;
    }
  }
  if (ret != GST_FLOW_OK) {
    gst_buffer_unref (buf);
    return ret;
  }
  /* new caps (another height or frame rate) change it as much as another tiling does */
  update_web_latency (self, tiles);
  /* PefmWeb::push takes buf, even when it throws (the mapping holds its own reference);
   * when the frame cannot be mapped it is not taken */
  bool taken = false;
  ret = run_on_frame (self, buf, false, "the buffer at web row " + std::to_string (st.web->next_row ()),
      [&](const pefm::FrameView & view) {
        pefm::use_cpu_threads (fs.threads);
        taken = true;
        st.web->push (buf, view, fs.thresholds, st.stream.get ());
      });
  if (!taken)
    gst_buffer_unref (buf);
  return ret;
}

/* continuous=true: the buffer goes into the web instead of the base class's queue (which
 * still negotiates caps first). */
static GstFlowReturn
gst_pefm_filter_submit_input_buffer (GstBaseTransform * trans, gboolean is_discont, GstBuffer * input)
{
  GstPefmFilter *self = GST_PEFM_FILTER (trans);
  const GstFlowReturn ret = GST_BASE_TRANSFORM_CLASS (parent_class)->submit_input_buffer (trans, is_discont, input);
  if (!self->state->continuous || ret != GST_FLOW_OK || !trans->queued_buf)
    return ret;
  GstBuffer *buf = trans->queued_buf;
  trans->queued_buf = NULL;
  return web_submit (self, buf);
}

/* continuous=true: the web's ready buffers, one per call, oldest first. */
static GstFlowReturn
gst_pefm_filter_generate_output (GstBaseTransform * trans, GstBuffer ** outbuf)
{
  GstPefmFilter *self = GST_PEFM_FILTER (trans);
  if (!self->state->continuous)
    return GST_BASE_TRANSFORM_CLASS (parent_class)->generate_output (trans, outbuf);
  *outbuf = NULL;
  GstBuffer *buf;
  pefm::WebBuffer web;
  if (self->state->web && self->state->web->pop (&buf, &web))
    *outbuf = web_output (self, buf, web);
  return GST_FLOW_OK;
}

/* Events that end the web (continuous=true): the held buffers go out first, before the
 * event; a flush drops them (reported). */
static void
web_sink_event (GstPefmFilter * self, GstEvent * event)
{
  auto & st = *self->state;
  if (!st.continuous || !st.web)
    return;
  const WebScale scale = current_scale (self);
  switch (GST_EVENT_TYPE (event)) {
    case GST_EVENT_FLUSH_STOP:{
      guint dropped = 0;
      const bool was_open = st.web->open ();
      const auto closed = st.web->drop ("flush", &dropped);
      if (was_open)
        post_web_message (self, "flush", st.web->next_row (), dropped, closed, scale);
      break;
    }
    case GST_EVENT_EOS:
      end_web (self, "eos", scale);
      push_ready (self);
      break;
    case GST_EVENT_SEGMENT:
    case GST_EVENT_GAP:
    case GST_EVENT_STREAM_START:
      end_web (self, GST_EVENT_TYPE (event) == GST_EVENT_GAP ? "gap" : GST_EVENT_TYPE (event) == GST_EVENT_SEGMENT
          ? "segment" : "stream-start", scale);
      push_ready (self);
      if (GST_EVENT_TYPE (event) == GST_EVENT_SEGMENT)
        st.web->forget_offsets ();
      break;
    case GST_EVENT_CAPS:{
      GstCaps *caps;
      gst_event_parse_caps (event, &caps);
      GstCaps *current = gst_pad_get_current_caps (GST_BASE_TRANSFORM_SINK_PAD (self));
      if (!current || !gst_caps_is_equal (caps, current)) {
        end_web (self, "caps", scale);
        push_ready (self);
      }
      if (current)
        gst_caps_unref (current);
      break;
    }
    default:
      break;
  }
}

/* Controllable properties follow their control sources at each frame's stream time. */
static void
gst_pefm_filter_before_transform (GstBaseTransform * trans, GstBuffer * buf)
{
  const GstClockTime stream_time = gst_segment_to_stream_time (&trans->segment, GST_FORMAT_TIME,
      GST_BUFFER_PTS (buf));
  if (GST_CLOCK_TIME_IS_VALID (stream_time))
    gst_object_sync_values (GST_OBJECT (trans), stream_time);
}

/* QoS from downstream: remembered for skip-late (the base class's own dropping stays off). */
static gboolean
gst_pefm_filter_src_event (GstBaseTransform * trans, GstEvent * event)
{
  GstPefmFilter *self = GST_PEFM_FILTER (trans);
  if (GST_EVENT_TYPE (event) == GST_EVENT_QOS) {
    GstQOSType type;
    gdouble proportion;
    GstClockTimeDiff diff;
    GstClockTime timestamp;
    gst_event_parse_qos (event, &type, &proportion, &diff, &timestamp);
    GST_OBJECT_LOCK (self);
    if (GST_CLOCK_TIME_IS_VALID (timestamp)) {
      if (diff > 0)
        self->state->earliest = timestamp + 2 * diff;
      else
        self->state->earliest = static_cast < GstClockTime > (-diff) < timestamp ? timestamp + diff : 0;
    }
    GST_OBJECT_UNLOCK (self);
  }
  return GST_BASE_TRANSFORM_CLASS (parent_class)->src_event (trans, event);
}

/* After a flush or a new segment running times start again: old QoS no longer applies. */
static gboolean
gst_pefm_filter_sink_event (GstBaseTransform * trans, GstEvent * event)
{
  GstPefmFilter *self = GST_PEFM_FILTER (trans);
  web_sink_event (self, event);
  if (GST_EVENT_TYPE (event) == GST_EVENT_FLUSH_STOP || GST_EVENT_TYPE (event) == GST_EVENT_SEGMENT) {
    GST_OBJECT_LOCK (self);
    self->state->earliest = GST_CLOCK_TIME_NONE;
    GST_OBJECT_UNLOCK (self);
  }
  return GST_BASE_TRANSFORM_CLASS (parent_class)->sink_event (trans, event);
}

/* LATENCY: upstream's plus the longest processing time measured here. */
static gboolean
gst_pefm_filter_query (GstBaseTransform * trans, GstPadDirection direction, GstQuery * query)
{
  GstPefmFilter *self = GST_PEFM_FILTER (trans);
  if (direction != GST_PAD_SRC || GST_QUERY_TYPE (query) != GST_QUERY_LATENCY)
    return GST_BASE_TRANSFORM_CLASS (parent_class)->query (trans, direction, query);
  if (!gst_pad_peer_query (GST_BASE_TRANSFORM_SINK_PAD (trans), query))
    return FALSE;
  gboolean live;
  GstClockTime min, max;
  gst_query_parse_latency (query, &live, &min, &max);
  GST_OBJECT_LOCK (self);
  /* continuous mode holds buffers back until the rows after them have arrived */
  const GstClockTime ours = self->state->latency_reported + self->state->web_latency;
  GST_OBJECT_UNLOCK (self);
  GST_DEBUG_OBJECT (self, "latency: upstream %" GST_TIME_FORMAT ", ours %" GST_TIME_FORMAT,
      GST_TIME_ARGS (min), GST_TIME_ARGS (ours));
  gst_query_set_latency (query, live, min + ours, GST_CLOCK_TIME_IS_VALID (max) ? max + ours : max);
  return TRUE;
}

/* The base class's `qos` would drop late frames before they reach this element, unseen and
 * unreported: it stays off, and asking for it turns skip-late on instead. */
static void
on_qos_changed (GObject * object, GParamSpec * pspec, gpointer user_data)
{
  GstBaseTransform *trans = GST_BASE_TRANSFORM (object);
  (void) pspec;
  (void) user_data;
  if (!gst_base_transform_is_qos_enabled (trans))
    return;
  gst_base_transform_set_qos_enabled (trans, FALSE);
  GstPefmFilter *self = GST_PEFM_FILTER (object);
  GST_OBJECT_LOCK (self);
  self->skip_late = TRUE;
  GST_OBJECT_UNLOCK (self);
  g_object_notify (object, "skip-late");
  GST_INFO_OBJECT (self, "qos=true: late frames are let through uninspected and reported (skip-late=true)");
}

static void
gst_pefm_filter_finalize (GObject * object)
{
  GstPefmFilter *self = GST_PEFM_FILTER (object);
  g_free (self->model);
  g_free (self->device);
  delete self->state;
  G_OBJECT_CLASS (parent_class)->finalize (object);
}

static void
gst_pefm_filter_init (GstPefmFilter * self)
{
  self->model = g_strdup (DEFAULT_PROP_MODEL);
  self->device = g_strdup (DEFAULT_PROP_DEVICE);
  self->precision = DEFAULT_PROP_PRECISION;
  self->threshold = DEFAULT_PROP_THRESHOLD;
  self->region_threshold = DEFAULT_PROP_REGION_THRESHOLD;
  self->overlay = DEFAULT_PROP_OVERLAY;
  self->overlay_alpha = DEFAULT_PROP_OVERLAY_ALPHA;
  self->tile_size = DEFAULT_PROP_TILE_SIZE;
  self->tile_overlap = DEFAULT_PROP_TILE_OVERLAP;
  self->threads = DEFAULT_PROP_THREADS;
  self->emit_messages = DEFAULT_PROP_EMIT_MESSAGES;
  self->message_mode = DEFAULT_PROP_MESSAGE_MODE;
  self->skip_late = DEFAULT_PROP_SKIP_LATE;
  self->inference_interval = DEFAULT_PROP_INFERENCE_INTERVAL;
  self->continuous = DEFAULT_PROP_CONTINUOUS;
  self->pixels_per_mm = DEFAULT_PROP_PIXELS_PER_MM;
  self->lines_per_mm = DEFAULT_PROP_LINES_PER_MM;
  self->max_region_rows = DEFAULT_PROP_MAX_REGION_ROWS;
  self->state = new PefmState ();
  /* GstVideoFilter turns QoS on: here late frames are inspected, or reported (skip-late) */
  gst_base_transform_set_qos_enabled (GST_BASE_TRANSFORM (self), FALSE);
  g_signal_connect (self, "notify::qos", G_CALLBACK (on_qos_changed), NULL);
}

static void
gst_pefm_filter_class_init (GstPefmFilterClass * klass)
{
  GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS (klass);
  GstBaseTransformClass *trans_class = GST_BASE_TRANSFORM_CLASS (klass);
  GstVideoFilterClass *filter_class = GST_VIDEO_FILTER_CLASS (klass);
  const auto flags = static_cast < GParamFlags > (G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
  const auto ready_flags = static_cast < GParamFlags > (flags | GST_PARAM_MUTABLE_READY);
  const auto playing_flags = static_cast < GParamFlags > (flags | GST_PARAM_MUTABLE_PLAYING | GST_PARAM_CONTROLLABLE);

  gobject_class->set_property = gst_pefm_filter_set_property;
  gobject_class->get_property = gst_pefm_filter_get_property;
  gobject_class->finalize = gst_pefm_filter_finalize;

  /**
   * GstPefmFilter:model:
   *
   * Model file written by pefm-train. Loaded when the element starts (READY->PAUSED);
   * a missing or corrupt file fails that state change with an error naming it.
   */
  g_object_class_install_property (gobject_class, PROP_MODEL,
      g_param_spec_string ("model", "Model", "Model file written by pefm-train (loaded on READY->PAUSED)",
          DEFAULT_PROP_MODEL, ready_flags));
  /**
   * GstPefmFilter:device:
   *
   * Where inference runs: "auto" (first CUDA device if any, else the CPU), "cpu", "cuda"
   * or "cuda:N". Elements with the same model, device and precision share one copy of
   * the weights.
   */
  g_object_class_install_property (gobject_class, PROP_DEVICE,
      g_param_spec_string ("device", "Device", "auto, cpu, cuda or cuda:N",
          DEFAULT_PROP_DEVICE, ready_flags));
  /**
   * GstPefmFilter:precision:
   *
   * Arithmetic precision; fp16 needs CUDA and falls back to fp32 on the CPU with a warning.
   * bf16 runs on the CPU (fastest on CPUs with AVX512-BF16 or AMX) and on CUDA.
   */
  g_object_class_install_property (gobject_class, PROP_PRECISION,
      g_param_spec_enum ("precision", "Precision", "Inference precision (fp16 on CUDA only, bf16 on CPU or CUDA)",
          GST_TYPE_PEFM_PRECISION, DEFAULT_PROP_PRECISION, ready_flags));
  /**
   * GstPefmFilter:threshold:
   *
   * Image decision threshold on the normalised score (0..1), where the model's calibrated
   * threshold sits at 0.5 (anomalib's convention): a frame is anomalous when its score is
   * at or above it. Can be changed while playing.
   */
  g_object_class_install_property (gobject_class, PROP_THRESHOLD,
      g_param_spec_double ("threshold", "Threshold",
          "Image decision threshold on the normalised score (0.5 = the model's calibrated threshold; "
          "raw scores for an uncalibrated model)",
          0.0, 1.0, DEFAULT_PROP_THRESHOLD, playing_flags));
  /**
   * GstPefmFilter:region-threshold:
   *
   * Where regions and contours are cut, apart from the image decision (anomalib's pixel
   * threshold): normalised, 0.5 = the model's calibrated region threshold (a quantile of
   * normal pixel scores: pefm-train --pixel-false-alarm-rate), 0 = the median normal pixel,
   * 1 = twice as far above it. Lower outlines more of a defect and more of the normal
   * surface. Models trained before it have no region threshold: 0.5 is then their image
   * threshold. Can be changed while playing.
   */
  g_object_class_install_property (gobject_class, PROP_REGION_THRESHOLD,
      g_param_spec_double ("region-threshold", "Region threshold",
          "Threshold for regions and contours, normalised (0.5 = the model's calibrated pixel threshold; "
          "raw scores for an uncalibrated model)",
          0.0, 1.0, DEFAULT_PROP_REGION_THRESHOLD, playing_flags));
  /* overlay, overlay-alpha: shared with pefmoverlay, documented in gstpefmvideo.cpp */
  pefm_install_overlay_properties (gobject_class, PROP_OVERLAY, PROP_OVERLAY_ALPHA, playing_flags);
  /**
   * GstPefmFilter:tile-size:
   *
   * -1 (default): as the model was trained (pefm-train --tile N, else whole frames).
   * 0: the whole frame is resized to the model's input size (the paper's setting). N > 0:
   * the frame is cut into N x N tiles of native pixels, the tiles are batched through the
   * detector and the heat map is stitched at frame scale: for line-scan strips and high
   * resolution, where resizing would erase small defects. Train with pefm-train --tile N.
   * Tiles are at least 32 pixels (smaller values are refused and the previous one kept),
   * and a frame may be cut into at most 1024 tiles of a model of up to 256 px, fewer for
   * larger models (64 at 1024 px); beyond, an error names this property.
   */
  g_object_class_install_property (gobject_class, PROP_TILE_SIZE,
      g_param_spec_int ("tile-size", "Tile size",
          "Tile edge in native pixels (0 = whole frame resized, -1 = as the model was trained)",
          -1, 65536, DEFAULT_PROP_TILE_SIZE, playing_flags));
  /**
   * GstPefmFilter:tile-overlap:
   *
   * Pixels shared by neighbouring tiles; their maps are blended there. At most half the
   * tile size.
   */
  g_object_class_install_property (gobject_class, PROP_TILE_OVERLAP,
      g_param_spec_int ("tile-overlap", "Tile overlap", "Pixels shared by neighbouring tiles",
          0, 65535, DEFAULT_PROP_TILE_OVERLAP, playing_flags));
  /**
   * GstPefmFilter:threads:
   *
   * CPU threads for inference on the CPU, applied in the streaming thread before each
   * frame (0 = OMP_NUM_THREADS when set, else every CPU this process may run on, its
   * affinity mask; LibTorch's own default can be 1 on a 2-core machine). LibTorch's thread pool belongs to the process, so
   * elements with different values in one process take turns setting it.
   */
  g_object_class_install_property (gobject_class, PROP_THREADS,
      g_param_spec_int ("threads", "Threads", "CPU inference threads (0 = every CPU the process may use)",
          0, 1024, DEFAULT_PROP_THREADS, playing_flags));
  /**
   * GstPefmFilter:emit-messages:
   *
   * Post an element message named "pefm" (timestamp, running-time, stream-time, frame,
   * inspected, threshold, region-threshold, and for inspected frames score, raw-score, anomalous, regions
   * (their count) and boxes (an array of "region" structures: x, y, width, height, area,
   * peak); for frames let through uninspected, reason) per frame, or per anomalous frame with
   * message-mode=anomalous; `gst-launch-1.0 -m` prints them. A frame that was not
   * inspected (skip-late, inference-interval) gets its message in both modes: whether it
   * was anomalous is unknown.
   */
  g_object_class_install_property (gobject_class, PROP_EMIT_MESSAGES,
      g_param_spec_boolean ("emit-messages", "Emit messages", "Post a 'pefm' element message per frame",
          DEFAULT_PROP_EMIT_MESSAGES, playing_flags));
  /**
   * GstPefmFilter:message-mode:
   *
   * Which frames get a message when emit-messages is on.
   */
  g_object_class_install_property (gobject_class, PROP_MESSAGE_MODE,
      g_param_spec_enum ("message-mode", "Message mode", "Which frames get a message",
          GST_TYPE_PEFM_MESSAGE_MODE, DEFAULT_PROP_MESSAGE_MODE, playing_flags));
  /**
   * GstPefmFilter:skip-late:
   *
   * Let frames through uninspected when downstream's QoS says they are already late
   * (a live source faster than inference into a synchronised sink). Off by default: every
   * frame is inspected, and a live pipeline falls behind instead (give it a leaky queue).
   * Each skipped frame carries a #GstPefmMeta with inspected=FALSE and reason "late", gets
   * a "pefm" message (inspected=false, reason) when emit-messages is on, and is counted in
   * `stats`. Setting the base class's `qos` to true turns this on.
   */
  g_object_class_install_property (gobject_class, PROP_SKIP_LATE,
      g_param_spec_boolean ("skip-late", "Skip late frames",
          "Let frames that are late downstream through uninspected (reported in meta, messages and stats)",
          DEFAULT_PROP_SKIP_LATE, playing_flags));
  /**
   * GstPefmFilter:inference-interval:
   *
   * Inspect every Nth frame (frames 0, N, 2N, ...); the others pass uninspected, each
   * reported as with skip-late, reason "interval".
   */
  g_object_class_install_property (gobject_class, PROP_INFERENCE_INTERVAL,
      g_param_spec_uint ("inference-interval", "Inference interval", "Inspect every Nth frame (1 = every frame)",
          1, G_MAXUINT, DEFAULT_PROP_INFERENCE_INTERVAL, playing_flags));
  /**
   * GstPefmFilter:stats:
   *
   * Counters since the element started: "frames" (seen), "inspected", "skipped-late",
   * "skipped-interval" (frames = inspected + skipped-late + skipped-interval), and in
   * nanoseconds "processing-max" (longest frame) and "latency" (what the LATENCY query
   * adds).
   */
  g_object_class_install_property (gobject_class, PROP_STATS,
      g_param_spec_boxed ("stats", "Statistics", "Frames seen, inspected and skipped (and why); latency",
          GST_TYPE_STRUCTURE, static_cast < GParamFlags > (G_PARAM_READABLE | G_PARAM_STATIC_STRINGS)));

  /**
   * GstPefmFilter:calibration:
   *
   * How the loaded model decides (set when the element starts): "calibrated", "method"
   * ("conformal", "mean+3std", or empty), "images" the threshold was set on, and for a
   * conformal threshold (pefm-train --false-alarm-rate) "asked-false-alarm-rate",
   * "stated-false-alarm-rate" (what the threshold guarantees for a new normal frame at
   * threshold 0.5), "false-alarm-upper95" (the rate at most, with 95 % confidence over the
   * calibration images), "folds" and "groups" (the exchangeable groups the images formed,
   * pefm-train --groups; "images" when each stood alone); for a model with a region threshold
   * "asked-pixel-false-alarm-rate", "pixel-false-alarm-rate" (the fraction of normal
   * calibration pixels at or above it) and "images-with-regions" (the fraction of normal
   * calibration images holding a region at region-threshold 0.5). The rates hold at
   * threshold 0.5, at the precision
   * (fp32) and tiling the model was calibrated with. Each `pefm` message of such a model
   * decided at threshold 0.5 carries "stated-false-alarm-rate" too.
   */
  g_object_class_install_property (gobject_class, PROP_CALIBRATION,
      g_param_spec_boxed ("calibration", "Calibration",
          "How the loaded model decides and the false-alarm rate it states",
          GST_TYPE_STRUCTURE, static_cast < GParamFlags > (G_PARAM_READABLE | G_PARAM_STATIC_STRINGS)));

  /**
   * GstPefmFilter:continuous:
   *
   * Line-scan webs: buffers are consecutive strips of one endless web, inspected as one
   * picture. Tiles (tile-size > 0, or the model's training tile) lie on a grid fixed to the
   * web, so tiles across a buffer boundary see the rows on both sides and the heat map has
   * no seam. A buffer leaves once every tile touching its rows has been scored: up to
   * tile-size + (tile-size - tile-overlap) + one heat-map row of rows later (the LATENCY
   * query adds them), and the pixels of about as many rows are held. Each anomalous region
   * is reported once, with the buffer where it ends, with its whole extent on the web
   * (#GstPefmRegion web fields; the ROI metas hold its part in the buffer). A DISCONT
   * buffer, a gap in buffer offsets, a new segment or caps, a gap event or another tiling
   * ends the web (its held buffers go out, its open regions close) and posts a "pefm-web"
   * message (event "discontinuity", reason, web-row, dropped-buffers, boxes); a flush drops
   * the held buffers, reported the same way; EOS ends it and its last buffer takes the
   * regions still open. Every buffer is inspected: skip-late and inference-interval do not
   * apply.
   */
  g_object_class_install_property (gobject_class, PROP_CONTINUOUS,
      g_param_spec_boolean ("continuous", "Continuous",
          "Buffers are consecutive strips of one web: seamless tiling across buffers, regions reported once",
          DEFAULT_PROP_CONTINUOUS, ready_flags));
  /**
   * GstPefmFilter:pixels-per-mm:
   *
   * Camera pixels per millimetre across the web; with it, continuous mode gives each
   * region's position and size in millimetres too (0: not set).
   */
  g_object_class_install_property (gobject_class, PROP_PIXELS_PER_MM,
      g_param_spec_double ("pixels-per-mm", "Pixels per mm",
          "Pixels per millimetre across the web (0 = not set, else at least 0.001)",
          0.0, 1e6, DEFAULT_PROP_PIXELS_PER_MM, playing_flags));
  /**
   * GstPefmFilter:lines-per-mm:
   *
   * Lines (rows) per millimetre along the web, for pixels that are not square (0: the same
   * as pixels-per-mm).
   */
  g_object_class_install_property (gobject_class, PROP_LINES_PER_MM,
      g_param_spec_double ("lines-per-mm", "Lines per mm",
          "Lines per millimetre along the web (0 = as pixels-per-mm, else at least 0.001)", 0.0, 1e6, DEFAULT_PROP_LINES_PER_MM,
          playing_flags));
  /**
   * GstPefmFilter:max-region-rows:
   *
   * Continuous mode: the most web rows a region may stay open; a streak longer than this is
   * reported in parts (closed-by "max-rows"), so that an endless scratch is reported while
   * it goes on.
   */
  g_object_class_install_property (gobject_class, PROP_MAX_REGION_ROWS,
      g_param_spec_int ("max-region-rows", "Max region rows",
          "Continuous mode: rows a region may stay open before its part so far is reported",
          1, G_MAXINT, DEFAULT_PROP_MAX_REGION_ROWS, ready_flags));

  gst_element_class_set_static_metadata (element_class, "PEFM anomaly detector",
      "Filter/Analyzer/Video",
      "Detects visual anomalies with a PEFM model; attaches heat-map metadata and draws overlays",
      "pefm developers");
  gst_element_class_add_static_pad_template (element_class, &sink_template);
  gst_element_class_add_static_pad_template (element_class, &src_template);

  element_class->change_state = GST_DEBUG_FUNCPTR (gst_pefm_filter_change_state);
  trans_class->start = GST_DEBUG_FUNCPTR (gst_pefm_filter_start);
  trans_class->stop = GST_DEBUG_FUNCPTR (gst_pefm_filter_stop);
  trans_class->transform_ip_on_passthrough = FALSE;
  /* transform_ip itself, not GstVideoFilter's transform_frame_ip, which always maps the
   * frame for writing (a full copy of a frame shared after a tee, even with overlay=none) */
  trans_class->transform_ip = GST_DEBUG_FUNCPTR (gst_pefm_filter_transform_ip);
  trans_class->submit_input_buffer = GST_DEBUG_FUNCPTR (gst_pefm_filter_submit_input_buffer);
  trans_class->generate_output = GST_DEBUG_FUNCPTR (gst_pefm_filter_generate_output);
  trans_class->before_transform = GST_DEBUG_FUNCPTR (gst_pefm_filter_before_transform);
  trans_class->src_event = GST_DEBUG_FUNCPTR (gst_pefm_filter_src_event);
  trans_class->sink_event = GST_DEBUG_FUNCPTR (gst_pefm_filter_sink_event);
  trans_class->query = GST_DEBUG_FUNCPTR (gst_pefm_filter_query);
  filter_class->set_info = GST_DEBUG_FUNCPTR (gst_pefm_filter_set_info);

  gst_type_mark_as_plugin_api (GST_TYPE_PEFM_PRECISION, (GstPluginAPIFlags) 0);
  gst_type_mark_as_plugin_api (GST_TYPE_PEFM_OVERLAY, (GstPluginAPIFlags) 0);
  gst_type_mark_as_plugin_api (GST_TYPE_PEFM_MESSAGE_MODE, (GstPluginAPIFlags) 0);
}
