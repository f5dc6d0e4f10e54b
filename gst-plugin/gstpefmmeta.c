/* GstPefmMeta implementation; see gstpefmmeta.h. Modelled on the transform handling of
 * GstVideoRegionOfInterestMeta in gst-plugins-base's gstvideometa.c. */
#include "gstpefmmeta.h"

#include <string.h>

GType
gst_pefm_meta_api_get_type (void)
{
  static GType type = 0;
  static const gchar *tags[] = { GST_META_TAG_VIDEO_STR,
    GST_META_TAG_VIDEO_ORIENTATION_STR, GST_META_TAG_VIDEO_SIZE_STR, NULL
  };

  if (g_once_init_enter (&type)) {
    GType t = gst_meta_api_type_register ("GstPefmMetaAPI", tags);
    g_once_init_leave (&type, t);
  }
  return type;
}

static gboolean
gst_pefm_meta_init (GstMeta * meta, gpointer params, GstBuffer * buffer)
{
  GstPefmMeta *m = (GstPefmMeta *) meta;

  (void) params;
  (void) buffer;
  m->raw_score = m->score = m->threshold = 0.0f;
  m->anomalous = m->calibrated = FALSE;
  m->map_width = m->map_height = 0;
  m->map = NULL;
  m->map_scale_x = m->map_scale_y = 1.0;
  m->n_regions = 0;
  m->regions = NULL;
  m->inspected = TRUE;
  m->skip_reason = NULL;
  m->map_bytes = NULL;
  /* an application's own meta: contours at the calibrated threshold, as FrameResult's */
  m->region_threshold = m->region_level = 0.5f;
  m->continuous = FALSE;
  m->web_row = 0;
  m->model_name = m->model_sha256 = NULL;
  return TRUE;
}

static void
gst_pefm_meta_free (GstMeta * meta, GstBuffer * buffer)
{
  GstPefmMeta *m = (GstPefmMeta *) meta;

  (void) buffer;
  if (m->map_bytes)
    g_bytes_unref (m->map_bytes);
  g_free (m->regions);
  m->map_bytes = NULL;
  m->map = NULL;
  m->regions = NULL;
}

static gboolean
gst_pefm_meta_transform (GstBuffer * dest, GstMeta * meta, GstBuffer * buffer,
    GQuark type, gpointer data)
{
  GstPefmMeta *src = (GstPefmMeta *) meta, *dst;
  gdouble fx = 1.0, fy = 1.0;
  guint i;

  (void) buffer;
  if (GST_META_TRANSFORM_IS_COPY (type)) {
    /* plain copy */
  } else if (GST_VIDEO_META_TRANSFORM_IS_SCALE (type)) {
    GstVideoMetaTransform *trans = (GstVideoMetaTransform *) data;
    if (GST_VIDEO_INFO_WIDTH (trans->in_info) <= 0
        || GST_VIDEO_INFO_HEIGHT (trans->in_info) <= 0)
      return FALSE;
    fx = (gdouble) GST_VIDEO_INFO_WIDTH (trans->out_info) /
        GST_VIDEO_INFO_WIDTH (trans->in_info);
    fy = (gdouble) GST_VIDEO_INFO_HEIGHT (trans->out_info) /
        GST_VIDEO_INFO_HEIGHT (trans->in_info);
  } else {
    return FALSE;               /* unknown transform: drop the meta */
  }

  dst = gst_buffer_add_pefm_meta (dest);
  if (!dst)
    return FALSE;
  dst->raw_score = src->raw_score;
  dst->score = src->score;
  dst->threshold = src->threshold;
  dst->region_threshold = src->region_threshold;
  dst->region_level = src->region_level;
  dst->anomalous = src->anomalous;
  dst->calibrated = src->calibrated;
  dst->inspected = src->inspected;
  dst->skip_reason = src->skip_reason;
  dst->continuous = src->continuous;
  dst->web_row = src->web_row;
  dst->model_name = src->model_name;
  dst->model_sha256 = src->model_sha256;
  gst_pefm_meta_share_map (dst, src->map_width, src->map_height, src->map_bytes,
      src->map_scale_x * fx, src->map_scale_y * fy);
  gst_pefm_meta_set_regions (dst, src->n_regions, src->regions);
  for (i = 0; i < dst->n_regions; i++) {
    GstPefmRegion *r = &dst->regions[i];
    gint x1 = (gint) ((r->x + r->width) * fx + 0.5);
    gint y1 = (gint) ((r->y + r->height) * fy + 0.5);
    r->x = (gint) (r->x * fx + 0.5);
    r->y = (gint) (r->y * fy + 0.5);
    r->width = MAX (1, x1 - r->x);
    r->height = MAX (1, y1 - r->y);
    r->area = (guint64) (r->area * fx * fy + 0.5);
  }
  return TRUE;
}

const GstMetaInfo *
gst_pefm_meta_get_info (void)
{
  static const GstMetaInfo *info = NULL;

  if (g_once_init_enter ((GstMetaInfo **) & info)) {
    const GstMetaInfo *mi = gst_meta_register (GST_PEFM_META_API_TYPE,
        "GstPefmMeta", sizeof (GstPefmMeta), gst_pefm_meta_init,
        gst_pefm_meta_free, gst_pefm_meta_transform);
    g_once_init_leave ((GstMetaInfo **) & info, (GstMetaInfo *) mi);
  }
  return info;
}

/**
 * gst_buffer_add_pefm_meta:
 * @buffer: a writable #GstBuffer
 *
 * Attaches an empty #GstPefmMeta (not inspected, no map, no regions).
 *
 * Returns: (transfer none): the new meta, owned by @buffer
 */
GstPefmMeta *
gst_buffer_add_pefm_meta (GstBuffer * buffer)
{
  g_return_val_if_fail (GST_IS_BUFFER (buffer), NULL);
  return (GstPefmMeta *) gst_buffer_add_meta (buffer, GST_PEFM_META_INFO, NULL);
}

/**
 * gst_pefm_meta_set_map: (skip)
 * @meta: a #GstPefmMeta
 * @width: map width
 * @height: map height
 * @map: @width x @height floats, row-major; copied
 * @scale_x: frame pixels per map pixel, horizontally
 * @scale_y: frame pixels per map pixel, vertically
 *
 * Copies @map into the meta, replacing any previous map (bindings: share_map()).
 */
void
gst_pefm_meta_set_map (GstPefmMeta * meta, guint width, guint height,
    const gfloat * map, gdouble scale_x, gdouble scale_y)
{
  GBytes *bytes = NULL;

  g_return_if_fail (meta != NULL);
  if (map && width > 0 && height > 0)
    bytes = g_bytes_new (map, (gsize) width * height * sizeof (gfloat));
  gst_pefm_meta_share_map (meta, width, height, bytes, scale_x, scale_y);
  if (bytes)
    g_bytes_unref (bytes);
}

/**
 * gst_pefm_meta_share_map:
 * @meta: a #GstPefmMeta
 * @width: map width
 * @height: map height
 * @bytes: (nullable): @width x @height 32-bit floats in the machine's byte order; a
 *   reference is taken; %NULL or a wrong size clears the map
 * @scale_x: frame pixels per map pixel, horizontally
 * @scale_y: frame pixels per map pixel, vertically
 *
 * Shares @bytes as the meta's map, replacing any previous one.
 */
void
gst_pefm_meta_share_map (GstPefmMeta * meta, guint width, guint height,
    GBytes * bytes, gdouble scale_x, gdouble scale_y)
{
  GBytes *old;

  g_return_if_fail (meta != NULL);
  old = meta->map_bytes;        /* released last: @bytes may be the meta's own */
  meta->map_bytes = NULL;
  meta->map = NULL;
  meta->map_width = meta->map_height = 0;
  if (bytes && width > 0 && height > 0
      && g_bytes_get_size (bytes) == (gsize) width * height * sizeof (gfloat)) {
    meta->map_bytes = g_bytes_ref (bytes);
    /* read-only by contract: copies share it */
    meta->map = (gfloat *) g_bytes_get_data (bytes, NULL);
    meta->map_width = width;
    meta->map_height = height;
  }
  meta->map_scale_x = scale_x;
  meta->map_scale_y = scale_y;
  if (old)
    g_bytes_unref (old);
}

/**
 * gst_pefm_meta_set_regions:
 * @meta: a #GstPefmMeta
 * @n: number of regions
 * @regions: (array length=n): the regions, copied
 *
 * Replaces the meta's regions.
 */
void
gst_pefm_meta_set_regions (GstPefmMeta * meta, guint n,
    const GstPefmRegion * regions)
{
  GstPefmRegion *old;

  g_return_if_fail (meta != NULL);
  old = meta->regions;          /* freed last: @regions may be the meta's own */
  meta->regions = n > 0 && regions ? g_memdup2 (regions, n * sizeof (GstPefmRegion)) : NULL;
  meta->n_regions = meta->regions ? n : 0;
  g_free (old);
}

/**
 * gst_pefm_meta_score_at:
 * @meta: a #GstPefmMeta
 * @x: frame column
 * @y: frame row
 *
 * Returns: the heat-map value at frame pixel (@x, @y), nearest map pixel; 0 outside
 */
gfloat
gst_pefm_meta_score_at (const GstPefmMeta * meta, gdouble x, gdouble y)
{
  gint mx, my;

  g_return_val_if_fail (meta != NULL, 0.0f);
  if (!meta->map || meta->map_scale_x <= 0 || meta->map_scale_y <= 0)
    return 0.0f;
  mx = (gint) (x / meta->map_scale_x);
  my = (gint) (y / meta->map_scale_y);
  if (mx < 0 || my < 0 || mx >= (gint) meta->map_width
      || my >= (gint) meta->map_height)
    return 0.0f;
  return meta->map[(gsize) my * meta->map_width + mx];
}

/**
 * gst_pefm_buffer_get_meta:
 * @buffer: a #GstBuffer
 *
 * The function form of gst_buffer_get_pefm_meta(), for bindings. The meta lives as
 * long as @buffer: a binding must not keep it (or read its fields) after dropping the
 * buffer.
 *
 * Returns: (transfer none) (nullable): the buffer's #GstPefmMeta, or %NULL
 */
GstPefmMeta *
gst_pefm_buffer_get_meta (GstBuffer * buffer)
{
  g_return_val_if_fail (GST_IS_BUFFER (buffer), NULL);
  return gst_buffer_get_pefm_meta (buffer);
}

/**
 * gst_pefm_meta_get_map_bytes:
 * @meta: a #GstPefmMeta
 *
 * The heat map: @meta->map_width x @meta->map_height 32-bit floats in the machine's byte
 * order, row-major (in Python: `numpy.frombuffer(b.get_data(), numpy.float32)`). The map
 * is shared, not copied.
 *
 * Returns: (transfer full) (nullable): the map's bytes, or %NULL when the frame has none
 */
GBytes *
gst_pefm_meta_get_map_bytes (const GstPefmMeta * meta)
{
  g_return_val_if_fail (meta != NULL, NULL);
  if (!meta->map_bytes)
    return NULL;
  return g_bytes_ref (meta->map_bytes);
}

/**
 * gst_pefm_meta_get_region:
 * @meta: a #GstPefmMeta
 * @index: 0 .. @meta->n_regions - 1
 *
 * Returns: (transfer full) (nullable): a copy of region @index, or %NULL past the last
 */
GstPefmRegion *
gst_pefm_meta_get_region (const GstPefmMeta * meta, guint index)
{
  g_return_val_if_fail (meta != NULL, NULL);
  if (index >= meta->n_regions)
    return NULL;
  return gst_pefm_region_copy (&meta->regions[index]);
}

/**
 * gst_pefm_meta_get_map:
 * @meta: a #GstPefmMeta
 * @n_values: (out): the number of values: map width x map height, 0 without a map
 *
 * The heat map as floats, row-major (gst_pefm_meta_get_map_size()); a copy, sized by the
 * map's own bytes.
 *
 * Returns: (array length=n_values) (transfer full) (nullable): a copy of the map, or %NULL
 */
gfloat *
gst_pefm_meta_get_map (const GstPefmMeta * meta, guint * n_values)
{
  gsize size = 0;
  const gfloat *data;

  g_return_val_if_fail (meta != NULL && n_values != NULL, NULL);
  *n_values = 0;
  if (!meta->map_bytes)
    return NULL;
  data = (const gfloat *) g_bytes_get_data (meta->map_bytes, &size);
  size = MIN (size / sizeof (gfloat), (gsize) meta->map_width * meta->map_height);
  if (size == 0 || size > G_MAXUINT)
    return NULL;
  *n_values = (guint) size;
  return (gfloat *) g_memdup2 (data, size * sizeof (gfloat));
}

/**
 * gst_pefm_meta_get_regions:
 * @meta: a #GstPefmMeta
 *
 * Returns: (element-type GstPefmRegion) (transfer full): copies of the regions, highest
 *   peak first
 */
GList *
gst_pefm_meta_get_regions (const GstPefmMeta * meta)
{
  GList *out = NULL;
  guint i;

  g_return_val_if_fail (meta != NULL, NULL);
  for (i = meta->n_regions; i > 0; i--)
    out = g_list_prepend (out, gst_pefm_region_copy (&meta->regions[i - 1]));
  return out;
}

/**
 * gst_pefm_meta_get_score:
 * @meta: a #GstPefmMeta
 *
 * Returns: the normalised image score in 0..1 (0.5: the model's threshold)
 */
gfloat
gst_pefm_meta_get_score (const GstPefmMeta * meta)
{
  g_return_val_if_fail (meta != NULL, 0.0f);
  return meta->score;
}

/**
 * gst_pefm_meta_get_raw_score:
 * @meta: a #GstPefmMeta
 *
 * Returns: the model's raw image score
 */
gfloat
gst_pefm_meta_get_raw_score (const GstPefmMeta * meta)
{
  g_return_val_if_fail (meta != NULL, 0.0f);
  return meta->raw_score;
}

/**
 * gst_pefm_meta_get_threshold:
 * @meta: a #GstPefmMeta
 *
 * Returns: the image decision threshold in force for this frame (normalised)
 */
gfloat
gst_pefm_meta_get_threshold (const GstPefmMeta * meta)
{
  g_return_val_if_fail (meta != NULL, 0.0f);
  return meta->threshold;
}

/**
 * gst_pefm_meta_get_region_threshold:
 * @meta: a #GstPefmMeta
 *
 * Returns: the region threshold in force for this frame (normalised)
 */
gfloat
gst_pefm_meta_get_region_threshold (const GstPefmMeta * meta)
{
  g_return_val_if_fail (meta != NULL, 0.0f);
  return meta->region_threshold;
}

/**
 * gst_pefm_meta_get_region_level:
 * @meta: a #GstPefmMeta
 *
 * Returns: the heat-map value the regions were cut at
 */
gfloat
gst_pefm_meta_get_region_level (const GstPefmMeta * meta)
{
  g_return_val_if_fail (meta != NULL, 0.0f);
  return meta->region_level;
}

/**
 * gst_pefm_meta_is_anomalous:
 * @meta: a #GstPefmMeta
 *
 * Returns: whether the frame's score reached its threshold
 */
gboolean
gst_pefm_meta_is_anomalous (const GstPefmMeta * meta)
{
  g_return_val_if_fail (meta != NULL, FALSE);
  return meta->anomalous;
}

/**
 * gst_pefm_meta_is_calibrated:
 * @meta: a #GstPefmMeta
 *
 * Returns: whether the model carried calibration (else the scores are raw)
 */
gboolean
gst_pefm_meta_is_calibrated (const GstPefmMeta * meta)
{
  g_return_val_if_fail (meta != NULL, FALSE);
  return meta->calibrated;
}

/**
 * gst_pefm_meta_is_inspected:
 * @meta: a #GstPefmMeta
 *
 * Returns: whether the detector ran on this frame (gst_pefm_meta_get_skip_reason() says why not)
 */
gboolean
gst_pefm_meta_is_inspected (const GstPefmMeta * meta)
{
  g_return_val_if_fail (meta != NULL, FALSE);
  return meta->inspected;
}

/**
 * gst_pefm_meta_is_continuous:
 * @meta: a #GstPefmMeta
 *
 * Returns: whether the buffer was inspected as part of a continuous web
 */
gboolean
gst_pefm_meta_is_continuous (const GstPefmMeta * meta)
{
  g_return_val_if_fail (meta != NULL, FALSE);
  return meta->continuous;
}

/**
 * gst_pefm_meta_get_skip_reason:
 * @meta: a #GstPefmMeta
 *
 * Returns: (transfer none) (nullable): why the frame was not inspected ("late",
 *   "interval"), or %NULL
 */
const gchar *
gst_pefm_meta_get_skip_reason (const GstPefmMeta * meta)
{
  g_return_val_if_fail (meta != NULL, NULL);
  return meta->skip_reason;
}

/**
 * gst_pefm_meta_get_map_size:
 * @meta: a #GstPefmMeta
 * @width: (out): the heat map's width
 * @height: (out): its height
 */
void
gst_pefm_meta_get_map_size (const GstPefmMeta * meta, guint * width, guint * height)
{
  g_return_if_fail (meta != NULL && width != NULL && height != NULL);
  *width = meta->map_width;
  *height = meta->map_height;
}

/**
 * gst_pefm_meta_get_map_scale:
 * @meta: a #GstPefmMeta
 * @scale_x: (out): frame pixels per map pixel, horizontally
 * @scale_y: (out): vertically
 */
void
gst_pefm_meta_get_map_scale (const GstPefmMeta * meta, gdouble * scale_x, gdouble * scale_y)
{
  g_return_if_fail (meta != NULL && scale_x != NULL && scale_y != NULL);
  *scale_x = meta->map_scale_x;
  *scale_y = meta->map_scale_y;
}

/**
 * gst_pefm_meta_get_n_regions:
 * @meta: a #GstPefmMeta
 *
 * Returns: the number of regions
 */
guint
gst_pefm_meta_get_n_regions (const GstPefmMeta * meta)
{
  g_return_val_if_fail (meta != NULL, 0);
  return meta->n_regions;
}

/**
 * gst_pefm_meta_get_web_row:
 * @meta: a #GstPefmMeta
 *
 * Returns: continuous mode: the buffer's first row on the web; else 0
 */
guint64
gst_pefm_meta_get_web_row (const GstPefmMeta * meta)
{
  g_return_val_if_fail (meta != NULL, 0);
  return meta->web_row;
}

/**
 * gst_pefm_region_copy:
 * @region: a #GstPefmRegion
 *
 * Returns: (transfer full): a copy of @region
 */
GstPefmRegion *
gst_pefm_region_copy (const GstPefmRegion * region)
{
  return (GstPefmRegion *) g_memdup2 (region, sizeof *region);
}

/**
 * gst_pefm_region_free:
 * @region: (transfer full): a region from gst_pefm_region_copy()
 */
void
gst_pefm_region_free (GstPefmRegion * region)
{
  g_free (region);
}

G_DEFINE_BOXED_TYPE (GstPefmRegion, gst_pefm_region, gst_pefm_region_copy, gst_pefm_region_free)

/**
 * gst_pefm_meta_get_model_name:
 * @meta: a #GstPefmMeta
 *
 * Returns: (nullable): the file name of the model that judged the frame
 */
const gchar *
gst_pefm_meta_get_model_name (const GstPefmMeta * meta)
{
  g_return_val_if_fail (meta != NULL, NULL);
  return meta->model_name;
}

/**
 * gst_pefm_meta_get_model_sha256:
 * @meta: a #GstPefmMeta
 *
 * Returns: (nullable): the SHA-256 of the model file's bytes, in hexadecimal
 */
const gchar *
gst_pefm_meta_get_model_sha256 (const GstPefmMeta * meta)
{
  g_return_val_if_fail (meta != NULL, NULL);
  return meta->model_sha256;
}
