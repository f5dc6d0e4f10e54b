#include <gst/gst.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common.h"
#include "pefm-io/image_io.h"

namespace {

using pefm::io::Image;
using pefm::io::ImageError;
using pefm::io::PixelFormat;

// Renders one videotestsrc frame of `caps` through `encoder` into `path`; false when an
// element is missing on this system.
bool gst_write(const std::string& caps, const std::string& encoder, const std::string& path) {
  pefm::io::ensure_gstreamer();
  const auto desc = "videotestsrc num-buffers=1 pattern=smpte ! " + caps + " ! videoconvert ! " + encoder +
                    " ! filesink location=\"" + path + "\"";
  GError* err = nullptr;
  GstElement* p = gst_parse_launch(desc.c_str(), &err);
  if (!p || err) {
    g_clear_error(&err);
    if (p) gst_object_unref(p);
    return false;
  }
  gst_element_set_state(p, GST_STATE_PLAYING);
  GstBus* bus = gst_element_get_bus(p);
  GstMessage* m = gst_bus_timed_pop_filtered(bus, 10 * GST_SECOND,
                                             static_cast<GstMessageType>(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
  const bool ok = m && GST_MESSAGE_TYPE(m) == GST_MESSAGE_EOS;
  if (m) gst_message_unref(m);
  gst_object_unref(bus);
  gst_element_set_state(p, GST_STATE_NULL);
  gst_object_unref(p);
  return ok;
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
