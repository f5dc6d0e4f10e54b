/* The pefm GStreamer plugin: registers pefmfilter. */
#ifdef HAVE_CONFIG_H
#include "pefm-config.h"
#endif

#include <gst/gst.h>

#include "gstpefmfilter.h"

static gboolean
plugin_init (GstPlugin * plugin)
{
  return GST_ELEMENT_REGISTER (pefmfilter, plugin);
}

GST_PLUGIN_DEFINE (GST_VERSION_MAJOR, GST_VERSION_MINOR, pefm,
    "PEFM visual anomaly detection", plugin_init, VERSION, "LGPL", PACKAGE, "pefm")
