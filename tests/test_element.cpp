// pefmfilter under GstHarness and in real pipelines.
#include <gst/app/gstappsrc.h>
#include <gst/check/gstharness.h>
#include <gst/controller/gstdirectcontrolbinding.h>
#include <gst/controller/gstinterpolationcontrolsource.h>
#include <gst/gst.h>
#include <gst/video/video.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <tuple>
#include <thread>

#include "common.h"
#include "gstpefmmeta.h"
#include "pefm/detector.h"
#include "pefm/device.h"
#include "pefm/frame.h"
#include "pefm/frame_detector.h"
#include "pefm/frame_input.h"
#include "pefm/model_file.h"
#include "pefm/overlay.h"
#include "pefm/preprocess.h"
#include "pefm/testing.h"
#include "pefm/trainer.h"

namespace {

using pefm_test::paste_patch;
using pefm_test::texture_image;

constexpr int kW = 96, kH = 64;

// A tiny model trained for a few seconds on textures and calibrated on clean ones.
std::string g_model, g_raw_model;
pefm_test::TempDir* g_dir = nullptr;

class Environment : public ::testing::Environment {
 public:
  void SetUp() override {
    gst_init(nullptr, nullptr);
    g_dir = new pefm_test::TempDir();
    auto model = pefm_test::trained_texture_model(kH, kW);
    g_raw_model = g_dir->file("raw.pt");  // uncalibrated: the meta carries raw, unclamped maps
    pefm::save_model(*model, g_raw_model);
    pefm_test::calibrate_on_textures(model, kH, kW);
    g_model = g_dir->file("tiny.pt");
    pefm::save_model(*model, g_model);
  }
  void TearDown() override { delete g_dir; }
};
const auto* const g_env = ::testing::AddGlobalTestEnvironment(new Environment);

// `in` (a buffer of `in_info`) converted to `out_info` by GStreamer's own converter, chroma
// resampled by nearest neighbour (as pefm reads it) and without dithering.
GstBuffer* convert(GstBuffer* in, const GstVideoInfo* in_info, const GstVideoInfo* out_info) {
  GstBuffer* dst = gst_buffer_new_allocate(nullptr, GST_VIDEO_INFO_SIZE(out_info), nullptr);
  GstVideoFrame sf, df;
  gst_video_frame_map(&sf, in_info, in, GST_MAP_READ);
  gst_video_frame_map(&df, out_info, dst, GST_MAP_WRITE);
  GstStructure* opts = gst_structure_new(
      "options", GST_VIDEO_CONVERTER_OPT_CHROMA_RESAMPLER_METHOD, GST_TYPE_VIDEO_RESAMPLER_METHOD,
      GST_VIDEO_RESAMPLER_METHOD_NEAREST, GST_VIDEO_CONVERTER_OPT_DITHER_METHOD, GST_TYPE_VIDEO_DITHER_METHOD,
      GST_VIDEO_DITHER_NONE, nullptr);
  GstVideoConverter* conv = gst_video_converter_new(const_cast<GstVideoInfo*>(in_info),
                                                    const_cast<GstVideoInfo*>(out_info), opts);
  gst_video_converter_frame(conv, &sf, &df);
  gst_video_converter_free(conv);
  gst_video_frame_unmap(&sf);
  gst_video_frame_unmap(&df);
  return dst;
}

// YUV chroma is sited at the centre of each 2x2 block (JPEG), where pefm reads it: with the
// default MPEG-2 siting GStreamer's nearest-neighbour upsampling gives odd columns the next
// block's chroma.
void set_info(GstVideoInfo* info, GstVideoFormat format, int w, int h, const char* colorimetry) {
  gst_video_info_set_format(info, format, w, h);
  if (GST_VIDEO_INFO_IS_YUV(info)) info->chroma_site = GST_VIDEO_CHROMA_SITE_JPEG;
  if (colorimetry) {
    ASSERT_TRUE(gst_video_colorimetry_from_string(&info->colorimetry, colorimetry)) << colorimetry;
  }
}

GstBuffer* rgb_buffer(const torch::Tensor& rgb) {
  const int h = static_cast<int>(rgb.size(0)), w = static_cast<int>(rgb.size(1));
  GstVideoInfo in;
  gst_video_info_set_format(&in, GST_VIDEO_FORMAT_RGB, w, h);
  GstBuffer* b = gst_buffer_new_allocate(nullptr, GST_VIDEO_INFO_SIZE(&in), nullptr);
  GstVideoFrame f;
  gst_video_frame_map(&f, &in, b, GST_MAP_WRITE);
  const auto t = rgb.contiguous();
  for (int y = 0; y < h; ++y) {
    std::memcpy(static_cast<uint8_t*>(GST_VIDEO_FRAME_PLANE_DATA(&f, 0)) + y * GST_VIDEO_FRAME_PLANE_STRIDE(&f, 0),
                t.data_ptr<uint8_t>() + y * w * 3, static_cast<size_t>(w) * 3);
  }
  gst_video_frame_unmap(&f);
  return b;
}

// RGB frame converted to `format` (and `colorimetry`, e.g. "bt709" or "1:4:0:0") by
// GStreamer's own converter.
GstBuffer* make_buffer(const torch::Tensor& rgb, GstVideoFormat format, GstVideoInfo* out_info,
                       const char* colorimetry = nullptr) {
  GstVideoInfo in;
  gst_video_info_set_format(&in, GST_VIDEO_FORMAT_RGB, static_cast<int>(rgb.size(1)), static_cast<int>(rgb.size(0)));
  set_info(out_info, format, static_cast<int>(rgb.size(1)), static_cast<int>(rgb.size(0)), colorimetry);
  GstBuffer* src = rgb_buffer(rgb);
  GstBuffer* dst = convert(src, &in, out_info);
  gst_buffer_unref(src);
  return dst;
}

// A frame in colour: hue gradients (every channel different, so a swapped channel or
// chroma plane changes what the network sees) and a saturated green defect. Constant over
// 2x2 blocks, so that 4:2:0 subsampling loses nothing and where chroma is sited (MPEG-2's
// cosited or JPEG's centred) cannot matter: YUV differs from RGB only by the conversion.
torch::Tensor colour_image(int64_t h, int64_t w, bool defect) {
  const int64_t hh = (h + 1) / 2, hw = (w + 1) / 2;
  const auto ys = torch::arange(hh, torch::kFloat32).view({hh, 1}).expand({hh, hw});
  const auto xs = torch::arange(hw, torch::kFloat32).view({1, hw}).expand({hh, hw});
  auto img = torch::stack({0.55 + 0.35 * torch::sin(xs * 0.22), 0.35 + 0.2 * torch::cos(ys * 0.26),
                           0.5 + 0.3 * torch::sin((xs + ys) * 0.14)},
                          2);
  if (defect) img.slice(0, 10, 18).slice(1, 25, 35).copy_(torch::tensor({0.1f, 0.9f, 0.15f}));
  img = img.repeat_interleave(2, 0).repeat_interleave(2, 1).slice(0, 0, h).slice(1, 0, w);
  return (img.clamp(0, 1) * 255).round().to(torch::kUInt8).contiguous();
}

std::string caps_for(GstVideoFormat format, int w = kW, int h = kH, const char* colorimetry = nullptr) {
  return std::string("video/x-raw,format=") + gst_video_format_to_string(format) + ",width=" + std::to_string(w) +
         ",height=" + std::to_string(h) + ",framerate=30/1" +
         (colorimetry ? std::string(",colorimetry=(string)") + colorimetry : "");
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
  // Standard ROI metas mirror the regions (besides the frame's own, tested below).
  gpointer state = nullptr;
  guint rois = 0;
  while (GstMeta* meta = gst_buffer_iterate_meta_filtered(out_defect, &state, GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE)) {
    auto* roi = reinterpret_cast<GstVideoRegionOfInterestMeta*>(meta);
    if (roi->roi_type == g_quark_from_string("frame")) continue;
    EXPECT_EQ(roi->roi_type, g_quark_from_string("anomaly"));
    const GstStructure* s = gst_video_region_of_interest_meta_get_param(roi, "pefm");
    ASSERT_NE(s, nullptr);
    double score = 0;
    EXPECT_TRUE(gst_structure_get_double(s, "score", &score));
    // DL Streamer's detection form of the same box: corners normalised to the frame.
    const GstStructure* d = gst_video_region_of_interest_meta_get_param(roi, "detection");
    ASSERT_NE(d, nullptr);
    double x0 = -1, y0 = -1, x1 = -1, y1 = -1, confidence = -1;
    gint label_id = -1;
    ASSERT_TRUE(gst_structure_get_double(d, "x_min", &x0) && gst_structure_get_double(d, "y_min", &y0) &&
                gst_structure_get_double(d, "x_max", &x1) && gst_structure_get_double(d, "y_max", &y1) &&
                gst_structure_get_double(d, "confidence", &confidence) &&
                gst_structure_get_int(d, "label_id", &label_id));
    EXPECT_DOUBLE_EQ(x0, roi->x / double(kW));
    EXPECT_DOUBLE_EQ(y0, roi->y / double(kH));
    EXPECT_DOUBLE_EQ(x1, (roi->x + roi->w) / double(kW));
    EXPECT_DOUBLE_EQ(y1, (roi->y + roi->h) / double(kH));
    EXPECT_DOUBLE_EQ(confidence, std::clamp(score, 0.0, 1.0));
    EXPECT_EQ(label_id, 0);
    EXPECT_STREQ(gst_structure_get_string(d, "label"), "anomaly");
    // The frame's decision as a classifier's result on the ROI.
    const GstStructure* c = gst_video_region_of_interest_meta_get_param(roi, "classification");
    ASSERT_NE(c, nullptr);
    double frame_confidence = -1;
    gint frame_label_id = -1;
    ASSERT_TRUE(gst_structure_get_double(c, "confidence", &frame_confidence) &&
                gst_structure_get_int(c, "label_id", &frame_label_id));
    EXPECT_DOUBLE_EQ(frame_confidence, std::clamp(static_cast<double>(m1->score), 0.0, 1.0));
    EXPECT_EQ(frame_label_id, 1);
    EXPECT_STREQ(gst_structure_get_string(c, "label"), "anomalous");
    EXPECT_STREQ(gst_structure_get_string(c, "attribute_name"), "frame");
    EXPECT_STREQ(gst_structure_get_string(c, "model_name"), "tiny.pt");
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
                      GST_VIDEO_FORMAT_GRAY16_LE, GST_VIDEO_FORMAT_I420, GST_VIDEO_FORMAT_NV12),
    [](const auto& info) { return std::string(gst_video_format_to_string(info.param)); });

// Changed pixels of plane 0 (packed pixels, or luma) between two buffers of `info`.
std::vector<std::pair<int, int>> changed_pixels(GstBuffer* before, GstBuffer* after, const GstVideoInfo* info) {
  std::vector<std::pair<int, int>> out;
  GstVideoFrame a, b;
  gst_video_frame_map(&a, info, before, GST_MAP_READ);
  gst_video_frame_map(&b, info, after, GST_MAP_READ);
  const int ps = GST_VIDEO_FRAME_COMP_PSTRIDE(&a, 0);
  for (int y = 0; y < GST_VIDEO_INFO_HEIGHT(info); ++y) {
    const auto* ra = static_cast<const uint8_t*>(GST_VIDEO_FRAME_PLANE_DATA(&a, 0)) + y * GST_VIDEO_FRAME_PLANE_STRIDE(&a, 0);
    const auto* rb = static_cast<const uint8_t*>(GST_VIDEO_FRAME_PLANE_DATA(&b, 0)) + y * GST_VIDEO_FRAME_PLANE_STRIDE(&b, 0);
    for (int x = 0; x < GST_VIDEO_INFO_WIDTH(info); ++x) {
      if (std::memcmp(ra + x * ps, rb + x * ps, static_cast<size_t>(ps)) != 0) out.emplace_back(x, y);
    }
  }
  gst_video_frame_unmap(&a);
  gst_video_frame_unmap(&b);
  return out;
}

// pefmoverlay draws from the meta what pefmfilter draws itself: at the same size, the same
// bytes in every format; a frame without a meta passes untouched.
TEST_P(ElementFormats, OverlayElementDrawsTheBytesTheFilterDraws) {
  const GstVideoFormat format = GetParam();
  GstVideoInfo info;
  const auto defect = paste_patch(texture_image(kH, kW, 999), 30, 60, 20);
  GstBuffer* original = make_buffer(defect, format, &info);
  GstHarness* by_filter = harness(caps_for(format), "overlay=heatmap+contours");
  GstHarness* by_overlay = harness(caps_for(format), "overlay=none ! pefmoverlay");
  GstBuffer* a = gst_harness_push_and_pull(by_filter, gst_buffer_copy_deep(original));
  GstBuffer* b = gst_harness_push_and_pull(by_overlay, gst_buffer_copy_deep(original));
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_FALSE(changed_pixels(original, a, &info).empty()) << "pefmfilter drew nothing on the defect";
  EXPECT_EQ(bytes(a), bytes(b)) << changed_pixels(a, b, &info).size() << " pixels differ";

  // A frame it does not draw on is not even copied (after a tee its memory is shared).
  GstHarness* bare = gst_harness_new("pefmoverlay");
  gst_harness_set_src_caps_str(bare, caps_for(format).c_str());
  GstBuffer* shared = gst_buffer_copy_deep(original);
  GstMemory* memory = gst_buffer_peek_memory(shared, 0);
  GstBuffer* c = gst_harness_push_and_pull(bare, gst_buffer_ref(shared));
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(bytes(c), bytes(original)) << "drew on a frame without results";
  EXPECT_EQ(gst_buffer_peek_memory(c, 0), memory) << "copied a frame it did not draw on";
  for (GstBuffer* buf : {original, a, b, c, shared}) gst_buffer_unref(buf);
  for (GstHarness* h : {by_filter, by_overlay, bare}) gst_harness_teardown(h);
}

// After videoscale, pefmoverlay draws at the new size: the outline surrounds the defect's
// scaled position (the meta's map mapping followed the scaling).
TEST(Element, OverlayElementDrawsWhereTheDefectIsAfterScaling) {
  GstVideoInfo in_info, out_info;
  gst_video_info_set_format(&out_info, GST_VIDEO_FORMAT_RGB, 2 * kW, 2 * kH);
  const auto defect = paste_patch(texture_image(kH, kW, 999), 30, 60, 20);  // x 60..80, y 30..50
  GstBuffer* original = make_buffer(defect, GST_VIDEO_FORMAT_RGB, &in_info);
  const std::string scale = "overlay=none ! videoscale ! capsfilter caps=video/x-raw,width=" + std::to_string(2 * kW) +
                            ",height=" + std::to_string(2 * kH);
  GstHarness* plain = harness(caps_for(GST_VIDEO_FORMAT_RGB), scale);
  GstHarness* drawn = harness(caps_for(GST_VIDEO_FORMAT_RGB), scale + " ! pefmoverlay overlay=contours");
  GstBuffer* a = gst_harness_push_and_pull(plain, gst_buffer_copy_deep(original));
  GstBuffer* b = gst_harness_push_and_pull(drawn, gst_buffer_copy_deep(original));
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  const auto changed = changed_pixels(a, b, &out_info);
  ASSERT_FALSE(changed.empty()) << "no outline drawn";
  int x0 = 1 << 30, y0 = 1 << 30, x1 = -1, y1 = -1;
  for (const auto& [x, y] : changed) {
    x0 = std::min(x0, x), y0 = std::min(y0, y), x1 = std::max(x1, x), y1 = std::max(y1, y);
  }
  // The defect spans x 120..160, y 60..100 at twice the size; the outline hugs it within
  // the heat map's resolution.
  EXPECT_TRUE(x0 >= 120 - 32 && x1 <= 160 + 32 && y0 >= 60 - 32 && y1 <= 100 + 32 && x1 > 120 && y1 > 60)
      << "outline spans " << x0 << ".." << x1 << " x " << y0 << ".." << y1;
  for (GstBuffer* buf : {original, a, b}) gst_buffer_unref(buf);
  for (GstHarness* h : {plain, drawn}) gst_harness_teardown(h);
}

// Plane-0 bytes of pixel (x, y): the packed pixel, or the luma byte.
std::vector<uint8_t> pixel_bytes(GstBuffer* b, const GstVideoInfo* info, int x, int y) {
  GstVideoFrame f;
  gst_video_frame_map(&f, info, b, GST_MAP_READ);
  const int ps = GST_VIDEO_FRAME_COMP_PSTRIDE(&f, 0);
  const auto* p = static_cast<const uint8_t*>(GST_VIDEO_FRAME_PLANE_DATA(&f, 0)) + y * GST_VIDEO_FRAME_PLANE_STRIDE(&f, 0) + x * ps;
  std::vector<uint8_t> v(p, p + ps);
  gst_video_frame_unmap(&f);
  return v;
}

// The overlay on the defect frame (a patch at x 60..80, y 30..50): the heat map draws only
// where the meta's map is warm, mostly around the defect and over it; contours are drawn in
// the contour colour (red 255/32/32 as GStreamer converts it into the format, white in
// GRAY8 and GRAY16_LE); `overlay=none`
// leaves every byte as it came.
TEST_P(ElementFormats, OverlayDrawsAroundTheDefectAndNoneLeavesEveryByte) {
  const GstVideoFormat format = GetParam();
  GstVideoInfo info, red_info;
  const auto defect = paste_patch(texture_image(kH, kW, 999), 30, 60, 20);
  GstBuffer* red = make_buffer(torch::tensor({255, 32, 32}, torch::kUInt8).view({1, 1, 3}).expand({2, 2, 3}).contiguous(),
                               format, &red_info);
  // Gray has no red: contours are white there (at 16 bits, the camera's full range).
  const auto red_bytes = format == GST_VIDEO_FORMAT_GRAY8       ? std::vector<uint8_t>{255}
                         : format == GST_VIDEO_FORMAT_GRAY16_LE ? std::vector<uint8_t>{255, 255}
                                                                : pixel_bytes(red, &red_info, 0, 0);
  gst_buffer_unref(red);
  for (const std::string overlay : {"heatmap+contours", "contours", "none"}) {
    GstHarness* h = harness(caps_for(format), "overlay=" + overlay);
    GstBuffer* in = make_buffer(defect, format, &info);
    GstBuffer* before = gst_buffer_copy_deep(in);
    GstBuffer* out = gst_harness_push_and_pull(h, in);
    ASSERT_NE(out, nullptr);
    GstPefmMeta* m = gst_buffer_get_pefm_meta(out);
    ASSERT_NE(m, nullptr);
    ASSERT_TRUE(m->anomalous) << overlay;
    const auto changed = changed_pixels(before, out, &info);
    if (overlay == "none") {
      EXPECT_EQ(bytes(out), bytes(before)) << "overlay=none changed the frame";
    } else if (overlay == "contours") {
      EXPECT_GT(changed.size(), 20u) << "no contour drawn on an anomalous frame";
      size_t wrong = 0;
      for (const auto& [x, y] : changed) {
        const auto got = pixel_bytes(out, &info, x, y);
        for (size_t i = 0; i < got.size(); ++i) wrong += std::abs(got[i] - red_bytes[i]) > (GST_VIDEO_INFO_IS_YUV(&info) ? 1 : 0);
      }
      EXPECT_EQ(wrong, 0u) << "contour pixels not in the contour colour";
    } else {
      EXPECT_GT(changed.size(), 100u) << "the overlay drew (almost) nothing on an anomalous frame";
      // The tiny model's map is coarse (its deepest scale has 4x4 cells over the frame, 24 x
      // 16 px each) and warm at some frame edges: "around the defect" is within one cell.
      size_t near = 0, cold = 0, on_defect = 0;
      for (const auto& [x, y] : changed) {
        near += x >= 60 - 24 && x < 80 + 24 && y >= 30 - 16 && y < 50 + 16;
        on_defect += x >= 60 && x < 80 && y >= 30 && y < 50;
        // Nothing is drawn where the map is below the heat map's fade-in (0.3): the overlay
        // samples the map bilinearly, so a pixel is cold when all four cells around it are.
        const double fx = std::max(0.0, (x + 0.5) / m->map_scale_x - 0.5);
        const double fy = std::max(0.0, (y + 0.5) / m->map_scale_y - 0.5);
        float warmest = 0.0f;
        for (const guint cy : {static_cast<guint>(fy), static_cast<guint>(fy) + 1}) {
          for (const guint cx : {static_cast<guint>(fx), static_cast<guint>(fx) + 1}) {
            warmest = std::max(warmest, m->map[std::min(cy, m->map_height - 1) * m->map_width + std::min(cx, m->map_width - 1)]);
          }
        }
        cold += warmest < 0.25f;
      }
      EXPECT_EQ(cold, 0u) << cold << " of " << changed.size() << " changed pixels lie where the map is below 0.25";
      EXPECT_GT(near, changed.size() * 3 / 4) << "only " << near << " of " << changed.size() << " changed pixels near the defect";
      EXPECT_GT(on_defect, 20u * 20u / 2) << "the defect itself is mostly not drawn over";
    }
    gst_buffer_unref(before);
    gst_buffer_unref(out);
    gst_harness_teardown(h);
  }
}

// ---------------------------------------------------------------- colour
struct ColourCase {
  GstVideoFormat format;
  const char* colorimetry;  // nullptr: the caps' default (BT.601 limited range at this size)
};

std::string colour_case_name(const ::testing::TestParamInfo<ColourCase>& info) {
  std::string name = gst_video_format_to_string(info.param.format);
  if (info.param.colorimetry) name += std::string("_") + info.param.colorimetry;
  for (auto& c : name) c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return name;
}

// Raw map (uncalibrated model: nothing clamped) of one buffer pushed with `caps`.
torch::Tensor raw_map(const std::string& caps, GstBuffer* buffer) {
  GstHarness* h = gst_harness_new_parse(("pefmfilter device=cpu overlay=none model=\"" + g_raw_model + "\"").c_str());
  gst_harness_set_src_caps_str(h, caps.c_str());
  GstBuffer* out = gst_harness_push_and_pull(h, buffer);
  torch::Tensor map;
  if (GstPefmMeta* m = out ? gst_buffer_get_pefm_meta(out) : nullptr) {
    map = torch::from_blob(m->map, {m->map_height, m->map_width}, torch::kFloat32).clone();
  }
  if (out) gst_buffer_unref(out);
  gst_harness_teardown(h);
  return map;
}

// The frame as the core sees it, for a mapped GStreamer frame (as the element builds it).
// RGB, I420 and NV12 only.
pefm::FrameView view_of(GstVideoFrame* f) {
  pefm::FrameView v;
  switch (GST_VIDEO_FRAME_FORMAT(f)) {
    case GST_VIDEO_FORMAT_RGB: v.format = pefm::FrameFormat::kRGB; break;
    case GST_VIDEO_FORMAT_I420: v.format = pefm::FrameFormat::kI420; break;
    default: v.format = pefm::FrameFormat::kNV12; break;
  }
  v.width = GST_VIDEO_FRAME_WIDTH(f);
  v.height = GST_VIDEO_FRAME_HEIGHT(f);
  for (guint p = 0; p < GST_VIDEO_FRAME_N_PLANES(f); ++p) {
    v.planes[p] = static_cast<uint8_t*>(GST_VIDEO_FRAME_PLANE_DATA(f, p));
    v.strides[p] = GST_VIDEO_FRAME_PLANE_STRIDE(f, p);
  }
  gst_video_color_matrix_get_Kr_Kb(f->info.colorimetry.matrix, &v.kr, &v.kb);
  v.full_range = f->info.colorimetry.range == GST_VIDEO_COLOR_RANGE_0_255;
  return v;
}

class ElementColour : public ::testing::TestWithParam<ColourCase> {};

// A coloured frame with a coloured defect gives, in every accepted format and colorimetry,
// the map of its own pixels in RGB: for packed formats and GRAY8 as GStreamer's converter
// reads them (the original bytes, replicated luma), for YUV decoded with the caps' matrix
// and range as the caps parse (the decoding itself is checked by the colour bars and
// YuvConversion). Catches a swapped channel, an element that passes the wrong matrix, range
// or planes.
TEST_P(ElementColour, ColouredFrameGivesTheMapOfItsRgbPixels) {
  const auto [format, colorimetry] = GetParam();
  GstVideoInfo info, rgb_info;
  GstBuffer* frame = make_buffer(colour_image(kH, kW, true), format, &info, colorimetry);
  GstBuffer* as_rgb = nullptr;
  if (GST_VIDEO_INFO_IS_YUV(&info)) {
    // YUV: the RGB of the caps' colorimetry (as GStreamer parses the caps), decoded exactly
    // (YuvConversion below checks that decoding against the standards' colour bars).
    GstVideoFrame f;
    gst_video_frame_map(&f, &info, frame, GST_MAP_READ);
    as_rgb = rgb_buffer((pefm::frame_to_rgb(view_of(&f)) * 255.0).round().to(torch::kUInt8).contiguous());
    gst_video_frame_unmap(&f);
  } else {
    gst_video_info_set_format(&rgb_info, GST_VIDEO_FORMAT_RGB, kW, kH);
    as_rgb = convert(frame, &info, &rgb_info);
  }
  const auto want = raw_map(caps_for(GST_VIDEO_FORMAT_RGB), as_rgb);
  const auto got = raw_map(caps_for(format, kW, kH, colorimetry), frame);
  ASSERT_TRUE(want.defined() && got.defined());
  ASSERT_EQ(got.sizes(), want.sizes());
  const double rel = ((got - want).abs().max() / want.abs().max()).item<double>();
  // YUV: the reference is rounded to 8 bits, pefm's own decoding is not (half a level).
  const double tol = GST_VIDEO_INFO_IS_YUV(&info) ? 0.005 : 1e-5;
  EXPECT_LT(rel, tol) << "map differs from the RGB map by " << rel << " of its maximum";
}

const ColourCase kColourCases[] = {
    {GST_VIDEO_FORMAT_RGB, nullptr},   {GST_VIDEO_FORMAT_BGR, nullptr},   {GST_VIDEO_FORMAT_RGBA, nullptr},
    {GST_VIDEO_FORMAT_BGRA, nullptr},  {GST_VIDEO_FORMAT_RGBx, nullptr},  {GST_VIDEO_FORMAT_BGRx, nullptr},
    {GST_VIDEO_FORMAT_ARGB, nullptr},  {GST_VIDEO_FORMAT_ABGR, nullptr},  {GST_VIDEO_FORMAT_xRGB, nullptr},
    {GST_VIDEO_FORMAT_xBGR, nullptr},  {GST_VIDEO_FORMAT_GRAY8, nullptr}, {GST_VIDEO_FORMAT_I420, "bt601"},
    {GST_VIDEO_FORMAT_I420, "bt709"},  {GST_VIDEO_FORMAT_I420, "1:4:0:0"}, {GST_VIDEO_FORMAT_I420, "1:3:5:1"},
    {GST_VIDEO_FORMAT_NV12, "bt601"},  {GST_VIDEO_FORMAT_NV12, "bt709"},  {GST_VIDEO_FORMAT_NV12, "1:4:0:0"},
    {GST_VIDEO_FORMAT_NV12, "1:3:5:1"},
};
INSTANTIATE_TEST_SUITE_P(EveryFormat, ElementColour, ::testing::ValuesIn(kColourCases), colour_case_name);

class YuvConversion : public ::testing::TestWithParam<ColourCase> {};

// pefm's YUV -> RGB against GStreamer's (videoconvert's converter, nearest chroma):
// BT.601 and BT.709, limited and full range, I420 and NV12.
TEST_P(YuvConversion, MatchesGStreamersConverter) {
  const auto [format, colorimetry] = GetParam();
  GstVideoInfo info, rgb_info;
  GstBuffer* yuv = make_buffer(colour_image(kH, kW, true), format, &info, colorimetry);
  gst_video_info_set_format(&rgb_info, GST_VIDEO_FORMAT_RGB, kW, kH);
  // NV12 goes through a lossless repack to I420 first: GStreamer's NV12 -> RGB fast path
  // interpolates chroma whatever the resampler option says.
  GstVideoInfo i420 = info;
  set_info(&i420, GST_VIDEO_FORMAT_I420, kW, kH, colorimetry);
  GstBuffer* planar = format == GST_VIDEO_FORMAT_NV12 ? convert(yuv, &info, &i420) : gst_buffer_ref(yuv);
  GstBuffer* rgb = convert(planar, &i420, &rgb_info);
  gst_buffer_unref(planar);
  GstVideoFrame f;
  ASSERT_TRUE(gst_video_frame_map(&f, &info, yuv, GST_MAP_READ));
  const auto mine = (pefm::frame_to_rgb(view_of(&f)) * 255.0).round();
  gst_video_frame_unmap(&f);
  GstVideoFrame r;
  ASSERT_TRUE(gst_video_frame_map(&r, &rgb_info, rgb, GST_MAP_READ));
  const auto theirs = torch::from_blob(GST_VIDEO_FRAME_PLANE_DATA(&r, 0), {kH, kW, 3},
                                       {GST_VIDEO_FRAME_PLANE_STRIDE(&r, 0), 3, 1}, torch::kUInt8)
                          .to(torch::kFloat32);
  const auto diff = (mine - theirs).abs();
  const double worst = diff.max().item<double>(), mean = diff.mean().item<double>();
  // The test frame is strongly coloured: the channels differ by up to 200 levels.
  EXPECT_GT((theirs.select(2, 0) - theirs.select(2, 2)).abs().max().item<double>(), 100.0);
  // GStreamer's 8-bit converter is itself off by up to 3-6 levels in limited range (it
  // decodes BT.601 Y/Cb/Cr 107/124/186 to 197/57/97 where the standard gives 198.5/60.4/
  // 97.9); a swapped chroma plane, the other matrix or the other range is off by 10-100.
  const auto at = diff.amax(2).argmax().item<int64_t>();
  EXPECT_LE(worst, 8.0) << "levels, at x " << at % kW << " y " << at / kW << ": pefm " << mine[at / kW][at % kW]
                        << " GStreamer " << theirs[at / kW][at % kW];
  EXPECT_LT(mean, 3.5) << "levels";
  gst_video_frame_unmap(&r);
  gst_buffer_unref(yuv);
  gst_buffer_unref(rgb);
}

const ColourCase kYuvCases[] = {
    {GST_VIDEO_FORMAT_I420, "bt601"},   {GST_VIDEO_FORMAT_I420, "bt709"}, {GST_VIDEO_FORMAT_I420, "1:4:0:0"},
    {GST_VIDEO_FORMAT_I420, "1:3:5:1"}, {GST_VIDEO_FORMAT_NV12, "bt601"}, {GST_VIDEO_FORMAT_NV12, "1:3:5:1"},
};
INSTANTIATE_TEST_SUITE_P(Matrices, YuvConversion, ::testing::ValuesIn(kYuvCases), colour_case_name);

// ---------------------------------------------------------------- overlay drawing
// A result whose map is 0 except a disc of 1 (radius 12 px around (48, 32)), at frame scale.
pefm::FrameResult disc_result() {
  pefm::FrameResult r;
  r.map_width = kW;
  r.map_height = kH;
  r.map.assign(static_cast<size_t>(kW) * kH, 0.0f);
  for (int y = 0; y < kH; ++y) {
    for (int x = 0; x < kW; ++x) r.map[static_cast<size_t>(y) * kW + x] = std::hypot(x - 48, y - 32) <= 12.0 ? 1.0f : 0.0f;
  }
  r.score = 1.0f;
  r.anomalous = true;
  return r;
}

// Pixels of the disc's outline as the overlay defines it: inside, within 2 px of outside.
bool on_outline(int x, int y) {
  const auto in = [](int u, int v) { return u >= 0 && v >= 0 && u < kW && v < kH && std::hypot(u - 48, v - 32) <= 12.0; };
  if (!in(x, y)) return false;
  for (int d = 1; d <= 2; ++d) {
    if (!in(x - d, y) || !in(x + d, y) || !in(x, y - d) || !in(x, y + d)) return true;
  }
  return false;
}

// Contours are drawn in the contour colour (red, 255/32/32) exactly on the outline and
// nowhere else; the heat map blends jet(1) = (127, 0, 0) at `alpha` inside the disc and
// leaves the rest. In RGB, I420 and NV12 (interleaved chroma), where the colour is
// GStreamer's own conversion of the same red.
TEST(Overlay, ContoursAndHeatMapHaveTheirColoursExactlyWhereTheMapSaysInRgbI420AndNv12) {
  const auto result = disc_result();
  const auto grey = torch::full({kH, kW, 3}, 100, torch::kUInt8);
  for (const GstVideoFormat format : {GST_VIDEO_FORMAT_RGB, GST_VIDEO_FORMAT_I420, GST_VIDEO_FORMAT_NV12}) {
    for (const auto mode : {pefm::OverlayMode::kContours, pefm::OverlayMode::kHeatmap}) {
      GstVideoInfo info;
      GstBuffer* buf = make_buffer(grey, format, &info);
      GstVideoFrame f;
      ASSERT_TRUE(gst_video_frame_map(&f, &info, buf, GST_MAP_READWRITE));
      const pefm::FrameView view = view_of(&f);
      pefm::draw_overlay(view, result, mode, 0.5, 0.5);
      const auto drawn = (pefm::frame_to_rgb(view) * 255.0).round();
      gst_video_frame_unmap(&f);
      // Expected colours, as GStreamer converts them into this format and back.
      const auto expect_colour = [&](int r, int g, int b) {
        GstVideoInfo i2;
        GstBuffer* solid = make_buffer(torch::tensor({r, g, b}, torch::kUInt8).view({1, 1, 3}).expand({2, 2, 3}).contiguous(),
                                       format, &i2);
        GstVideoFrame sf;
        gst_video_frame_map(&sf, &i2, solid, GST_MAP_READ);
        const auto c = (pefm::frame_to_rgb(view_of(&sf)) * 255.0).round()[0][0].clone();
        gst_video_frame_unmap(&sf);
        gst_buffer_unref(solid);
        return c;
      };
      const auto background = expect_colour(100, 100, 100);
      const auto red = expect_colour(255, 32, 32);
      const auto blended = expect_colour(114, 50, 50);  // 100 + (jet(1) - 100) / 2, rounded
      const double tol = format == GST_VIDEO_FORMAT_RGB ? 0.0 : 6.0;  // YUV: 4:2:0 chroma at the disc's edge
      int outline = 0, wrong = 0;
      for (int y = 0; y < kH; ++y) {
        for (int x = 0; x < kW; ++x) {
          const bool inside = std::hypot(x - 48, y - 32) <= 12.0;
          // 4:2:0 chroma is shared by 2x2 pixels: in YUV, judge only pixels whose 2x2 block
          // lies wholly on one side of the outline.
          bool block_mixed = false;
          if (format != GST_VIDEO_FORMAT_RGB) {
            const int bx = x & ~1, by = y & ~1;
            const bool ref = mode == pefm::OverlayMode::kContours ? on_outline(bx, by) : std::hypot(bx - 48, by - 32) <= 12.0;
            for (int dy = 0; dy < 2; ++dy) {
              for (int dx = 0; dx < 2; ++dx) {
                const bool v = mode == pefm::OverlayMode::kContours ? on_outline(bx + dx, by + dy)
                                                                   : std::hypot(bx + dx - 48, by + dy - 32) <= 12.0;
                block_mixed |= v != ref;
              }
            }
          }
          if (block_mixed) continue;
          torch::Tensor want = background;
          if (mode == pefm::OverlayMode::kContours && on_outline(x, y)) {
            want = red;
            ++outline;
          } else if (mode == pefm::OverlayMode::kHeatmap && inside) {
            want = blended;
          }
          wrong += (drawn[y][x] - want).abs().max().item<double>() > tol;
        }
      }
      EXPECT_EQ(wrong, 0) << gst_video_format_to_string(format) << " mode " << static_cast<int>(mode);
      if (mode == pefm::OverlayMode::kContours) {
        // A 2 px ring of radius 12 has about 140 pixels; in I420 those in mixed 2x2 blocks
        // are not judged.
        EXPECT_GT(outline, format == GST_VIDEO_FORMAT_RGB ? 100 : 20) << gst_video_format_to_string(format);
      }
      gst_buffer_unref(buf);
    }
  }
}

// pefmoverlay's `threshold` is the level its contours are drawn at, read for each frame;
// negative (the default) means the meta's region_level. On a meta of our own -- a cone of
// heat peaking at 0.9 over (48, 32), falling by 1/30 per pixel, regions cut at 0.3 -- the
// outline is the ring of radius 18 by default, of radius 9 at 0.6, and nothing at 0.95,
// above the peak: each time byte for byte what the core draws at that level.
TEST(Element, OverlayElementDrawsContoursAtItsThresholdElseAtTheMetasRegionLevel) {
  constexpr double kPeak = 0.9, kFall = 30.0;
  constexpr float kRegionLevel = 0.3f;
  pefm::FrameResult cone;
  cone.map_width = kW;
  cone.map_height = kH;
  for (int y = 0; y < kH; ++y) {
    for (int x = 0; x < kW; ++x) {
      cone.map.push_back(static_cast<float>(std::max(0.0, kPeak - std::hypot(x - 48, y - 32) / kFall)));
    }
  }
  GstVideoInfo info;
  gst_video_info_set_format(&info, GST_VIDEO_FORMAT_RGB, kW, kH);
  GstBuffer* original = rgb_buffer(texture_image(kH, kW, 5));
  GstHarness* h = gst_harness_new_parse("pefmoverlay overlay=contours");
  gst_harness_set_src_caps_str(h, caps_for(GST_VIDEO_FORMAT_RGB).c_str());
  GstElement* overlay = gst_harness_find_element(h, "pefmoverlay");
  ASSERT_NE(overlay, nullptr);
  struct Case {
    double threshold, radius;  // radius of the disc outlined; 0: nothing drawn
  };
  for (const Case c : {Case{-1.0, 18.0}, Case{0.6, 9.0}, Case{0.95, 0.0}}) {
    g_object_set(overlay, "threshold", c.threshold, nullptr);
    GstBuffer* in = gst_buffer_copy_deep(original);
    GstPefmMeta* m = gst_buffer_add_pefm_meta(in);
    gst_pefm_meta_set_map(m, kW, kH, cone.map.data(), 1.0, 1.0);
    m->region_level = kRegionLevel;
    m->score = static_cast<gfloat>(kPeak);
    m->anomalous = TRUE;
    m->calibrated = TRUE;
    GstBuffer* out = gst_harness_push_and_pull(h, in);
    ASSERT_NE(out, nullptr);
    GstBuffer* expected = gst_buffer_copy_deep(original);
    GstVideoFrame f;
    ASSERT_TRUE(gst_video_frame_map(&f, &info, expected, GST_MAP_READWRITE));
    pefm::draw_overlay(view_of(&f), cone, pefm::OverlayMode::kContours, 0.5,
                       c.threshold >= 0 ? c.threshold : static_cast<double>(kRegionLevel));
    gst_video_frame_unmap(&f);
    EXPECT_EQ(bytes(out), bytes(expected)) << "threshold " << c.threshold;
    const auto changed = changed_pixels(original, out, &info);
    if (c.radius == 0) {
      EXPECT_TRUE(changed.empty()) << changed.size() << " pixels drawn at threshold " << c.threshold << ", above the peak";
    } else {
      // A 2 px outline just inside the circle where the cone crosses the level.
      size_t off_ring = 0;
      for (const auto& [x, y] : changed) {
        const double d = std::hypot(x - 48, y - 32);
        off_ring += d > c.radius + 0.01 || d < c.radius - 2.5;
      }
      EXPECT_GT(changed.size(), 20u) << "threshold " << c.threshold;
      EXPECT_EQ(off_ring, 0u) << "of " << changed.size() << " pixels drawn at threshold " << c.threshold;
    }
    gst_buffer_unref(expected);
    gst_buffer_unref(out);
  }
  gst_object_unref(overlay);
  gst_buffer_unref(original);
  gst_harness_teardown(h);
}

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

// DL Streamer's gvametaconvert keeps a classification only with both label and model_name,
// and reads a frame's objects from its ROIs: every inspected frame gets one whole-frame
// "frame" ROI with its decision, so a frame without regions carries one too. The meta and
// the message name the model by file name and the SHA-256 of its bytes.
TEST(Element, EveryInspectedFrameCarriesItsDecisionAndTheModelsIdentity) {
  GstHarness* h = harness(caps_for(GST_VIDEO_FORMAT_RGB), "overlay=none emit-messages=true");
  GstBus* bus = gst_bus_new();
  gst_element_set_bus(h->element, bus);
  GstVideoInfo info;
  GstBuffer* out = gst_harness_push_and_pull(h, make_buffer(texture_image(kH, kW, 999), GST_VIDEO_FORMAT_RGB, &info));
  ASSERT_NE(out, nullptr);
  const GstPefmMeta* m = gst_buffer_get_pefm_meta(out);
  ASSERT_NE(m, nullptr);
  ASSERT_FALSE(m->anomalous) << "the clean texture scored " << m->score;
  ASSERT_EQ(m->n_regions, 0u);

  const std::string file = pefm_test::slurp(g_model);
  gchar* sha = g_compute_checksum_for_data(G_CHECKSUM_SHA256, reinterpret_cast<const guchar*>(file.data()), file.size());
  EXPECT_STREQ(gst_pefm_meta_get_model_name(m), "tiny.pt");
  EXPECT_STREQ(gst_pefm_meta_get_model_sha256(m), sha);

  gpointer state = nullptr;
  int frame_rois = 0;
  while (GstMeta* meta = gst_buffer_iterate_meta_filtered(out, &state, GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE)) {
    auto* roi = reinterpret_cast<GstVideoRegionOfInterestMeta*>(meta);
    ASSERT_EQ(roi->roi_type, g_quark_from_string("frame")) << "a region on a clean frame";
    EXPECT_EQ(roi->x, 0u);
    EXPECT_EQ(roi->y, 0u);
    EXPECT_EQ(roi->w, static_cast<guint>(kW));
    EXPECT_EQ(roi->h, static_cast<guint>(kH));
    EXPECT_EQ(gst_video_region_of_interest_meta_get_param(roi, "detection"), nullptr) << "the frame is no defect";
    const GstStructure* c = gst_video_region_of_interest_meta_get_param(roi, "classification");
    ASSERT_NE(c, nullptr);
    EXPECT_STREQ(gst_structure_get_string(c, "label"), "normal");
    EXPECT_STREQ(gst_structure_get_string(c, "model_name"), "tiny.pt");
    gint label_id = -1;
    EXPECT_TRUE(gst_structure_get_int(c, "label_id", &label_id));
    EXPECT_EQ(label_id, 0);
    ++frame_rois;
  }
  EXPECT_EQ(frame_rois, 1);

  GstMessage* msg = gst_bus_pop_filtered(bus, GST_MESSAGE_ELEMENT);
  ASSERT_NE(msg, nullptr);
  const GstStructure* st = gst_message_get_structure(msg);
  EXPECT_STREQ(gst_structure_get_string(st, "model"), "tiny.pt");
  EXPECT_STREQ(gst_structure_get_string(st, "model-sha256"), sha);
  gst_message_unref(msg);
  g_free(sha);
  gst_buffer_unref(out);
  gst_element_set_bus(h->element, nullptr);
  gst_object_unref(bus);
  gst_harness_teardown(h);
}

TEST(Element, ThresholdPropertyChangesDecisionsWhilePlaying) {
  GstHarness* h = harness(caps_for(GST_VIDEO_FORMAT_RGB), "overlay=none");
  GstVideoInfo info;
  const auto frame = paste_patch(texture_image(kH, kW, 7), 30, 60, 20);
  GstElement* filter = gst_harness_find_element(h, "pefmfilter");  // h->element is the wrapping bin
  ASSERT_NE(filter, nullptr);
  float score = 0.0f;
  // 0, then halfway between the frame's score and 1 (above it), then 0 again.
  std::optional<guint> regions;
  for (int step = 0; step < 3; ++step) {
    double threshold = 0.0;
    if (step == 1) {
      ASSERT_LT(score, 1.0f) << "the test frame must not saturate the normalised scale";
      threshold = (score + 1.0) / 2;
    }
    g_object_set(filter, "threshold", threshold, nullptr);
    GstBuffer* out = gst_harness_push_and_pull(h, make_buffer(frame, GST_VIDEO_FORMAT_RGB, &info));
    GstPefmMeta* m = gst_buffer_get_pefm_meta(out);
    ASSERT_NE(m, nullptr);
    EXPECT_FLOAT_EQ(m->threshold, static_cast<float>(threshold));
    EXPECT_EQ(static_cast<bool>(m->anomalous), step != 1) << "threshold " << threshold << " score " << m->score;
    score = m->score;
    // Regions follow region-threshold, not the image threshold.
    if (!regions) regions = m->n_regions;
    EXPECT_EQ(m->n_regions, *regions) << "threshold " << threshold;
    gst_buffer_unref(out);
  }
  // Out of the normalised range: refused by GObject, the threshold in force kept.
  g_object_set(filter, "threshold", 1.5, nullptr);
  double kept = -1;
  g_object_get(filter, "threshold", &kept, nullptr);
  EXPECT_EQ(kept, 0.0);
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
  if (GstMessage* msg = gst_bus_timed_pop_filtered(bus, pefm_test::kTimeoutScale * 5 * GST_SECOND, GST_MESSAGE_ERROR)) {
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
  GstMessage* msg = gst_bus_timed_pop_filtered(bus, pefm_test::kTimeoutScale * 20 * GST_SECOND,
                                               static_cast<GstMessageType>(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
  const bool eos = msg && GST_MESSAGE_TYPE(msg) == GST_MESSAGE_EOS;
  if (msg) gst_message_unref(msg);
  gst_object_unref(bus);
  gst_element_set_state(pipeline, GST_STATE_NULL);
  return eos;
}

// Settings that would stall the stream are bounded (tile-size=1 cut one small frame into
// thousands of network inputs, and NULL waited for it).
// A 12-bit mono camera's frames (GRAY16_LE, values 0..4095) are inspected as the 8-bit
// frames a model is trained on: v * 255 / 4095, rounded. The depth comes from the caps
// (Aravis writes depth=12 for Mono12) or the bit-depth property; without either, 16 bits
// (GStreamer's meaning), and these dark frames are judged as dark. The overlay is drawn
// in the camera's range: contours at 4095, nothing above.
TEST(Element, TwelveBitMonoFramesAreInspectedAsTheirEightBitValues) {
  const auto defect = paste_patch(texture_image(kH, kW, 999), 30, 60, 20);
  GstVideoInfo info8;
  GstBuffer* gray8 = make_buffer(defect, GST_VIDEO_FORMAT_GRAY8, &info8);
  GstVideoInfo info16;
  gst_video_info_set_format(&info16, GST_VIDEO_FORMAT_GRAY16_LE, kW, kH);
  GstBuffer* gray16 = gst_buffer_new_allocate(nullptr, GST_VIDEO_INFO_SIZE(&info16), nullptr);
  {
    GstVideoFrame a, b;
    ASSERT_TRUE(gst_video_frame_map(&a, &info8, gray8, GST_MAP_READ));
    ASSERT_TRUE(gst_video_frame_map(&b, &info16, gray16, GST_MAP_WRITE));
    for (int y = 0; y < kH; ++y) {
      const auto* in = static_cast<const uint8_t*>(GST_VIDEO_FRAME_PLANE_DATA(&a, 0)) + y * GST_VIDEO_FRAME_PLANE_STRIDE(&a, 0);
      auto* out = static_cast<uint8_t*>(GST_VIDEO_FRAME_PLANE_DATA(&b, 0)) + y * GST_VIDEO_FRAME_PLANE_STRIDE(&b, 0);
      for (int x = 0; x < kW; ++x) {
        // the 12-bit level nearest the 8-bit value, with sensor noise below half an 8-bit step
        const int v = std::clamp(static_cast<int>(std::lround(in[x] * 4095.0 / 255.0)) + (x + 3 * y) % 15 - 7, 0, 4095);
        ASSERT_EQ(pefm::gray16_to_8(static_cast<uint16_t>(v), 12), in[x]);
        out[2 * x] = static_cast<uint8_t>(v & 0xFF);
        out[2 * x + 1] = static_cast<uint8_t>(v >> 8);
      }
    }
    gst_video_frame_unmap(&a);
    gst_video_frame_unmap(&b);
  }
  const auto judged = [&](const std::string& caps, const std::string& props, GstBuffer* frame, GstBuffer** drawn) {
    GstHarness* h = harness(caps, props);
    GstBuffer* out = gst_harness_push_and_pull(h, gst_buffer_copy_deep(frame));
    EXPECT_NE(out, nullptr);
    const GstPefmMeta* m = out ? gst_buffer_get_pefm_meta(out) : nullptr;
    EXPECT_NE(m, nullptr);
    std::vector<float> result;
    if (m) {
      result.assign(m->map, m->map + m->map_width * m->map_height);
      result.push_back(m->score);
    }
    if (drawn) *drawn = out;
    else if (out) gst_buffer_unref(out);
    gst_harness_teardown(h);
    return result;
  };
  const std::string caps16 = caps_for(GST_VIDEO_FORMAT_GRAY16_LE);
  const auto eight = judged(caps_for(GST_VIDEO_FORMAT_GRAY8), "overlay=none", gray8, nullptr);
  ASSERT_FALSE(eight.empty());
  GstBuffer* drawn = nullptr;
  EXPECT_EQ(judged(caps16 + ",depth=(int)12", "overlay=contours", gray16, &drawn), eight) << "depth from the caps";
  EXPECT_EQ(judged(caps16, "overlay=none bit-depth=12", gray16, nullptr), eight) << "bit-depth property";
  EXPECT_EQ(judged(caps16 + ",depth=(int)16", "overlay=none bit-depth=12", gray16, nullptr), eight) << "the property wins";
  const auto as16 = judged(caps16, "overlay=none", gray16, nullptr);
  ASSERT_FALSE(as16.empty());
  EXPECT_NE(as16.back(), eight.back()) << "without a depth the frame is read as 16-bit, dark";

  ASSERT_NE(drawn, nullptr);
  GstVideoFrame f;
  ASSERT_TRUE(gst_video_frame_map(&f, &info16, drawn, GST_MAP_READ));
  int at_max = 0, above = 0;
  for (int y = 0; y < kH; ++y) {
    const auto* row = static_cast<const uint8_t*>(GST_VIDEO_FRAME_PLANE_DATA(&f, 0)) + y * GST_VIDEO_FRAME_PLANE_STRIDE(&f, 0);
    for (int x = 0; x < kW; ++x) {
      const int v = row[2 * x] | row[2 * x + 1] << 8;
      at_max += v == 4095;
      above += v > 4095;
    }
  }
  gst_video_frame_unmap(&f);
  EXPECT_GT(at_max, 20) << "no contour drawn at the camera's white";
  EXPECT_EQ(above, 0) << "drawn beyond the camera's 12 bits";
  // pefmoverlay with the same bit-depth draws the same bytes later in the pipeline.
  GstHarness* later = harness(caps16, "overlay=none bit-depth=12 ! pefmoverlay overlay=contours bit-depth=12");
  GstBuffer* by_overlay = gst_harness_push_and_pull(later, gst_buffer_copy_deep(gray16));
  ASSERT_NE(by_overlay, nullptr);
  EXPECT_EQ(bytes(by_overlay), bytes(drawn));
  gst_buffer_unref(by_overlay);
  gst_harness_teardown(later);
  gst_buffer_unref(drawn);
  gst_buffer_unref(gray8);
  gst_buffer_unref(gray16);

  // Fewer than 8 bits is no camera's: said at start, naming the property.
  const std::string msg = state_change_error("videotestsrc ! video/x-raw,format=GRAY16_LE ! pefmfilter bit-depth=5 model=" +
                                             g_model + " ! fakesink");
  EXPECT_NE(msg.find("bit-depth 5"), std::string::npos) << msg;
  const std::string overlay_msg = state_change_error(
      "videotestsrc num-buffers=1 ! video/x-raw,format=GRAY16_LE ! pefmoverlay bit-depth=5 ! fakesink");
  EXPECT_NE(overlay_msg.find("bit-depth 5"), std::string::npos) << overlay_msg;
}

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
  // An overlap above half a tile, or a tile that makes the overlap so, would stop the
  // stream at the next frame: refused when set, the old values kept, with a warning.
  GstBus* warnings = gst_bus_new();
  gst_element_set_bus(h->element, warnings);
  g_object_set(filter, "tile-overlap", 40, nullptr);
  g_object_set(filter, "tile-overlap", 20, nullptr);  // within half of 48: taken
  g_object_set(filter, "tile-size", 32, nullptr);     // 20 is more than half of 32
  gint size = 0, overlap = 0;
  g_object_get(filter, "tile-size", &size, "tile-overlap", &overlap, nullptr);
  EXPECT_EQ(size, 48);
  EXPECT_EQ(overlap, 20);
  std::vector<std::string> said;
  while (GstMessage* m = gst_bus_pop_filtered(warnings, GST_MESSAGE_WARNING)) {
    GError* err = nullptr;
    gst_message_parse_warning(m, &err, nullptr);
    said.push_back(err->message);
    g_error_free(err);
    gst_message_unref(m);
  }
  ASSERT_GE(said.size(), 2u);
  EXPECT_NE(said[said.size() - 2].find("tile-overlap 40 refused: tile-overlap 40 must be between 0 and half the "
                                       "tile-size 48"),
            std::string::npos)
      << said[said.size() - 2];
  EXPECT_NE(said.back().find("tile-size 32 refused: tile-overlap 20 must be between 0 and half the tile-size 32"),
            std::string::npos)
      << said.back();
  out = gst_harness_push_and_pull(h, make_buffer(texture_image(kH, kW, 4), GST_VIDEO_FORMAT_RGB, &info));
  EXPECT_NE(out, nullptr) << "the stream stopped";
  if (out) gst_buffer_unref(out);
  gst_element_set_bus(h->element, nullptr);
  gst_object_unref(warnings);
  gst_object_unref(filter);
  gst_harness_teardown(h);

  h = harness(caps_for(GST_VIDEO_FORMAT_GRAY8, 4096, 2048), "tile-size=32");  // 8192 tiles
  GstBus* bus = gst_bus_new();
  gst_element_set_bus(h->element, bus);
  GstBuffer* big = gst_buffer_new_allocate(nullptr, 4096 * 2048, nullptr);
  gst_buffer_memset(big, 0, 128, 4096 * 2048);
  EXPECT_EQ(gst_harness_push(h, big), GST_FLOW_ERROR);
  // Refused before any tile was inspected: the error is the up-front count's (check_tiles
  // runs before the first tile), rather than a time bound that a loaded machine can break.
  GstMessage* msg = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
  ASSERT_NE(msg, nullptr) << "no ERROR message posted";
  GError* err = nullptr;
  gst_message_parse_error(msg, &err, nullptr);
  EXPECT_NE(std::string(err->message).find("cuts a 4096x2048 frame into 8192 tiles"), std::string::npos) << err->message;
  g_error_free(err);
  gst_message_unref(msg);
  gst_element_set_bus(h->element, nullptr);
  gst_object_unref(bus);
  gst_harness_teardown(h);
}

// A millimetre scale below one pixel a metre would give region sizes beyond what JSON
// carries (inf, NaN): refused when set, the value before kept.
TEST(Element, MillimetreScalesBelowOnePixelAMetreAreRefused) {
  GstHarness* h = harness(caps_for(GST_VIDEO_FORMAT_RGB), "");
  GstElement* filter = gst_harness_find_element(h, "pefmfilter");
  ASSERT_NE(filter, nullptr);
  for (const char* name : {"pixels-per-mm", "lines-per-mm"}) {
    g_object_set(filter, name, 1e-300, nullptr);
    double v = -1;
    g_object_get(filter, name, &v, nullptr);
    EXPECT_EQ(v, 0.0) << name;
    g_object_set(filter, name, 10.0, nullptr);
    g_object_set(filter, name, 1e-320, nullptr);
    g_object_get(filter, name, &v, nullptr);
    EXPECT_EQ(v, 10.0) << name;
    g_object_set(filter, name, 0.0, nullptr);  // "not set" stays possible
    g_object_get(filter, name, &v, nullptr);
    EXPECT_EQ(v, 0.0) << name;
  }
  gst_object_unref(filter);
  gst_harness_teardown(h);
}

// A counter of pefmfilter's `stats` ("inspected", "skipped-late", ...).
guint64 stat(GstElement* filter, const char* name) {
  GstStructure* stats = nullptr;
  g_object_get(filter, "stats", &stats, nullptr);
  guint64 v = 0;
  if (stats) {
    gst_structure_get_uint64(stats, name, &v);
    gst_structure_free(stats);
  }
  return v;
}

// Stopping does not wait for a large frame: the frame in progress is abandoned between tile
// batches. Shown by the element's count and the sink (the frame never finished), not by
// timing: the times are printed only.
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
  core.process(view, {}, {32, 0});
  const double whole = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  const auto launch = "appsrc name=src caps=\"" + caps_for(GST_VIDEO_FORMAT_GRAY8, W, H) +
                      "\" ! pefmfilter name=filter device=cpu tile-size=32 model=" + g_model +
                      " ! fakesink name=sink async=false signal-handoffs=true";
  GstElement* pipeline = gst_parse_launch(launch.c_str(), nullptr);
  ASSERT_NE(pipeline, nullptr);
  GstElement* src = gst_bin_get_by_name(GST_BIN(pipeline), "src");
  GstElement* filter = gst_bin_get_by_name(GST_BIN(pipeline), "filter");
  GstElement* sink = gst_bin_get_by_name(GST_BIN(pipeline), "sink");
  std::atomic<int> delivered{0};
  g_signal_connect(sink, "handoff", G_CALLBACK(+[](GstElement*, GstBuffer*, GstPad*, gpointer n) {
                     static_cast<std::atomic<int>*>(n)->fetch_add(1);
                   }), &delivered);
  // The frame reaches the filter's sink pad after the caps' warm-up frame (set_info) is done:
  // from then on the filter is inspecting it, however long the warm-up took on this machine.
  std::atomic<bool> arrived{false};
  GstPad* filter_sink = gst_element_get_static_pad(filter, "sink");
  gst_pad_add_probe(filter_sink, GST_PAD_PROBE_TYPE_BUFFER,
                    +[](GstPad*, GstPadProbeInfo*, gpointer a) -> GstPadProbeReturn {
                      static_cast<std::atomic<bool>*>(a)->store(true);
                      return GST_PAD_PROBE_OK;
                    },
                    &arrived, nullptr);
  gst_object_unref(filter_sink);
  ASSERT_EQ(gst_element_set_state(pipeline, GST_STATE_PLAYING), GST_STATE_CHANGE_SUCCESS);
  GstBuffer* frame = gst_buffer_new_allocate(nullptr, gray.size(), nullptr);
  gst_buffer_fill(frame, 0, gray.data(), gray.size());
  EXPECT_EQ(gst_app_src_push_buffer(GST_APP_SRC(src), frame), GST_FLOW_OK);
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60 * pefm_test::kTimeoutScale);
  while (!arrived.load() && std::chrono::steady_clock::now() < give_up)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_TRUE(arrived.load()) << "the frame never reached pefmfilter";
  std::this_thread::sleep_for(std::chrono::duration<double>(whole / 8));  // well into the frame
  t0 = std::chrono::steady_clock::now();
  gst_element_set_state(pipeline, GST_STATE_NULL);
  const double stop = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "whole frame " << whole << " s, stopping " << stop << " s\n";
  // A finished frame counts as inspected (report_inspected); the counters are kept after
  // NULL (reset on the next start).
  EXPECT_EQ(stat(filter, "inspected"), 0u) << "the frame was finished, not abandoned (stopping took " << stop << " s)";
  EXPECT_EQ(delivered.load(), 0) << "the frame was finished, not abandoned";
  gst_object_unref(sink);
  gst_object_unref(filter);
  gst_object_unref(src);
  gst_object_unref(pipeline);
}

TEST(Element, RepeatedNullPlayingCyclesReleaseEverything) {
  const bool check_rss = !pefm_test::kSanitized;  // ASan's quarantine keeps freed memory; LSan checks leaks there
  const auto launch = "videotestsrc num-buffers=2 ! video/x-raw,width=64,height=48 ! pefmfilter device=cpu model=" +
                      g_model + " ! fakesink";
  GstElement* pipeline = gst_parse_launch(launch.c_str(), nullptr);
  ASSERT_TRUE(run_to_eos(pipeline));  // warm-up: allocator pools settle
  const long before = pefm_test::rss_kib();
  // Under ASan (LeakSanitizer checks every allocation at exit) 10 cycles show a leak as well.
  const int cycles = pefm_test::kSanitized ? 10 : 50;
  for (int i = 0; i < cycles; ++i) {
    ASSERT_TRUE(run_to_eos(pipeline)) << "cycle " << i;
    EXPECT_EQ(pefm::shared_detector_count(), 0u) << "model still held after NULL, cycle " << i;
  }
  const long grown = pefm_test::rss_kib() - before;
  if (check_rss) {
    EXPECT_LT(grown, 30 * 1024) << "RSS grew by " << grown << " KiB over " << cycles << " cycles";
  }
  gst_object_unref(pipeline);
}

// Plays `pipeline` until EOS and leaves it in READY. Returns "" or what went wrong.
std::string play_to_eos_then_ready(GstElement* pipeline) {
  gst_element_set_state(pipeline, GST_STATE_PLAYING);
  GstBus* bus = gst_element_get_bus(pipeline);
  GstMessage* msg = gst_bus_timed_pop_filtered(bus, pefm_test::kTimeoutScale * 20 * GST_SECOND,
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
  EXPECT_EQ(pefm::shared_detector_count(), 0u);
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

// GPU check: two elements of one model on CUDA (one detector shared through the registry),
// streaming at once from two threads, one RGB and one NV12 (converted on the GPU): each
// frame gets its own map, the CPU's within 1e-3 (a pinned buffer or stream shared between
// the elements would hand one element the other's frame).
TEST(ElementCuda, TwoElementsOfOneModelStreamAtOnce) {
  PEFM_CUDA_OR_SKIP();
  const GstVideoFormat formats[2] = {GST_VIDEO_FORMAT_RGB, GST_VIDEO_FORMAT_NV12};
  const auto frame = [](int stream, int f) { return paste_patch(colour_image(kH, kW, false), 4 * f, 6 * f + stream, 12); };
  const auto maps_of = [&](int stream, const std::string& device, int frames) {
    std::vector<std::vector<float>> maps;
    GstHarness* h = gst_harness_new_parse(("pefmfilter model=\"" + g_model + "\" device=" + device).c_str());
    gst_harness_set_src_caps_str(h, caps_for(formats[stream]).c_str());
    GstVideoInfo info;
    for (int f = 0; f < frames; ++f) {
      GstBuffer* out = gst_harness_push_and_pull(h, make_buffer(frame(stream, f % 4), formats[stream], &info));
      GstPefmMeta* m = out ? gst_buffer_get_pefm_meta(out) : nullptr;
      maps.emplace_back(m ? std::vector<float>(m->map, m->map + m->map_width * m->map_height) : std::vector<float>{});
      if (out) gst_buffer_unref(out);
    }
    gst_harness_teardown(h);
    return maps;
  };
  std::vector<std::vector<float>> want[2] = {maps_of(0, "cpu", 4), maps_of(1, "cpu", 4)}, got[2];
  std::thread a([&] { got[0] = maps_of(0, "cuda", 24); }), b([&] { got[1] = maps_of(1, "cuda", 24); });
  a.join();
  b.join();
  for (int stream = 0; stream < 2; ++stream) {
    ASSERT_EQ(got[stream].size(), 24u);
    for (size_t f = 0; f < got[stream].size(); ++f) {
      const auto& w = want[stream][f % 4];
      const auto& g = got[stream][f];
      ASSERT_EQ(g.size(), w.size()) << "stream " << stream << " frame " << f;
      float worst = 0.0f;
      for (size_t j = 0; j < w.size(); ++j) worst = std::max(worst, std::abs(w[j] - g[j]));
      EXPECT_LT(worst, 1e-3f) << "stream " << stream << " frame " << f;
    }
  }
}

// threads=0 (the default) uses every CPU the process may run on (OMP_NUM_THREADS when set,
// as tests/meson.build does), not LibTorch's default.
TEST(Element, ThreadsPropertySetsTheInferenceThreads) {
  for (const int threads : {1, 3, 0}) {
    const auto launch = "videotestsrc num-buffers=2 ! video/x-raw,width=64,height=48 ! pefmfilter name=f device=cpu "
                        "threads=" + std::to_string(threads) + " model=" + g_model + " ! fakesink";
    GstElement* pipeline = gst_parse_launch(launch.c_str(), nullptr);
    GstElement* filter = gst_bin_get_by_name(GST_BIN(pipeline), "f");
    GstPad* src = gst_element_get_static_pad(filter, "src");
    int seen = -1;
    gst_pad_add_probe(src, GST_PAD_PROBE_TYPE_BUFFER, record_threads, &seen, nullptr);
    EXPECT_TRUE(run_to_eos(pipeline));
    EXPECT_EQ(seen, threads > 0 ? threads : pefm::default_cpu_threads()) << "threads=" << threads;
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
  ASSERT_EQ(pefm::shared_detector_count(), 1u);
  pefm::testing::inject_failures(*shared, 1, "CUDA out of memory. Tried to allocate 2.00 GiB");
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
  gst_element_get_state(pipeline, nullptr, nullptr, pefm_test::kTimeoutScale * 10 * GST_SECOND);
  EXPECT_EQ(pefm::shared_detector_count(), 1u);
  gst_element_set_state(pipeline, GST_STATE_NULL);
  EXPECT_EQ(pefm::shared_detector_count(), 0u);
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
                      "threshold=0 region-threshold=0 overlay=none model=" + g_model +
                      " ! tee name=t t. ! queue ! videoscale ! video/x-raw,width=48,height=32 ! appsink name=small "
                      "t. ! queue ! appsink name=full";
  GstElement* pipeline = gst_parse_launch(launch.c_str(), nullptr);
  gst_element_set_state(pipeline, GST_STATE_PLAYING);
  GstElement* small = gst_bin_get_by_name(GST_BIN(pipeline), "small");
  GstElement* full = gst_bin_get_by_name(GST_BIN(pipeline), "full");
  GstSample* s_small = nullptr;
  GstSample* s_full = nullptr;
  // Bounded: a pipeline that never delivers fails the test instead of hanging the run.
  const GstClockTime wait = pefm_test::kTimeoutScale * 20 * GST_SECOND;
  g_signal_emit_by_name(small, "try-pull-sample", wait, &s_small);
  g_signal_emit_by_name(full, "try-pull-sample", wait, &s_full);
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

// The `calibration` property and the messages say what the model states: a conformal
// threshold's false-alarm rate and its estimate; a mean + 3 std threshold states none.
TEST(Element, CalibrationPropertyAndMessagesStateTheModelsFalseAlarmRate) {
  auto stated = pefm::load_model(g_model);
  std::vector<double> scores;
  for (int i = 0; i < 39; ++i) scores.push_back(stated.calibration.image_min + 0.01 * i);
  stated.calibration.set_false_alarm_threshold(scores, 0.05, 5);
  const std::string stated_path = g_dir->file("stated.pt");
  pefm::save_model(stated, stated_path);
  for (const auto& [path, conformal] : {std::pair<std::string, bool>{stated_path, true}, {g_model, false}}) {
    const auto launch = "videotestsrc num-buffers=2 ! video/x-raw,width=64,height=48 ! pefmfilter name=f device=cpu "
                        "emit-messages=true model=" + path + " ! fakesink";
    GstElement* pipeline = gst_parse_launch(launch.c_str(), nullptr);
    gst_element_set_state(pipeline, GST_STATE_PLAYING);
    GstBus* bus = gst_element_get_bus(pipeline);
    int with_rate = 0, messages = 0;
    while (GstMessage* msg = gst_bus_timed_pop_filtered(
               bus, pefm_test::kTimeoutScale * 10 * GST_SECOND,
               static_cast<GstMessageType>(GST_MESSAGE_ELEMENT | GST_MESSAGE_EOS | GST_MESSAGE_ERROR))) {
      const bool done = GST_MESSAGE_TYPE(msg) != GST_MESSAGE_ELEMENT;
      if (!done && gst_structure_has_name(gst_message_get_structure(msg), "pefm")) {
        double rate = -1;
        with_rate += gst_structure_get_double(gst_message_get_structure(msg), "stated-false-alarm-rate", &rate);
        if (conformal) {
          EXPECT_DOUBLE_EQ(rate, 1 - 38.0 / 40);  // rank ceil(40 * 0.95) = 38 of 39
        }
        ++messages;
      }
      gst_message_unref(msg);
      if (done) break;
    }
    EXPECT_EQ(messages, 2);
    EXPECT_EQ(with_rate, conformal ? 2 : 0) << path;
    GstElement* f = gst_bin_get_by_name(GST_BIN(pipeline), "f");
    GstStructure* c = nullptr;
    g_object_get(f, "calibration", &c, nullptr);
    ASSERT_NE(c, nullptr);
    EXPECT_STREQ(gst_structure_get_string(c, "method"), conformal ? "conformal" : "mean+3std");
    double asked = -1, bound = -1, upper = -1;
    gint64 folds = 0;
    EXPECT_EQ(gst_structure_get_double(c, "asked-false-alarm-rate", &asked), conformal);
    if (conformal) {
      EXPECT_DOUBLE_EQ(asked, 0.05);
      EXPECT_TRUE(gst_structure_get_double(c, "stated-false-alarm-rate", &bound));
      EXPECT_DOUBLE_EQ(bound, stated.calibration.false_alarm_bound);
      EXPECT_TRUE(gst_structure_get_double(c, "false-alarm-upper95", &upper));
      EXPECT_DOUBLE_EQ(upper, stated.calibration.false_alarm_upper95);
      EXPECT_GT(upper, bound);
      EXPECT_TRUE(gst_structure_get_int64(c, "folds", &folds));
      EXPECT_EQ(folds, 5);
    }
    gst_structure_free(c);
    gst_object_unref(f);
    gst_object_unref(bus);
    gst_element_set_state(pipeline, GST_STATE_NULL);
    gst_object_unref(pipeline);
  }
}

// In a pipeline (normal frames from appsrc): message-mode=all posts every frame, anomalous
// only the anomalous ones -- all four at threshold 0, none at a threshold above every
// frame's score. (Which frames of a mixed stream:
// MessagesNameExactlyTheAnomalousFramesWithTheValuesOfTheirMeta.)
TEST(Element, PostsOneMessagePerFrameOrPerAnomalousFrame) {
  struct Posted {
    int messages = 0, anomalous = 0;
    double max_score = 0;
  };
  const auto run = [](const std::string& mode, double threshold) {
    const auto launch = "appsrc name=src format=time caps=" + caps_for(GST_VIDEO_FORMAT_RGB) +
                        " ! pefmfilter device=cpu emit-messages=true threshold=" + std::to_string(threshold) +
                        " message-mode=" + mode + " model=" + g_model + " ! fakesink";
    GstElement* pipeline = gst_parse_launch(launch.c_str(), nullptr);
    EXPECT_NE(pipeline, nullptr) << launch;
    if (!pipeline) return Posted{};
    gst_element_set_state(pipeline, GST_STATE_PLAYING);
    GstElement* src = gst_bin_get_by_name(GST_BIN(pipeline), "src");
    GstVideoInfo info;
    for (int i = 0; i < 4; ++i) {
      GstBuffer* b = make_buffer(texture_image(kH, kW, 600 + i), GST_VIDEO_FORMAT_RGB, &info);
      GST_BUFFER_PTS(b) = i * GST_SECOND;
      GST_BUFFER_DURATION(b) = GST_SECOND;
      GstFlowReturn ret = GST_FLOW_OK;
      g_signal_emit_by_name(src, "push-buffer", b, &ret);
      gst_buffer_unref(b);
      EXPECT_EQ(ret, GST_FLOW_OK);
    }
    GstFlowReturn ret = GST_FLOW_OK;
    g_signal_emit_by_name(src, "end-of-stream", &ret);
    gst_object_unref(src);
    GstBus* bus = gst_element_get_bus(pipeline);
    Posted p;
    bool eos = false;
    while (GstMessage* msg = gst_bus_timed_pop_filtered(
               bus, pefm_test::kTimeoutScale * 10 * GST_SECOND,
               static_cast<GstMessageType>(GST_MESSAGE_ELEMENT | GST_MESSAGE_EOS | GST_MESSAGE_ERROR))) {
      const bool done = GST_MESSAGE_TYPE(msg) != GST_MESSAGE_ELEMENT;
      eos = GST_MESSAGE_TYPE(msg) == GST_MESSAGE_EOS;
      if (!done && gst_structure_has_name(gst_message_get_structure(msg), "pefm")) {
        const GstStructure* s = gst_message_get_structure(msg);
        guint64 ts = 0;
        gboolean anomalous = FALSE;
        double score = -1;
        EXPECT_TRUE(gst_structure_get_uint64(s, "timestamp", &ts));
        EXPECT_TRUE(gst_structure_get_boolean(s, "anomalous", &anomalous));
        EXPECT_TRUE(gst_structure_get_double(s, "score", &score));
        EXPECT_TRUE(gst_structure_has_field(s, "regions"));
        p.anomalous += anomalous;
        p.max_score = std::max(p.max_score, score);
        ++p.messages;
      }
      gst_message_unref(msg);
      if (done) break;
    }
    EXPECT_TRUE(eos) << "the stream ended by an error or a timeout, not EOS: " << launch;
    gst_object_unref(bus);
    gst_element_set_state(pipeline, GST_STATE_NULL);
    gst_object_unref(pipeline);
    return p;
  };
  const Posted all_at_0 = run("all", 0.0);
  EXPECT_EQ(all_at_0.messages, 4);
  EXPECT_EQ(all_at_0.anomalous, 4);
  EXPECT_EQ(run("anomalous", 0.0).messages, 4);
  ASSERT_LT(all_at_0.max_score, 1.0) << "normal frames must not saturate the normalised scale";
  const double above = (all_at_0.max_score + 1.0) / 2;
  const Posted all_above = run("all", above);
  EXPECT_EQ(all_above.messages, 4);
  EXPECT_EQ(all_above.anomalous, 0);
  EXPECT_EQ(run("anomalous", above).messages, 0);
}

// message-mode=anomalous posts exactly the anomalous frames (defects pasted into frames 1
// and 4 of 6), message-mode=all every frame; each message carries its frame's meta values.
TEST(Element, MessagesNameExactlyTheAnomalousFramesWithTheValuesOfTheirMeta) {
  const std::set<GstClockTime> defective = {1 * GST_SECOND, 4 * GST_SECOND};
  for (const std::string mode : {"all", "anomalous"}) {
    GstHarness* h = harness(caps_for(GST_VIDEO_FORMAT_RGB), "overlay=none emit-messages=true message-mode=" + mode);
    GstBus* bus = gst_bus_new();
    gst_element_set_bus(h->element, bus);
    struct Seen {
      double score, raw_score, threshold;
      bool anomalous;
      guint regions;
      std::vector<GstPefmRegion> boxes;
    };
    std::map<GstClockTime, Seen> metas;
    GstVideoInfo info;
    for (int i = 0; i < 6; ++i) {
      const auto clean = texture_image(kH, kW, 300 + i);
      const GstClockTime pts = i * GST_SECOND;
      GstBuffer* in = make_buffer(defective.count(pts) ? paste_patch(clean, 20, 30, 18) : clean, GST_VIDEO_FORMAT_RGB, &info);
      GST_BUFFER_PTS(in) = pts;
      GstBuffer* out = gst_harness_push_and_pull(h, in);
      ASSERT_NE(out, nullptr);
      const GstPefmMeta* m = gst_buffer_get_pefm_meta(out);
      ASSERT_NE(m, nullptr);
      metas[pts] = {m->score, m->raw_score, m->threshold, static_cast<bool>(m->anomalous), m->n_regions,
                    std::vector<GstPefmRegion>(m->regions, m->regions + m->n_regions)};
      EXPECT_EQ(static_cast<bool>(m->anomalous), defective.count(pts) == 1) << "frame " << i << " score " << m->score;
      gst_buffer_unref(out);
    }
    std::set<GstClockTime> posted;
    while (GstMessage* msg = gst_bus_pop_filtered(bus, GST_MESSAGE_ELEMENT)) {
      const GstStructure* st = gst_message_get_structure(msg);
      if (gst_structure_has_name(st, "pefm")) {
        guint64 ts = 0;
        double score = -1, raw = -1, threshold = -1;
        gboolean anomalous = FALSE;
        guint regions = 0;
        ASSERT_TRUE(gst_structure_get_uint64(st, "timestamp", &ts));
        ASSERT_TRUE(gst_structure_get_double(st, "score", &score) && gst_structure_get_double(st, "raw-score", &raw) &&
                    gst_structure_get_double(st, "threshold", &threshold) &&
                    gst_structure_get_boolean(st, "anomalous", &anomalous) &&
                    gst_structure_get_uint(st, "regions", &regions));
        ASSERT_EQ(metas.count(ts), 1u) << "message for an unknown frame " << ts;
        const auto& m = metas[ts];
        EXPECT_FLOAT_EQ(static_cast<float>(score), static_cast<float>(m.score));
        EXPECT_FLOAT_EQ(static_cast<float>(raw), static_cast<float>(m.raw_score));
        EXPECT_FLOAT_EQ(static_cast<float>(threshold), static_cast<float>(m.threshold));
        EXPECT_EQ(static_cast<bool>(anomalous), m.anomalous);
        EXPECT_EQ(regions, m.regions);
        guint64 stream_time = 0;
        EXPECT_TRUE(gst_structure_get_uint64(st, "stream-time", &stream_time));
        EXPECT_EQ(stream_time, ts) << "a segment from 0: stream time is the PTS";
        // The boxes themselves, as in the meta.
        const GValue* boxes = gst_structure_get_value(st, "boxes");
        ASSERT_NE(boxes, nullptr);
        ASSERT_EQ(gst_value_array_get_size(boxes), m.boxes.size());
        for (guint b = 0; b < m.boxes.size(); ++b) {
          const GstStructure* box = gst_value_get_structure(gst_value_array_get_value(boxes, b));
          gint x = -1, y = -1, w = -1, hh = -1;
          guint64 area = 0;
          double peak = -1;
          ASSERT_TRUE(gst_structure_get_int(box, "x", &x) && gst_structure_get_int(box, "y", &y) &&
                      gst_structure_get_int(box, "width", &w) && gst_structure_get_int(box, "height", &hh) &&
                      gst_structure_get_uint64(box, "area", &area) && gst_structure_get_double(box, "peak", &peak));
          const GstPefmRegion& want = m.boxes[b];
          EXPECT_EQ(std::make_tuple(x, y, w, hh, area), std::make_tuple(want.x, want.y, want.width, want.height, want.area));
          EXPECT_FLOAT_EQ(static_cast<float>(peak), want.peak);
        }
        EXPECT_TRUE(posted.insert(ts).second) << "two messages for frame " << ts;
      }
      gst_message_unref(msg);
    }
    std::set<GstClockTime> want = defective;
    if (mode == "all") {
      want.clear();
      for (const auto& kv : metas) want.insert(kv.first);
    }
    EXPECT_EQ(posted, want) << mode;
    gst_element_set_bus(h->element, nullptr);
    gst_object_unref(bus);
    gst_harness_teardown(h);
  }
}

// tile-size=-1 (the default) takes the tile size the model was trained with (pefm-train
// --tile); 0 inspects whole frames whatever the model says.
TEST(Element, TileSizeMinusOneTakesTheModelsTrainingTile) {
  auto model = pefm::load_model(g_model);
  model.training["tile"] = "48";
  const auto tiled = g_dir->file("tiled.pt");
  pefm::save_model(model, tiled);
  for (const auto& [extra, w, hgt] : {std::tuple<std::string, guint, guint>{"", 128, 85}, {"tile-size=0", 64, 64}}) {
    GstHarness* h = gst_harness_new_parse(("pefmfilter device=cpu model=\"" + tiled + "\" " + extra).c_str());
    gst_harness_set_src_caps_str(h, caps_for(GST_VIDEO_FORMAT_RGB).c_str());
    GstVideoInfo info;
    GstBuffer* out = gst_harness_push_and_pull(h, make_buffer(texture_image(kH, kW, 8), GST_VIDEO_FORMAT_RGB, &info));
    const GstPefmMeta* m = out ? gst_buffer_get_pefm_meta(out) : nullptr;
    ASSERT_NE(m, nullptr) << extra;
    // 48 px tiles into 64 px inputs: the map is 64/48 of the 96x64 frame.
    EXPECT_EQ(m->map_width, w) << extra;
    EXPECT_EQ(m->map_height, hgt) << extra;
    gst_buffer_unref(out);
    gst_harness_teardown(h);
  }
}

// ---------------------------------------------------------------- live pipelines
struct LiveRun {
  int metas = 0, inspected_metas = 0, late_metas = 0;
  int messages = 0, inspected_messages = 0, late_messages = 0;
  guint64 frames = 0, inspected = 0, skipped_late = 0, skipped_interval = 0;
  GstClockTime latency_min = 0, processing_max = 0, latency = 0;
  GstClockTime latency_at_query = 0;  // the element's stats, read right after the query
  bool live = false;
};

GstPadProbeReturn count_metas(GstPad*, GstPadProbeInfo* info, gpointer user_data) {
  auto* run = static_cast<LiveRun*>(user_data);
  if (const GstPefmMeta* m = gst_buffer_get_pefm_meta(GST_PAD_PROBE_INFO_BUFFER(info))) {
    run->metas++;
    run->inspected_metas += m->inspected ? 1 : 0;
    run->late_metas += !m->inspected && m->skip_reason && std::string(m->skip_reason) == "late" ? 1 : 0;
  }
  return GST_PAD_PROBE_OK;
}

// A live source at 1000 frames/s into a model that needs far longer per frame (32 px tiles:
// 8 network inputs per frame, several ms on any CPU), a synchronised sink: every frame is
// accounted for in the meta, the messages and `stats`.
LiveRun run_live(const std::string& extra, int frames) {
  LiveRun run;
  const auto launch = "videotestsrc is-live=true num-buffers=" + std::to_string(frames) +
                      " ! video/x-raw,format=RGB,width=128,height=64,framerate=1000/1 ! pefmfilter name=f device=cpu "
                      "tile-size=32 overlay=none emit-messages=true " + extra + " model=" + g_model +
                      " ! fakesink name=sink sync=true qos=true";
  GstElement* pipeline = gst_parse_launch(launch.c_str(), nullptr);
  GstElement* filter = gst_bin_get_by_name(GST_BIN(pipeline), "f");
  GstElement* sink = gst_bin_get_by_name(GST_BIN(pipeline), "sink");
  GstPad* sinkpad = gst_element_get_static_pad(sink, "sink");
  gst_pad_add_probe(sinkpad, GST_PAD_PROBE_TYPE_BUFFER, count_metas, &run, nullptr);
  gst_element_set_state(pipeline, GST_STATE_PLAYING);
  GstBus* bus = gst_element_get_bus(pipeline);
  bool queried = false;
  while (GstMessage* msg = gst_bus_timed_pop_filtered(
             bus, pefm_test::kTimeoutScale * 30 * GST_SECOND,
             static_cast<GstMessageType>(GST_MESSAGE_ELEMENT | GST_MESSAGE_EOS | GST_MESSAGE_ERROR))) {
    const bool done = GST_MESSAGE_TYPE(msg) != GST_MESSAGE_ELEMENT;
    const GstStructure* s = gst_message_get_structure(msg);
    if (!done && gst_structure_has_name(s, "pefm")) {
      gboolean inspected = FALSE;
      gst_structure_get_boolean(s, "inspected", &inspected);
      run.messages++;
      run.inspected_messages += inspected ? 1 : 0;
      const char* reason = gst_structure_get_string(s, "reason");
      run.late_messages += !inspected && reason && std::string(reason) == "late" ? 1 : 0;
      if (!queried && run.messages >= 5) {  // mid-stream, after a few measured frames
        GstQuery* q = gst_query_new_latency();
        if (gst_element_query(pipeline, q)) {
          gboolean live = FALSE;
          GstClockTime min = 0, max = 0;
          gst_query_parse_latency(q, &live, &min, &max);
          run.live = live;
          run.latency_min = min;
          run.latency_at_query = stat(filter, "latency");
          queried = true;
        }
        gst_query_unref(q);
      }
    }
    if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ERROR) ADD_FAILURE() << "pipeline error";
    gst_message_unref(msg);
    if (done) break;
  }
  GstStructure* stats = nullptr;
  g_object_get(filter, "stats", &stats, nullptr);
  if (stats) {
    gst_structure_get_uint64(stats, "frames", &run.frames);
    gst_structure_get_uint64(stats, "inspected", &run.inspected);
    gst_structure_get_uint64(stats, "skipped-late", &run.skipped_late);
    gst_structure_get_uint64(stats, "skipped-interval", &run.skipped_interval);
    gst_structure_get_uint64(stats, "processing-max", &run.processing_max);
    gst_structure_get_uint64(stats, "latency", &run.latency);
    gst_structure_free(stats);
  }
  gst_object_unref(bus);
  gst_element_set_state(pipeline, GST_STATE_NULL);
  gst_object_unref(sinkpad);
  gst_object_unref(sink);
  gst_object_unref(filter);
  gst_object_unref(pipeline);
  return run;
}

// By default every frame of a live source faster than inference is inspected: QoS (which
// GstVideoFilter turns on) never drops one before inspection (was: 2 messages for 60 frames).
TEST(ElementLive, EveryFrameIsInspectedByDefault) {
  const auto run = run_live("", 30);
  EXPECT_EQ(run.frames, 30u);
  EXPECT_EQ(run.inspected, 30u);
  EXPECT_EQ(run.metas, 30);
  EXPECT_EQ(run.inspected_metas, 30);
  EXPECT_EQ(run.messages, 30);
  EXPECT_EQ(run.skipped_late, 0u);
}

// skip-late=true (or the base class's qos=true): frames already late downstream pass
// uninspected, and every one of them is reported: frames in = inspected + skipped, in the
// meta, the messages and the stats alike.
TEST(ElementLive, SkipLateReportsEverySkippedFrame) {
  for (const char* extra : {"skip-late=true", "qos=true"}) {
    const auto run = run_live(extra, 40);
    EXPECT_EQ(run.frames, 40u) << extra;
    EXPECT_EQ(run.inspected + run.skipped_late, 40u) << extra;
    ASSERT_GT(run.processing_max, 3 * GST_MSECOND) << extra << ": inference faster than the 1 ms frames; nothing can be late";
    EXPECT_GT(run.skipped_late, 0u) << extra << ": a source far faster than inference left nothing late";
    EXPECT_GT(run.inspected, 0u) << extra;
    EXPECT_EQ(run.metas, 40) << extra << ": a frame left without its meta";
    EXPECT_EQ(run.inspected_metas, static_cast<int>(run.inspected)) << extra;
    EXPECT_EQ(run.late_metas, static_cast<int>(run.skipped_late)) << extra;
    EXPECT_EQ(run.messages, 40) << extra;
    EXPECT_EQ(run.late_messages, static_cast<int>(run.skipped_late)) << extra;
  }
}

// inference-interval=N inspects frames 0, N, 2N, ... and reports the others.
TEST(ElementLive, InferenceIntervalInspectsEveryNthFrameAndReportsTheRest) {
  GstHarness* h = harness(caps_for(GST_VIDEO_FORMAT_RGB), "overlay=none inference-interval=3");
  GstVideoInfo info;
  for (int i = 0; i < 7; ++i) {
    GstBuffer* out = gst_harness_push_and_pull(h, make_buffer(texture_image(kH, kW, 60 + i), GST_VIDEO_FORMAT_RGB, &info));
    const GstPefmMeta* m = out ? gst_buffer_get_pefm_meta(out) : nullptr;
    ASSERT_NE(m, nullptr) << "frame " << i;
    EXPECT_EQ(static_cast<bool>(m->inspected), i % 3 == 0) << "frame " << i;
    if (!m->inspected) {
      EXPECT_STREQ(m->skip_reason, "interval");
      EXPECT_EQ(m->map, nullptr);
    }
    gst_buffer_unref(out);
  }
  GstElement* filter = gst_harness_find_element(h, "pefmfilter");
  EXPECT_EQ(stat(filter, "inspected"), 3u);
  EXPECT_EQ(stat(filter, "skipped-interval"), 4u);
  gst_object_unref(filter);
  gst_harness_teardown(h);
}

// The LATENCY query is answered with the longest processing time measured (plus 10 %), so
// a live pipeline's sink schedules frames at capture time + that, not late.
TEST(ElementLive, LatencyQueryAddsTheMeasuredProcessingTime) {
  const auto run = run_live("", 12);
  EXPECT_TRUE(run.live);
  EXPECT_GT(run.processing_max, 0u);
  // Reported: the longest frame plus 10 % headroom when it was last raised, so never below
  // the longest frame (frames up to the headroom do not re-report).
  EXPECT_GE(run.latency, run.processing_max);
  ASSERT_GT(run.latency_at_query, 0u);
  EXPECT_GE(run.latency_min, run.latency_at_query)
      << "pipeline latency " << run.latency_min << " ns, the element measured " << run.latency_at_query << " ns";
}

// overlay=none maps frames read-only: after a tee into 8 inspectors no branch copies the
// frame (all 8 outputs hold the source's memory); the heat map of a meta is shared, not
// duplicated, by copies of the buffer.
TEST(Element, OverlayNoneCopiesNothingAndCopiesShareTheHeatMap) {
  std::string launch = "videotestsrc num-buffers=1 ! video/x-raw,format=RGB,width=96,height=64 ! tee name=t";
  for (int i = 0; i < 8; ++i) {
    launch += " t. ! queue ! pefmfilter device=cpu overlay=none model=" + g_model + " ! appsink name=s" + std::to_string(i);
  }
  GstElement* pipeline = gst_parse_launch(launch.c_str(), nullptr);
  ASSERT_NE(pipeline, nullptr);
  gst_element_set_state(pipeline, GST_STATE_PLAYING);
  std::set<const void*> memories;
  GstSample* keep = nullptr;
  for (int i = 0; i < 8; ++i) {
    GstElement* sink = gst_bin_get_by_name(GST_BIN(pipeline), ("s" + std::to_string(i)).c_str());
    GstSample* sample = nullptr;
    g_signal_emit_by_name(sink, "try-pull-sample", pefm_test::kTimeoutScale * 20 * GST_SECOND, &sample);
    ASSERT_NE(sample, nullptr) << "branch " << i;
    GstBuffer* b = gst_sample_get_buffer(sample);
    ASSERT_NE(gst_buffer_get_pefm_meta(b), nullptr);
    GstMapInfo m;
    gst_buffer_map(b, &m, GST_MAP_READ);
    memories.insert(m.data);
    gst_buffer_unmap(b, &m);
    if (!keep) keep = gst_sample_ref(sample);
    gst_sample_unref(sample);
    gst_object_unref(sink);
  }
  EXPECT_EQ(memories.size(), 1u) << "branches copied the frame: " << memories.size() << " distinct copies";
  GstBuffer* original = gst_sample_get_buffer(keep);
  const GstPefmMeta* m0 = gst_buffer_get_pefm_meta(original);
  ASSERT_NE(m0->map, nullptr);
  for (int i = 0; i < 8; ++i) {
    GstBuffer* copy = gst_buffer_copy(original);
    const GstPefmMeta* mc = gst_buffer_get_pefm_meta(copy);
    ASSERT_NE(mc, nullptr);
    EXPECT_EQ(mc->map, m0->map) << "copy " << i << " duplicated the heat map";
    EXPECT_EQ(mc->map_width, m0->map_width);
    gst_buffer_unref(copy);
  }
  gst_sample_unref(keep);
  gst_element_set_state(pipeline, GST_STATE_NULL);
  gst_object_unref(pipeline);
}

// region-threshold cuts the regions (and contours) apart from the image decision: on the
// model's region scale (0 = the median normal pixel, 0.5 = its region threshold), recorded
// in the meta and the messages, and both thresholds' ranges are the normalised 0..1.
TEST(Element, RegionThresholdCutsTheRegionsAndLeavesTheDecisionAlone) {
  auto model = pefm::load_model(g_model);
  auto& cal = model.calibration;
  // A region threshold halfway between the median normal pixel and the image threshold.
  cal.region_threshold = (cal.base + cal.threshold) / 2;
  cal.region_rate_target = 0.001;
  cal.region_rate = 0.002;
  cal.region_image_rate = 0.25;
  cal.region_pixels = 4096;
  const std::string path = g_dir->file("regions.pt");
  pefm::save_model(model, path);
  GstHarness* h = harness(caps_for(GST_VIDEO_FORMAT_RGB), "overlay=none emit-messages=true model=\"" + path + "\"");
  GstBus* bus = gst_bus_new();
  gst_element_set_bus(h->element, bus);
  GstElement* filter = gst_harness_find_element(h, "pefmfilter");
  for (const char* name : {"threshold", "region-threshold"}) {
    const auto* spec = G_PARAM_SPEC_DOUBLE(g_object_class_find_property(G_OBJECT_GET_CLASS(filter), name));
    ASSERT_NE(spec, nullptr) << name;
    EXPECT_EQ(spec->minimum, 0.0) << name;
    EXPECT_EQ(spec->maximum, 1.0) << name;
    EXPECT_EQ(spec->default_value, 0.5) << name;
  }
  std::vector<uint64_t> areas;
  std::optional<bool> anomalous;
  GstVideoInfo info;
  for (double r : {0.0, 0.5, 1.0}) {
    g_object_set(filter, "region-threshold", r, nullptr);
    GstBuffer* out = gst_harness_push_and_pull(h, make_buffer(texture_image(kH, kW, 70), GST_VIDEO_FORMAT_RGB, &info));
    const GstPefmMeta* m = out ? gst_buffer_get_pefm_meta(out) : nullptr;
    ASSERT_NE(m, nullptr);
    EXPECT_FLOAT_EQ(m->region_threshold, static_cast<float>(r));
    EXPECT_FLOAT_EQ(m->region_level, static_cast<float>(cal.normalize(cal.region_cut(r))));
    if (!anomalous) anomalous = m->anomalous;
    EXPECT_EQ(m->anomalous, *anomalous) << "the decision does not move with region-threshold " << r;
    uint64_t area = 0;
    for (guint i = 0; i < m->n_regions; ++i) {
      area += m->regions[i].area;
      EXPECT_GE(m->regions[i].peak, m->region_level - 1e-6);
    }
    areas.push_back(area);
    gst_buffer_unref(out);
  }
  // 0: every pixel above the median normal pixel, about half of a normal frame.
  EXPECT_GT(areas[0], static_cast<uint64_t>(kW * kH / 5));
  EXPECT_GE(areas[0], areas[1]);
  EXPECT_GE(areas[1], areas[2]);
  EXPECT_GT(areas[0], areas[2]);
  // The messages carry the region threshold; the calibration property what the model states.
  bool seen = false;
  while (GstMessage* msg = gst_bus_pop_filtered(bus, GST_MESSAGE_ELEMENT)) {
    double r = -1;
    if (gst_structure_get_double(gst_message_get_structure(msg), "region-threshold", &r)) seen = true;
    gst_message_unref(msg);
  }
  gst_object_unref(bus);
  EXPECT_TRUE(seen);
  GstStructure* c = nullptr;
  g_object_get(filter, "calibration", &c, nullptr);
  ASSERT_NE(c, nullptr);
  double asked = -1, rate = -1, images = -1;
  EXPECT_TRUE(gst_structure_get_double(c, "asked-pixel-false-alarm-rate", &asked));
  EXPECT_TRUE(gst_structure_get_double(c, "pixel-false-alarm-rate", &rate));
  EXPECT_TRUE(gst_structure_get_double(c, "images-with-regions", &images));
  EXPECT_DOUBLE_EQ(asked, 0.001);
  EXPECT_DOUBLE_EQ(rate, 0.002);
  EXPECT_DOUBLE_EQ(images, 0.25);
  gst_structure_free(c);
  gst_object_unref(filter);
  gst_harness_teardown(h);
}

// GST_PARAM_CONTROLLABLE properties follow a control source at each frame's stream time.
TEST(Element, ControlledThresholdFollowsItsControlSource) {
  GstHarness* h = harness(caps_for(GST_VIDEO_FORMAT_RGB), "overlay=none");
  GstElement* filter = gst_harness_find_element(h, "pefmfilter");
  GstControlSource* cs = gst_interpolation_control_source_new();
  g_object_set(cs, "mode", GST_INTERPOLATION_MODE_NONE, nullptr);
  gst_timed_value_control_source_set(GST_TIMED_VALUE_CONTROL_SOURCE(cs), 0, 0.25);
  gst_timed_value_control_source_set(GST_TIMED_VALUE_CONTROL_SOURCE(cs), 2 * GST_SECOND, 0.75);
  gst_object_add_control_binding(GST_OBJECT(filter),
                                 gst_direct_control_binding_new_absolute(GST_OBJECT(filter), "threshold", cs));
  GstVideoInfo info;
  for (const auto& [pts, want] : {std::pair<GstClockTime, float>{0, 0.25f}, {GST_SECOND, 0.25f}, {3 * GST_SECOND, 0.75f}}) {
    GstBuffer* in = make_buffer(texture_image(kH, kW, 70), GST_VIDEO_FORMAT_RGB, &info);
    GST_BUFFER_PTS(in) = pts;
    GstBuffer* out = gst_harness_push_and_pull(h, in);
    const GstPefmMeta* m = out ? gst_buffer_get_pefm_meta(out) : nullptr;
    ASSERT_NE(m, nullptr);
    EXPECT_FLOAT_EQ(m->threshold, want) << "at " << pts;
    gst_buffer_unref(out);
  }
  gst_object_unref(cs);
  gst_object_unref(filter);
  gst_harness_teardown(h);
}

TEST(Element, GstLaunchOnTheSampleVideoPostsMessages) {
  PEFM_SHARED_OR_SKIP(video, "media/bottle-detection.mp4");
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
