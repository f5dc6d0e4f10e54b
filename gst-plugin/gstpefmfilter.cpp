/**
 * SECTION:element-pefmfilter
 * @title: pefmfilter
 *
 * Runs a PEFM anomaly detector (trained with pefm-train) on every frame. Each buffer
 * leaves with a #GstPefmMeta (image score, decision, heat map, regions) and one
 * #GstVideoRegionOfInterestMeta of type "anomaly" per anomalous region, with params
 * "pefm" (score, area; web_y, web_height in continuous mode), DL Streamer's "detection"
 * (x_min, y_min, x_max, y_max normalised, confidence, label_id, label) and
 * "classification" (the frame's decision, with model_name), which gvametaconvert and
 * gvawatermark read, plus one whole-frame ROI of type "frame" with that "classification"
 * alone, so that a frame without regions carries its decision too; the heat map
 * and/or region contours can be drawn into the frame. Frames are processed in the
 * format they arrive in (RGB/BGR with or without alpha, GRAY8, GRAY16_LE, I420, NV12).
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

#include <exception>
#include <string>

#include "gstpefmvideo.h"
#include "pefmengine.h"

/* The element includes only pefm's LibTorch-free headers (and gst-plugin/meson.build
 * leaves LibTorch's include folders out): no LibTorch type crosses into GStreamer code,
 * and this file compiles in seconds. Every LibTorch header includes c10/macros/Macros.h. */
#ifdef C10_MACROS_MACROS_H_
#error "a LibTorch header reached gstpefmfilter.cpp through a pefm header"
#endif

GST_DEBUG_CATEGORY (gst_pefm_filter_debug);         /* pefmengine.cpp logs in it too */
#define GST_CAT_DEFAULT gst_pefm_filter_debug

#define DEFAULT_PROP_MODEL NULL
#define DEFAULT_PROP_DEVICE "auto"
#define DEFAULT_PROP_PRECISION GST_PEFM_PRECISION_FP32
#define DEFAULT_PROP_THRESHOLD 0.5
#define DEFAULT_PROP_REGION_THRESHOLD 0.5
#define DEFAULT_PROP_OVERLAY PEFM_DEFAULT_OVERLAY
#define DEFAULT_PROP_OVERLAY_ALPHA PEFM_DEFAULT_OVERLAY_ALPHA
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
  PROP_BIT_DEPTH,
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
  gboolean started;             /* start() .. stop() */
  gint frame_width, frame_height;       /* negotiated; 0 before caps */
  gint threads;
  guint bit_depth;
  gboolean emit_messages;
  GstPefmMessageMode message_mode;
  gboolean skip_late;
  guint inference_interval;
  gboolean continuous;
  gdouble pixels_per_mm;
  gdouble lines_per_mm;
  gint max_region_rows;

  /* the detector, the frame and web paths, counters (C++ behind a pointer: the instance
   * struct is plain C) */
  PefmEngine *engine;
};

#define gst_pefm_filter_parent_class parent_class
G_DEFINE_TYPE_WITH_CODE (GstPefmFilter, gst_pefm_filter, GST_TYPE_VIDEO_FILTER,
    GST_DEBUG_CATEGORY_INIT (gst_pefm_filter_debug, "pefmfilter", 0,
        "PEFM anomaly detection"));
GST_ELEMENT_REGISTER_DEFINE (pefmfilter, "pefmfilter", GST_RANK_NONE, GST_TYPE_PEFM_FILTER);

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
      const pefm::TileOptions tiles { prop_id == PROP_TILE_SIZE ? v : self->tile_size,
        prop_id == PROP_TILE_OVERLAP ? v : self->tile_overlap };
      const char *name = prop_id == PROP_TILE_SIZE ? "tile-size" : "tile-overlap";
      /* 1..kMinTileSize-1 would cut a frame into thousands of network inputs */
      if (prop_id == PROP_TILE_SIZE && v > 0 && v < pefm::kMinTileSize) {
        refused = std::string (name) + " " + std::to_string (v) + " refused: below the minimum of " +
            std::to_string (pefm::kMinTileSize) + " pixels";
      } else {
        /* while playing, checked now: at the next frame it would stop the stream (before
         * start, start() and the first frame name a bad setting) */
        const std::string why = self->engine->tiling_refused (tiles, self->frame_width, self->frame_height);
        if (!why.empty ())
          refused = std::string (name) + " " + std::to_string (v) + " refused: " + why;
      }
      if (refused.empty ())
        (prop_id == PROP_TILE_SIZE ? self->tile_size : self->tile_overlap) = v;
      break;
    }
    case PROP_BIT_DEPTH:
      self->bit_depth = g_value_get_uint (value);
      break;
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
      if (pefm_mm_scale_too_small (v) && self->started)
        refused = std::string (name) + " " + pefm_printf ("%g", v) + " refused: 0 (not set) or at least 0.001";
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
    case PROP_BIT_DEPTH: g_value_set_uint (value, self->bit_depth); break;
    case PROP_EMIT_MESSAGES: g_value_set_boolean (value, self->emit_messages); break;
    case PROP_MESSAGE_MODE: g_value_set_enum (value, self->message_mode); break;
    case PROP_SKIP_LATE: g_value_set_boolean (value, self->skip_late); break;
    case PROP_INFERENCE_INTERVAL: g_value_set_uint (value, self->inference_interval); break;
    case PROP_CONTINUOUS: g_value_set_boolean (value, self->continuous); break;
    case PROP_PIXELS_PER_MM: g_value_set_double (value, self->pixels_per_mm); break;
    case PROP_LINES_PER_MM: g_value_set_double (value, self->lines_per_mm); break;
    case PROP_MAX_REGION_ROWS: g_value_set_int (value, self->max_region_rows); break;
    case PROP_STATS:
      g_value_take_boxed (value, pefm_stats_structure (self->engine->stats ()));
      break;
    case PROP_CALIBRATION:
      g_value_take_boxed (value, pefm_calibration_structure (self->engine->calibration ()));
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

  self->engine->forget_calibration ();  /* no stale model's, if starting fails */
  GST_OBJECT_LOCK (self);
  const std::string model = self->model ? self->model : "";
  const std::string device = self->device ? self->device : DEFAULT_PROP_DEVICE;
  const GstPefmPrecision precision = self->precision;
  const double mm[] = { self->pixels_per_mm, self->lines_per_mm };
  const bool continuous = self->continuous != FALSE;
  const bool skipping = self->skip_late || self->inference_interval > 1;
  const guint bit_depth = self->bit_depth;
  GST_OBJECT_UNLOCK (self);
  if (!pefm_check_bit_depth (GST_ELEMENT (self), bit_depth))
    return FALSE;
  for (int i = 0; i < 2; ++i) {
    if (pefm_mm_scale_too_small (mm[i])) {
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
    self->engine->load (model, opts, continuous);
  } catch (const std::exception & e) {
    GST_ELEMENT_ERROR (self, RESOURCE, OPEN_READ,
        ("Could not load model '%s' (property 'model')", model.c_str ()), ("%s", e.what ()));
    return FALSE;
  }
  if (!self->engine->calibration ().valid)
    GST_ELEMENT_WARNING (self, RESOURCE, SETTINGS,
        ("Model '%s' has no calibration: scores are raw, not normalised; threshold and "
            "region-threshold apply to raw scores", model.c_str ()), (NULL));
  GST_INFO_OBJECT (self, "loaded %s on %s", model.c_str (), self->engine->device ().c_str ());
  if (continuous && skipping)
    GST_ELEMENT_WARNING (self, RESOURCE, SETTINGS,
        ("continuous=true inspects every buffer of the web: skip-late and inference-interval are ignored"), (NULL));
  GST_OBJECT_LOCK (self);
  self->started = TRUE;
  GST_OBJECT_UNLOCK (self);
  return TRUE;
}

static gboolean
gst_pefm_filter_stop (GstBaseTransform * trans)
{
  GstPefmFilter *self = GST_PEFM_FILTER (trans);
  GST_OBJECT_LOCK (self);
  self->started = FALSE;
  self->frame_width = self->frame_height = 0;
  GST_OBJECT_UNLOCK (self);
  self->engine->unload ();
  return TRUE;
}

static GstStateChangeReturn
gst_pefm_filter_change_state (GstElement * element, GstStateChange transition)
{
  GstPefmFilter *self = GST_PEFM_FILTER (element);

  /* A frame in progress is abandoned between tile batches, so deactivating the pads
   * (which waits for the streaming thread) does not wait for the whole frame. */
  const bool stopping = transition == GST_STATE_CHANGE_PAUSED_TO_READY;
  if (stopping)
    self->engine->cancel (true);
  const GstStateChangeReturn ret = GST_ELEMENT_CLASS (parent_class)->change_state (element, transition);
  if (stopping && ret == GST_STATE_CHANGE_FAILURE)
    self->engine->cancel (false);       /* still PAUSED: keep inspecting */
  return ret;
}

static gboolean
gst_pefm_filter_set_info (GstVideoFilter * filter, GstCaps * incaps, GstVideoInfo * in_info,
    GstCaps * outcaps, GstVideoInfo * out_info)
{
  GstPefmFilter *self = GST_PEFM_FILTER (filter);

  (void) outcaps;
  (void) out_info;
  pefm::FrameView negotiated;
  GST_OBJECT_LOCK (self);
  const guint bit_depth = self->bit_depth;
  GST_OBJECT_UNLOCK (self);
  if (!pefm_frame_format_from_info (in_info, incaps, bit_depth, &negotiated)) {
    GST_ELEMENT_ERROR (self, STREAM, FORMAT, ("Unsupported video format %s",
            gst_video_format_to_string (GST_VIDEO_INFO_FORMAT (in_info))), (NULL));
    return FALSE;
  }
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
  self->engine->set_format (negotiated, in_info);
  return TRUE;
}

/* The settings the next frame is processed with, read under the object lock (properties
 * change from other threads). */
static PefmFrameSettings
read_settings (GstPefmFilter * self)
{
  GST_OBJECT_LOCK (self);
  PefmFrameSettings fs;
  fs.thresholds = { self->threshold, self->region_threshold };
  fs.overlay = static_cast < pefm::OverlayMode > (self->overlay);
  fs.alpha = self->overlay_alpha;
  fs.tiles = { self->tile_size, self->tile_overlap };
  fs.threads = self->threads;
  fs.emit = self->emit_messages != FALSE;
  fs.only_anomalous = self->message_mode == GST_PEFM_MESSAGES_ANOMALOUS;
  fs.skip_late = self->skip_late != FALSE;
  fs.interval = self->inference_interval;
  fs.scale = PefmWebScale (self->pixels_per_mm, self->lines_per_mm);
  fs.max_region_rows = self->max_region_rows;
  GST_OBJECT_UNLOCK (self);
  return fs;
}

static GstFlowReturn
gst_pefm_filter_transform_ip (GstBaseTransform * trans, GstBuffer * buf)
{
  GstPefmFilter *self = GST_PEFM_FILTER (trans);
  const GstFlowReturn ret = self->engine->ready ();
  return ret != GST_FLOW_OK ? ret : self->engine->process (buf);
}

static void gst_pefm_filter_before_transform (GstBaseTransform * trans, GstBuffer * buf);

/* continuous=true: the buffer goes into the web instead of the base class's queue (which
 * still negotiates caps first). */
static GstFlowReturn
gst_pefm_filter_submit_input_buffer (GstBaseTransform * trans, gboolean is_discont, GstBuffer * input)
{
  GstPefmFilter *self = GST_PEFM_FILTER (trans);
  GstFlowReturn ret = GST_BASE_TRANSFORM_CLASS (parent_class)->submit_input_buffer (trans, is_discont, input);
  if (!self->engine->continuous () || ret != GST_FLOW_OK || !trans->queued_buf)
    return ret;
  GstBuffer *buf = trans->queued_buf;
  trans->queued_buf = NULL;
  if ((ret = self->engine->ready ()) != GST_FLOW_OK) {
    gst_buffer_unref (buf);
    return ret;
  }
  gst_pefm_filter_before_transform (trans, buf);
  return self->engine->web_submit (buf);
}

/* continuous=true: the web's ready buffers, one per call, oldest first. */
static GstFlowReturn
gst_pefm_filter_generate_output (GstBaseTransform * trans, GstBuffer ** outbuf)
{
  GstPefmFilter *self = GST_PEFM_FILTER (trans);
  if (!self->engine->continuous ())
    return GST_BASE_TRANSFORM_CLASS (parent_class)->generate_output (trans, outbuf);
  *outbuf = self->engine->web_pop ();
  return GST_FLOW_OK;
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
    self->engine->note_qos (timestamp, diff);
  }
  return GST_BASE_TRANSFORM_CLASS (parent_class)->src_event (trans, event);
}

/* After a flush or a new segment running times start again: old QoS no longer applies. */
static gboolean
gst_pefm_filter_sink_event (GstBaseTransform * trans, GstEvent * event)
{
  GstPefmFilter *self = GST_PEFM_FILTER (trans);
  /* continuous=true: the events that end the web send its held buffers first, before
   * the event; a flush drops them (reported) */
  self->engine->web_event (event);
  if (GST_EVENT_TYPE (event) == GST_EVENT_FLUSH_STOP || GST_EVENT_TYPE (event) == GST_EVENT_SEGMENT)
    self->engine->forget_qos ();
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
  /* continuous mode holds buffers back until the rows after them have arrived */
  const GstClockTime ours = self->engine->latency ();
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
  delete self->engine;
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
  self->bit_depth = PEFM_DEFAULT_BIT_DEPTH;
  self->emit_messages = DEFAULT_PROP_EMIT_MESSAGES;
  self->message_mode = DEFAULT_PROP_MESSAGE_MODE;
  self->skip_late = DEFAULT_PROP_SKIP_LATE;
  self->inference_interval = DEFAULT_PROP_INFERENCE_INTERVAL;
  self->continuous = DEFAULT_PROP_CONTINUOUS;
  self->pixels_per_mm = DEFAULT_PROP_PIXELS_PER_MM;
  self->lines_per_mm = DEFAULT_PROP_LINES_PER_MM;
  self->max_region_rows = DEFAULT_PROP_MAX_REGION_ROWS;
  self->engine = new PefmEngine (GST_BASE_TRANSFORM (self), [self] {
        return read_settings (self);
      });
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
   * -1 (default): as the model was trained (pefm-train --tile N, else whole frames). 0: the
   * frame is resized to the model's input (the paper's setting). N > 0: N x N tiles of
   * native pixels, batched, their maps stitched at frame scale: for line-scan strips and
   * high resolution, where resizing would erase small defects. At least 32 (smaller values
   * are refused, the previous one kept); at most 1024 tiles a frame of a model of up to
   * 256 px, fewer for larger models (64 at 1024 px); beyond, an error names this property.
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
  /* bit-depth: as pefmoverlay's (gstpefmvideo.cpp) */
  pefm_install_bit_depth_property (gobject_class, PROP_BIT_DEPTH);
  /**
   * GstPefmFilter:threads:
   *
   * CPU inference threads, applied in the streaming thread before each frame (0:
   * OMP_NUM_THREADS when set, else every CPU of the process's affinity mask). LibTorch's
   * pool belongs to the process: elements with different values take turns setting it.
   */
  g_object_class_install_property (gobject_class, PROP_THREADS,
      g_param_spec_int ("threads", "Threads", "CPU inference threads (0 = every CPU the process may use)",
          0, 1024, DEFAULT_PROP_THREADS, playing_flags));
  /**
   * GstPefmFilter:emit-messages:
   *
   * Post a "pefm" element message per frame, or per anomalous frame with
   * message-mode=anomalous (frames let through uninspected always): timestamp,
   * running-time, stream-time, frame, inspected, threshold, region-threshold; score,
   * raw-score, anomalous, regions and boxes ("region" structures with #GstPefmRegion's
   * field names) when inspected, else reason. `gst-launch-1.0 -m` prints them.
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
   * Let frames through uninspected when downstream's QoS says they are already late (a
   * live source faster than inference). Off: every frame is inspected and a live pipeline
   * falls behind instead (give it a leaky queue). A skipped frame carries a #GstPefmMeta
   * with inspected=FALSE and reason "late", a message and a count in `stats`. The base
   * class's `qos`=true turns this on.
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
   * How the loaded model decides (set at start): "calibrated", "method" ("conformal",
   * "mean+3std" or empty), "images"; for a conformal threshold (pefm-train
   * --false-alarm-rate) "asked-false-alarm-rate", "stated-false-alarm-rate" (for a new
   * normal frame), "false-alarm-upper95" (with 95 % confidence over the calibration
   * images), "folds", "groups"; with a region threshold "asked-pixel-false-alarm-rate",
   * "pixel-false-alarm-rate" and "images-with-regions". The rates hold at threshold 0.5, at
   * the precision (fp32) and tiling the model was calibrated with; messages decided there
   * carry "stated-false-alarm-rate".
   */
  g_object_class_install_property (gobject_class, PROP_CALIBRATION,
      g_param_spec_boxed ("calibration", "Calibration",
          "How the loaded model decides and the false-alarm rate it states",
          GST_TYPE_STRUCTURE, static_cast < GParamFlags > (G_PARAM_READABLE | G_PARAM_STATIC_STRINGS)));

  /**
   * GstPefmFilter:continuous:
   *
   * Line-scan webs: buffers are consecutive strips of one endless web, tiled (tile-size > 0
   * or the model's tile) on a grid fixed to the web, so the heat map has no seam. A buffer
   * leaves once every tile touching its rows is scored: up to tile-size + (tile-size -
   * tile-overlap) + one heat-map row of rows later (the LATENCY query adds them). Each
   * region is reported once, with the buffer where it ends, with its whole extent on the
   * web (#GstPefmRegion web fields). A DISCONT buffer, a gap in offsets, a new segment or
   * caps, a gap event or another tiling ends the web (held buffers go out, open regions
   * close) with a "pefm-web" message; a flush drops the held buffers, reported the same
   * way; at EOS the last buffer takes the open regions. skip-late and inference-interval
   * do not apply.
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
   * Continuous mode: the most web rows a region may stay open; a longer streak is reported
   * in parts (closed_by "max-rows"), so an endless scratch is reported while it goes on.
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
