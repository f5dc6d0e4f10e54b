// pefmfilter continuous=true (line-scan webs) in real pipelines: buffers of one strip in
// through appsrc, out through appsink, with their metadata and messages.
#include <gst/app/gstappsink.h>
#include <gst/gst.h>
#include <gst/video/video.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "common.h"
#include "gstpefmmeta.h"
#include "pefm/frame_detector.h"
#include "pefm/model_file.h"

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
  // Every region of every buffer, with the buffer it came with.
  std::vector<std::pair<size_t, GstPefmRegion>> regions() const {
    std::vector<std::pair<size_t, GstPefmRegion>> out;
    for (size_t i = 0; i < buffers.size(); ++i) {
      const GstPefmMeta* m = gst_buffer_get_pefm_meta(buffers[i]);
      for (guint r = 0; m && r < m->n_regions; ++r) out.emplace_back(i, m->regions[r]);
    }
    return out;
  }
};

// One buffer of the strip: rows [index * kRows, + kRows), with offsets counting buffers.
struct Piece {
  int index;
  guint64 offset;
  bool discont = false;
};

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
  const std::string launch = "appsrc name=src format=time caps=video/x-raw,format=RGB,width=" + std::to_string(kWidth) +
                             ",height=" + std::to_string(kRows) +
                             ",framerate=10/1 ! pefmfilter device=cpu overlay=none emit-messages=true " + props +
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
    const auto rows = strip.slice(0, p.index * kRows, (p.index + 1) * kRows).contiguous();
    GstBuffer* b = gst_buffer_new_memdup(rows.data_ptr<uint8_t>(), static_cast<gsize>(rows.numel()));
    GST_BUFFER_PTS(b) = p.offset * GST_SECOND / 10;
    GST_BUFFER_DURATION(b) = GST_SECOND / 10;
    GST_BUFFER_OFFSET(b) = p.offset;
    GST_BUFFER_OFFSET_END(b) = p.offset + 1;
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
  EXPECT_TRUE(gst_structure_get_uint64(box, "web-y", &web_y));
  EXPECT_EQ(web_y, g.web_y);
  EXPECT_TRUE(gst_structure_get_double(box, "height-mm", &height_mm));
  EXPECT_DOUBLE_EQ(height_mm, g.height_mm);
  EXPECT_STREQ(gst_structure_get_string(box, "closed-by"), "ended");
  EXPECT_TRUE(gst_structure_get_uint64(r->frame_messages[1], "web-row", &web_row));
  EXPECT_EQ(web_row, static_cast<guint64>(kRows));
  EXPECT_TRUE(r->web_messages.empty()) << "no discontinuity";
  // Buffer by buffer: cut in pieces, no web extent.
  const auto apart = run(strip, consecutive(4), kTiling);
  ASSERT_TRUE(apart->eos) << apart->error;
  EXPECT_GE(apart->regions().size(), 2u);
  for (const auto& [i, h] : apart->regions()) EXPECT_EQ(h.web_height, 0u);
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

}  // namespace
