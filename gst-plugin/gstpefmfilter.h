/* pefmfilter: PEFM anomaly detection on every video frame. */
#ifndef __GST_PEFM_FILTER_H__
#define __GST_PEFM_FILTER_H__

#include <gst/gst.h>
#include <gst/video/gstvideofilter.h>
#include <gst/video/video.h>

G_BEGIN_DECLS

#define GST_TYPE_PEFM_FILTER (gst_pefm_filter_get_type ())
G_DECLARE_FINAL_TYPE (GstPefmFilter, gst_pefm_filter, GST, PEFM_FILTER, GstVideoFilter)

typedef enum {
  GST_PEFM_PRECISION_FP32,
  GST_PEFM_PRECISION_FP16,
  GST_PEFM_PRECISION_BF16,
} GstPefmPrecision;

typedef enum {
  GST_PEFM_MESSAGES_ALL,
  GST_PEFM_MESSAGES_ANOMALOUS,
} GstPefmMessageMode;

GST_ELEMENT_REGISTER_DECLARE (pefmfilter);

G_END_DECLS

#endif /* __GST_PEFM_FILTER_H__ */
