/* pefmoverlay: draws pefmfilter's results (GstPefmMeta) into video frames. */
#ifndef __GST_PEFM_OVERLAY_H__
#define __GST_PEFM_OVERLAY_H__

#include <gst/gst.h>
#include <gst/video/gstvideofilter.h>
#include <gst/video/video.h>

G_BEGIN_DECLS

#define GST_TYPE_PEFM_OVERLAY_ELEMENT (gst_pefm_overlay_element_get_type ())
G_DECLARE_FINAL_TYPE (GstPefmOverlayElement, gst_pefm_overlay_element, GST, PEFM_OVERLAY_ELEMENT, GstVideoFilter)

GST_ELEMENT_REGISTER_DECLARE (pefmoverlay);

G_END_DECLS

#endif /* __GST_PEFM_OVERLAY_H__ */
