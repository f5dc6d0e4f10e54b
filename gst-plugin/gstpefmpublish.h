/* pefmpublish: sends pefmfilter's results (GstPefmMeta) as JSON lines to stdout, a file
 * or an MQTT broker. */
#ifndef __GST_PEFM_PUBLISH_H__
#define __GST_PEFM_PUBLISH_H__

#include <gst/base/gstbasetransform.h>
#include <gst/gst.h>

G_BEGIN_DECLS

#define GST_TYPE_PEFM_PUBLISH (gst_pefm_publish_get_type ())
G_DECLARE_FINAL_TYPE (GstPefmPublish, gst_pefm_publish, GST, PEFM_PUBLISH, GstBaseTransform)

GST_ELEMENT_REGISTER_DECLARE (pefmpublish);

G_END_DECLS

#endif /* __GST_PEFM_PUBLISH_H__ */
