// pefmfilter under GstHarness and in real pipelines.
#include <gst/app/gstappsrc.h>
#include <gst/check/gstharness.h>
#include <gst/gst.h>
#include <gst/video/video.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <fstream>
#include <iostream>
#include <thread>

#include "common.h"
#include "gstpefmmeta.h"
#include "pefm/detector.h"
#include "pefm/device.h"
#include "pefm/frame_detector.h"
#include "pefm/model_file.h"
#include "pefm/preprocess.h"
#include "pefm/trainer.h"

namespace {

using pefm_test::paste_patch;
using pefm_test::texture_image;

constexpr int kW = 96, kH = 64;

// A tiny model trained for a few seconds on textures and calibrated on clean ones.
std::string g_model;
pefm_test::TempDir* g_dir = nullptr;

class Environment : public ::testing::Environment {
 public:
  void SetUp() override {
    gst_init(nullptr, nullptr);
    g_dir = new pefm_test::TempDir();
    auto model = pefm_test::tiny_model(11);
    pefm::TrainOptions opts;
    opts.batch_size = 4;
    opts.lr = 3e-3;
    {
      pefm::Trainer trainer(*model, opts, torch::kCPU);
      std::vector<torch::Tensor> train;
      for (int i = 0; i < 12; ++i) train.push_back(texture_image(kH, kW, 100 + i));
      trainer.add_images(pefm::preprocess(torch::stack(train), {}, 64));
      for (int e = 0; e < 30; ++e) trainer.train_epoch();
    }
    pefm::Detector det(model, {"cpu"});
    std::vector<torch::Tensor> val;
    for (int i = 0; i < 6; ++i) val.push_back(texture_image(kH, kW, 500 + i));
    const auto r = det.detect(torch::stack(val));
    model->calibration = pefm::Calibration::from_normal(r.maps, r.scores);
    g_model = g_dir->file("tiny.pt");
    pefm::save_model(*model, g_model);
  }
  void TearDown() override { delete g_dir; }
};
const auto* const g_env = ::testing::AddGlobalTestEnvironment(new Environment);

// RGB frame converted to `format` with GStreamer's own converter.
GstBuffer* make_buffer(const torch::Tensor& rgb, GstVideoFormat format, GstVideoInfo* out_info) {
  const int h = static_cast<int>(rgb.size(0)), w = static_cast<int>(rgb.size(1));
  GstVideoInfo in;
  gst_video_info_set_format(&in, GST_VIDEO_FORMAT_RGB, w, h);
  gst_video_info_set_format(out_info, format, w, h);
  GstBuffer* src = gst_buffer_new_allocate(nullptr, GST_VIDEO_INFO_SIZE(&in), nullptr);
  GstVideoFrame sf, df;
  gst_video_frame_map(&sf, &in, src, GST_MAP_WRITE);
  const auto t = rgb.contiguous();
  for (int y = 0; y < h; ++y) {
    std::memcpy(static_cast<uint8_t*>(GST_VIDEO_FRAME_PLANE_DATA(&sf, 0)) + y * GST_VIDEO_FRAME_PLANE_STRIDE(&sf, 0),
                t.data_ptr<uint8_t>() + y * w * 3, static_cast<size_t>(w) * 3);
  }
  GstBuffer* dst = gst_buffer_new_allocate(nullptr, GST_VIDEO_INFO_SIZE(out_info), nullptr);
  gst_video_frame_map(&df, out_info, dst, GST_MAP_WRITE);
  GstVideoConverter* conv = gst_video_converter_new(&in, out_info, nullptr);
  gst_video_converter_frame(conv, &sf, &df);
  gst_video_converter_free(conv);
  gst_video_frame_unmap(&sf);
  gst_video_frame_unmap(&df);
  gst_buffer_unref(src);
  return dst;
}

std::string caps_for(GstVideoFormat format, int w = kW, int h = kH) {
  return std::string("video/x-raw,format=") + gst_video_format_to_string(format) + ",width=" + std::to_string(w) +
         ",height=" + std::to_string(h) + ",framerate=30/1";
}

GstHarness* harness(const std::string& caps, const std::string& extra = "") {
  const std::string launch = "pefmfilter model=\"" + g_model + "\" device=cpu " + extra;
  GstHarness* h = gst_harness_new_parse(launch.c_str());
  gst_harness_set_src_caps_str(h, caps.c_str());
  return h;
}

// Bytes of the whole buffer, for before/after comparisons.
std::vector<uint8_t> bytes(GstBuffer* b) {
  GstMapInfo m;
  gst_buffer_map(b, &m, GST_MAP_READ);
  std::vector<uint8_t> v(m.data, m.data + m.size);
  gst_buffer_unmap(b, &m);
  return v;
}

class ElementFormats : public ::testing::TestWithParam<GstVideoFormat> {};

TEST_P(ElementFormats, AttachesMetaAndDrawsOnlyAroundTheDefect) {
  const GstVideoFormat format = GetParam();
  GstHarness* h = harness(caps_for(format));
  GstVideoInfo info;
  const auto clean = texture_image(kH, kW, 999);
  const auto defect = paste_patch(clean, 30, 60, 20);

  GstBuffer* in_clean = make_buffer(clean, format, &info);
  const auto clean_before = bytes(in_clean);
  GstBuffer* out_clean = gst_harness_push_and_pull(h, in_clean);
  ASSERT_NE(out_clean, nullptr);
  GstPefmMeta* m0 = gst_buffer_get_pefm_meta(out_clean);
  ASSERT_NE(m0, nullptr);
  EXPECT_TRUE(m0->calibrated);
  EXPECT_GT(m0->map_width, 0u);
  EXPECT_NEAR(m0->map_scale_x * m0->map_width, kW, 1e-6);
  EXPECT_NEAR(m0->map_scale_y * m0->map_height, kH, 1e-6);
  for (guint i = 0; i < m0->map_width * m0->map_height; ++i) {
    ASSERT_TRUE(std::isfinite(m0->map[i]) && m0->map[i] >= 0.0f && m0->map[i] <= 1.0f) << i;
  }
  // A normal frame stays readable: most of it is untouched by the overlay.
  const auto clean_after = bytes(out_clean);
  size_t same = 0;
  for (size_t i = 0; i < clean_after.size(); ++i) same += clean_after[i] == clean_before[i];
  EXPECT_GT(same, clean_after.size() * 8 / 10) << "overlay changed most of a normal frame";

  GstBuffer* in_defect = make_buffer(defect, format, &info);
  GstBuffer* out_defect = gst_harness_push_and_pull(h, in_defect);
  GstPefmMeta* m1 = gst_buffer_get_pefm_meta(out_defect);
  ASSERT_NE(m1, nullptr);
  EXPECT_GT(m1->score, m0->score);
  EXPECT_TRUE(m1->anomalous) << "score " << m1->score;
  ASSERT_GE(m1->n_regions, 1u);
  const GstPefmRegion& r = m1->regions[0];
  EXPECT_TRUE(r.x < 60 + 20 + 8 && r.x + r.width > 60 - 8 && r.y < 30 + 20 + 8 && r.y + r.height > 30 - 8)
      << "strongest region at " << r.x << "," << r.y << " " << r.width << "x" << r.height;
  // Standard ROI metas mirror the regions.
  gpointer state = nullptr;
  guint rois = 0;
  while (GstMeta* meta = gst_buffer_iterate_meta_filtered(out_defect, &state, GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE)) {
    auto* roi = reinterpret_cast<GstVideoRegionOfInterestMeta*>(meta);
    EXPECT_EQ(roi->roi_type, g_quark_from_string("anomaly"));
    const GstStructure* s = gst_video_region_of_interest_meta_get_param(roi, "pefm");
    ASSERT_NE(s, nullptr);
    double score = 0;
    EXPECT_TRUE(gst_structure_get_double(s, "score", &score));
    ++rois;
  }
  EXPECT_EQ(rois, m1->n_regions);
  gst_buffer_unref(out_clean);
  gst_buffer_unref(out_defect);
  gst_harness_teardown(h);
}

INSTANTIATE_TEST_SUITE_P(
    AllFormats, ElementFormats,
    ::testing::Values(GST_VIDEO_FORMAT_RGB, GST_VIDEO_FORMAT_BGR, GST_VIDEO_FORMAT_RGBA, GST_VIDEO_FORMAT_BGRA,
                      GST_VIDEO_FORMAT_RGBx, GST_VIDEO_FORMAT_BGRx, GST_VIDEO_FORMAT_xRGB, GST_VIDEO_FORMAT_GRAY8,
                      GST_VIDEO_FORMAT_I420, GST_VIDEO_FORMAT_NV12),
    [](const auto& info) { return std::string(gst_video_format_to_string(info.param)); });

TEST(Element, RenegotiatesSizeAndFormatMidStream) {
  GstHarness* h = harness(caps_for(GST_VIDEO_FORMAT_RGB));
  GstVideoInfo info;
  GstBuffer* out = gst_harness_push_and_pull(h, make_buffer(texture_image(kH, kW, 1), GST_VIDEO_FORMAT_RGB, &info));
  ASSERT_NE(gst_buffer_get_pefm_meta(out), nullptr);
  gst_buffer_unref(out);
  // New size and new format on the same running element.
  gst_harness_set_src_caps_str(h, caps_for(GST_VIDEO_FORMAT_NV12, 130, 50).c_str());
  out = gst_harness_push_and_pull(h, make_buffer(texture_image(50, 130, 2), GST_VIDEO_FORMAT_NV12, &info));
  GstPefmMeta* m = gst_buffer_get_pefm_meta(out);
  ASSERT_NE(m, nullptr);
  EXPECT_NEAR(m->map_scale_x * m->map_width, 130, 1e-6);
  EXPECT_NEAR(m->map_scale_y * m->map_height, 50, 1e-6);
  gst_buffer_unref(out);
  gst_harness_teardown(h);
}

TEST(Element, OnePixelFramesAndFramesSmallerThanATile) {
  for (const char* extra : {"", "tile-size=256 tile-overlap=32"}) {
    GstHarness* h = harness(caps_for(GST_VIDEO_FORMAT_RGB, 1, 1), extra);
    GstVideoInfo info;
    GstBuffer* out = gst_harness_push_and_pull(h, make_buffer(texture_image(1, 1, 3), GST_VIDEO_FORMAT_RGB, &info));
    GstPefmMeta* m = gst_buffer_get_pefm_meta(out);
    ASSERT_NE(m, nullptr) << extra;
    ASSERT_GT(m->map_width * m->map_height, 0u);
    for (guint i = 0; i < m->map_width * m->map_height; ++i) EXPECT_TRUE(std::isfinite(m->map[i]));
    gst_buffer_unref(out);
    gst_harness_teardown(h);
  }
  // 96x64 under 256-px tiles: one tile of the whole frame, map at the tile's scale.
  GstHarness* h = harness(caps_for(GST_VIDEO_FORMAT_RGB), "tile-size=256");
  GstVideoInfo info;
  GstBuffer* out = gst_harness_push_and_pull(h, make_buffer(texture_image(kH, kW, 4), GST_VIDEO_FORMAT_RGB, &info));
  GstPefmMeta* m = gst_buffer_get_pefm_meta(out);
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->map_width, 24u);  // 96 * 64 / 256
  EXPECT_EQ(m->map_height, 16u);
  gst_buffer_unref(out);
  gst_harness_teardown(h);
}

TEST(Element, RejectsUnsupportedCaps) {
  for (const char* caps : {"video/x-raw,format=YUY2,width=64,height=64,framerate=30/1",
                           "audio/x-raw,format=S16LE,rate=44100,channels=1,layout=interleaved"}) {
    GstHarness* h = harness(caps);
    GstBuffer* b = gst_buffer_new_allocate(nullptr, 64 * 64 * 2, nullptr);
    EXPECT_EQ(gst_harness_push(h, b), GST_FLOW_NOT_NEGOTIATED) << caps;
    gst_harness_teardown(h);
  }
}

TEST(Element, TimestampsAndOtherMetasPassThrough) {
  GstHarness* h = harness(caps_for(GST_VIDEO_FORMAT_RGB));
  GstVideoInfo info;
  GstBuffer* in = make_buffer(texture_image(kH, kW, 3), GST_VIDEO_FORMAT_RGB, &info);
  GST_BUFFER_PTS(in) = 5 * GST_SECOND;
  GST_BUFFER_DTS(in) = 4 * GST_SECOND;
  GST_BUFFER_DURATION(in) = GST_SECOND / 30;
  GST_BUFFER_OFFSET(in) = 150;
  gst_buffer_add_video_region_of_interest_meta(in, "person", 1, 2, 3, 4);
  GstBuffer* out = gst_harness_push_and_pull(h, in);
  EXPECT_EQ(GST_BUFFER_PTS(out), 5 * GST_SECOND);
  EXPECT_EQ(GST_BUFFER_DTS(out), 4 * GST_SECOND);
  EXPECT_EQ(GST_BUFFER_DURATION(out), GST_SECOND / 30);
  EXPECT_EQ(GST_BUFFER_OFFSET(out), 150u);
  GstVideoRegionOfInterestMeta* roi = gst_buffer_get_video_region_of_interest_meta_id(out, 0);
  ASSERT_NE(roi, nullptr);
  EXPECT_EQ(roi->roi_type, g_quark_from_string("person"));
  gst_buffer_unref(out);
  gst_harness_teardown(h);
}

TEST(Element, ThresholdPropertyChangesDecisionsWhilePlaying) {
  GstHarness* h = harness(caps_for(GST_VIDEO_FORMAT_RGB), "overlay=none");
  GstVideoInfo info;
  const auto frame = paste_patch(texture_image(kH, kW, 7), 30, 60, 20);
  GstElement* filter = gst_harness_find_element(h, "pefmfilter");  // h->element is the wrapping bin
  ASSERT_NE(filter, nullptr);
  for (double threshold : {0.0, 1.5, 0.0}) {  // 1.5: above the normalised range
    g_object_set(filter, "threshold", threshold, nullptr);
    GstBuffer* out = gst_harness_push_and_pull(h, make_buffer(frame, GST_VIDEO_FORMAT_RGB, &info));
    GstPefmMeta* m = gst_buffer_get_pefm_meta(out);
    ASSERT_NE(m, nullptr);
    EXPECT_FLOAT_EQ(m->threshold, static_cast<float>(threshold));
    EXPECT_EQ(static_cast<bool>(m->anomalous), threshold == 0.0) << "threshold " << threshold << " score " << m->score;
    if (threshold == 0.0) {
      EXPECT_EQ(m->n_regions, 1u) << "everything is anomalous at threshold 0";
    }
    gst_buffer_unref(out);
  }
  gst_object_unref(filter);
  gst_harness_teardown(h);
}

std::string state_change_error(const std::string& launch) {
  GError* err = nullptr;
  GstElement* pipeline = gst_parse_launch(launch.c_str(), &err);
  EXPECT_EQ(err, nullptr);
  const auto ret = gst_element_set_state(pipeline, GST_STATE_PAUSED);
  std::string text;
  GstBus* bus = gst_element_get_bus(pipeline);
  if (GstMessage* msg = gst_bus_timed_pop_filtered(bus, 5 * GST_SECOND, GST_MESSAGE_ERROR)) {
    GError* e = nullptr;
    gchar* dbg = nullptr;
    gst_message_parse_error(msg, &e, &dbg);
    text = std::string(e->message) + " | " + (dbg ? dbg : "");
    g_clear_error(&e);
    g_free(dbg);
    gst_message_unref(msg);
  }
  EXPECT_EQ(ret, GST_STATE_CHANGE_FAILURE) << launch;
  gst_object_unref(bus);
  gst_element_set_state(pipeline, GST_STATE_NULL);
  gst_object_unref(pipeline);
  return text;
}

TEST(Element, BadModelFailsReadyToPausedNamingTheFile) {
  auto msg = state_change_error("videotestsrc ! pefmfilter model=/nonexistent/cable.pt ! fakesink");
  EXPECT_NE(msg.find("Could not load model '/nonexistent/cable.pt' (property 'model')"), std::string::npos) << msg;
  EXPECT_NE(msg.find("cannot open model file"), std::string::npos) << msg;
  const auto junk = g_dir->file("junk.pt");
  pefm_test::spit(junk, "definitely not a model");
  msg = state_change_error("videotestsrc ! pefmfilter model=" + junk + " ! fakesink");
  EXPECT_NE(msg.find("is not a pefm model file"), std::string::npos) << msg;
  msg = state_change_error("videotestsrc ! pefmfilter ! fakesink");
  EXPECT_NE(msg.find("set the 'model' property"), std::string::npos) << msg;
  msg = state_change_error("videotestsrc ! pefmfilter device=gpu7 model=" + g_model + " ! fakesink");
  EXPECT_NE(msg.find("Invalid device 'gpu7' (property 'device')"), std::string::npos) << msg;
}

bool run_to_eos(GstElement* pipeline) {
  gst_element_set_state(pipeline, GST_STATE_PLAYING);
  GstBus* bus = gst_element_get_bus(pipeline);
  GstMessage* msg = gst_bus_timed_pop_filtered(bus, 20 * GST_SECOND,
                                               static_cast<GstMessageType>(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
  const bool eos = msg && GST_MESSAGE_TYPE(msg) == GST_MESSAGE_EOS;
  if (msg) gst_message_unref(msg);
  gst_object_unref(bus);
  gst_element_set_state(pipeline, GST_STATE_NULL);
  return eos;
}

// Settings that would stall the stream are bounded (was: tile-size=1 made one small frame
// take 40-60 s, and NULL waited for it).
TEST(Element, TileSettingsThatWouldStallTheStreamAreRefused) {
  GstHarness* h = harness(caps_for(GST_VIDEO_FORMAT_RGB), "tile-size=48");
  GstElement* filter = gst_harness_find_element(h, "pefmfilter");
  ASSERT_NE(filter, nullptr);
  for (const int tiny : {1, 2, 31}) {
    g_object_set(filter, "tile-size", tiny, nullptr);
    gint size = 0;
    g_object_get(filter, "tile-size", &size, nullptr);
    EXPECT_EQ(size, 48) << "tile-size " << tiny << " was accepted";
  }
  GstVideoInfo info;
  GstBuffer* out = gst_harness_push_and_pull(h, make_buffer(texture_image(kH, kW, 3), GST_VIDEO_FORMAT_RGB, &info));
  ASSERT_NE(out, nullptr);
  gst_buffer_unref(out);
  // An overlap above half a tile: the frame is an error naming the property, not a stall.
  g_object_set(filter, "tile-overlap", 40, nullptr);
  EXPECT_EQ(gst_harness_push(h, make_buffer(texture_image(kH, kW, 4), GST_VIDEO_FORMAT_RGB, &info)), GST_FLOW_ERROR);
  gst_object_unref(filter);
  gst_harness_teardown(h);

  const auto t0 = std::chrono::steady_clock::now();
  h = harness(caps_for(GST_VIDEO_FORMAT_GRAY8, 4096, 2048), "tile-size=32");  // 8192 tiles
  GstBuffer* big = gst_buffer_new_allocate(nullptr, 4096 * 2048, nullptr);
  gst_buffer_memset(big, 0, 128, 4096 * 2048);
  EXPECT_EQ(gst_harness_push(h, big), GST_FLOW_ERROR);
  gst_harness_teardown(h);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 10.0)
      << "refused before any tile was inspected";
}

// Stopping does not wait for a large frame: the frame in progress is abandoned between tile
// batches. Compared with the time the same frame takes whole, so no fixed speed is assumed.
TEST(Element, StoppingAbandonsALargeFrameBetweenTiles) {
  constexpr int W = 512, H = 1024;  // 32 px tiles: 512 tiles, 32 batches
  pefm::FrameDetector core(std::make_shared<pefm::Model>(pefm::load_model(g_model)), {"cpu"});
  std::vector<uint8_t> gray(static_cast<size_t>(W) * H, 120);
  pefm::FrameView view;
  view.format = pefm::FrameFormat::kGray8;
  view.width = W;
  view.height = H;
  view.planes[0] = gray.data();
  view.strides[0] = W;
  auto t0 = std::chrono::steady_clock::now();
  core.process(view, 0.5, {32, 0});
  const double whole = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  const auto launch = "appsrc name=src caps=\"" + caps_for(GST_VIDEO_FORMAT_GRAY8, W, H) +
                      "\" ! pefmfilter device=cpu tile-size=32 model=" + g_model +
                      " ! fakesink name=sink async=false signal-handoffs=true";
  GstElement* pipeline = gst_parse_launch(launch.c_str(), nullptr);
  ASSERT_NE(pipeline, nullptr);
  GstElement* src = gst_bin_get_by_name(GST_BIN(pipeline), "src");
  GstElement* sink = gst_bin_get_by_name(GST_BIN(pipeline), "sink");
  std::atomic<int> delivered{0};
  g_signal_connect(sink, "handoff", G_CALLBACK(+[](GstElement*, GstBuffer*, GstPad*, gpointer n) {
                     static_cast<std::atomic<int>*>(n)->fetch_add(1);
                   }), &delivered);
  ASSERT_EQ(gst_element_set_state(pipeline, GST_STATE_PLAYING), GST_STATE_CHANGE_SUCCESS);
  GstBuffer* frame = gst_buffer_new_allocate(nullptr, gray.size(), nullptr);
  gst_buffer_fill(frame, 0, gray.data(), gray.size());
  EXPECT_EQ(gst_app_src_push_buffer(GST_APP_SRC(src), frame), GST_FLOW_OK);
  std::this_thread::sleep_for(std::chrono::duration<double>(whole / 8));  // well into the frame
  t0 = std::chrono::steady_clock::now();
  gst_element_set_state(pipeline, GST_STATE_NULL);
  const double stop = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "whole frame " << whole << " s, stopping " << stop << " s\n";
  EXPECT_LT(stop, whole / 2) << "stopping took " << stop << " s; the whole frame takes " << whole << " s";
  EXPECT_EQ(delivered.load(), 0) << "the frame was finished, not abandoned";
  gst_object_unref(sink);
  gst_object_unref(src);
  gst_object_unref(pipeline);
}

TEST(Element, FiftyNullPlayingCyclesReleaseEverything) {
  const bool check_rss = !pefm_test::kSanitized;  // ASan's quarantine keeps freed memory; LSan checks leaks there
  const auto launch = "videotestsrc num-buffers=2 ! video/x-raw,width=64,height=48 ! pefmfilter device=cpu model=" +
                      g_model + " ! fakesink";
  GstElement* pipeline = gst_parse_launch(launch.c_str(), nullptr);
  ASSERT_TRUE(run_to_eos(pipeline));  // warm-up: allocator pools settle
  const long before = pefm_test::rss_kib();
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(run_to_eos(pipeline)) << "cycle " << i;
    EXPECT_EQ(pefm::FrameDetector::shared_instances(), 0u) << "model still held after NULL, cycle " << i;
  }
  const long grown = pefm_test::rss_kib() - before;
  if (check_rss) {
    EXPECT_LT(grown, 30 * 1024) << "RSS grew by " << grown << " KiB over 50 cycles";
  }
  gst_object_unref(pipeline);
}

// Plays `pipeline` until EOS and leaves it in READY. Returns "" or what went wrong.
std::string play_to_eos_then_ready(GstElement* pipeline) {
  gst_element_set_state(pipeline, GST_STATE_PLAYING);
  GstBus* bus = gst_element_get_bus(pipeline);
  GstMessage* msg = gst_bus_timed_pop_filtered(bus, 20 * GST_SECOND,
                                               static_cast<GstMessageType>(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
  std::string why = msg ? "" : "timeout";
  if (msg && GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ERROR) {
    GError* err = nullptr;
    gchar* debug = nullptr;
    gst_message_parse_error(msg, &err, &debug);
    why = std::string(err->message) + " / " + (debug ? debug : "");
    g_error_free(err);
    g_free(debug);
  }
  if (msg) gst_message_unref(msg);
  gst_object_unref(bus);
  gst_element_set_state(pipeline, GST_STATE_READY);
  return why;
}

struct SeenMeta {
  int frames = 0;
  int map_width = 0;
  bool calibrated = false;
};

GstPadProbeReturn record_meta(GstPad*, GstPadProbeInfo* info, gpointer user_data) {
  auto* seen = static_cast<SeenMeta*>(user_data);
  if (GstPefmMeta* m = gst_buffer_get_pefm_meta(GST_PAD_PROBE_INFO_BUFFER(info))) {
    seen->frames++;
    seen->map_width = static_cast<int>(m->map_width);
    seen->calibrated = m->calibrated;
  }
  return GST_PAD_PROBE_OK;
}

TEST(Element, ModelChangedInReadyIsReloaded) {
  // A second model that differs visibly: 32 px input (so a 32 px wide map) and no calibration.
  auto cfg = pefm_test::tiny_config();
  cfg.image_size = 32;
  torch::manual_seed(3);
  const auto other = g_dir->file("other.pt");
  pefm::save_model(pefm::Model::create(cfg), other);

  const auto launch = "videotestsrc num-buffers=1 ! video/x-raw,width=64,height=48 ! pefmfilter name=f "
                      "device=cpu model=" + g_model + " ! fakesink";
  GstElement* pipeline = gst_parse_launch(launch.c_str(), nullptr);
  GstElement* filter = gst_bin_get_by_name(GST_BIN(pipeline), "f");
  GstPad* src = gst_element_get_static_pad(filter, "src");
  SeenMeta seen;
  gst_pad_add_probe(src, GST_PAD_PROBE_TYPE_BUFFER, record_meta, &seen, nullptr);

  ASSERT_EQ(play_to_eos_then_ready(pipeline), "");
  EXPECT_EQ(seen.frames, 1);
  EXPECT_EQ(seen.map_width, 64);
  EXPECT_TRUE(seen.calibrated);

  g_object_set(filter, "model", other.c_str(), nullptr);
  ASSERT_EQ(play_to_eos_then_ready(pipeline), "");
  EXPECT_EQ(seen.frames, 2);
  EXPECT_EQ(seen.map_width, 32) << "the new model was not loaded";
  EXPECT_FALSE(seen.calibrated);

  // And back, through a broken file in between: the failure names it, the next good one loads.
  const auto junk = g_dir->file("reload-junk.pt");
  pefm_test::spit(junk, "PEFMMODL but not really");
  g_object_set(filter, "model", junk.c_str(), nullptr);
  EXPECT_EQ(gst_element_set_state(pipeline, GST_STATE_PAUSED), GST_STATE_CHANGE_FAILURE);
  GstBus* bus = gst_element_get_bus(pipeline);
  GstMessage* msg = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
  ASSERT_NE(msg, nullptr);
  GError* err = nullptr;
  gst_message_parse_error(msg, &err, nullptr);
  EXPECT_NE(std::string(err->message).find("reload-junk.pt' (property 'model')"), std::string::npos) << err->message;
  g_error_free(err);
  gst_message_unref(msg);
  gst_object_unref(bus);
  gst_element_set_state(pipeline, GST_STATE_READY);
  g_object_set(filter, "model", g_model.c_str(), nullptr);
  ASSERT_EQ(play_to_eos_then_ready(pipeline), "");
  EXPECT_EQ(seen.frames, 3);
  EXPECT_EQ(seen.map_width, 64);
  EXPECT_TRUE(seen.calibrated);

  gst_element_set_state(pipeline, GST_STATE_NULL);
  EXPECT_EQ(pefm::FrameDetector::shared_instances(), 0u);
  gst_object_unref(src);
  gst_object_unref(filter);
  gst_object_unref(pipeline);
}

GstPadProbeReturn record_threads(GstPad*, GstPadProbeInfo*, gpointer user_data) {
  *static_cast<int*>(user_data) = at::get_num_threads();  // in the streaming thread
  return GST_PAD_PROBE_OK;
}

TEST(Element, Bf16PrecisionOnTheCpuGivesTheFp32Decision) {
  std::vector<float> maps[2];
  bool anomalous[2];
  for (int i = 0; i < 2; ++i) {
    GstHarness* h = harness(caps_for(GST_VIDEO_FORMAT_RGB), i ? "precision=bf16" : "precision=fp32");
    GstVideoInfo info;
    GstBuffer* out = gst_harness_push_and_pull(
        h, make_buffer(paste_patch(texture_image(kH, kW, 7), 20, 30, 16), GST_VIDEO_FORMAT_RGB, &info));
    GstPefmMeta* m = gst_buffer_get_pefm_meta(out);
    ASSERT_NE(m, nullptr);
    maps[i].assign(m->map, m->map + m->map_width * m->map_height);
    anomalous[i] = m->anomalous;
    gst_buffer_unref(out);
    gst_harness_teardown(h);
  }
  EXPECT_EQ(anomalous[0], anomalous[1]);
  float worst = 0.0f;
  for (size_t j = 0; j < maps[0].size(); ++j) worst = std::max(worst, std::abs(maps[0][j] - maps[1][j]));
  EXPECT_LT(worst, 0.05f) << "normalised maps differ by up to " << worst;
}

// GPU check (bench/gpu-check.sh): the element on CUDA, through its own stream and pinned
// upload, gives the CPU's map: fp32 (TF32 off) within 1e-3 of the normalised map, bf16
// within 0.05 as on the CPU.
TEST(ElementCuda, CudaMapMatchesTheCpu) {
  PEFM_CUDA_OR_SKIP();
  const auto run = [](const std::string& props) {
    std::vector<float> map;
    GstHarness* h = gst_harness_new_parse(("pefmfilter model=\"" + g_model + "\" " + props).c_str());
    gst_harness_set_src_caps_str(h, caps_for(GST_VIDEO_FORMAT_RGB).c_str());
    GstVideoInfo info;
    for (int f = 0; f < 3; ++f) {  // the pinned buffer is reused from the second frame on
      GstBuffer* out = gst_harness_push_and_pull(h, make_buffer(texture_image(kH, kW, 40 + f), GST_VIDEO_FORMAT_RGB, &info));
      GstPefmMeta* m = gst_buffer_get_pefm_meta(out);
      EXPECT_NE(m, nullptr) << props;
      if (m && f == 2) map.assign(m->map, m->map + m->map_width * m->map_height);
      gst_buffer_unref(out);
    }
    gst_harness_teardown(h);
    return map;
  };
  const auto cpu = run("device=cpu");
  ASSERT_FALSE(cpu.empty());
  for (const auto& [props, tol] : {std::pair<std::string, float>{"device=cuda", 1e-3f}, {"device=cuda precision=bf16", 0.05f}}) {
    const auto gpu = run(props);
    ASSERT_EQ(gpu.size(), cpu.size()) << props;
    float worst = 0.0f;
    for (size_t j = 0; j < cpu.size(); ++j) worst = std::max(worst, std::abs(cpu[j] - gpu[j]));
    EXPECT_LT(worst, tol) << props;
  }
}

TEST(Element, ThreadsPropertySetsTheInferenceThreads) {
  for (const int threads : {1, 3}) {
    const auto launch = "videotestsrc num-buffers=2 ! video/x-raw,width=64,height=48 ! pefmfilter name=f device=cpu "
                        "threads=" + std::to_string(threads) + " model=" + g_model + " ! fakesink";
    GstElement* pipeline = gst_parse_launch(launch.c_str(), nullptr);
    GstElement* filter = gst_bin_get_by_name(GST_BIN(pipeline), "f");
    GstPad* src = gst_element_get_static_pad(filter, "src");
    int seen = -1;
    gst_pad_add_probe(src, GST_PAD_PROBE_TYPE_BUFFER, record_threads, &seen, nullptr);
    EXPECT_TRUE(run_to_eos(pipeline));
    EXPECT_EQ(seen, threads);
    gst_object_unref(src);
    gst_object_unref(filter);
    gst_object_unref(pipeline);
  }
}

// A CUDA failure mid-stream (device lost, out of memory) reaches the element as a LibTorch
// exception; it must become an ERROR message on the bus, never an abort, and the element
// must keep working once the cause is gone.
TEST(Element, DetectionFailureBecomesAnErrorMessage) {
  GstHarness* h = harness(caps_for(GST_VIDEO_FORMAT_RGB));
  GstBus* bus = gst_bus_new();
  gst_element_set_bus(h->element, bus);
  GstVideoInfo info;
  GstBuffer* out = gst_harness_push_and_pull(h, make_buffer(texture_image(kH, kW, 1), GST_VIDEO_FORMAT_RGB, &info));
  ASSERT_NE(out, nullptr);
  gst_buffer_unref(out);

  const auto shared = pefm::FrameDetector::acquire(g_model, {"cpu"});  // the element's instance
  ASSERT_EQ(pefm::FrameDetector::shared_instances(), 1u);
  shared->inject_failures(1, "CUDA out of memory. Tried to allocate 2.00 GiB");
  EXPECT_EQ(gst_harness_push(h, make_buffer(texture_image(kH, kW, 2), GST_VIDEO_FORMAT_RGB, &info)), GST_FLOW_ERROR);
  GstMessage* msg = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
  ASSERT_NE(msg, nullptr) << "no ERROR message posted";
  GError* err = nullptr;
  gchar* debug = nullptr;
  gst_message_parse_error(msg, &err, &debug);
  EXPECT_NE(std::string(err->message).find("Anomaly detection failed on frame 1"), std::string::npos) << err->message;
  EXPECT_NE(std::string(debug).find("CUDA out of memory"), std::string::npos) << debug;
  g_error_free(err);
  g_free(debug);
  gst_message_unref(msg);

  out = gst_harness_push_and_pull(h, make_buffer(texture_image(kH, kW, 3), GST_VIDEO_FORMAT_RGB, &info));
  ASSERT_NE(out, nullptr) << "the element must recover once the fault is gone";
  EXPECT_NE(gst_buffer_get_pefm_meta(out), nullptr);
  gst_buffer_unref(out);
  gst_element_set_bus(h->element, nullptr);
  gst_object_unref(bus);
  gst_harness_teardown(h);
}

TEST(Element, InstancesShareOneCopyOfTheWeights) {
  const auto launch = "videotestsrc num-buffers=1 ! video/x-raw,width=64,height=48 ! tee name=t "
                      "t. ! queue ! pefmfilter name=a device=cpu model=" + g_model + " ! fakesink "
                      "t. ! queue ! pefmfilter name=b device=cpu model=" + g_model + " ! fakesink";
  GstElement* pipeline = gst_parse_launch(launch.c_str(), nullptr);
  ASSERT_EQ(gst_element_set_state(pipeline, GST_STATE_PAUSED), GST_STATE_CHANGE_ASYNC);
  gst_element_get_state(pipeline, nullptr, nullptr, 10 * GST_SECOND);
  EXPECT_EQ(pefm::FrameDetector::shared_instances(), 1u);
  gst_element_set_state(pipeline, GST_STATE_NULL);
  EXPECT_EQ(pefm::FrameDetector::shared_instances(), 0u);
  gst_object_unref(pipeline);
}

TEST(Element, TilingStitchesASeamlessMapOnAConstantStrip) {
  const int W = 2048, H = 256;
  GstHarness* h = harness(caps_for(GST_VIDEO_FORMAT_GRAY8, W, H), "tile-size=256 tile-overlap=64 overlay=none");
  GstBuffer* in = gst_buffer_new_allocate(nullptr, static_cast<size_t>(W) * H, nullptr);
  gst_buffer_memset(in, 0, 128, static_cast<size_t>(W) * H);
  GstBuffer* out = gst_harness_push_and_pull(h, in);
  GstPefmMeta* m = gst_buffer_get_pefm_meta(out);
  ASSERT_NE(m, nullptr);
  // 256-px tiles at 64 px each: the map is 64 / 256 of the frame in each direction.
  EXPECT_EQ(m->map_width, 512u);
  EXPECT_EQ(m->map_height, 64u);
  EXPECT_NEAR(m->map_scale_x, 4.0, 1e-9);
  auto map = torch::from_blob(m->map, {m->map_height, m->map_width}, torch::kFloat32).clone();
  ASSERT_TRUE(torch::isfinite(map).all().item<bool>());
  // No seams: at each tile border the jump between neighbouring columns is about as small
  // as inside a tile, and the overlap carries no band brighter than the tile interior (tile
  // edges, distorted by zero padding, are faded out rather than stitched in).
  const auto steps = (map.slice(1, 1) - map.slice(1, 0, -1)).abs().amax(0);  // [511]
  const auto interior_step = steps.slice(0, 8, 40).max().item<float>();  // inside the first tile
  const auto interior_max = map.slice(1, 8, 40).max().item<float>();
  for (int border = 48; border < 511; border += 48) {
    EXPECT_LE(steps[border].item<float>(), interior_step * 1.25f + 1e-6f) << "column " << border;
    EXPECT_LE(map.slice(1, border, border + 16).max().item<float>(), interior_max + 0.02f) << "overlap at " << border;
  }
  gst_buffer_unref(out);
  gst_harness_teardown(h);
}

TEST(Element, MetaSurvivesVideoscaleAndTee) {
  const auto launch = "videotestsrc num-buffers=1 ! video/x-raw,format=RGB,width=96,height=64 ! pefmfilter device=cpu "
                      "threshold=0 overlay=none model=" + g_model +
                      " ! tee name=t t. ! queue ! videoscale ! video/x-raw,width=48,height=32 ! appsink name=small "
                      "t. ! queue ! appsink name=full";
  GstElement* pipeline = gst_parse_launch(launch.c_str(), nullptr);
  gst_element_set_state(pipeline, GST_STATE_PLAYING);
  GstElement* small = gst_bin_get_by_name(GST_BIN(pipeline), "small");
  GstElement* full = gst_bin_get_by_name(GST_BIN(pipeline), "full");
  GstSample* s_small = nullptr;
  GstSample* s_full = nullptr;
  g_signal_emit_by_name(small, "pull-sample", &s_small);
  g_signal_emit_by_name(full, "pull-sample", &s_full);
  ASSERT_NE(s_small, nullptr);
  ASSERT_NE(s_full, nullptr);
  GstPefmMeta* a = gst_buffer_get_pefm_meta(gst_sample_get_buffer(s_full));
  GstPefmMeta* b = gst_buffer_get_pefm_meta(gst_sample_get_buffer(s_small));
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr) << "meta lost through videoscale";
  EXPECT_EQ(a->score, b->score);
  EXPECT_EQ(a->map_width, b->map_width);
  EXPECT_NEAR(b->map_scale_x, a->map_scale_x / 2, 1e-9);
  ASSERT_EQ(a->n_regions, 1u);
  ASSERT_EQ(b->n_regions, 1u);
  EXPECT_EQ(a->regions[0].width, 96);
  EXPECT_EQ(b->regions[0].width, 48);
  EXPECT_EQ(b->regions[0].height, 32);
  EXPECT_NE(gst_buffer_get_video_region_of_interest_meta_id(gst_sample_get_buffer(s_small), 0), nullptr);
  gst_sample_unref(s_small);
  gst_sample_unref(s_full);
  gst_object_unref(small);
  gst_object_unref(full);
  gst_element_set_state(pipeline, GST_STATE_NULL);
  gst_object_unref(pipeline);
}

TEST(Element, PostsOneMessagePerFrameOrPerAnomalousFrame) {
  for (const char* mode : {"all", "anomalous"}) {
    const auto launch = std::string("videotestsrc num-buffers=4 ! video/x-raw,width=64,height=48 ! pefmfilter "
                                    "device=cpu emit-messages=true threshold=1e9 message-mode=") + mode +
                        " model=" + g_model + " ! fakesink";
    GstElement* pipeline = gst_parse_launch(launch.c_str(), nullptr);
    gst_element_set_state(pipeline, GST_STATE_PLAYING);
    GstBus* bus = gst_element_get_bus(pipeline);
    int messages = 0;
    while (GstMessage* msg = gst_bus_timed_pop_filtered(
               bus, 10 * GST_SECOND,
               static_cast<GstMessageType>(GST_MESSAGE_ELEMENT | GST_MESSAGE_EOS | GST_MESSAGE_ERROR))) {
      const bool done = GST_MESSAGE_TYPE(msg) != GST_MESSAGE_ELEMENT;
      if (!done && gst_structure_has_name(gst_message_get_structure(msg), "pefm")) {
        const GstStructure* s = gst_message_get_structure(msg);
        guint64 ts = 0;
        gboolean anomalous = TRUE;
        EXPECT_TRUE(gst_structure_get_uint64(s, "timestamp", &ts));
        EXPECT_TRUE(gst_structure_get_boolean(s, "anomalous", &anomalous));
        EXPECT_FALSE(anomalous);
        EXPECT_TRUE(gst_structure_has_field(s, "score"));
        EXPECT_TRUE(gst_structure_has_field(s, "regions"));
        ++messages;
      }
      gst_message_unref(msg);
      if (done) break;
    }
    EXPECT_EQ(messages, std::string(mode) == "all" ? 4 : 0) << mode;
    gst_object_unref(bus);
    gst_element_set_state(pipeline, GST_STATE_NULL);
    gst_object_unref(pipeline);
  }
}

TEST(Element, GstLaunchOnTheSampleVideoPostsMessages) {
  const auto video = pefm_test::shared_file("media/bottle-detection.mp4");
  if (video.empty()) GTEST_SKIP() << "../shared/media/bottle-detection.mp4 absent";
  if (pefm_test::kSanitized) GTEST_SKIP() << "sanitizer build: the uninstrumented gst-launch-1.0 cannot load an ASan-built plugin";
  if (!gst_registry_check_feature_version(gst_registry_get(), "avdec_h264", 1, 0, 0)) {
    GTEST_SKIP() << "no H.264 decoder (gstreamer1.0-libav)";
  }
  const auto cmd = std::string("gst-launch-1.0 -m filesrc location=\"") + video +
                   "\" ! qtdemux ! h264parse ! avdec_h264 ! videoconvert ! identity eos-after=8 ! pefmfilter "
                   "device=cpu emit-messages=true model=\"" + g_model + "\" ! fakesink 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof(buf), p)) out.append(buf, n);
  EXPECT_EQ(pclose(p), 0) << out;
  size_t count = 0;
  for (size_t pos = 0; (pos = out.find("(element): pefm, timestamp=", pos)) != std::string::npos; ++pos) ++count;
  EXPECT_GE(count, 7u) << out;
}

}  // namespace
