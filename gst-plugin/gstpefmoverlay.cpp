/**
 * SECTION:element-pefmoverlay
 * @title: pefmoverlay
 *
 * Draws the results that pefmfilter attached to each frame (#GstPefmMeta): the heat map
 * and/or the outline of the area at or above the threshold, as `pefmfilter overlay=...`
 * does, but anywhere downstream. So a pipeline can inspect full frames and draw only on
 * the branch that is shown, at the size it is shown: the meta's map mapping follows
 * `videoscale`. At the frame's own size the pixels are those `pefmfilter` would draw.
 * Frames without a meta, or let through uninspected, pass untouched.
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 filesrc location=line.mp4 ! decodebin ! videoconvert ! \
 *   pefmfilter model=cable.pt overlay=none ! tee name=t \
 *   t. ! queue ! appsink name=results \
 *   t. ! queue ! videoscale ! video/x-raw,width=640,height=360 ! pefmoverlay ! autovideosink
 * ]|
 */
#ifdef HAVE_CONFIG_H
#include "pefm-config.h"
#endif

#include "gstpefmoverlay.h"

#include "gstpefmmeta.h"
#include "gstpefmvideo.h"
#include "pefm/frame_result.h"
#include "pefm/overlay.h"

#ifdef C10_MACROS_MACROS_H_
#error "a LibTorch header reached gstpefmoverlay.cpp through a pefm header"
#endif

GST_DEBUG_CATEGORY_STATIC (gst_pefm_overlay_debug);
#define GST_CAT_DEFAULT gst_pefm_overlay_debug

#define DEFAULT_PROP_OVERLAY PEFM_DEFAULT_OVERLAY
#define DEFAULT_PROP_OVERLAY_ALPHA PEFM_DEFAULT_OVERLAY_ALPHA
#define DEFAULT_PROP_THRESHOLD -1.0

enum
{
  PROP_0,
  PROP_OVERLAY,
  PROP_OVERLAY_ALPHA,
  PROP_THRESHOLD,
  PROP_BIT_DEPTH,
};

struct _GstPefmOverlayElement
{
  GstVideoFilter parent;

  /* properties, under the object lock */
  GstPefmOverlay overlay;
  gdouble overlay_alpha;
  gdouble threshold;
  guint bit_depth;

  /* format and colour matrix of the negotiated caps (set_info) */
  pefm::FrameView negotiated;
};

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE ("sink",
    GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS (GST_VIDEO_CAPS_MAKE (PEFM_VIDEO_FORMATS)));
static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE ("src",
    GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS (GST_VIDEO_CAPS_MAKE (PEFM_VIDEO_FORMATS)));

#define gst_pefm_overlay_element_parent_class parent_class
G_DEFINE_TYPE_WITH_CODE (GstPefmOverlayElement, gst_pefm_overlay_element, GST_TYPE_VIDEO_FILTER,
    GST_DEBUG_CATEGORY_INIT (gst_pefm_overlay_debug, "pefmoverlay", 0, "PEFM result overlay"));
GST_ELEMENT_REGISTER_DEFINE (pefmoverlay, "pefmoverlay", GST_RANK_NONE, GST_TYPE_PEFM_OVERLAY_ELEMENT);

static void
gst_pefm_overlay_element_set_property (GObject * object, guint prop_id, const GValue * value, GParamSpec * pspec)
{
  GstPefmOverlayElement *self = GST_PEFM_OVERLAY_ELEMENT (object);

  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_OVERLAY:
      self->overlay = (GstPefmOverlay) g_value_get_enum (value);
      break;
    case PROP_OVERLAY_ALPHA:
      self->overlay_alpha = g_value_get_double (value);
      break;
    case PROP_BIT_DEPTH:
      self->bit_depth = g_value_get_uint (value);
      break;
    case PROP_THRESHOLD:
      self->threshold = g_value_get_double (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

static void
gst_pefm_overlay_element_get_property (GObject * object, guint prop_id, GValue * value, GParamSpec * pspec)
{
  GstPefmOverlayElement *self = GST_PEFM_OVERLAY_ELEMENT (object);

  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_OVERLAY: g_value_set_enum (value, self->overlay); break;
    case PROP_OVERLAY_ALPHA: g_value_set_double (value, self->overlay_alpha); break;
    case PROP_THRESHOLD: g_value_set_double (value, self->threshold); break;
    case PROP_BIT_DEPTH: g_value_set_uint (value, self->bit_depth); break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

static gboolean
gst_pefm_overlay_element_start (GstBaseTransform * trans)
{
  GstPefmOverlayElement *self = GST_PEFM_OVERLAY_ELEMENT (trans);
  GST_OBJECT_LOCK (self);
  const guint bit_depth = self->bit_depth;
  GST_OBJECT_UNLOCK (self);
  return pefm_check_bit_depth (GST_ELEMENT (self), bit_depth);
}

static gboolean
gst_pefm_overlay_element_set_info (GstVideoFilter * filter, GstCaps * incaps, GstVideoInfo * in_info,
    GstCaps * outcaps, GstVideoInfo * out_info)
{
  GstPefmOverlayElement *self = GST_PEFM_OVERLAY_ELEMENT (filter);

  (void) outcaps;
  (void) out_info;
  GST_OBJECT_LOCK (self);
  const guint bit_depth = self->bit_depth;
  GST_OBJECT_UNLOCK (self);
  if (!pefm_frame_format_from_info (in_info, incaps, bit_depth, &self->negotiated)) {
    GST_ELEMENT_ERROR (self, STREAM, FORMAT, ("Unsupported video format %s",
            gst_video_format_to_string (GST_VIDEO_INFO_FORMAT (in_info))), (NULL));
    return FALSE;
  }
  GST_DEBUG_OBJECT (self, "negotiated %" GST_PTR_FORMAT, incaps);
  return TRUE;
}

/* The meta's results as the core's drawing code reads them (the map is copied: the
 * meta's may be shared with other buffers). */
static pefm::FrameResult
result_of (const GstPefmMeta * m)
{
  pefm::FrameResult r;
  r.raw_score = m->raw_score;
  r.score = m->score;
  r.anomalous = m->anomalous;
  r.map_width = static_cast < int >(m->map_width);
  r.map_height = static_cast < int >(m->map_height);
  r.map.assign (m->map, m->map + static_cast < size_t > (m->map_width) * m->map_height);
  r.map_scale_x = m->map_scale_x;
  r.map_scale_y = m->map_scale_y;
  return r;
}

/* In place, and the frame is mapped (for writing: after a tee, a copy) only when there is
 * something to draw. */
static GstFlowReturn
gst_pefm_overlay_element_transform_ip (GstBaseTransform * trans, GstBuffer * buf)
{
  GstPefmOverlayElement *self = GST_PEFM_OVERLAY_ELEMENT (trans);
  GstVideoFilter *filter = GST_VIDEO_FILTER (trans);

  if (!filter->negotiated) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION, (NULL), ("unknown format"));
    return GST_FLOW_NOT_NEGOTIATED;
  }
  const GstPefmMeta *m = gst_buffer_get_pefm_meta (buf);
  if (!m || !m->inspected || !m->map || m->map_width == 0 || m->map_height == 0)
    return GST_FLOW_OK;
  GST_OBJECT_LOCK (self);
  const auto mode = static_cast < pefm::OverlayMode > (self->overlay);
  const double alpha = self->overlay_alpha;
  /* negative: the level the frame's regions were cut at */
  const double level = self->threshold >= 0 ? self->threshold : m->region_level;
  GST_OBJECT_UNLOCK (self);
  if (mode == pefm::OverlayMode::kNone)
    return GST_FLOW_OK;
  GstVideoFrame frame;
  if (!gst_video_frame_map (&frame, &filter->in_info, buf, GST_MAP_READWRITE)) {
    GST_ELEMENT_ERROR (self, STREAM, FAILED, ("Cannot map a frame for drawing"), (NULL));
    return GST_FLOW_ERROR;
  }
  pefm::draw_overlay (pefm_frame_view (self->negotiated, &frame), result_of (m), mode, alpha, level);
  gst_video_frame_unmap (&frame);
  return GST_FLOW_OK;
}

static void
gst_pefm_overlay_element_class_init (GstPefmOverlayElementClass * klass)
{
  GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS (klass);
  GstBaseTransformClass *trans_class = GST_BASE_TRANSFORM_CLASS (klass);
  GstVideoFilterClass *filter_class = GST_VIDEO_FILTER_CLASS (klass);
  const auto flags = static_cast < GParamFlags > (G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
      GST_PARAM_MUTABLE_PLAYING);

  gobject_class->set_property = gst_pefm_overlay_element_set_property;
  gobject_class->get_property = gst_pefm_overlay_element_get_property;

  /* overlay, overlay-alpha: as pefmfilter's (gstpefmvideo.cpp) */
  pefm_install_overlay_properties (gobject_class, PROP_OVERLAY, PROP_OVERLAY_ALPHA, flags);
  /**
   * GstPefmOverlayElement:threshold:
   *
   * Heat-map value (normalised, 0..1; 0.5 = the model's calibrated image threshold) the
   * contours are drawn at; negative (the default, -1): the level each frame's regions
   * were cut at (GstPefmMeta's region_level), so the outlines are pefmfilter's regions.
   */
  g_object_class_install_property (gobject_class, PROP_THRESHOLD,
      g_param_spec_double ("threshold", "Threshold",
          "Heat-map value the contours are drawn at (negative = where each frame's regions were cut)",
          -1.0, 1.0, DEFAULT_PROP_THRESHOLD, flags));
  /* bit-depth: as pefmfilter's (gstpefmvideo.cpp) */
  pefm_install_bit_depth_property (gobject_class, PROP_BIT_DEPTH);

  gst_element_class_set_static_metadata (element_class, "PEFM result overlay",
      "Filter/Effect/Video",
      "Draws pefmfilter's heat map and anomaly outlines (GstPefmMeta) into the frames",
      "pefm developers");
  gst_element_class_add_static_pad_template (element_class, &sink_template);
  gst_element_class_add_static_pad_template (element_class, &src_template);

  filter_class->set_info = GST_DEBUG_FUNCPTR (gst_pefm_overlay_element_set_info);
  trans_class->transform_ip = GST_DEBUG_FUNCPTR (gst_pefm_overlay_element_transform_ip);
  trans_class->start = GST_DEBUG_FUNCPTR (gst_pefm_overlay_element_start);

  gst_type_mark_as_plugin_api (GST_TYPE_PEFM_OVERLAY, (GstPluginAPIFlags) 0);
}

static void
gst_pefm_overlay_element_init (GstPefmOverlayElement * self)
{
  self->overlay = DEFAULT_PROP_OVERLAY;
  self->overlay_alpha = DEFAULT_PROP_OVERLAY_ALPHA;
  self->threshold = DEFAULT_PROP_THRESHOLD;
  self->bit_depth = PEFM_DEFAULT_BIT_DEPTH;
  new (&self->negotiated) pefm::FrameView ();
}
