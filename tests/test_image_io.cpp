#include <gst/app/gstappsrc.h>
#include <gst/gst.h>
#include <gst/video/video.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <tuple>
#include <vector>

#include "common.h"
#include "pefm-io/image_io.h"
#include "pefm/frame.h"

namespace {

using pefm::io::Image;
using pefm::io::ImageError;
using pefm::io::PixelFormat;

// Waits for playing pipeline `p` to end, then stops and releases it: true at EOS, false
// at an error or after 10 s.
bool finish(GstElement* p) {
  GstBus* bus = gst_element_get_bus(p);
  GstMessage* m = gst_bus_timed_pop_filtered(bus, pefm_test::kTimeoutScale * 10 * GST_SECOND,
                                             static_cast<GstMessageType>(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
  const bool ok = m && GST_MESSAGE_TYPE(m) == GST_MESSAGE_EOS;
  if (m) gst_message_unref(m);
  gst_object_unref(bus);
  gst_element_set_state(p, GST_STATE_NULL);
  gst_object_unref(p);
  return ok;
}

// The pipeline `desc`, or null when an element of it is missing on this system.
GstElement* parse(const std::string& desc) {
  GError* err = nullptr;
  GstElement* p = gst_parse_launch(desc.c_str(), &err);
  if (!p || err) {
    g_clear_error(&err);
    if (p) gst_object_unref(p);
    return nullptr;
  }
  return p;
}

// Renders one videotestsrc frame of `caps` through `encoder` into `path`; false when an
// element is missing on this system.
bool gst_write(const std::string& caps, const std::string& encoder, const std::string& path) {
  pefm::io::ensure_gstreamer();
  const auto desc = "videotestsrc num-buffers=1 pattern=smpte ! " + caps + " ! videoconvert ! " + encoder +
                    " ! filesink location=\"" + path + "\"";
  GstElement* p = parse(desc);
  if (!p) return false;
  gst_element_set_state(p, GST_STATE_PLAYING);
  return finish(p);
}

std::string error_of(const std::string& path) {
  try {
    pefm::io::read_image(path);
  } catch (const ImageError& e) {
    return e.what();
  }
  return "(no error)";
}

class ImageIo : public ::testing::Test {
 protected:
  pefm_test::TempDir tmp_;
};

TEST_F(ImageIo, PngRoundTripIsLossless) {
  Image img{7, 5, 3, {}};
  for (int i = 0; i < 7 * 5 * 3; ++i) img.pixels.push_back(static_cast<uint8_t>(i * 7));
  pefm::io::write_png(tmp_.file("rgb.png"), img);
  const auto back = pefm::io::read_image(tmp_.file("rgb.png"));
  EXPECT_EQ(back.width, 7);
  EXPECT_EQ(back.height, 5);
  EXPECT_EQ(back.pixels, img.pixels);
}

TEST_F(ImageIo, GrayIsReplicatedToRgbAndReadBackAsGray) {
  Image img{4, 3, 1, {0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 250}};
  pefm::io::write_png(tmp_.file("gray.png"), img);
  const auto rgb = pefm::io::read_image(tmp_.file("gray.png"));
  ASSERT_EQ(rgb.channels, 3);
  EXPECT_EQ(rgb.pixels[3 * 11 + 0], 250);
  EXPECT_EQ(rgb.pixels[3 * 11 + 2], 250);
  EXPECT_EQ(pefm::io::read_image(tmp_.file("gray.png"), PixelFormat::kGray).pixels, img.pixels);
}

struct Format {
  std::string name, caps, encoder, file;
};

class ImageFormats : public ImageIo, public ::testing::WithParamInterface<Format> {};

TEST_P(ImageFormats, DecodesToRgbOfTheRightSize) {
  const auto& f = GetParam();
  const auto path = tmp_.file(f.file);
  if (!gst_write(f.caps + ",width=33,height=17", f.encoder, path)) {
    GTEST_SKIP() << "no GStreamer encoder for " << f.name << " here";
  }
  const auto img = pefm::io::read_image(path);
  EXPECT_EQ(img.width, 33);
  EXPECT_EQ(img.height, 17);
  EXPECT_EQ(img.channels, 3);
  // SMPTE bars: the first column is light grey/white-ish, not black.
  EXPECT_GT(img.pixels[0], 100) << f.name;
}

INSTANTIATE_TEST_SUITE_P(
    Encoders, ImageFormats,
    ::testing::Values(Format{"png8", "video/x-raw,format=RGB", "pngenc", "a.png"},
                      Format{"png16gray", "video/x-raw,format=GRAY16_BE", "pngenc", "b.png"},
                      Format{"pngrgba", "video/x-raw,format=RGBA", "pngenc", "c.png"},
                      Format{"jpeg", "video/x-raw,format=I420", "jpegenc", "d.jpg"},
                      Format{"bmp", "video/x-raw,format=BGR", "avenc_bmp", "e.bmp"},
                      Format{"tiff", "video/x-raw,format=RGB", "avenc_tiff", "f.tif"}),
    [](const auto& info) { return info.param.name; });

// 16-bit gray samples (row-major, w x h) through appsrc and `encoder` into `path`, in
// `format` (GRAY16_BE for pngenc, GRAY16_LE for avenc_tiff); false when the encoder is
// missing here.
bool write_gray16(const std::string& path, const std::string& encoder, const std::string& format, int w, int h,
                  const std::vector<uint16_t>& values) {
  pefm::io::ensure_gstreamer();
  const std::string desc = "appsrc name=src format=time caps=video/x-raw,format=" + format + ",width=" + std::to_string(w) +
                           ",height=" + std::to_string(h) + ",framerate=1/1 ! " + encoder + " ! filesink location=\"" +
                           path + "\"";
  GstElement* p = parse(desc);
  if (!p) return false;
  GstVideoInfo info;
  gst_video_info_set_format(&info, gst_video_format_from_string(format.c_str()), w, h);
  GstBuffer* buf = gst_buffer_new_allocate(nullptr, GST_VIDEO_INFO_SIZE(&info), nullptr);
  GstMapInfo map;
  gst_buffer_map(buf, &map, GST_MAP_WRITE);
  const int stride = GST_VIDEO_INFO_PLANE_STRIDE(&info, 0);
  const bool be = format == "GRAY16_BE";
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const uint16_t v = values[static_cast<size_t>(y) * w + x];
      uint8_t* q = map.data + static_cast<size_t>(y) * stride + 2 * x;
      q[be ? 0 : 1] = static_cast<uint8_t>(v >> 8);
      q[be ? 1 : 0] = static_cast<uint8_t>(v & 0xFF);
    }
  gst_buffer_unmap(buf, &map);
  GST_BUFFER_PTS(buf) = 0;
  GstElement* src = gst_bin_get_by_name(GST_BIN(p), "src");
  gst_element_set_state(p, GST_STATE_PLAYING);
  gst_app_src_push_buffer(GST_APP_SRC(src), buf);
  gst_app_src_end_of_stream(GST_APP_SRC(src));
  gst_object_unref(src);
  return finish(p);
}

// A 12-bit camera's images saved as 16-bit PNG and TIFF are read as pefmfilter reads its
// GRAY16_LE frames: v * 255 / 4095 with --bit-depth 12 (every 12-bit level checked), the
// full 16-bit range by default; gray replicated into RGB. 8-bit images ignore the setting.
TEST_F(ImageIo, SixteenBitGrayIsMappedAsPefmfilterMapsGray16Frames) {
  const int w = 64, h = 64;  // 4096 samples: every 12-bit level
  std::vector<uint16_t> values(static_cast<size_t>(w) * h);
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<uint16_t>((i * 2473) % 4096);
  values[5] = 65535;  // above a 12-bit camera's range: saturated
  for (const auto& [encoder, format, file] : {std::tuple<std::string, std::string, std::string>{"pngenc", "GRAY16_BE", "g.png"},
                                              {"avenc_tiff", "GRAY16_LE", "g.tif"}}) {
    SCOPED_TRACE(encoder);
    const auto path = tmp_.file(file);
    ASSERT_TRUE(write_gray16(path, encoder, format, w, h, values)) << "no " << encoder;
    const auto gray12 = pefm::io::read_image(path, PixelFormat::kGray, 12);
    const auto rgb12 = pefm::io::read_image(path, PixelFormat::kRgb, 12);
    const auto gray16 = pefm::io::read_image(path, PixelFormat::kGray);
    ASSERT_EQ(gray12.pixels.size(), values.size());
    ASSERT_EQ(rgb12.pixels.size(), 3 * values.size());
    ASSERT_EQ(gray16.pixels.size(), values.size());
    for (size_t i = 0; i < values.size(); ++i) {
      const int expect12 = values[i] >= 4095 ? 255 : (values[i] * 255 + 2047) / 4095;
      ASSERT_EQ(gray12.pixels[i], expect12) << "sample " << values[i];
      ASSERT_EQ(pefm::gray16_to_8(values[i], 12), expect12);
      for (int c = 0; c < 3; ++c) ASSERT_EQ(rgb12.pixels[3 * i + c], expect12);
      ASSERT_EQ(gray16.pixels[i], (values[i] * 255 + 32767) / 65535) << "sample " << values[i];
    }
  }
  Image img{4, 3, 1, {0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 250}};
  pefm::io::write_png(tmp_.file("gray8.png"), img);
  EXPECT_EQ(pefm::io::read_image(tmp_.file("gray8.png"), PixelFormat::kGray, 12).pixels, img.pixels);
  EXPECT_THROW(pefm::io::read_image(tmp_.file("gray8.png"), PixelFormat::kGray, 7), ImageError);
}

TEST_F(ImageIo, ZeroByteFileIsNamed) {
  pefm_test::spit(tmp_.file("empty.png"), "");
  const auto msg = error_of(tmp_.file("empty.png"));
  EXPECT_NE(msg.find("empty.png' is empty"), std::string::npos) << msg;
}

TEST_F(ImageIo, TruncatedPngIsNamed) {
  Image img{64, 64, 3, std::vector<uint8_t>(64 * 64 * 3, 77)};
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<uint8_t>(i * 13);
  pefm::io::write_png(tmp_.file("full.png"), img);
  const auto bytes = pefm_test::slurp(tmp_.file("full.png"));
  pefm_test::spit(tmp_.file("cut.png"), bytes.substr(0, bytes.size() / 2));
  const auto msg = error_of(tmp_.file("cut.png"));
  EXPECT_NE(msg.find("cannot decode '" + tmp_.file("cut.png") + "'"), std::string::npos) << msg;
}

TEST_F(ImageIo, NonImageFileIsNamed) {
  pefm_test::spit(tmp_.file("notes.png"), "these are notes, not pixels\n");
  const auto msg = error_of(tmp_.file("notes.png"));
  EXPECT_NE(msg.find("notes.png"), std::string::npos) << msg;
}

TEST_F(ImageIo, MissingFileIsNamed) {
  const auto msg = error_of(tmp_.file("nope.png"));
  EXPECT_NE(msg.find("nope.png' is not a readable file"), std::string::npos) << msg;
}

// Headers that declare 30000 x 30000 pixels (900 M) are refused before decoding, so a
// crafted file cannot make a decoder allocate gigabytes.
TEST_F(ImageIo, HugeDeclaredSizeIsRefusedBeforeDecoding) {
  std::string png("\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR", 16);
  png += std::string("\0\0\x75\x30\0\0\x75\x30\x08\x02\0\0\0", 13);  // 30000 x 30000, 8-bit RGB
  png += std::string(4, '\0') + std::string(100, 'x');
  pefm_test::spit(tmp_.file("huge.png"), png);
  auto msg = error_of(tmp_.file("huge.png"));
  EXPECT_NE(msg.find("huge.png' declares 30000x30000 pixels"), std::string::npos) << msg;

  std::string jpeg("\xff\xd8\xff\xe0\0\x10JFIF\0\x01\x01\0\0\x01\0\x01\0\0", 20);
  jpeg += std::string("\xff\xc0\0\x11\x08\x75\x30\x75\x30\x03", 10) + std::string(100, '\0');
  pefm_test::spit(tmp_.file("huge.jpg"), jpeg);
  msg = error_of(tmp_.file("huge.jpg"));
  EXPECT_NE(msg.find("huge.jpg' declares 30000x30000 pixels"), std::string::npos) << msg;

  std::string bmp = "BM" + std::string(16, '\0');
  const int32_t dims[2] = {30000, -30000};  // top-down BMP: negative height
  bmp.append(reinterpret_cast<const char*>(dims), sizeof(dims));
  bmp += std::string(100, '\0');
  pefm_test::spit(tmp_.file("huge.bmp"), bmp);
  msg = error_of(tmp_.file("huge.bmp"));
  EXPECT_NE(msg.find("huge.bmp' declares 30000x30000 pixels"), std::string::npos) << msg;
}

TEST_F(ImageIo, HugeDeclaredSizeIsRefusedInEveryListedFormat) {
  const auto expect_refused = [&](const std::string& name, const std::string& bytes) {
    pefm_test::spit(tmp_.file(name), bytes);
    const auto msg = error_of(tmp_.file(name));
    EXPECT_NE(msg.find(name + "' declares 30000x30000 pixels"), std::string::npos) << msg;
  };
  // TIFF, little-endian, with the IFD after 1000 bytes of "pixel data" (as libtiff writes
  // it): ImageWidth LONG 30000, ImageLength SHORT 30000.
  std::string tiff("II*\0", 4);
  const uint32_t ifd = 8 + 1000;
  tiff.append(reinterpret_cast<const char*>(&ifd), 4);
  tiff += std::string(1000, '\x7f');
  tiff += std::string("\x02\x00", 2);
  tiff += std::string("\x00\x01\x04\x00\x01\x00\x00\x00\x30\x75\x00\x00", 12);
  tiff += std::string("\x01\x01\x03\x00\x01\x00\x00\x00\x30\x75\x00\x00", 12);
  tiff += std::string(4, '\0');
  expect_refused("huge.tif", tiff);
  // Big-endian TIFF, both tags SHORT.
  std::string mm("MM\0*\0\0\0\x08\0\x02", 10);
  mm += std::string("\x01\x00\x00\x03\x00\x00\x00\x01\x75\x30\x00\x00", 12);
  mm += std::string("\x01\x01\x00\x03\x00\x00\x00\x01\x75\x30\x00\x00", 12);
  mm += std::string(4, '\0');
  expect_refused("huge-be.tiff", mm);
  expect_refused("huge.ppm", "P6\n# a comment\n30000 30000\n255\n" + std::string(100, '\0'));
  // WebP extended (VP8X): canvas size minus one, 24-bit little-endian.
  std::string vp8x = "RIFF" + std::string("\x40\0\0\0", 4) + "WEBPVP8X" + std::string("\x0a\0\0\0", 4);
  vp8x += std::string("\0\0\0\0", 4) + std::string("\x2f\x75\x00\x2f\x75\x00", 6) + std::string(40, '\0');
  expect_refused("huge.webp", vp8x);
  // Lossless WebP (VP8L): 14-bit width-1 and height-1 after the 0x2f signature.
  const uint32_t bits = (30000 - 1) | (30000 - 1) << 14;
  std::string vp8l = "RIFF" + std::string("\x40\0\0\0", 4) + "WEBPVP8L" + std::string("\x20\0\0\0", 4) + "\x2f";
  vp8l.append(reinterpret_cast<const char*>(&bits), 4);
  vp8l += std::string(40, '\0');
  // 30000 does not fit 14 bits: VP8L tops out at 16384, which is still over the limit.
  pefm_test::spit(tmp_.file("big.webp"), vp8l);
  const auto msg = error_of(tmp_.file("big.webp"));
  EXPECT_NE(msg.find("big.webp' declares"), std::string::npos) << msg;
  EXPECT_NE(msg.find("not decoded"), std::string::npos) << msg;
}

// Decoding the same image many times (as a training folder does) must not grow memory.
TEST_F(ImageIo, RepeatedDecodingKeepsMemoryBounded) {
  if (pefm_test::kSanitized) GTEST_SKIP() << "ASan's quarantine keeps freed memory; LeakSanitizer checks leaks in this build";
  Image img{512, 384, 3, std::vector<uint8_t>(512 * 384 * 3)};
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<uint8_t>(i * 31 / 7);
  const auto path = tmp_.file("frame.png");
  pefm::io::write_png(path, img);
  for (int i = 0; i < 10; ++i) pefm::io::read_image(path);  // pools and caches settle
  const long before = pefm_test::rss_kib();
  for (int i = 0; i < 200; ++i) {
    ASSERT_EQ(pefm::io::read_image(path).width, 512);
    error_of(tmp_.file("missing.png"));
  }
  const long grown = pefm_test::rss_kib() - before;
  EXPECT_LT(grown, 8 * 1024) << "RSS grew by " << grown << " KiB over 200 decodes of a 512x384 PNG";
}

// tests/data/images: written with PIL (a 16-colour palette PNG and a CMYK JPEG, 33x17).
TEST_F(ImageIo, PalettePngDecodesToItsColours) {
  const auto img = pefm::io::read_image(pefm_test::data_dir() + "/images/palette.png");
  ASSERT_EQ(img.width, 33);
  ASSERT_EQ(img.height, 17);
  const auto at = [&](int x, int y, int c) { return static_cast<int>(img.pixels[(y * 33 + x) * 3 + c]); };
  // PIL's own palette -> RGB conversion of the same file gives these values.
  EXPECT_EQ(std::vector<int>({at(0, 0, 0), at(0, 0, 1), at(0, 0, 2)}), std::vector<int>({53, 15, 200}));
  EXPECT_EQ(std::vector<int>({at(32, 16, 0), at(32, 16, 1), at(32, 16, 2)}), std::vector<int>({196, 225, 30}));
}

// GStreamer 1.22's jpegdec has no CMYK output: the file is refused with its name (and
// pefm-train then skips it), never a crash or a hang.
TEST_F(ImageIo, CmykJpegIsRefusedByName) {
  const auto path = pefm_test::data_dir() + "/images/cmyk.jpg";
  const auto msg = error_of(path);
  EXPECT_NE(msg.find("cannot decode '" + path + "'"), std::string::npos) << msg;
}

TEST_F(ImageIo, ListsOnlyImagesSortedByName) {
  for (const char* f : {"b.PNG", "a.jpg", "c.txt", "d.tiff", "e"}) pefm_test::spit(tmp_.file(f), "x");
  std::filesystem::create_directory(tmp_.file("sub.png"));
  const auto files = pefm::io::list_images(tmp_.path());
  ASSERT_EQ(files.size(), 3u);
  EXPECT_EQ(files[0], tmp_.file("a.jpg"));
  EXPECT_EQ(files[1], tmp_.file("b.PNG"));
  EXPECT_EQ(files[2], tmp_.file("d.tiff"));
  EXPECT_THROW(pefm::io::list_images(tmp_.file("missing")), ImageError);
}

}  // namespace
