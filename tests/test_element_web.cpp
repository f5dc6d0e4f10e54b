// pefmfilter continuous=true (line-scan webs) in real pipelines: buffers of one strip in
// through appsrc, out through appsink, with their metadata and messages; under a GstHarness
// where events go between the buffers (flush, segment, caps) or the LATENCY query is asked.
#include <gst/app/gstappsink.h>
#include <gst/check/gstharness.h>
#include <gst/gst.h>
#include <gst/video/video.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "common.h"
#include "gstpefmmeta.h"
#include "pefm/frame_detector.h"
#include "pefm/model_file.h"
#include "pefm/web_stream.h"

namespace {

using pefm_test::paste_patch;

constexpr int kWidth = 112, kRows = 64;  // buffers of 64 rows, 64 px tiles at columns 0 and 48: one map pixel per pixel
const char kTiling[] = "tile-size=64 tile-overlap=16";

// A tiny model trained and calibrated on 64 x 64 web textures, the tiles it will see.
const std::string& web_model() {
  static pefm_test::TempDir dir;
  static const std::string path = [] {
    auto model = pefm_test::trained_texture_model(64, 64, true);
    pefm_test::calibrate_on_textures(model, 64, 64, true);
    const auto p = dir.file("web.pt");
    pefm::save_model(*model, p);
    return p;
  }();
  return path;
}

struct Box {
  guint64 y, height;
  gint x, width;
  bool operator==(const Box& o) const { return std::tie(y, height, x, width) == std::tie(o.y, o.height, o.x, o.width); }
};
std::ostream& operator<<(std::ostream& os, const Box& b) {
  return os << "rows " << b.y << "+" << b.height << " cols " << b.x << "+" << b.width;
}

// Every region of every buffer, with the buffer it came with.
std::vector<std::pair<size_t, GstPefmRegion>> regions_of(const std::vector<GstBuffer*>& buffers) {
  std::vector<std::pair<size_t, GstPefmRegion>> out;
  for (size_t i = 0; i < buffers.size(); ++i) {
    const GstPefmMeta* m = gst_buffer_get_pefm_meta(buffers[i]);
    for (guint r = 0; m && r < m->n_regions; ++r) out.emplace_back(i, m->regions[r]);
  }
  return out;
}

// What came out of one run.
struct Run {
  std::vector<GstBuffer*> buffers;
  std::vector<GstStructure*> frame_messages, web_messages;
  std::string error;
  bool eos = false;
  ~Run() {
    for (auto* b : buffers) gst_buffer_unref(b);
    for (auto* s : frame_messages) gst_structure_free(s);
    for (auto* s : web_messages) gst_structure_free(s);
  }
  std::vector<std::pair<size_t, GstPefmRegion>> regions() const { return regions_of(buffers); }
};

// One buffer of the strip: rows [index * kRows, + kRows), with offsets counting buffers.
struct Piece {
  int index;
  guint64 offset;
  bool discont = false;
};

// Rows [row, row + rows) of the strip as the `offset`-th buffer of the stream (offsets count
// buffers, at 10 per second).
GstBuffer* strip_buffer(const torch::Tensor& strip, int64_t row, int64_t rows, guint64 offset) {
  const auto t = strip.slice(0, row, row + rows).contiguous();
  GstBuffer* b = gst_buffer_new_memdup(t.data_ptr<uint8_t>(), static_cast<gsize>(t.numel()));
  GST_BUFFER_PTS(b) = offset * GST_SECOND / 10;
  GST_BUFFER_DURATION(b) = GST_SECOND / 10;
  GST_BUFFER_OFFSET(b) = offset;
  GST_BUFFER_OFFSET_END(b) = offset + 1;
  return b;
}

std::string web_caps(int rows) {
  return "video/x-raw,format=RGB,width=" + std::to_string(kWidth) + ",height=" + std::to_string(rows) +
         ",framerate=10/1";
}

// Sets tile-overlap=0 on pefmfilter when its `at`-th buffer arrives (in the streaming
// thread, before the element sees it): a change of tiling at a known buffer.
struct OverlapChange {
  GstElement* filter;
  int at, seen = 0;
};
GstPadProbeReturn change_overlap(GstPad*, GstPadProbeInfo*, gpointer data) {
  auto* c = static_cast<OverlapChange*>(data);
  if (c->seen++ == c->at) g_object_set(c->filter, "tile-overlap", 0, nullptr);
  return GST_PAD_PROBE_OK;
}

// The strip through `appsrc ! pefmfilter continuous=true ... ! appsink`, buffer by buffer;
// with `change_at` >= 0, the tiling changes at that buffer.
std::unique_ptr<Run> run(const torch::Tensor& strip, const std::vector<Piece>& pieces, const std::string& props,
                         int change_at = -1) {
  auto r = std::make_unique<Run>();
  const std::string launch = "appsrc name=src format=time caps=" + web_caps(kRows) +
                             " ! pefmfilter device=cpu overlay=none emit-messages=true " + props +
                             " model=\"" + web_model() + "\" name=filter ! appsink name=sink sync=false wait-on-eos=false";
  GstElement* pipeline = gst_parse_launch(launch.c_str(), nullptr);
  EXPECT_NE(pipeline, nullptr) << launch;
  if (!pipeline) return r;
  GstElement* filter = gst_bin_get_by_name(GST_BIN(pipeline), "filter");
  OverlapChange change{filter, change_at};
  if (change_at >= 0) {
    GstPad* pad = gst_element_get_static_pad(filter, "sink");
    gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER, change_overlap, &change, nullptr);
    gst_object_unref(pad);
  }
  gst_element_set_state(pipeline, GST_STATE_PLAYING);
  GstElement* src = gst_bin_get_by_name(GST_BIN(pipeline), "src");
  GstElement* sink = gst_bin_get_by_name(GST_BIN(pipeline), "sink");
  for (const auto& p : pieces) {
    GstBuffer* b = strip_buffer(strip, p.index * kRows, kRows, p.offset);
    if (p.discont) GST_BUFFER_FLAG_SET(b, GST_BUFFER_FLAG_DISCONT);
    GstFlowReturn ret = GST_FLOW_OK;
    g_signal_emit_by_name(src, "push-buffer", b, &ret);
    gst_buffer_unref(b);
  }
  GstFlowReturn ret = GST_FLOW_OK;
  g_signal_emit_by_name(src, "end-of-stream", &ret);
  GstBus* bus = gst_element_get_bus(pipeline);
  while (GstMessage* msg = gst_bus_timed_pop_filtered(
             bus, pefm_test::kTimeoutScale * 20 * GST_SECOND,
             static_cast<GstMessageType>(GST_MESSAGE_ELEMENT | GST_MESSAGE_EOS | GST_MESSAGE_ERROR))) {
    const GstStructure* s = gst_message_get_structure(msg);
    if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ERROR) {
      GError* err = nullptr;
      gst_message_parse_error(msg, &err, nullptr);
      r->error = err->message;
      g_error_free(err);
    } else if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_EOS) {
      r->eos = true;
    } else if (gst_structure_has_name(s, "pefm")) {
      r->frame_messages.push_back(gst_structure_copy(s));
    } else if (gst_structure_has_name(s, "pefm-web")) {
      r->web_messages.push_back(gst_structure_copy(s));
    }
    const bool done = GST_MESSAGE_TYPE(msg) != GST_MESSAGE_ELEMENT;
    gst_message_unref(msg);
    if (done) break;
  }
  while (GstSample* sample = gst_app_sink_try_pull_sample(GST_APP_SINK(sink), 0)) {
    r->buffers.push_back(gst_buffer_ref(gst_sample_get_buffer(sample)));
    gst_sample_unref(sample);
  }
  gst_object_unref(bus);
  gst_object_unref(src);
  gst_object_unref(sink);
  gst_element_set_state(pipeline, GST_STATE_NULL);
  gst_object_unref(filter);
  gst_object_unref(pipeline);
  return r;
}

std::vector<Piece> consecutive(int n) {
  std::vector<Piece> out;
  for (int i = 0; i < n; ++i) out.push_back({i, static_cast<guint64>(i)});
  return out;
}

// The regions of the whole strip inspected as one frame with the same tiling, as web boxes.
std::vector<Box> whole_strip_regions(const torch::Tensor& strip) {
  const auto det = pefm::FrameDetector::acquire(web_model(), {"cpu"});
  const auto img = strip.contiguous();
  std::vector<Box> out;
  for (const auto& g : det->process(pefm_test::rgb_view(img), {}, {64, 16}).regions) {
    out.push_back({static_cast<guint64>(g.y), static_cast<guint64>(g.height), g.x, g.width});
  }
  return out;
}

Box web_box(const GstPefmRegion& g) { return {g.web_y, g.web_height, g.web_x, g.web_width}; }

// pefmfilter continuous=true with the tiling above (and `props`) under a GstHarness, for
// streams with events between their buffers: everything runs in the test's thread, so what
// came out after each push or event is known. Buffers out are collected in order, the
// element's messages read from a bus of our own.
struct WebHarness {
  GstHarness* h = nullptr;
  GstBus* bus = nullptr;
  std::vector<GstBuffer*> out;
  std::vector<GstStructure*> frame_messages, web_messages;

  explicit WebHarness(const std::string& props) {
    const std::string launch = "pefmfilter device=cpu overlay=none emit-messages=true continuous=true " +
                               std::string(kTiling) + " " + props + " model=\"" + web_model() + "\"";
    h = gst_harness_new_parse(launch.c_str());
    bus = gst_bus_new();
    gst_element_set_bus(h->element, bus);
    gst_harness_set_src_caps_str(h, web_caps(kRows).c_str());
  }
  ~WebHarness() {
    for (auto* b : out) gst_buffer_unref(b);
    for (auto* s : frame_messages) gst_structure_free(s);
    for (auto* s : web_messages) gst_structure_free(s);
    gst_element_set_bus(h->element, nullptr);
    gst_object_unref(bus);
    gst_harness_teardown(h);
  }
  WebHarness(const WebHarness&) = delete;
  WebHarness& operator=(const WebHarness&) = delete;

  GstFlowReturn push(const torch::Tensor& strip, int64_t row, int64_t rows, guint64 offset) {
    return gst_harness_push(h, strip_buffer(strip, row, rows, offset));
  }
  gboolean push_event(GstEvent* event) { return gst_harness_push_event(h, event); }
  // Takes the buffers that came out since the last call; returns how many came out in all.
  size_t collect() {
    while (GstBuffer* b = gst_harness_try_pull(h)) out.push_back(b);
    return out.size();
  }
  // Takes the messages posted since the last call.
  void take_messages() {
    while (GstMessage* msg = gst_bus_pop_filtered(bus, GST_MESSAGE_ELEMENT)) {
      const GstStructure* s = gst_message_get_structure(msg);
      if (gst_structure_has_name(s, "pefm")) frame_messages.push_back(gst_structure_copy(s));
      else if (gst_structure_has_name(s, "pefm-web")) web_messages.push_back(gst_structure_copy(s));
      gst_message_unref(msg);
    }
  }
  const GstPefmMeta* meta(size_t i) const { return gst_buffer_get_pefm_meta(out[i]); }
};

guint64 uint64_field(const GstStructure* s, const char* name) {
  guint64 v = G_MAXUINT64;
  EXPECT_TRUE(gst_structure_get_uint64(s, name, &v)) << name;
  return v;
}

// The "region" structures of a message's "boxes".
std::vector<const GstStructure*> boxes_of(const GstStructure* s) {
  std::vector<const GstStructure*> out;
  const GValue* boxes = gst_structure_get_value(s, "boxes");
  EXPECT_NE(boxes, nullptr);
  for (guint i = 0; boxes && i < gst_value_array_get_size(boxes); ++i) {
    out.push_back(gst_value_get_structure(gst_value_array_get_value(boxes, i)));
  }
  return out;
}

// A 20-px defect across the boundary of buffers 0 and 1: one region, reported once, with
// buffer 1, with the extent the whole strip gives it, in pixels and millimetres; in the
// messages too. Every buffer comes out, in order. Without continuous mode the same buffers
// give two halves.
TEST(ElementWeb, ADefectStraddlingTwoBuffersIsReportedOnceWithItsWebExtent) {
  const auto strip = paste_patch(pefm_test::web_texture(4 * kRows, kWidth, 31), 54, 30, 20);
  const auto expected = whole_strip_regions(strip);
  ASSERT_EQ(expected.size(), 1u) << "the whole strip holds one region";
  const auto r = run(strip, consecutive(4), std::string(kTiling) + " continuous=true pixels-per-mm=8 lines-per-mm=4");
  ASSERT_TRUE(r->eos) << r->error;
  ASSERT_EQ(r->buffers.size(), 4u) << "every buffer leaves";
  for (size_t i = 0; i < r->buffers.size(); ++i) {
    EXPECT_EQ(GST_BUFFER_PTS(r->buffers[i]), i * GST_SECOND / 10) << "in order";
    const GstPefmMeta* m = gst_buffer_get_pefm_meta(r->buffers[i]);
    ASSERT_NE(m, nullptr);
    EXPECT_TRUE(m->continuous);
    EXPECT_EQ(m->web_row, i * kRows);
    EXPECT_EQ(m->map_height, static_cast<guint>(kRows)) << "the map of its own rows";
  }
  const auto found = r->regions();
  ASSERT_EQ(found.size(), 1u) << "reported once";
  const auto& [buffer, g] = found[0];
  EXPECT_EQ(buffer, 1u) << "with the buffer where it ends";
  EXPECT_EQ(web_box(g), expected[0]);
  EXPECT_STREQ(g.closed_by, "ended");
  EXPECT_EQ(g.y, 0) << "its part inside buffer 1 starts at the buffer's top";
  EXPECT_EQ(g.y + g.height, static_cast<gint>(g.web_y + g.web_height) - kRows);
  EXPECT_DOUBLE_EQ(g.web_y_mm, g.web_y / 4.0);
  EXPECT_DOUBLE_EQ(g.web_x_mm, g.web_x / 8.0);
  EXPECT_DOUBLE_EQ(g.height_mm, g.web_height / 4.0);
  EXPECT_DOUBLE_EQ(g.width_mm, g.web_width / 8.0);
  // The messages: one per buffer, the region in buffer 1's, with its web fields.
  ASSERT_EQ(r->frame_messages.size(), 4u);
  const GValue* boxes = gst_structure_get_value(r->frame_messages[1], "boxes");
  ASSERT_EQ(gst_value_array_get_size(boxes), 1u);
  const GstStructure* box = gst_value_get_structure(gst_value_array_get_value(boxes, 0));
  guint64 web_y = 0, web_row = 0;
  double height_mm = 0;
  EXPECT_TRUE(gst_structure_get_uint64(box, "web_y", &web_y));
  EXPECT_EQ(web_y, g.web_y);
  EXPECT_TRUE(gst_structure_get_double(box, "height_mm", &height_mm));
  EXPECT_DOUBLE_EQ(height_mm, g.height_mm);
  EXPECT_STREQ(gst_structure_get_string(box, "closed_by"), "ended");
  EXPECT_TRUE(gst_structure_get_uint64(r->frame_messages[1], "web-row", &web_row));
  EXPECT_EQ(web_row, static_cast<guint64>(kRows));
  EXPECT_TRUE(r->web_messages.empty()) << "no discontinuity";
  // Buffer by buffer: cut in pieces, no web extent.
  const auto apart = run(strip, consecutive(4), kTiling);
  ASSERT_TRUE(apart->eos) << apart->error;
  EXPECT_GE(apart->regions().size(), 2u);
  for (const auto& [i, h] : apart->regions()) EXPECT_EQ(h.web_height, 0u);
}

// The line-scan promise, end to end: a clean web reports no region and no anomalous
// buffer; the same web with one spot across a buffer boundary reports exactly one region.
TEST(ElementWeb, ACleanWebReportsNothingAndOneSpotExactlyOneRegion) {
  for (uint64_t seed : {31u, 47u, 59u}) {
    SCOPED_TRACE("web texture " + std::to_string(seed));
    const auto clean = pefm_test::web_texture(4 * kRows, kWidth, seed);
    const auto r = run(clean, consecutive(4), std::string(kTiling) + " continuous=true");
    ASSERT_TRUE(r->eos) << r->error;
    ASSERT_EQ(r->buffers.size(), 4u);
    EXPECT_TRUE(r->regions().empty()) << r->regions().size() << " regions on a clean web";
    for (GstBuffer* b : r->buffers) EXPECT_FALSE(gst_buffer_get_pefm_meta(b)->anomalous);
    const auto spot = run(paste_patch(clean, 54, 30, 20), consecutive(4), std::string(kTiling) + " continuous=true");
    ASSERT_TRUE(spot->eos) << spot->error;
    EXPECT_EQ(spot->regions().size(), 1u);
  }
}

// A gap in buffer offsets ends the web: the region open there is reported with the last
// buffer before it (closed by "gap"), a "pefm-web" message says so, and the web rows go on
// counting the buffers lost. A DISCONT flag does the same ("discont") without lost rows.
TEST(ElementWeb, ADiscontinuityClosesOpenRegionsAndIsReported) {
  const auto strip = paste_patch(pefm_test::web_texture(4 * kRows, kWidth, 32), 54, 30, 20);
  for (const bool flagged : {false, true}) {
    const std::vector<Piece> pieces = flagged ? std::vector<Piece>{{0, 0}, {1, 1, true}, {2, 2}, {3, 3}}
                                              : std::vector<Piece>{{0, 0}, {1, 4}, {2, 5}, {3, 6}};
    const auto r = run(strip, pieces, std::string(kTiling) + " continuous=true");
    ASSERT_TRUE(r->eos) << r->error;
    ASSERT_EQ(r->buffers.size(), 4u);
    ASSERT_EQ(r->web_messages.size(), 1u);
    const GstStructure* w = r->web_messages[0];
    EXPECT_STREQ(gst_structure_get_string(w, "event"), "discontinuity");
    EXPECT_STREQ(gst_structure_get_string(w, "reason"), flagged ? "discont" : "gap");
    guint64 row = 0;
    EXPECT_TRUE(gst_structure_get_uint64(w, "web-row", &row));
    const guint64 resumed = flagged ? kRows : 4 * kRows;  // three buffers lost
    EXPECT_EQ(row, resumed);
    EXPECT_EQ(gst_buffer_get_pefm_meta(r->buffers[1])->web_row, resumed);
    const auto found = r->regions();
    ASSERT_EQ(found.size(), 2u) << "the part before the discontinuity and the part after";
    EXPECT_EQ(found[0].first, 0u);
    EXPECT_STREQ(found[0].second.closed_by, flagged ? "discont" : "gap");
    EXPECT_EQ(found[0].second.web_y + found[0].second.web_height, static_cast<guint64>(kRows));
    EXPECT_EQ(found[1].second.web_y, resumed) << "the rest starts the new web";
  }
}

// Another tiling while playing ends the web ("settings") and starts a new one: every buffer
// still comes out, in order, the held ones of the old web first.
TEST(ElementWeb, ATilingChangeMidStreamEndsTheWebAndLosesNoBuffer) {
  const auto strip = pefm_test::web_texture(6 * kRows, kWidth, 35);
  const auto r = run(strip, consecutive(6), std::string(kTiling) + " continuous=true", 3);
  ASSERT_TRUE(r->eos) << r->error;
  ASSERT_EQ(r->buffers.size(), 6u);
  for (size_t i = 0; i < r->buffers.size(); ++i) {
    EXPECT_EQ(GST_BUFFER_PTS(r->buffers[i]), i * GST_SECOND / 10);
    EXPECT_EQ(gst_buffer_get_pefm_meta(r->buffers[i])->web_row, i * kRows);
  }
  ASSERT_EQ(r->web_messages.size(), 1u);
  EXPECT_STREQ(gst_structure_get_string(r->web_messages[0], "reason"), "settings");
}

// A defect running into the last row: EOS reports it with the last buffer ("eos").
TEST(ElementWeb, EndOfStreamFlushesTheRegionStillOpen) {
  const auto strip = paste_patch(pefm_test::web_texture(3 * kRows, kWidth, 33), 3 * kRows - 12, 40, 20);
  const auto r = run(strip, consecutive(3), std::string(kTiling) + " continuous=true");
  ASSERT_TRUE(r->eos) << r->error;
  ASSERT_EQ(r->buffers.size(), 3u);
  const auto found = r->regions();
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].first, 2u);
  EXPECT_STREQ(found[0].second.closed_by, "eos");
  EXPECT_EQ(found[0].second.web_y + found[0].second.web_height, static_cast<guint64>(3 * kRows));
}

// Continuous mode needs tiles on a grid: tile-size=0 is an error naming the property.
TEST(ElementWeb, ContinuousModeWithoutTilesIsAnErrorNamingTileSize) {
  const auto r = run(pefm_test::web_texture(kRows, kWidth, 34), consecutive(1), "tile-size=0 continuous=true");
  EXPECT_FALSE(r->eos);
  EXPECT_NE(r->error.find("continuous"), std::string::npos) << r->error;
  EXPECT_NE(r->error.find("tile-size"), std::string::npos) << r->error;
  EXPECT_TRUE(r->buffers.empty());
}

// A flush mid-web drops the buffers the web holds: they never come out, and a "pefm-web"
// message (reason "flush") counts them and carries the region that was open, as far as
// it was seen (a defect across buffers 0 and 1: buffer 0's rows). The buffers after the
// flush start a new web where the message says, and nothing of the old one is reported.
TEST(ElementWeb, AFlushDropsTheHeldBuffersAndReportsThem) {
  const auto strip = paste_patch(pefm_test::web_texture(5 * kRows, kWidth, 32), 54, 30, 20);
  WebHarness w("");
  for (int i = 0; i < 3; ++i) ASSERT_EQ(w.push(strip, i * kRows, kRows, i), GST_FLOW_OK);
  // Buffer 0 leaves once the tile at row 96, below its last row, is scored (rows to 160
  // in); buffers 1 and 2 wait for rows still to come.
  ASSERT_EQ(w.collect(), 1u);
  ASSERT_TRUE(w.push_event(gst_event_new_flush_start()));
  ASSERT_TRUE(w.push_event(gst_event_new_flush_stop(TRUE)));
  GstSegment segment;
  gst_segment_init(&segment, GST_FORMAT_TIME);
  ASSERT_TRUE(w.push_event(gst_event_new_segment(&segment)));
  w.take_messages();
  ASSERT_EQ(w.web_messages.size(), 1u);
  const GstStructure* m = w.web_messages[0];
  EXPECT_STREQ(gst_structure_get_string(m, "event"), "discontinuity");
  EXPECT_STREQ(gst_structure_get_string(m, "reason"), "flush");
  guint dropped = 0;
  EXPECT_TRUE(gst_structure_get_uint(m, "dropped-buffers", &dropped));
  EXPECT_EQ(dropped, 2u);
  const auto boxes = boxes_of(m);
  ASSERT_EQ(boxes.size(), 1u) << "the region open in buffer 0";
  EXPECT_STREQ(gst_structure_get_string(boxes[0], "closed_by"), "flush");
  EXPECT_EQ(uint64_field(boxes[0], "web_y") + uint64_field(boxes[0], "web_height"), static_cast<guint64>(kRows));
  for (int i = 3; i < 5; ++i) ASSERT_EQ(w.push(strip, i * kRows, kRows, i), GST_FLOW_OK);
  ASSERT_TRUE(w.push_event(gst_event_new_eos()));
  ASSERT_EQ(w.collect(), 3u) << "buffers 1 and 2 never come out";
  const guint64 offsets[] = {0, 3, 4};
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(GST_BUFFER_PTS(w.out[i]), offsets[i] * GST_SECOND / 10) << i;
  EXPECT_EQ(w.meta(1)->web_row, uint64_field(m, "web-row")) << "the new web starts where the message says";
  for (const auto& [i, g] : regions_of(w.out)) {
    EXPECT_GE(g.web_y, 3u * kRows) << "buffer " << i << " reports a region of the dropped web";
  }
  w.take_messages();
  EXPECT_EQ(w.web_messages.size(), 1u);
}


// After an event ended the web at the end of its first buffer (`reason`): one pefm-web
// message, the next web starting at that row, and the defect across it in two parts, the
// first closed by the event with the first buffer.
void expect_web_split_at_first_buffer(const WebHarness& w, const char* reason) {
  ASSERT_EQ(w.web_messages.size(), 1u);
  EXPECT_STREQ(gst_structure_get_string(w.web_messages[0], "reason"), reason);
  EXPECT_EQ(uint64_field(w.web_messages[0], "web-row"), static_cast<guint64>(kRows));
  const auto found = regions_of(w.out);
  ASSERT_EQ(found.size(), 2u) << "the part before the " << reason << " and the part after";
  EXPECT_EQ(found[0].first, 0u);
  EXPECT_STREQ(found[0].second.closed_by, reason);
  EXPECT_EQ(found[0].second.web_y + found[0].second.web_height, static_cast<guint64>(kRows));
  EXPECT_EQ(found[1].second.web_y, static_cast<guint64>(kRows)) << "the rest starts the new web";
}

// A new segment mid-web ends the web ("segment"), as a discontinuity does: the buffer it
// held leaves before the segment, the defect across it is reported in two parts, the first
// closed by "segment" with buffer 0, and a "pefm-web" message says where the next web
// starts.
TEST(ElementWeb, ANewSegmentEndsTheWebAndSendsTheHeldBufferFirst) {
  const auto strip = paste_patch(pefm_test::web_texture(3 * kRows, kWidth, 32), 54, 30, 20);
  WebHarness w("");
  ASSERT_EQ(w.push(strip, 0, kRows, 0), GST_FLOW_OK);
  ASSERT_EQ(w.collect(), 0u) << "buffer 0 waits for the rows after it";
  GstSegment segment;
  gst_segment_init(&segment, GST_FORMAT_TIME);
  segment.base = GST_SECOND;  // running time goes on from elsewhere
  ASSERT_TRUE(w.push_event(gst_event_new_segment(&segment)));
  EXPECT_EQ(w.collect(), 1u) << "the held buffer leaves before the segment";
  for (int i = 1; i < 3; ++i) ASSERT_EQ(w.push(strip, i * kRows, kRows, i), GST_FLOW_OK);
  ASSERT_TRUE(w.push_event(gst_event_new_eos()));
  ASSERT_EQ(w.collect(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(GST_BUFFER_PTS(w.out[i]), i * GST_SECOND / 10);
    EXPECT_EQ(w.meta(i)->web_row, i * kRows);
  }
  w.take_messages();
  EXPECT_STREQ(gst_structure_get_string(w.web_messages.at(0), "event"), "discontinuity");
  expect_web_split_at_first_buffer(w, "segment");
}

// New caps mid-web end the web ("caps"): the buffer it held leaves before them, the defect
// across the change is reported in two parts, the web rows go on counting through
// buffers of the new height, each with the map of its own rows, and the latency the web
// adds is counted in buffers of the new height.
TEST(ElementWeb, NewCapsMidStreamEndTheWebAndTheRowsGoOnCounting) {
  constexpr int kHalf = kRows / 2;
  const auto strip = paste_patch(pefm_test::web_texture(2 * kRows, kWidth, 32), 54, 30, 20);
  WebHarness w("");
  ASSERT_EQ(w.push(strip, 0, kRows, 0), GST_FLOW_OK);
  ASSERT_EQ(w.collect(), 0u) << "buffer 0 waits for the rows after it";
  gst_harness_set_src_caps_str(w.h, web_caps(kHalf).c_str());
  EXPECT_EQ(w.collect(), 1u) << "the held buffer leaves before the new caps";
  gst_harness_set_upstream_latency(w.h, 0);
  for (int i = 0; i < 2; ++i) ASSERT_EQ(w.push(strip, kRows + i * kHalf, kHalf, 1 + i), GST_FLOW_OK);
  // The rows the web holds back are now twice as many buffers: the LATENCY answer follows.
  const int64_t input = pefm::FrameDetector::acquire(web_model(), {"cpu"})->input_size();
  const int64_t held_rows = pefm::WebStream::held_rows_bound(pefm::TileOptions{64, 16}, input);
  GstElement* filter = gst_harness_find_element(w.h, "pefmfilter");
  ASSERT_NE(filter, nullptr);
  GstStructure* stats = nullptr;
  g_object_get(filter, "stats", &stats, nullptr);
  ASSERT_NE(stats, nullptr);
  const guint64 processing = uint64_field(stats, "latency");
  gst_structure_free(stats);
  gst_object_unref(filter);
  EXPECT_EQ(gst_harness_query_latency(w.h),
            processing + static_cast<GstClockTime>((held_rows + kHalf - 1) / kHalf) * GST_SECOND / 10);
  ASSERT_TRUE(w.push_event(gst_event_new_eos()));
  ASSERT_EQ(w.collect(), 3u);
  const guint64 first_rows[] = {0, kRows, kRows + kHalf};
  const guint heights[] = {kRows, kHalf, kHalf};
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(w.meta(i)->web_row, first_rows[i]) << i;
    EXPECT_EQ(w.meta(i)->map_height, heights[i]) << i;
  }
  w.take_messages();
  // The segment that follows new caps finds no web open: one message.
  expect_web_split_at_first_buffer(w, "caps");
}

// A scratch along the web (20-px defects stacked from row 20 to 220) is one region, ended
// with the buffer where it ends. With max-region-rows=64 it is reported in parts while it
// goes on: each part but the last closed by "max-rows" with the buffer where it passed 64
// rows, up to that buffer's last row, and together the parts are the whole region, row for
// row and pixel for pixel.
TEST(ElementWeb, MaxRegionRowsReportsALongScratchInPartsThatMakeTheWhole) {
  auto strip = pefm_test::web_texture(5 * kRows, kWidth, 37);
  for (int64_t y = 20; y < 220; y += 20) strip = paste_patch(strip, y, 30, 20);
  const auto scratch_regions = [](const auto& r) {
    std::vector<std::pair<size_t, GstPefmRegion>> out;
    for (const auto& f : r.regions()) {
      const GstPefmRegion& g = f.second;
      if (g.web_x < 50 && g.web_x + g.web_width > 30 && g.web_y < 220 && g.web_y + g.web_height > 20) out.push_back(f);
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.second.web_y < b.second.web_y; });
    return out;
  };
  const auto whole_run = run(strip, consecutive(5), std::string(kTiling) + " continuous=true");
  ASSERT_TRUE(whole_run->eos) << whole_run->error;
  const auto whole = scratch_regions(*whole_run);
  ASSERT_EQ(whole.size(), 1u) << "one region along the scratch";
  const GstPefmRegion& all = whole[0].second;
  EXPECT_STREQ(all.closed_by, "ended");
  ASSERT_GT(all.web_height, 2u * 64u) << "long enough for two parts";
  const auto split_run = run(strip, consecutive(5), std::string(kTiling) + " continuous=true max-region-rows=64");
  ASSERT_TRUE(split_run->eos) << split_run->error;
  ASSERT_EQ(split_run->buffers.size(), 5u);
  const auto parts = scratch_regions(*split_run);
  ASSERT_GE(parts.size(), 2u) << "not split at 64 rows";
  guint64 row = all.web_y, area = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    const auto& [buffer, g] = parts[i];
    EXPECT_EQ(g.web_y, row) << "part " << i << " starts where the last one ended";
    row = g.web_y + g.web_height;
    area += g.area;
    if (i + 1 < parts.size()) {
      EXPECT_STREQ(g.closed_by, "max-rows") << i;
      EXPECT_GT(g.web_height, 64u) << i;
      EXPECT_EQ(row, (buffer + 1) * kRows) << "part " << i << " ends with the buffer it is reported with";
    } else {
      EXPECT_STREQ(g.closed_by, "ended");
    }
  }
  EXPECT_EQ(row, all.web_y + all.web_height);
  EXPECT_EQ(area, all.area);
}

// In continuous mode the LATENCY answer adds the time of the buffers the web may hold
// back, on top of upstream's latency and the processing time (the `stats` latency): up to
// tile-size + a tile step + a map row after a buffer (WebStream::held_rows_bound, 114 rows
// here), that is two buffers of 64 rows at 10 per second, 200 ms. No buffer is held longer.
TEST(ElementWeb, LatencyQueryAddsTheBuffersTheWebHoldsBack) {
  const auto strip = pefm_test::web_texture(4 * kRows, kWidth, 36);
  const int64_t input = pefm::FrameDetector::acquire(web_model(), {"cpu"})->input_size();
  const int64_t held_rows = pefm::WebStream::held_rows_bound(pefm::TileOptions{64, 16}, input);
  const GstClockTime web_latency = static_cast<GstClockTime>((held_rows + kRows - 1) / kRows) * GST_SECOND / 10;
  EXPECT_EQ(web_latency, 2 * GST_SECOND / 10) << held_rows << " rows";
  constexpr GstClockTime kUpstream = 7 * GST_MSECOND;
  WebHarness w("");
  gst_harness_set_upstream_latency(w.h, kUpstream);
  GstElement* filter = gst_harness_find_element(w.h, "pefmfilter");
  ASSERT_NE(filter, nullptr);
  size_t most_held = 0;
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(w.push(strip, i * kRows, kRows, i), GST_FLOW_OK);
    most_held = std::max(most_held, static_cast<size_t>(i + 1) - w.collect());
    const GstClockTime min = gst_harness_query_latency(w.h);
    GstStructure* stats = nullptr;
    g_object_get(filter, "stats", &stats, nullptr);
    ASSERT_NE(stats, nullptr);
    const guint64 processing = uint64_field(stats, "latency");
    gst_structure_free(stats);
    EXPECT_GT(processing, 0u) << "no processing time measured";
    EXPECT_EQ(min, kUpstream + processing + web_latency) << "after buffer " << i;
  }
  EXPECT_GE(most_held, 1u);
  EXPECT_LE(most_held * (GST_SECOND / 10), web_latency) << most_held << " buffers held at once";
  gst_object_unref(filter);
}

// message-mode=anomalous in continuous mode: a buffer gets a message when it is anomalous
// or reports a web region (a defect can end in a buffer that is not anomalous itself). On
// a clean strip at threshold 1 no buffer is anomalous. With regions cut only where the map
// saturates (region-threshold 1) there are none, and no message; cut at the median normal
// pixel (region-threshold 0), regions end in some buffers, and exactly those get one
// message each, counting their regions.
TEST(ElementWeb, AnomalousMessageModePostsTheBuffersThatReportRegions) {
  const auto strip = pefm_test::web_texture(4 * kRows, kWidth, 38);
  for (const std::string region_threshold : {"1.0", "0.0"}) {
    const auto r = run(strip, consecutive(4), std::string(kTiling) +
                                                  " continuous=true message-mode=anomalous threshold=1.0 "
                                                  "region-threshold=" + region_threshold);
    ASSERT_TRUE(r->eos) << r->error;
    ASSERT_EQ(r->buffers.size(), 4u);
    std::map<GstClockTime, guint> want;  // buffer (PTS) -> its regions
    for (auto* b : r->buffers) {
      const GstPefmMeta* m = gst_buffer_get_pefm_meta(b);
      ASSERT_NE(m, nullptr);
      ASSERT_FALSE(m->anomalous) << "score " << m->score << " at threshold 1";
      if (m->n_regions > 0) want[GST_BUFFER_PTS(b)] = m->n_regions;
    }
    if (region_threshold == "1.0") {
      ASSERT_TRUE(want.empty()) << "regions where the map saturates, on a clean strip";
    } else {
      ASSERT_FALSE(want.empty()) << "no region at the median normal pixel";
    }
    std::map<GstClockTime, guint> posted;
    for (const GstStructure* s : r->frame_messages) {
      guint regions = 0;
      EXPECT_TRUE(gst_structure_get_uint(s, "regions", &regions));
      EXPECT_TRUE(posted.emplace(uint64_field(s, "timestamp"), regions).second) << "two messages for one buffer";
    }
    EXPECT_EQ(posted, want) << "region-threshold " << region_threshold;
  }
}

}  // namespace
