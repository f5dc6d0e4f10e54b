#include "pefmweb.h"

#include <stdexcept>

PefmWeb::PefmWeb () = default;

PefmWeb::~PefmWeb ()
{
  release_all ();
}

void
PefmWeb::release_all ()
{
  for (auto &h : held_)
    gst_buffer_unref (h.second);
  held_.clear ();
  ready_.clear ();
}

void
PefmWeb::configure (std::shared_ptr < pefm::FrameDetector > detector, const pefm::TileOptions & tiles,
    gint64 max_region_rows)
{
  if (open ())
    throw std::logic_error ("the web must be ended before it is configured again");
  collect ();                   /* the old web's last results go out before the new web's */
  stream_ = std::make_unique < pefm::WebStream > (std::move (detector), tiles, max_region_rows);
  tiles_ = tiles;
  max_region_rows_ = max_region_rows;
}

bool
PefmWeb::configured_as (const pefm::TileOptions & tiles, gint64 max_region_rows) const
{
  return stream_ && tiles_.size == tiles.size && tiles_.overlap == tiles.overlap
      && max_region_rows_ == max_region_rows;
}

const char *
PefmWeb::discontinuity (GstBuffer * buf, gint rows)
{
  const char *why = nullptr;
  const guint64 offset = GST_BUFFER_OFFSET (buf), offset_end = GST_BUFFER_OFFSET_END (buf);
  if (have_offsets_ && offset != GST_BUFFER_OFFSET_NONE && last_offset_ != GST_BUFFER_OFFSET_NONE) {
    const guint64 expected = last_offset_end_ != GST_BUFFER_OFFSET_NONE ? last_offset_end_ : last_offset_ + 1;
    if (offset > expected) {
      why = "gap";
      /* offsets counting buffers (video sources: offset_end = offset + 1): the rows of the
       * buffers lost are rows of the web that went by */
      if (offset_end == offset + 1 && last_offset_end_ == last_offset_ + 1)
        next_row_ += (offset - expected) * static_cast < guint64 > (rows);
    } else if (offset < expected) {
      why = "offset";
    }
  }
  if (!why && have_offsets_ && GST_BUFFER_FLAG_IS_SET (buf, GST_BUFFER_FLAG_DISCONT))
    why = "discont";
  have_offsets_ = true;
  last_offset_ = offset;
  last_offset_end_ = offset_end;
  return open ()? why : nullptr;
}

void
PefmWeb::collect ()
{
  if (!stream_)
    return;
  for (auto &b : stream_->take_ready ())
    ready_.push_back (std::move (b));
}

void
PefmWeb::release_unready ()
{
  while (held_.size () > ready_.size ()) {
    gst_buffer_unref (held_.back ().second);
    held_.pop_back ();
  }
}

void
PefmWeb::push (GstBuffer * buf, const pefm::FrameView & view, const pefm::Thresholds & thresholds,
    pefm::StreamContext * context)
{
  collect ();
  const guint64 tag = next_tag_++;
  held_.emplace_back (tag, buf);
  try {
    stream_->push (view, static_cast < int64_t > (next_row_), tag, thresholds, context);
  } catch (...) {
    /* the web is dropped: its buffers without results go, those of earlier webs stay */
    release_unready ();
    throw;
  }
  next_row_ += static_cast < guint64 > (view.height);
}

bool
PefmWeb::pop (GstBuffer ** buf, pefm::WebBuffer * result)
{
  if (ready_.empty ())
    collect ();
  if (ready_.empty ())
    return false;
  /* ready in the order pushed: the oldest buffer held is the one */
  if (held_.empty () || held_.front ().first != ready_.front ().tag) {
    g_critical ("pefmfilter continuous mode: results for buffer %" G_GUINT64_FORMAT " do not match the buffer held",
        ready_.front ().tag);
    release_all ();
    return false;
  }
  *buf = held_.front ().second;
  *result = std::move (ready_.front ());
  held_.pop_front ();
  ready_.pop_front ();
  return true;
}

std::vector < pefm::FrameRegion > PefmWeb::finish (const std::string & why, pefm::StreamContext * context)
{
  if (!stream_)
    return {};
  try {
    auto orphans = stream_->finish (why, context);
    collect ();
    return orphans;
  } catch (...) {
    collect ();
    release_unready ();
    throw;
  }
}

std::vector < pefm::FrameRegion > PefmWeb::drop (const std::string & why, guint * dropped)
{
  *dropped = static_cast < guint > (held_.size ());
  std::vector < pefm::FrameRegion > closed;
  if (stream_)
    closed = stream_->drop (why);
  release_all ();
  forget_offsets ();
  return closed;
}
