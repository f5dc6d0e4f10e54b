/* What pefm's video elements (pefmfilter, pefmoverlay) share: the formats they take, the
 * negotiated format as the core's FrameView, a mapped frame's planes, and the enums of
 * their properties. No LibTorch. */
#ifndef __GST_PEFM_VIDEO_H__
#define __GST_PEFM_VIDEO_H__

#include <gst/video/video.h>

#include "pefm/frame.h"
#include "pefm/overlay.h"

#define PEFM_DEFAULT_OVERLAY GST_PEFM_OVERLAY_HEATMAP_CONTOURS
#define PEFM_DEFAULT_OVERLAY_ALPHA 0.5
#define PEFM_DEFAULT_BIT_DEPTH 0
#define PEFM_VIDEO_FORMATS "{ RGB, BGR, RGBA, BGRA, RGBx, BGRx, ARGB, ABGR, xRGB, xBGR, GRAY8, GRAY16_LE, I420, NV12 }"

typedef enum {
  GST_PEFM_OVERLAY_NONE,
  GST_PEFM_OVERLAY_HEATMAP,
  GST_PEFM_OVERLAY_CONTOURS,
  GST_PEFM_OVERLAY_HEATMAP_CONTOURS,
} GstPefmOverlay;

GType gst_pefm_overlay_get_type (void);
#define GST_TYPE_PEFM_OVERLAY (gst_pefm_overlay_get_type ())
/* pefmfilter's precision and message-mode enums (gstpefmfilter.h) as GTypes */
GType gst_pefm_precision_get_type (void);
#define GST_TYPE_PEFM_PRECISION (gst_pefm_precision_get_type ())
GType gst_pefm_message_mode_get_type (void);
#define GST_TYPE_PEFM_MESSAGE_MODE (gst_pefm_message_mode_get_type ())

/* Installs the "overlay" and "overlay-alpha" properties (ids @prop_overlay and
 * @prop_overlay_alpha), the same in pefmfilter and pefmoverlay. */
void pefm_install_overlay_properties (GObjectClass * klass, guint prop_overlay, guint prop_overlay_alpha,
    GParamFlags flags);

/* Installs the "bit-depth" property (id @prop_bit_depth; GRAY16_LE's significant bits),
 * the same in pefmfilter and pefmoverlay. */
void pefm_install_bit_depth_property (GObjectClass * klass, guint prop_bit_depth);
/* Whether @bit_depth is 0 or 8..16; else an error naming the property, posted by @element. */
gboolean pefm_check_bit_depth (GstElement * element, guint bit_depth);

/* The format and colour matrix of @info (@caps) as the core reads frames; false for a
 * format pefm does not take. GRAY16_LE's significant bits: @bit_depth, or with 0 the caps'
 * "depth" field when a source sets one (8..16), else 16. */
bool pefm_frame_format_from_info (const GstVideoInfo * info, GstCaps * caps, guint bit_depth,
    pefm::FrameView * out);

/* @negotiated with the size and planes of the mapped @frame. */
pefm::FrameView pefm_frame_view (const pefm::FrameView & negotiated, GstVideoFrame * frame);

#endif /* __GST_PEFM_VIDEO_H__ */
