/* GstPefmMeta: anomaly-detection results attached to video buffers by pefmfilter.
 *
 * Link with pkg-config's gstpefmmeta-1.0 (libgstpefmmeta-1.0) to read it:
 *
 *   GstPefmMeta *meta = gst_buffer_get_pefm_meta (buffer);
 *   if (meta && meta->anomalous)
 *     g_print ("score %.3f, %u regions\n", meta->score, meta->n_regions);
 *
 * Every anomalous region is also attached as a standard GstVideoRegionOfInterestMeta of
 * type "anomaly" with a "pefm" parameter structure (score, area), for applications that
 * do not use this header; every inspected frame also gets one of type "frame" covering
 * it, with the frame's decision as a "classification" structure.
 */
#ifndef __GST_PEFM_META_H__
#define __GST_PEFM_META_H__

#include <gst/gst.h>
#include <gst/video/video.h>

G_BEGIN_DECLS

#define GST_PEFM_META_API_TYPE (gst_pefm_meta_api_get_type ())
#define GST_PEFM_META_INFO (gst_pefm_meta_get_info ())

typedef struct _GstPefmRegion GstPefmRegion;
typedef struct _GstPefmMeta GstPefmMeta;

/**
 * GstPefmRegion:
 * @x: left edge of the bounding box, in frame pixels
 * @y: top edge of the bounding box, in frame pixels
 * @width: box width in frame pixels
 * @height: box height in frame pixels
 * @area: frame pixels covered by the region (not the box)
 * @peak: highest normalised score inside the region
 * @web_y: continuous line-scan mode (pefmfilter continuous=true) only, else 0 with
 *   @web_height 0: the region's first row on the web, counted from the stream's first row
 *   (a 64-bit count that survives caps changes; rows lost at a gap in buffer offsets are
 *   counted). A region is then reported once, with the buffer where it ends: @y and
 *   @height are the rows of it inside this buffer, @x and @width its columns, @area and
 *   @peak those of the whole region.
 * @web_height: rows of the web the region spans (0: not continuous mode)
 * @web_x: its first column on the web
 * @web_width: columns it spans
 * @web_y_mm: @web_y in millimetres (pefmfilter lines-per-mm, else pixels-per-mm); NaN
 *   when pixels-per-mm is not set
 * @web_x_mm: @web_x in millimetres (pixels-per-mm); NaN when not set
 * @height_mm: @web_height in millimetres; NaN when not set
 * @width_mm: @web_width in millimetres; NaN when not set
 * @closed_by: why it was reported: "ended"; "max-rows" (open longer than pefmfilter
 *   max-region-rows: the part so far); a discontinuity ended the web: "gap" (buffer offsets
 *   skipped, or a GAP event), "discont" (a DISCONT buffer), "offset" (offsets went back),
 *   "segment", "stream-start", "caps", "settings" (another tiling); "eos"; "flush" (in the
 *   pefm-web message only). An interned string; NULL outside continuous mode
 *
 * The web fields are in the camera's pixels: scaling the buffer (videoscale) rescales @x,
 * @y, @width, @height and @area only.
 */
struct _GstPefmRegion {
  gint x, y, width, height;
  guint64 area;
  gfloat peak;
  guint64 web_y, web_height;
  gint web_x, web_width;
  gdouble web_y_mm, web_x_mm, height_mm, width_mm;
  const gchar *closed_by;
};

/**
 * GstPefmMeta:
 * @meta: parent #GstMeta
 * @raw_score: the model's raw image score (max of the residual map)
 * @score: normalised image score in 0..1; 0.5 is the model's calibrated threshold
 * @threshold: image decision threshold on the normalised scale in force for this frame
 * @anomalous: @score >= @threshold
 * @calibrated: whether the model carried calibration (else @score is raw)
 * @map_width: heat map width
 * @map_height: heat map height
 * @map: normalised heat map, @map_width x @map_height floats, row-major; read-only:
 *   shared by every copy of the buffer (it lives in @map_bytes); replace it with
 *   gst_pefm_meta_set_map()
 * @map_scale_x: frame pixels per map pixel, horizontally
 * @map_scale_y: frame pixels per map pixel, vertically
 * @n_regions: number of anomalous regions (cut at the region threshold, not @threshold:
 *   a normal frame can hold regions and an anomalous one none)
 * @regions: the regions, highest peak first
 * @inspected: whether the detector ran on this frame; FALSE for a frame let through
 *   uninspected (pefmfilter skip-late or inference-interval): then only @skip_reason,
 *   @threshold and @calibrated are set, the scores are 0 and there is no map
 * @skip_reason: why the frame was not inspected ("late", "interval"), else NULL; a static
 *   string
 * @map_bytes: owns @map, shared by reference between copies of the buffer
 * @region_threshold: the region threshold in force for this frame (pefmfilter
 *   region-threshold; 0.5 = the model's calibrated one)
 * @region_level: the value of @map the regions were cut at (the region threshold on the
 *   map's scale): the regions are the areas of the map at or above it
 * @continuous: whether the buffer was inspected as part of a continuous web (pefmfilter
 *   continuous=true): its map is then the map of the web's rows it holds, and @regions are
 *   the web regions that ended in it
 * @web_row: continuous mode: the buffer's first row on the web (see #GstPefmRegion)
 *
 * Frame pixel (x, y) corresponds to map position (x / map_scale_x, y / map_scale_y).
 * Scaling the buffer (videoscale) rescales the boxes and the map scale; the map itself
 * is unchanged.
 */
struct _GstPefmMeta {
  /* Read in C as fields; bindings read them through the accessors below (copies), so that
   * no binding can write a count or a pointer and read past an array. */
  /*< private >*/
  GstMeta meta;

  gfloat raw_score;
  gfloat score;
  gfloat threshold;
  gboolean anomalous;
  gboolean calibrated;

  guint map_width, map_height;
  gfloat *map;
  gdouble map_scale_x, map_scale_y;

  guint n_regions;
  GstPefmRegion *regions;

  gboolean inspected;
  const gchar *skip_reason;
  GBytes *map_bytes;
  gfloat region_threshold;
  gfloat region_level;
  gboolean continuous;
  guint64 web_row;
  /* the model that judged the frame: its file name and the SHA-256 of its bytes (interned
   * strings; NULL on a meta pefmfilter did not write) */
  const gchar *model_name;
  const gchar *model_sha256;
};

GType gst_pefm_meta_api_get_type (void);
const GstMetaInfo *gst_pefm_meta_get_info (void);

GstPefmMeta *gst_buffer_add_pefm_meta (GstBuffer * buffer);
#define gst_buffer_get_pefm_meta(b) \
  ((GstPefmMeta *) gst_buffer_get_meta ((b), GST_PEFM_META_API_TYPE))

/* Copies @map (width x height floats) into the meta, replacing any previous map. */
void gst_pefm_meta_set_map (GstPefmMeta * meta, guint width, guint height,
    const gfloat * map, gdouble scale_x, gdouble scale_y);
/* Shares @bytes (width x height floats; a reference is taken) as the meta's map. Copies
 * of a buffer share its map this way: a tee or a writable copy does not duplicate it. */
void gst_pefm_meta_share_map (GstPefmMeta * meta, guint width, guint height,
    GBytes * bytes, gdouble scale_x, gdouble scale_y);
/* Copies @n regions into the meta, replacing any previous ones. */
void gst_pefm_meta_set_regions (GstPefmMeta * meta, guint n,
    const GstPefmRegion * regions);
/* Heat-map value at frame pixel (x, y), nearest map pixel; 0 outside the map. */
gfloat gst_pefm_meta_score_at (const GstPefmMeta * meta, gdouble x, gdouble y);

/* For bindings (GObject introspection: the GstPefm-1.0 typelib, e.g. Python's
 * `from gi.repository import GstPefm`), which cannot expand the macro above or read the
 * raw arrays. */
GstPefmMeta *gst_pefm_buffer_get_meta (GstBuffer * buffer);
GBytes *gst_pefm_meta_get_map_bytes (const GstPefmMeta * meta);
GstPefmRegion *gst_pefm_meta_get_region (const GstPefmMeta * meta, guint index);
gfloat *gst_pefm_meta_get_map (const GstPefmMeta * meta, guint * n_values);
GList *gst_pefm_meta_get_regions (const GstPefmMeta * meta);
gfloat gst_pefm_meta_get_score (const GstPefmMeta * meta);
gfloat gst_pefm_meta_get_raw_score (const GstPefmMeta * meta);
gfloat gst_pefm_meta_get_threshold (const GstPefmMeta * meta);
gfloat gst_pefm_meta_get_region_threshold (const GstPefmMeta * meta);
gfloat gst_pefm_meta_get_region_level (const GstPefmMeta * meta);
gboolean gst_pefm_meta_is_anomalous (const GstPefmMeta * meta);
gboolean gst_pefm_meta_is_calibrated (const GstPefmMeta * meta);
gboolean gst_pefm_meta_is_inspected (const GstPefmMeta * meta);
gboolean gst_pefm_meta_is_continuous (const GstPefmMeta * meta);
const gchar *gst_pefm_meta_get_skip_reason (const GstPefmMeta * meta);
void gst_pefm_meta_get_map_size (const GstPefmMeta * meta, guint * width, guint * height);
void gst_pefm_meta_get_map_scale (const GstPefmMeta * meta, gdouble * scale_x, gdouble * scale_y);
guint gst_pefm_meta_get_n_regions (const GstPefmMeta * meta);
guint64 gst_pefm_meta_get_web_row (const GstPefmMeta * meta);
const gchar *gst_pefm_meta_get_model_name (const GstPefmMeta * meta);
const gchar *gst_pefm_meta_get_model_sha256 (const GstPefmMeta * meta);

#define GST_PEFM_TYPE_REGION (gst_pefm_region_get_type ())
GType gst_pefm_region_get_type (void);
GstPefmRegion *gst_pefm_region_copy (const GstPefmRegion * region);
void gst_pefm_region_free (GstPefmRegion * region);

G_END_DECLS

#endif /* __GST_PEFM_META_H__ */
