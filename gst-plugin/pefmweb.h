/* pefmfilter's continuous line-scan mode: the buffers of a web held until every tile
 * touching their rows has been scored (pefm::WebStream), the web's row count, and the
 * discontinuities that end a web. No GObject: the element drives it. */
#ifndef __PEFM_WEB_H__
#define __PEFM_WEB_H__

#include <gst/gst.h>

#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "pefm/web_stream.h"

class PefmWeb
{
public:
  /* Rows count from 0 at construction (the element's start). */
  PefmWeb ();
  ~PefmWeb ();
  PefmWeb (const PefmWeb &) = delete;
  PefmWeb & operator= (const PefmWeb &) = delete;

  /* Scores later buffers with @detector, @tiles (size > 0) and @max_region_rows; call with
   * no web open (end it first: a different tiling is a discontinuity). Throws
   * std::invalid_argument naming the property. */
  void configure (std::shared_ptr < pefm::FrameDetector > detector, const pefm::TileOptions & tiles,
      gint64 max_region_rows);
  bool configured_as (const pefm::TileOptions & tiles, gint64 max_region_rows) const;

  /* Why @buf (@rows rows) does not continue the open web, or NULL when it does (or no web
   * is open): "discont" (flagged DISCONT), "gap" (buffer offsets skipped; with offsets
   * counting buffers, the lost buffers' rows are added to the web's row count), "offset"
   * (offsets went back). Call once per buffer, before push. */
  const char *discontinuity (GstBuffer * buf, gint rows);

  /* Takes @buf and scores its rows (@view: @buf mapped by the caller). On an exception
   * (what pefm::WebStream::push throws) the web and every buffer held are dropped. */
  void push (GstBuffer * buf, const pefm::FrameView & view, const pefm::Thresholds & thresholds,
      pefm::StreamContext * context);

  /* The oldest buffer whose results are ready, and its results (the caller owns the
   * buffer); false when none is. */
  bool pop (GstBuffer ** buf, pefm::WebBuffer * result);

  /* Ends the open web (see pefm::WebStream::finish): every held buffer becomes ready.
   * Returns the open regions no buffer could take. */
  std::vector < pefm::FrameRegion > finish (const std::string & why, pefm::StreamContext * context);

  /* Forgets the web (a flush): the held buffers are released, their number in @dropped;
   * returns the regions that were open. */
  std::vector < pefm::FrameRegion > drop (const std::string & why, guint * dropped);

  /* After a flush or a new segment offsets start again: the next buffer is not compared. */
  void forget_offsets () { have_offsets_ = false; }

  bool open () const { return stream_ && stream_->next_row () >= 0; }
  size_t held () const { return held_.size (); }
  /* The web row the next buffer starts at. */
  guint64 next_row () const { return next_row_; }
  gint64 held_rows_bound () const { return stream_ ? stream_->held_rows_bound () : 0; }

private:
  void release_all ();
  /* Moves the stream's ready results here, before anything can replace or drop them. */
  void collect ();
  /* Releases the held buffers that have no results (after an error dropped the web). */
  void release_unready ();

  std::unique_ptr < pefm::WebStream > stream_;
  pefm::TileOptions tiles_;
  gint64 max_region_rows_ = 0;
  std::deque < std::pair < guint64, GstBuffer * >>held_;       /* tag, buffer: pushed, not popped */
  std::deque < pefm::WebBuffer > ready_;
  guint64 next_tag_ = 0;
  guint64 next_row_ = 0;
  bool have_offsets_ = false;
  guint64 last_offset_ = GST_BUFFER_OFFSET_NONE, last_offset_end_ = GST_BUFFER_OFFSET_NONE;
};

#endif /* __PEFM_WEB_H__ */
