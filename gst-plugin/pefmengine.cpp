#ifdef HAVE_CONFIG_H
#include "pefm-config.h"
#endif

#include "pefmengine.h"

#include <gst/video/gstvideofilter.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <stdexcept>

#include "gstpefmvideo.h"
#include "pefm/file_util.h"
#include "pefmweb.h"

/* the element's category: the engine's logs read as pefmfilter's */
GST_DEBUG_CATEGORY_EXTERN (gst_pefm_filter_debug);
#define GST_CAT_DEFAULT gst_pefm_filter_debug

/* Why a frame is let through uninspected (GstPefmMeta.skip_reason, the message's reason). */
static const char kSkipInterval[] = "interval";
static const char kSkipLate[] = "late";

static GstClockTime
elapsed_since (std::chrono::steady_clock::time_point t0)
{
  return static_cast < GstClockTime > (std::chrono::duration_cast < std::chrono::nanoseconds >
      (std::chrono::steady_clock::now () - t0).count ());
}

PefmEngine::PefmEngine (GstBaseTransform * owner, std::function < PefmFrameSettings () > settings)
    : owner_ (owner), settings_ (std::move (settings))
{
}

PefmEngine::~PefmEngine () = default;

void
PefmEngine::forget_calibration ()
{
  std::lock_guard < std::mutex > lock (lock_);
  calibration_ = pefm::Calibration ();
}

GstFlowReturn
PefmEngine::ready () const
{
  if (!GST_VIDEO_FILTER (owner_)->negotiated) {
    GST_ELEMENT_ERROR (owner_, CORE, NEGOTIATION, (NULL), ("unknown format"));
    return GST_FLOW_NOT_NEGOTIATED;
  }
  if (!detector_) {
    GST_ELEMENT_ERROR (owner_, CORE, FAILED, ("No model loaded"), (NULL));
    return GST_FLOW_ERROR;
  }
  return GST_FLOW_OK;
}

/* The SHA-256 of the file's bytes in hexadecimal, interned; throws naming the file. */
static const char *
file_sha256 (const std::string & path)
{
  GError *err = NULL;
  GMappedFile *mapped = g_mapped_file_new (path.c_str (), FALSE, &err);
  if (!mapped) {
    const std::string why = err ? err->message : "cannot be read";
    g_clear_error (&err);
    throw std::runtime_error (path + ": " + why);
  }
  gchar *hex = g_compute_checksum_for_data (G_CHECKSUM_SHA256,
      reinterpret_cast < const guchar * >(g_mapped_file_get_contents (mapped)), g_mapped_file_get_length (mapped));
  g_mapped_file_unref (mapped);
  const char *interned = g_intern_string (hex);
  g_free (hex);
  return interned;
}

void
PefmEngine::load (const std::string & model, const pefm::DetectorOptions & options, bool continuous)
{
  forget_calibration ();        /* no stale model's, if loading fails */
  {
    std::lock_guard < std::mutex > lock (lock_);
    checker_.reset ();
  }
  /* the digest and the detector must come from the same bytes: a file replaced between
   * the two reads is refused rather than reported under the wrong digest */
  const std::string before = pefm::file_identity (model);
  const char *sha256 = before.empty ()? nullptr : file_sha256 (model);
  detector_ = pefm::FrameDetector::acquire (model, options);
  if (pefm::file_identity (model) != before) {
    detector_.reset ();
    throw std::runtime_error (model + " changed while it was being loaded: start again");
  }
  gchar *base = g_path_get_basename (model.c_str ());
  model_name_ = g_intern_string (base);
  g_free (base);
  model_sha256_ = sha256;
  stream_ = std::make_unique < pefm::StreamContext > ();
  web_.reset ();
  if (continuous)
    web_ = std::make_unique < PefmWeb > ();
  std::lock_guard < std::mutex > lock (lock_);
  checker_ = detector_;
  calibration_ = detector_->calibration ();
  stats_ = PefmStats ();
  earliest_ = GST_CLOCK_TIME_NONE;
  latency_from_warmup_ = false;
  web_latency_ = 0;
}

void
PefmEngine::unload ()
{
  web_.reset ();                /* buffers still held back are released */
  stream_.reset ();
  detector_.reset ();
  std::lock_guard < std::mutex > lock (lock_);
  checker_.reset ();
}

void
PefmEngine::cancel (bool on)
{
  if (stream_)
    stream_->cancel (on);
}

pefm::Calibration
PefmEngine::calibration () const
{
  std::lock_guard < std::mutex > lock (lock_);
  return calibration_;
}

PefmStats
PefmEngine::stats () const
{
  std::lock_guard < std::mutex > lock (lock_);
  return stats_;
}

GstClockTime
PefmEngine::latency () const
{
  std::lock_guard < std::mutex > lock (lock_);
  return stats_.latency + web_latency_;
}

std::string
PefmEngine::tiling_refused (const pefm::TileOptions & asked, int width, int height) const
{
  std::lock_guard < std::mutex > lock (lock_);
  if (!checker_)
    return "";
  const pefm::TileOptions tiles = checker_->resolve (asked);
  if (tiles.size <= 0)
    return "";
  try {
    if (width > 0)
      checker_->check (tiles, width, height);
    else if (tiles.overlap > tiles.size / 2)
      return "tile-overlap " + std::to_string (tiles.overlap) + " is more than half the tile-size " +
          std::to_string (tiles.size);
  } catch (const std::invalid_argument & e) {
    return e.what ();
  }
  return "";
}

/* Records one frame's processing time (`warmup`: the blank frame at negotiation, a first
 * estimate); when the answer of the LATENCY query changes, asks the pipeline to query
 * again. 10 % headroom, so that small variations do not redistribute latency every frame. */
void
PefmEngine::note_processing_time (GstClockTime spent, bool warmup)
{
  bool renegotiate = false;
  {
    std::lock_guard < std::mutex > lock (lock_);
    const GstClockTime with_headroom = spent + spent / 10;
    if (warmup) {
      if (stats_.processing_max == 0 && with_headroom != stats_.latency) {
        stats_.latency = with_headroom;
        latency_from_warmup_ = true;
        renegotiate = true;
      }
    } else {
      stats_.processing_max = std::max (stats_.processing_max, spent);
      if (latency_from_warmup_ || stats_.processing_max > stats_.latency) {
        stats_.latency = stats_.processing_max + stats_.processing_max / 10;
        latency_from_warmup_ = false;
        renegotiate = true;
      }
    }
  }
  if (renegotiate)
    gst_element_post_message (element (), gst_message_new_latency (GST_OBJECT (owner_)));
}

void
PefmEngine::set_format (const pefm::FrameView & negotiated, const GstVideoInfo * info)
{
  negotiated_ = negotiated;
  if (!detector_)
    return;
  /* Warm-up: one blank frame of the negotiated size, so that the first LATENCY answer is a
   * measured time (the first inference is also the slowest: allocations, kernel choice). */
  const PefmFrameSettings fs = settings_ ();
  GstBuffer *blank = gst_buffer_new_allocate (NULL, GST_VIDEO_INFO_SIZE (info), NULL);
  gst_buffer_memset (blank, 0, 0x80, GST_VIDEO_INFO_SIZE (info));
  GstVideoFrame frame;
  if (gst_video_frame_map (&frame, info, blank, GST_MAP_READ)) {
    try {
      const auto t0 = std::chrono::steady_clock::now ();
      stream_->set_cpu_threads (fs.threads);
      detector_->process (pefm_frame_view (negotiated_, &frame), pefm::Thresholds (), fs.tiles, stream_.get ());
      note_processing_time (elapsed_since (t0), true);
    } catch (const std::exception & e) {
      /* the same settings fail the first real frame, with the error named there */
      GST_DEBUG_OBJECT (owner_, "warm-up frame failed: %s", e.what ());
    }
    gst_video_frame_unmap (&frame);
  }
  gst_buffer_unref (blank);
}

void
PefmEngine::note_qos (GstClockTime timestamp, GstClockTimeDiff diff)
{
  if (!GST_CLOCK_TIME_IS_VALID (timestamp))
    return;
  std::lock_guard < std::mutex > lock (lock_);
  if (diff > 0)
    earliest_ = timestamp + 2 * diff;
  else
    earliest_ = static_cast < GstClockTime > (-diff) < timestamp ? timestamp + diff : 0;
}

void
PefmEngine::forget_qos ()
{
  std::lock_guard < std::mutex > lock (lock_);
  earliest_ = GST_CLOCK_TIME_NONE;
}

/* Why this frame is let through uninspected (kSkipInterval, kSkipLate), or NULL to inspect
 * it. */
const char *
PefmEngine::skip_reason (GstBuffer * buf, const PefmFrameSettings & fs, guint64 frame) const
{
  if (fs.interval > 1 && frame % fs.interval != 0)
    return kSkipInterval;
  if (!fs.skip_late)
    return nullptr;
  const GstClockTime rt = gst_segment_to_running_time (&owner_->segment, GST_FORMAT_TIME, GST_BUFFER_PTS (buf));
  GstClockTime earliest;
  {
    std::lock_guard < std::mutex > lock (lock_);
    earliest = earliest_;
  }
  const GstClockTime end = GST_CLOCK_TIME_IS_VALID (rt) && GST_BUFFER_DURATION_IS_VALID (buf)
      ? rt + GST_BUFFER_DURATION (buf) : rt;
  if (GST_CLOCK_TIME_IS_VALID (end) && GST_CLOCK_TIME_IS_VALID (earliest) && end <= earliest)
    return kSkipLate;
  return nullptr;
}

/* Maps @buf (for writing when @write), runs @work on the frame and records its processing
 * time; what @work throws is posted as the element's error naming @what ("frame 12"). */
GstFlowReturn
PefmEngine::run_on_frame (GstBuffer * buf, bool write, const std::string & what,
    const std::function < void (const pefm::FrameView &) > &work)
{
  GstVideoFrame frame;
  if (!gst_video_frame_map (&frame, &GST_VIDEO_FILTER (owner_)->in_info, buf,
          write ? GST_MAP_READWRITE : GST_MAP_READ)) {
    GST_ELEMENT_ERROR (owner_, STREAM, FAILED, ("Cannot map %s for %s", what.c_str (),
            write ? "drawing" : "reading"), (NULL));
    return GST_FLOW_ERROR;
  }
  const pefm::FrameView view = pefm_frame_view (negotiated_, &frame);
  const auto t0 = std::chrono::steady_clock::now ();
  GstFlowReturn ret = GST_FLOW_OK;
  try {
    work (view);
  } catch (const pefm::Cancelled &) {
    GST_DEBUG_OBJECT (owner_, "%s abandoned: stopping", what.c_str ());
    ret = GST_FLOW_FLUSHING;
  } catch (const std::invalid_argument & e) {
    /* a frame or setting pefm refuses; what() names the property (tile-size, tile-overlap)
     * or what the frame lacks */
    GST_ELEMENT_ERROR (owner_, STREAM, FAILED, ("Cannot inspect %s (%dx%d): %s", what.c_str (), view.width,
            view.height, e.what ()), (NULL));
    ret = GST_FLOW_ERROR;
  } catch (const std::exception & e) {
    GST_ELEMENT_ERROR (owner_, STREAM, FAILED, ("Anomaly detection failed on %s", what.c_str ()),
        ("%s", e.what ()));
    ret = GST_FLOW_ERROR;
  }
  gst_video_frame_unmap (&frame);
  if (ret == GST_FLOW_OK)
    note_processing_time (elapsed_since (t0), false);
  return ret;
}

/* Counts a frame out: inspected, or skipped for @skipped. */
void
PefmEngine::count (const char *skipped)
{
  std::lock_guard < std::mutex > lock (lock_);
  stats_.frames++;
  if (!skipped)
    stats_.inspected++;
  else
    (skipped == kSkipLate ? stats_.skipped_late : stats_.skipped_interval)++;
}

/* A frame's results out: its metadata, the counters, its message (uninspected frames
 * always; with message-mode=anomalous, anomalous frames and web buffers that report a
 * region, as the end of a defect can lie in a buffer that is not anomalous itself). */
void
PefmEngine::report (GstBuffer * buf, const PefmFrameReport & report, const PefmFrameSettings & fs, int height)
{
  PefmFrameReport r = report;
  r.model_name = model_name_;
  r.model_sha256 = model_sha256_;
  pefm_attach_results (buf, r, detector_->calibrated (), GST_VIDEO_INFO_WIDTH (&GST_VIDEO_FILTER (owner_)->in_info),
      height, fs.scale);
  count (r.skip_reason);
  const bool wanted = !r.result || !fs.only_anomalous || r.result->anomalous
      || (r.web && !r.result->regions.empty ());
  if (fs.emit && wanted) {
    GstStructure *s = pefm_frame_structure (r, &owner_->segment, GST_BUFFER_PTS (buf), detector_->calibration (),
        fs.scale);
    gst_element_post_message (element (), gst_message_new_element (GST_OBJECT (owner_), s));
  }
}

GstFlowReturn
PefmEngine::process (GstBuffer * buf)
{
  const PefmFrameSettings fs = settings_ ();
  PefmFrameReport r;
  r.frame = stats ().frames;
  r.thresholds = fs.thresholds;
  const int height = GST_VIDEO_INFO_HEIGHT (&GST_VIDEO_FILTER (owner_)->in_info);
  r.skip_reason = skip_reason (buf, fs, r.frame);
  if (r.skip_reason) {
    GST_LOG_OBJECT (owner_, "frame %" G_GUINT64_FORMAT " not inspected: %s", r.frame, r.skip_reason);
    report (buf, r, fs, height);
    return GST_FLOW_OK;
  }
  /* mapped read-only unless drawing: after a tee its memory is then shared, not copied */
  pefm::FrameResult result;
  const GstFlowReturn ret = run_on_frame (buf, fs.overlay != pefm::OverlayMode::kNone,
      "frame " + std::to_string (r.frame), [&](const pefm::FrameView & view) {
        stream_->set_cpu_threads (fs.threads);
        result = detector_->process (view, fs.thresholds, fs.tiles, stream_.get ());
        pefm::draw_overlay (view, result, fs.overlay, fs.alpha, result.region_level);
      });
  if (ret != GST_FLOW_OK)
    return ret;
  r.result = &result;
  report (buf, r, fs, height);
  return GST_FLOW_OK;
}

/* Continuous line-scan mode: buffers go into the web (PefmWeb) and come out, in order, once
 * every tile touching their rows has been scored; a discontinuity, a new segment, new caps,
 * EOS or different tiling ends the web first. */

void
PefmEngine::post_web (const char *reason, guint dropped, const std::vector < pefm::FrameRegion > &regions,
    const PefmWebScale & scale)
{
  GST_INFO_OBJECT (owner_, "web ended (%s) before row %" G_GUINT64_FORMAT ", %u buffers dropped, %zu regions closed",
      reason, web_->next_row (), dropped, regions.size ());
  gst_element_post_message (element (), gst_message_new_element (GST_OBJECT (owner_),
          pefm_web_structure (reason, web_->next_row (), dropped, regions, scale)));
}

/* Ends the open web (`why`): its held buffers become ready (push_ready sends them). */
GstFlowReturn
PefmEngine::end_web (const char *why, const PefmWebScale & scale)
{
  if (!web_ || !web_->open ())
    return GST_FLOW_OK;
  std::vector < pefm::FrameRegion > orphans;
  try {
    orphans = web_->finish (why, stream_.get ());
  } catch (const pefm::Cancelled &) {
    return GST_FLOW_FLUSHING;
  } catch (const std::exception & e) {
    GST_ELEMENT_ERROR (owner_, STREAM, FAILED, ("Anomaly detection failed ending the web (%s)", why),
        ("%s", e.what ()));
    return GST_FLOW_ERROR;
  }
  if (!g_str_equal (why, "eos") || !orphans.empty ())
    post_web (why, 0, orphans, scale);
  return GST_FLOW_OK;
}

GstBuffer *
PefmEngine::web_pop ()
{
  GstBuffer *buf;
  pefm::WebBuffer web;
  if (!web_ || !web_->pop (&buf, &web))
    return NULL;
  const PefmFrameSettings fs = settings_ ();
  PefmFrameReport r;
  r.frame = stats ().frames;
  r.thresholds = web.thresholds;
  r.result = &web.result;
  r.web = &web;
  buf = gst_buffer_make_writable (buf);
  if (fs.overlay != pefm::OverlayMode::kNone) {
    GstVideoFrame frame;
    if (gst_video_frame_map (&frame, &GST_VIDEO_FILTER (owner_)->in_info, buf, GST_MAP_READWRITE)) {
      try {
        pefm::draw_overlay (pefm_frame_view (negotiated_, &frame), web.result, fs.overlay, fs.alpha,
            web.result.region_level);
      } catch (const std::exception & e) {
        GST_WARNING_OBJECT (owner_, "overlay not drawn on frame %" G_GUINT64_FORMAT ": %s", r.frame, e.what ());
      }
      gst_video_frame_unmap (&frame);
    } else {
      GST_WARNING_OBJECT (owner_, "cannot map frame %" G_GUINT64_FORMAT " for drawing", r.frame);
    }
  }
  report (buf, r, fs, web.rows);
  return buf;
}

/* Sends every buffer of the web that is ready downstream (at events: EOS, new caps ...). */
void
PefmEngine::push_ready ()
{
  while (GstBuffer * buf = web_pop ())
    gst_pad_push (GST_BASE_TRANSFORM_SRC_PAD (owner_), buf);
}

/* The latency the rows held back add: as many buffers of the negotiated height as the web
 * may hold back after a buffer, at the negotiated frame rate (none when it is variable).
 * Asks the pipeline to query again when it changes. */
void
PefmEngine::update_web_latency (const pefm::TileOptions & tiles)
{
  const GstVideoInfo *info = &GST_VIDEO_FILTER (owner_)->in_info;
  GstClockTime latency = 0;
  if (tiles.size > 0 && GST_VIDEO_INFO_FPS_N (info) > 0 && GST_VIDEO_INFO_HEIGHT (info) > 0) {
    const gint64 rows = pefm::WebStream::held_rows_bound (tiles, detector_->input_size ());
    const gint64 height = GST_VIDEO_INFO_HEIGHT (info);
    latency = gst_util_uint64_scale (static_cast < guint64 > ((rows + height - 1) / height) * GST_SECOND,
        GST_VIDEO_INFO_FPS_D (info), GST_VIDEO_INFO_FPS_N (info));
  }
  bool changed;
  {
    std::lock_guard < std::mutex > lock (lock_);
    changed = latency != web_latency_;
    web_latency_ = latency;
  }
  if (changed)
    gst_element_post_message (element (), gst_message_new_latency (GST_OBJECT (owner_)));
}

GstFlowReturn
PefmEngine::web_submit (GstBuffer * buf)
{
  const PefmFrameSettings fs = settings_ ();
  const pefm::TileOptions tiles = detector_->resolve (fs.tiles);
  GstFlowReturn ret = GST_FLOW_OK;
  if (const char *why = web_->discontinuity (buf, GST_VIDEO_INFO_HEIGHT (&GST_VIDEO_FILTER (owner_)->in_info)))
    ret = end_web (why, fs.scale);
  if (ret == GST_FLOW_OK && !web_->configured_as (tiles, fs.max_region_rows)) {
    if (web_->open ())
      ret = end_web ("settings", fs.scale);
    try {
      if (ret == GST_FLOW_OK)
        web_->configure (detector_, tiles, fs.max_region_rows);
    } catch (const std::exception & e) {
      GST_ELEMENT_ERROR (owner_, RESOURCE, SETTINGS, ("continuous=true: %s", e.what ()), (NULL));
      ret = GST_FLOW_ERROR;
    }
  }
  if (ret != GST_FLOW_OK) {
    gst_buffer_unref (buf);
    return ret;
  }
  /* new caps (another height or frame rate) change it as much as another tiling does */
  update_web_latency (tiles);
  /* PefmWeb::push takes buf, even when it throws (the mapping holds its own reference);
   * when the frame cannot be mapped it is not taken */
  bool taken = false;
  ret = run_on_frame (buf, false, "the buffer at web row " + std::to_string (web_->next_row ()),
      [&](const pefm::FrameView & view) {
        stream_->set_cpu_threads (fs.threads);
        taken = true;
        web_->push (buf, view, fs.thresholds, stream_.get ());
      });
  if (!taken)
    gst_buffer_unref (buf);
  return ret;
}

void
PefmEngine::web_event (GstEvent * event)
{
  if (!web_)
    return;
  const PefmWebScale scale = settings_ ().scale;
  switch (GST_EVENT_TYPE (event)) {
    case GST_EVENT_FLUSH_STOP:{
      guint dropped = 0;
      const bool was_open = web_->open ();
      const auto closed = web_->drop ("flush", &dropped);
      if (was_open)
        post_web ("flush", dropped, closed, scale);
      break;
    }
    case GST_EVENT_EOS:
      end_web ("eos", scale);
      push_ready ();
      break;
    case GST_EVENT_SEGMENT:
    case GST_EVENT_GAP:
    case GST_EVENT_STREAM_START:
      end_web (GST_EVENT_TYPE (event) == GST_EVENT_GAP ? "gap" : GST_EVENT_TYPE (event) == GST_EVENT_SEGMENT
          ? "segment" : "stream-start", scale);
      push_ready ();
      if (GST_EVENT_TYPE (event) == GST_EVENT_SEGMENT)
        web_->forget_offsets ();
      break;
    case GST_EVENT_CAPS:{
      GstCaps *caps;
      gst_event_parse_caps (event, &caps);
      GstCaps *current = gst_pad_get_current_caps (GST_BASE_TRANSFORM_SINK_PAD (owner_));
      if (!current || !gst_caps_is_equal (caps, current)) {
        end_web ("caps", scale);
        push_ready ();
      }
      if (current)
        gst_caps_unref (current);
      break;
    }
    default:
      break;
  }
}
