/* What pefm's video elements share (gstpefmvideo.h). */
#include "gstpefmvideo.h"

#include "gstpefmfilter.h"

GType
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

GType
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

GType
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

void
pefm_install_overlay_properties (GObjectClass * klass, guint prop_overlay, guint prop_overlay_alpha,
    GParamFlags flags)
{
  /**
   * GstPefmFilter:overlay:
   *
   * What to draw into the frames (pefmoverlay has the same property).
   */
  g_object_class_install_property (klass, prop_overlay,
      g_param_spec_enum ("overlay", "Overlay", "What to draw into the frames",
          GST_TYPE_PEFM_OVERLAY, PEFM_DEFAULT_OVERLAY, flags));
  /**
   * GstPefmFilter:overlay-alpha:
   *
   * Opacity of the heat-map overlay where the score reaches the threshold; it fades out
   * below, so normal frames stay untouched.
   */
  g_object_class_install_property (klass, prop_overlay_alpha,
      g_param_spec_double ("overlay-alpha", "Overlay alpha", "Opacity of the heat-map overlay",
          0.0, 1.0, PEFM_DEFAULT_OVERLAY_ALPHA, flags));
}

void
pefm_install_bit_depth_property (GObjectClass * klass, guint prop_bit_depth)
{
  /**
   * GstPefmFilter:bit-depth:
   *
   * GRAY16_LE frames (12- and 16-bit mono cameras): how many low bits the camera fills.
   * A sample v becomes the 8-bit value v * 255 / (2^bit-depth - 1), rounded, as pefm-train
   * maps 16-bit images with --bit-depth; pefmoverlay draws within that range. 0: the caps'
   * "depth" field when a source sets one (8..16), else 16, GStreamer's meaning of GRAY16:
   * a 12-bit camera (Aravis's Mono12 arrives as plain GRAY16_LE) needs bit-depth=12, or
   * its frames are read nearly black.
   */
  g_object_class_install_property (klass, prop_bit_depth,
      g_param_spec_uint ("bit-depth", "Bit depth",
          "GRAY16_LE: the significant bits of a sample, 8..16 (0 = the caps' depth, else 16)", 0, 16,
          PEFM_DEFAULT_BIT_DEPTH, static_cast < GParamFlags > (G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
              GST_PARAM_MUTABLE_READY)));
}

gboolean
pefm_check_bit_depth (GstElement * element, guint bit_depth)
{
  if (bit_depth == 0 || bit_depth >= 8)
    return TRUE;
  GST_ELEMENT_ERROR (element, RESOURCE, SETTINGS, ("bit-depth %u: 8..16 significant bits, or 0 (the caps' depth, "
          "else 16)", bit_depth), (NULL));
  return FALSE;
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
    case GST_VIDEO_FORMAT_GRAY16_LE: *out = FrameFormat::kGray16; return true;
    case GST_VIDEO_FORMAT_I420: *out = FrameFormat::kI420; return true;
    case GST_VIDEO_FORMAT_NV12: *out = FrameFormat::kNV12; return true;
    default: return false;
  }
}

bool
pefm_frame_format_from_info (const GstVideoInfo * info, GstCaps * caps, guint bit_depth, pefm::FrameView * out)
{
  pefm::FrameView view;
  if (!to_frame_format (GST_VIDEO_INFO_FORMAT (info), &view.format))
    return false;
  if (view.format == pefm::FrameFormat::kGray16) {
    gint depth = 0;
    if (bit_depth == 0 && caps && gst_caps_get_size (caps) > 0
        && gst_structure_get_int (gst_caps_get_structure (caps, 0), "depth", &depth) && depth >= 8 && depth <= 16)
      bit_depth = static_cast < guint > (depth);
    view.bit_depth = bit_depth >= 8 && bit_depth <= 16 ? static_cast < int >(bit_depth) : 16;
  }
  if (pefm::is_yuv (view.format)) {
    gdouble kr = 0.2126, kb = 0.0722;
    gst_video_color_matrix_get_Kr_Kb (info->colorimetry.matrix, &kr, &kb);
    view.kr = kr;
    view.kb = kb;
    view.full_range = info->colorimetry.range == GST_VIDEO_COLOR_RANGE_0_255;
  }
  *out = view;
  return true;
}

pefm::FrameView
pefm_frame_view (const pefm::FrameView & negotiated, GstVideoFrame * frame)
{
  pefm::FrameView view = negotiated;
  view.width = GST_VIDEO_FRAME_WIDTH (frame);
  view.height = GST_VIDEO_FRAME_HEIGHT (frame);
  for (guint p = 0; p < GST_VIDEO_FRAME_N_PLANES (frame) && p < 3; ++p) {
    view.planes[p] = static_cast < uint8_t * >(GST_VIDEO_FRAME_PLANE_DATA (frame, p));
    view.strides[p] = GST_VIDEO_FRAME_PLANE_STRIDE (frame, p);
  }
  return view;
}
