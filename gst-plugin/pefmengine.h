/* pefmfilter's engine: the loaded detector and this element's stream, the per-frame path
 * (skip, inspect, draw, report) and the continuous web path, the counters of the `stats`
 * property, QoS and the latency it measures. The element (gstpefmfilter.cpp) is a shell
 * of properties, caps and state changes over it; results go out through pefmresults.h.
 * No LibTorch. */
#ifndef __PEFM_ENGINE_H__
#define __PEFM_ENGINE_H__

#include <gst/base/gstbasetransform.h>
#include <gst/video/video.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "pefm/frame_detector.h"
#include "pefm/overlay.h"
#include "pefmresults.h"

class PefmWeb;

/* The settings one frame is processed with, read under the element's object lock. */
struct PefmFrameSettings
{
  pefm::Thresholds thresholds;
  pefm::OverlayMode overlay = pefm::OverlayMode::kNone;
  double alpha = 0.5;
  pefm::TileOptions tiles;
  int threads = 0;
  bool emit = false, only_anomalous = false, skip_late = false;
  guint interval = 1;
  PefmWebScale scale;
  gint max_region_rows = 1;
};

class PefmEngine
{
public:
  /* @owner: the element errors and messages are posted on and buffers pushed from;
   * @settings: reads its current settings (takes the object lock: never called with the
   * engine's lock held). */
  PefmEngine (GstBaseTransform * owner, std::function < PefmFrameSettings () > settings);
  ~PefmEngine ();
  PefmEngine (const PefmEngine &) = delete;
  PefmEngine & operator= (const PefmEngine &) = delete;

  /* Loads @model (pefm::FrameDetector::acquire; throws what it throws, and when the file
   * changes while it is read) with its identity for the results (file name, SHA-256) and
   * resets the counters; @continuous: buffers go into a web (continuous=true). */
  void load (const std::string & model, const pefm::DetectorOptions & options, bool continuous);
  /* Releases the detector, the stream and any buffer the web holds. */
  void unload ();
  bool continuous () const { return web_ != nullptr; }
  /* From any thread: abandons a frame in progress between tile batches (state changes). */
  void cancel (bool on);

  /* GST_FLOW_OK when caps are negotiated and a model is loaded; else the error, posted. */
  GstFlowReturn ready () const;
  /* Where the loaded model runs ("cpu", "cuda:0"). */
  std::string device () const { return detector_ ? detector_->device () : ""; }

  /* How the loaded model decides (an uncalibrated record when none is loaded, or after
   * forget_calibration, which a start that fails before loading calls first). */
  pefm::Calibration calibration () const;
  void forget_calibration ();
  PefmStats stats () const;
  /* What the LATENCY query adds: the longest processing time and the rows a web holds. */
  GstClockTime latency () const;
  /* Why @tiles cannot be used on a @width x @height frame (0: not negotiated), empty when
   * they can or no model is loaded (start and the first frame check them then). */
  std::string tiling_refused (const pefm::TileOptions & tiles, int width, int height) const;

  /* Negotiation: the format frames arrive in; a blank frame of @info timed as the first
   * latency estimate. */
  void set_format (const pefm::FrameView & negotiated, const GstVideoInfo * info);

  /* QoS from downstream: frames ending before timestamp + diff are late (skip-late); a
   * flush or a new segment forgets it. */
  void note_qos (GstClockTime timestamp, GstClockTimeDiff diff);
  void forget_qos ();

  /* One frame, not continuous: inspected (or let through uninspected, as asked), drawn,
   * its results attached and posted. Errors are posted here. */
  GstFlowReturn process (GstBuffer * buf);

  /* Continuous mode. web_submit takes @buf into the web; web_pop gives the oldest buffer
   * whose results are ready, drawn and with its results (NULL when none is); web_event ends
   * or drops the web at the events that break it, before the event goes on. */
  GstFlowReturn web_submit (GstBuffer * buf);
  GstBuffer *web_pop ();
  void web_event (GstEvent * event);

private:
  GstElement * element () const { return GST_ELEMENT (owner_); }
  void note_processing_time (GstClockTime spent, bool warmup);
  const char *skip_reason (GstBuffer * buf, const PefmFrameSettings & fs, guint64 frame) const;
  GstFlowReturn run_on_frame (GstBuffer * buf, bool write, const std::string & what,
      const std::function < void (const pefm::FrameView &) > &work);
  void count (const char *skipped);
  void report (GstBuffer * buf, const PefmFrameReport & report, const PefmFrameSettings & fs, int height);
  GstFlowReturn end_web (const char *why, const PefmWebScale & scale);
  void post_web (const char *reason, guint dropped, const std::vector < pefm::FrameRegion > &regions,
      const PefmWebScale & scale);
  void push_ready ();
  void update_web_latency (const pefm::TileOptions & tiles);

  GstBaseTransform *owner_;
  std::function < PefmFrameSettings () > settings_;
  /* set by load/unload (state changes), read by the streaming thread between them; the
   * copy in `checker_` is what property changes check tilings against, under `lock_` */
  std::shared_ptr < pefm::FrameDetector > detector_;
  std::unique_ptr < pefm::StreamContext > stream_;
  std::unique_ptr < PefmWeb > web_;
  /* the loaded model's file name and SHA-256, interned (set by load) */
  const char *model_name_ = nullptr;
  const char *model_sha256_ = nullptr;
  /* format and colour matrix of the negotiated caps; each frame adds its planes */
  pefm::FrameView negotiated_;

  /* under lock_: what other threads read (properties, queries, QoS events) */
  mutable std::mutex lock_;
  std::shared_ptr < const pefm::FrameDetector > checker_;
  pefm::Calibration calibration_;
  PefmStats stats_;
  GstClockTime earliest_ = GST_CLOCK_TIME_NONE;
  /* whether the latency answer still comes from the warm-up frame (the first inference,
   * slowed by allocations: replaced, up or down, by the first real frame) */
  bool latency_from_warmup_ = false;
  GstClockTime web_latency_ = 0;
};

#endif /* __PEFM_ENGINE_H__ */
