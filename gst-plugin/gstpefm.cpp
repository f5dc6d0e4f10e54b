/* The pefm GStreamer plugin: registers pefmfilter, pefmoverlay and pefmpublish. */
#ifdef HAVE_CONFIG_H
#include "pefm-config.h"
#endif

#include <gst/gst.h>

#include "gstpefmfilter.h"
#include "gstpefmoverlay.h"
#include "gstpefmpublish.h"

static gboolean
plugin_init (GstPlugin * plugin)
{
  gboolean ok = GST_ELEMENT_REGISTER (pefmfilter, plugin);
  ok &= GST_ELEMENT_REGISTER (pefmoverlay, plugin);
  ok &= GST_ELEMENT_REGISTER (pefmpublish, plugin);
  return ok;
}

GST_PLUGIN_DEFINE (GST_VERSION_MAJOR, GST_VERSION_MINOR, pefm,
    "PEFM visual anomaly detection", plugin_init, VERSION, "LGPL", PACKAGE, "pefm")
