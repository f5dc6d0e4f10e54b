/**
 * SECTION:element-pefmfilter
 * @title: pefmfilter
 *
 * Runs a PEFM anomaly detector (trained with pefm-train) on every frame. Each buffer
 * leaves with a #GstPefmMeta (image score, decision, heat map, regions) and one
 * #GstVideoRegionOfInterestMeta of type "anomaly" per anomalous region; the heat map
 * and/or region contours can be drawn into the frame. Frames are processed in the
 * format they arrive in (RGB/BGR with or without alpha, GRAY8, I420, NV12).
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

#include <exception>
#include <memory>
#include <string>

#include "gstpefmmeta.h"
#include "pefm/device.h"
#include "pefm/frame_detector.h"
#include "pefm/overlay.h"

GST_DEBUG_CATEGORY_STATIC (gst_pefm_filter_debug);
#define GST_CAT_DEFAULT gst_pefm_filter_debug

#define DEFAULT_PROP_MODEL NULL
#define DEFAULT_PROP_DEVICE "auto"
#define DEFAULT_PROP_PRECISION GST_PEFM_PRECISION_FP32
#define DEFAULT_PROP_THRESHOLD 0.5
#define DEFAULT_PROP_OVERLAY GST_PEFM_OVERLAY_HEATMAP_CONTOURS
#define DEFAULT_PROP_OVERLAY_ALPHA 0.5
#define DEFAULT_PROP_TILE_SIZE -1
#define DEFAULT_PROP_TILE_OVERLAP 0
#define DEFAULT_PROP_THREADS 0
#define DEFAULT_PROP_EMIT_MESSAGES FALSE
#define DEFAULT_PROP_MESSAGE_MODE GST_PEFM_MESSAGES_ALL

enum
{
  PROP_0,
  PROP_MODEL,
  PROP_DEVICE,
  PROP_PRECISION,
  PROP_THRESHOLD,
  PROP_OVERLAY,
  PROP_OVERLAY_ALPHA,
  PROP_TILE_SIZE,
  PROP_TILE_OVERLAP,
  PROP_THREADS,
  PROP_EMIT_MESSAGES,
  PROP_MESSAGE_MODE,
};

#define PEFM_FORMATS "{ RGB, BGR, RGBA, BGRA, RGBx, BGRx, ARGB, ABGR, xRGB, xBGR, GRAY8, I420, NV12 }"

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE ("sink",
    GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS (GST_VIDEO_CAPS_MAKE (PEFM_FORMATS)));
static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE ("src",
    GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS (GST_VIDEO_CAPS_MAKE (PEFM_FORMATS)));

/* C++ state lives behind a pointer: the instance struct is plain C. */
struct PefmState
{
  std::shared_ptr < pefm::FrameDetector > detector;
  /* this instance's CUDA stream and pinned upload buffer (shared detectors, own streams) */
  std::unique_ptr < pefm::StreamContext > stream;
  pefm::FrameFormat format = pefm::FrameFormat::kRGB;
  guint64 frames = 0;
};

struct _GstPefmFilter
{
  GstVideoFilter parent;

  /* properties, under the object lock */
  gchar *model;
  gchar *device;
  GstPefmPrecision precision;
  gdouble threshold;
  GstPefmOverlay overlay;
  gdouble overlay_alpha;
  gint tile_size;
  gint tile_overlap;
  gint threads;
  gboolean emit_messages;
  GstPefmMessageMode message_mode;

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

#define GST_TYPE_PEFM_OVERLAY (gst_pefm_overlay_get_type ())
static GType
gst_pefm_overlay_get_type (void)
{
  static GType type = 0;
  static const GEnumValue values[] = {
    {GST_PEFM_OVERLAY_NONE, "Leave frames untouched", "none"},
    {GST_PEFM_OVERLAY_HEATMAP, "Blend the heat map where scores approach the threshold", "heatmap"},
    {GST_PEFM_OVERLAY_CONTOURS, "Outline the anomalous regions", "contours"},
    {GST_PEFM_OVERLAY_HEATMAP_CONTOURS, "Heat map and outlines", "heatmap+contours"},
    {0, NULL, NULL},
  };
  if (g_once_init_enter (&type))
    g_once_init_leave (&type, g_enum_register_static ("GstPefmOverlay", values));
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

static bool
to_frame_format (GstVideoFormat f, pefm::FrameFormat * out)
{
  using pefm::FrameFormat;
  switch (f) {
    case GST_VIDEO_FORMAT_RGB: *out = FrameFormat::kRGB; return true;
    case GST_VIDEO_FORMAT_BGR: *out = FrameFormat::kBGR; return true;
    case GST_VIDEO_FORMAT_RGBA: *out = FrameFormat::kRGBA; return true;
    case GST_VIDEO_FORMAT_BGRA: *out = FrameFormat::kBGRA; return true;
    case GST_VIDEO_FORMAT_RGBx: *out = FrameFormat::kRGBx; return true;
    case GST_VIDEO_FORMAT_BGRx: *out = FrameFormat::kBGRx; return true;
    case GST_VIDEO_FORMAT_ARGB: *out = FrameFormat::kARGB; return true;
    case GST_VIDEO_FORMAT_ABGR: *out = FrameFormat::kABGR; return true;
    case GST_VIDEO_FORMAT_xRGB: *out = FrameFormat::kxRGB; return true;
    case GST_VIDEO_FORMAT_xBGR: *out = FrameFormat::kxBGR; return true;
    case GST_VIDEO_FORMAT_GRAY8: *out = FrameFormat::kGray8; return true;
    case GST_VIDEO_FORMAT_I420: *out = FrameFormat::kI420; return true;
    case GST_VIDEO_FORMAT_NV12: *out = FrameFormat::kNV12; return true;
    default: return false;
  }
}

static void
gst_pefm_filter_set_property (GObject * object, guint prop_id, const GValue * value, GParamSpec * pspec)
{
  GstPefmFilter *self = GST_PEFM_FILTER (object);
  gint refused_tile = 0;

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
    case PROP_OVERLAY:
      self->overlay = (GstPefmOverlay) g_value_get_enum (value);
      break;
    case PROP_OVERLAY_ALPHA:
      self->overlay_alpha = g_value_get_double (value);
      break;
    case PROP_TILE_SIZE:{
      const gint size = g_value_get_int (value);
      /* 1..kMinTileSize-1 would cut a frame into thousands of network inputs */
      if (size > 0 && size < pefm::kMinTileSize)
        refused_tile = size;
      else
        self->tile_size = size;
      break;
    }
    case PROP_TILE_OVERLAP:
      self->tile_overlap = g_value_get_int (value);
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
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  const gint kept = self->tile_size;
  GST_OBJECT_UNLOCK (self);
  /* posted outside the object lock, which posting a message takes */
  if (refused_tile != 0)
    GST_ELEMENT_WARNING (self, RESOURCE, SETTINGS,
        ("tile-size %d refused: below the minimum of %d pixels; keeping %d", refused_tile,
            pefm::kMinTileSize, kept), (NULL));
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
    case PROP_OVERLAY: g_value_set_enum (value, self->overlay); break;
    case PROP_OVERLAY_ALPHA: g_value_set_double (value, self->overlay_alpha); break;
    case PROP_TILE_SIZE: g_value_set_int (value, self->tile_size); break;
    case PROP_TILE_OVERLAP: g_value_set_int (value, self->tile_overlap); break;
    case PROP_THREADS: g_value_set_int (value, self->threads); break;
    case PROP_EMIT_MESSAGES: g_value_set_boolean (value, self->emit_messages); break;
    case PROP_MESSAGE_MODE: g_value_set_enum (value, self->message_mode); break;
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
  model = self->model ? self->model : "";
  device = self->device ? self->device : DEFAULT_PROP_DEVICE;
  precision = self->precision;
  GST_OBJECT_UNLOCK (self);

  if (model.empty ()) {
    GST_ELEMENT_ERROR (self, RESOURCE, NOT_FOUND,
        ("No model: set the 'model' property to a file written by pefm-train"), (NULL));
    return FALSE;
  }
  bool on_cuda = false;
  try {
    on_cuda = pefm::resolve_device (device).is_cuda ();
  } catch (const std::exception & e) {
    GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS,
        ("Invalid device '%s' (property 'device')", device.c_str ()), ("%s", e.what ()));
    return FALSE;
  }
  try {
    pefm::DetectorOptions opts;
    opts.device = device;
    opts.precision = precision == GST_PEFM_PRECISION_FP16 ? pefm::Precision::kFp16
        : precision == GST_PEFM_PRECISION_BF16 ? pefm::Precision::kBf16 : pefm::Precision::kFp32;
    if (opts.precision == pefm::Precision::kFp16 && !on_cuda) {
      GST_ELEMENT_WARNING (self, RESOURCE, SETTINGS,
          ("precision=fp16 needs a CUDA device; device '%s' is the CPU, using fp32", device.c_str ()), (NULL));
      opts.precision = pefm::Precision::kFp32;
    }
    self->state->detector = pefm::FrameDetector::acquire (model, opts);
    self->state->stream = std::make_unique < pefm::StreamContext > ();
    if (!self->state->detector->calibrated ())
      GST_ELEMENT_WARNING (self, RESOURCE, SETTINGS,
          ("Model '%s' has no calibration: scores are raw, not normalised; the threshold "
              "applies to raw scores", model.c_str ()), (NULL));
    GST_INFO_OBJECT (self, "loaded %s on %s", model.c_str (),
        self->state->detector->detector ().device ().str ().c_str ());
  } catch (const std::exception & e) {
    GST_ELEMENT_ERROR (self, RESOURCE, OPEN_READ,
        ("Could not load model '%s' (property 'model')", model.c_str ()), ("%s", e.what ()));
    return FALSE;
  }
  self->state->frames = 0;
  return TRUE;
}

static gboolean
gst_pefm_filter_stop (GstBaseTransform * trans)
{
  GstPefmFilter *self = GST_PEFM_FILTER (trans);
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

static gboolean
gst_pefm_filter_set_info (GstVideoFilter * filter, GstCaps * incaps, GstVideoInfo * in_info,
    GstCaps * outcaps, GstVideoInfo * out_info)
{
  GstPefmFilter *self = GST_PEFM_FILTER (filter);

  (void) incaps;
  (void) outcaps;
  (void) out_info;
  if (!to_frame_format (GST_VIDEO_INFO_FORMAT (in_info), &self->state->format)) {
    GST_ELEMENT_ERROR (self, STREAM, FORMAT, ("Unsupported video format %s",
            gst_video_format_to_string (GST_VIDEO_INFO_FORMAT (in_info))), (NULL));
    return FALSE;
  }
  if (GST_VIDEO_INFO_WIDTH (in_info) <= 0 || GST_VIDEO_INFO_HEIGHT (in_info) <= 0) {
    GST_ELEMENT_ERROR (self, STREAM, FORMAT, ("Frames of %dx%d pixels cannot be analysed",
            GST_VIDEO_INFO_WIDTH (in_info), GST_VIDEO_INFO_HEIGHT (in_info)), (NULL));
    return FALSE;
  }
  GST_DEBUG_OBJECT (self, "negotiated %" GST_PTR_FORMAT, incaps);
  return TRUE;
}

static void
attach_metadata (GstBuffer * buf, const pefm::FrameResult & r, double threshold, bool calibrated)
{
  GstPefmMeta *meta = gst_buffer_add_pefm_meta (buf);
  meta->raw_score = r.raw_score;
  meta->score = r.score;
  meta->threshold = static_cast < gfloat > (threshold);
  meta->anomalous = r.anomalous;
  meta->calibrated = calibrated;
  gst_pefm_meta_set_map (meta, r.map_width, r.map_height, r.map.data (), r.map_scale_x, r.map_scale_y);
  std::vector < GstPefmRegion > regions;
  for (const auto & g:r.regions) {
    regions.push_back (GstPefmRegion { g.x, g.y, g.width, g.height, static_cast < guint64 > (g.area), g.peak });
    GstVideoRegionOfInterestMeta *roi = gst_buffer_add_video_region_of_interest_meta (buf, "anomaly",
        g.x, g.y, g.width, g.height);
    gst_video_region_of_interest_meta_add_param (roi, gst_structure_new ("pefm",
            "score", G_TYPE_DOUBLE, static_cast < double >(g.peak),
            "area", G_TYPE_UINT64, static_cast < guint64 > (g.area), NULL));
  }
  gst_pefm_meta_set_regions (meta, static_cast < guint > (regions.size ()), regions.data ());
}

static GstFlowReturn
gst_pefm_filter_transform_frame_ip (GstVideoFilter * filter, GstVideoFrame * frame)
{
  GstPefmFilter *self = GST_PEFM_FILTER (filter);
  auto & st = *self->state;

  GST_OBJECT_LOCK (self);
  const double threshold = self->threshold;
  const auto overlay = static_cast < pefm::OverlayMode > (self->overlay);
  const double alpha = self->overlay_alpha;
  pefm::TileOptions tiles { self->tile_size, self->tile_overlap };
  const int threads = self->threads;
  const bool emit = self->emit_messages;
  const bool only_anomalous = self->message_mode == GST_PEFM_MESSAGES_ANOMALOUS;
  GST_OBJECT_UNLOCK (self);

  if (!st.detector) {
    GST_ELEMENT_ERROR (self, CORE, FAILED, ("No model loaded"), (NULL));
    return GST_FLOW_ERROR;
  }
  if (tiles.size < 0)
    tiles.size = st.detector->trained_tile ();
  pefm::use_cpu_threads (threads);
  pefm::FrameView view;
  view.format = st.format;
  view.width = GST_VIDEO_FRAME_WIDTH (frame);
  view.height = GST_VIDEO_FRAME_HEIGHT (frame);
  for (guint p = 0; p < GST_VIDEO_FRAME_N_PLANES (frame) && p < 3; ++p) {
    view.planes[p] = static_cast < uint8_t * >(GST_VIDEO_FRAME_PLANE_DATA (frame, p));
    view.strides[p] = GST_VIDEO_FRAME_PLANE_STRIDE (frame, p);
  }
  if (pefm::is_yuv (view.format)) {
    gdouble kr = 0.2126, kb = 0.0722;
    gst_video_color_matrix_get_Kr_Kb (frame->info.colorimetry.matrix, &kr, &kb);
    view.kr = kr;
    view.kb = kb;
    view.full_range = frame->info.colorimetry.range == GST_VIDEO_COLOR_RANGE_0_255;
  }

  pefm::FrameResult result;
  try {
    result = st.detector->process (view, threshold, tiles, st.stream.get ());
    pefm::draw_overlay (view, result, overlay, alpha, threshold);
  } catch (const pefm::Cancelled &) {
    GST_DEBUG_OBJECT (self, "frame %" G_GUINT64_FORMAT " abandoned: stopping", st.frames);
    return GST_FLOW_FLUSHING;
  } catch (const std::invalid_argument & e) {
    GST_ELEMENT_ERROR (self, STREAM, FAILED, ("Cannot inspect frame %" G_GUINT64_FORMAT " (%dx%d) as configured "
            "(properties 'tile-size', 'tile-overlap')", st.frames, view.width, view.height), ("%s", e.what ()));
    return GST_FLOW_ERROR;
  } catch (const std::exception & e) {
    GST_ELEMENT_ERROR (self, STREAM, FAILED, ("Anomaly detection failed on frame %" G_GUINT64_FORMAT,
            st.frames), ("%s", e.what ()));
    return GST_FLOW_ERROR;
  }
  attach_metadata (frame->buffer, result, threshold, st.detector->calibrated ());

  if (emit && (!only_anomalous || result.anomalous)) {
    GstBaseTransform *trans = GST_BASE_TRANSFORM (self);
    const GstClockTime pts = GST_BUFFER_PTS (frame->buffer);
    GstStructure *s = gst_structure_new ("pefm",
        "timestamp", G_TYPE_UINT64, pts,
        "running-time", G_TYPE_UINT64, gst_segment_to_running_time (&trans->segment, GST_FORMAT_TIME, pts),
        "frame", G_TYPE_UINT64, st.frames,
        "score", G_TYPE_DOUBLE, static_cast < double >(result.score),
        "raw-score", G_TYPE_DOUBLE, static_cast < double >(result.raw_score),
        "threshold", G_TYPE_DOUBLE, threshold,
        "anomalous", G_TYPE_BOOLEAN, result.anomalous,
        "regions", G_TYPE_UINT, static_cast < guint > (result.regions.size ()), NULL);
    gst_element_post_message (GST_ELEMENT (self), gst_message_new_element (GST_OBJECT (self), s));
  }
  st.frames++;
  return GST_FLOW_OK;
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
  self->overlay = DEFAULT_PROP_OVERLAY;
  self->overlay_alpha = DEFAULT_PROP_OVERLAY_ALPHA;
  self->tile_size = DEFAULT_PROP_TILE_SIZE;
  self->tile_overlap = DEFAULT_PROP_TILE_OVERLAP;
  self->threads = DEFAULT_PROP_THREADS;
  self->emit_messages = DEFAULT_PROP_EMIT_MESSAGES;
  self->message_mode = DEFAULT_PROP_MESSAGE_MODE;
  self->state = new PefmState ();
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
   * Decision threshold on the normalised score, where the model's calibrated threshold
   * sits at 0.5 (anomalib's convention). Can be changed while playing.
   */
  g_object_class_install_property (gobject_class, PROP_THRESHOLD,
      g_param_spec_double ("threshold", "Threshold",
          "Anomaly threshold on the normalised score (0.5 = the model's calibrated threshold)",
          0.0, G_MAXDOUBLE, DEFAULT_PROP_THRESHOLD, playing_flags));
  /**
   * GstPefmFilter:overlay:
   *
   * What to draw into the frames.
   */
  g_object_class_install_property (gobject_class, PROP_OVERLAY,
      g_param_spec_enum ("overlay", "Overlay", "What to draw into the frames",
          GST_TYPE_PEFM_OVERLAY, DEFAULT_PROP_OVERLAY, playing_flags));
  /**
   * GstPefmFilter:overlay-alpha:
   *
   * Opacity of the heat-map overlay where the score reaches the threshold; it fades out
   * below, so normal frames stay untouched.
   */
  g_object_class_install_property (gobject_class, PROP_OVERLAY_ALPHA,
      g_param_spec_double ("overlay-alpha", "Overlay alpha", "Opacity of the heat-map overlay",
          0.0, 1.0, DEFAULT_PROP_OVERLAY_ALPHA, playing_flags));
  /**
   * GstPefmFilter:tile-size:
   *
   * -1 (default): as the model was trained (pefm-train --tile N, else whole frames).
   * 0: the whole frame is resized to the model's input size (the paper's setting). N > 0:
   * the frame is cut into N x N tiles of native pixels, the tiles are batched through the
   * detector and the heat map is stitched at frame scale: for line-scan strips and high
   * resolution, where resizing would erase small defects. Train with pefm-train --tile N.
   * Tiles are at least 32 pixels (smaller values are refused and the previous one kept),
   * and a frame may be cut into at most 1024 tiles (else the frame is an error naming
   * this property).
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
   * frame (0 = LibTorch's default). LibTorch's thread pool belongs to the process, so
   * elements with different values in one process take turns setting it.
   */
  g_object_class_install_property (gobject_class, PROP_THREADS,
      g_param_spec_int ("threads", "Threads", "CPU inference threads (0 = LibTorch's default)",
          0, 1024, DEFAULT_PROP_THREADS, playing_flags));
  /**
   * GstPefmFilter:emit-messages:
   *
   * Post an element message named "pefm" (timestamp, running-time, frame, score,
   * raw-score, threshold, anomalous, regions) per frame, or per anomalous frame with
   * message-mode=anomalous; `gst-launch-1.0 -m` prints them.
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
  filter_class->set_info = GST_DEBUG_FUNCPTR (gst_pefm_filter_set_info);
  filter_class->transform_frame_ip = GST_DEBUG_FUNCPTR (gst_pefm_filter_transform_frame_ip);

  gst_type_mark_as_plugin_api (GST_TYPE_PEFM_PRECISION, (GstPluginAPIFlags) 0);
  gst_type_mark_as_plugin_api (GST_TYPE_PEFM_OVERLAY, (GstPluginAPIFlags) 0);
  gst_type_mark_as_plugin_api (GST_TYPE_PEFM_MESSAGE_MODE, (GstPluginAPIFlags) 0);
}
