#include "pefm-io/image_io.h"

#include "pefm/frame.h"

#include <gst/app/gstappsink.h>
#include <gst/app/gstappsrc.h>
#include <gst/gst.h>
#include <gst/video/video.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>

namespace pefm {
namespace io {

namespace {

struct GstUnref {
  void operator()(gpointer p) const { gst_object_unref(p); }
};
using ElementPtr = std::unique_ptr<GstElement, GstUnref>;

struct SampleUnref {
  void operator()(GstSample* s) const { gst_sample_unref(s); }
};

// Stops and releases a pipeline however the function leaves.
class Pipeline {
 public:
  explicit Pipeline(GstElement* p) : p_(p) {}
  ~Pipeline() {
    if (p_) {
      gst_element_set_state(p_, GST_STATE_NULL);
      gst_object_unref(p_);
    }
  }
  GstElement* get() const { return p_; }
  ElementPtr by_name(const char* name) const {
    return ElementPtr(gst_bin_get_by_name(GST_BIN(p_), name));
  }

 private:
  GstElement* p_;
};

// The text of an ERROR message.
std::string error_text(GstMessage* msg) {
  GError* err = nullptr;
  gst_message_parse_error(msg, &err, nullptr);
  std::string text = err ? err->message : "unknown error";
  g_clear_error(&err);
  return text;
}

GstElement* parse(const char* description, const std::string& path) {
  GError* err = nullptr;
  GstElement* p = gst_parse_launch(description, &err);
  if (!p || err) {
    const std::string why = err ? err->message : "unknown";
    g_clear_error(&err);
    if (p) gst_object_unref(p);
    throw ImageError("cannot build a GStreamer pipeline for '" + path + "': " + why +
                     " (are gstreamer1.0-plugins-base/-good/-libav installed?)");
  }
  return p;
}

// A TIFF header's byte order from a file's first `n` bytes: 'I' (little-endian, II*\0),
// 'M' (big-endian, MM\0*), or 0 for no TIFF header.
char tiff_order(const unsigned char* b, size_t n) {
  if (n >= 4 && b[0] == 'I' && b[1] == 'I' && b[2] == 42 && b[3] == 0) return 'I';
  if (n >= 4 && b[0] == 'M' && b[1] == 'M' && b[2] == 0 && b[3] == 42) return 'M';
  return 0;
}

bool is_tiff(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  unsigned char b[4] = {};
  in.read(reinterpret_cast<char*>(b), 4);
  return in && tiff_order(b, 4) != 0;
}

// Width and height the header declares, for every format list_images() accepts (PNG,
// JPEG, BMP, TIFF, PGM/PPM, WebP), read before any decoder runs so that a crafted
// 30000x30000 header is refused before it can allocate gigabytes. {0, 0} when the header
// is unreadable or unknown (the decoder then reports it).
std::pair<int64_t, int64_t> declared_size(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  const auto read_at = [&in](int64_t offset, size_t n) {
    std::vector<unsigned char> v(n);
    in.clear();
    in.seekg(offset);
    in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(n));
    v.resize(in ? n : static_cast<size_t>(std::max<std::streamsize>(in.gcount(), 0)));
    return v;
  };
  const auto b = read_at(0, 64 * 1024);
  const auto be16 = [&](size_t o) { return static_cast<int64_t>(b[o]) << 8 | b[o + 1]; };
  const auto be32 = [&](size_t o) { return be16(o) << 16 | be16(o + 2); };
  const auto le16 = [&](size_t o) { return static_cast<int64_t>(b[o + 1]) << 8 | b[o]; };
  const auto le24 = [&](size_t o) { return static_cast<int64_t>(b[o + 2]) << 16 | le16(o); };
  const auto le32 = [&](size_t o) {
    return static_cast<int64_t>(static_cast<int32_t>(b[o] | b[o + 1] << 8 | b[o + 2] << 16 | static_cast<uint32_t>(b[o + 3]) << 24));
  };
  static const unsigned char png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (b.size() >= 24 && std::memcmp(b.data(), png, 8) == 0 && std::memcmp(b.data() + 12, "IHDR", 4) == 0) {
    return {be32(16), be32(20)};
  }
  if (b.size() >= 26 && b[0] == 'B' && b[1] == 'M') return {std::abs(le32(18)), std::abs(le32(22))};
  if (b.size() >= 4 && b[0] == 0xFF && b[1] == 0xD8) {
    // JPEG: walk the segments to the first start-of-frame marker.
    for (size_t o = 2; o + 9 < b.size();) {
      if (b[o] != 0xFF) break;
      const unsigned char marker = b[o + 1];
      if (marker == 0xFF) {
        ++o;
        continue;
      }
      const bool sof = marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
      if (sof) return {be16(o + 7), be16(o + 5)};
      o += 2 + static_cast<size_t>(be16(o + 2));
    }
  }
  const char tiff = b.size() >= 8 ? tiff_order(b.data(), b.size()) : 0;
  const bool tiff_le = tiff == 'I', tiff_be = tiff == 'M';
  if (tiff_le || tiff_be) {
    // The first IFD's ImageWidth (256) and ImageLength (257) tags; writers often put the
    // IFD after the pixel data, so it is read from wherever it is.
    const auto u16 = [tiff_le](const std::vector<unsigned char>& v, size_t o) -> int64_t {
      return tiff_le ? v[o] | v[o + 1] << 8 : v[o] << 8 | v[o + 1];
    };
    const auto u32 = [&u16, tiff_le](const std::vector<unsigned char>& v, size_t o) -> int64_t {
      return tiff_le ? u16(v, o) | u16(v, o + 2) << 16 : u16(v, o) << 16 | u16(v, o + 2);
    };
    const int64_t ifd = u32(b, 4);
    const auto count = read_at(ifd, 2);
    if (count.size() < 2) return {0, 0};
    const auto n = static_cast<size_t>(std::min<int64_t>(u16(count, 0), 4096));
    const auto entries = read_at(ifd + 2, 12 * n);
    int64_t w = 0, h = 0;
    for (size_t e = 0; e + 12 <= entries.size(); e += 12) {
      const int64_t tag = u16(entries, e), type = u16(entries, e + 2);
      const int64_t value = type == 3 ? u16(entries, e + 8) : type == 4 ? u32(entries, e + 8) : 0;
      if (tag == 256) w = value;
      if (tag == 257) h = value;
    }
    return {w, h};
  }
  if (b.size() >= 3 && b[0] == 'P' && b[1] >= '1' && b[1] <= '6') {
    // PNM: whitespace-separated width and height after the magic, '#' comments allowed.
    int64_t dims[2] = {0, 0};
    size_t o = 2;
    for (int64_t& d : dims) {
      while (o < b.size() && (std::isspace(b[o]) || b[o] == '#')) {
        if (b[o] == '#') {
          while (o < b.size() && b[o] != '\n') ++o;
        } else {
          ++o;
        }
      }
      for (; o < b.size() && std::isdigit(b[o]) && d < (int64_t{1} << 40); ++o) d = d * 10 + (b[o] - '0');
    }
    return {dims[0], dims[1]};
  }
  if (b.size() >= 30 && std::memcmp(b.data(), "RIFF", 4) == 0 && std::memcmp(b.data() + 8, "WEBP", 4) == 0) {
    if (std::memcmp(b.data() + 12, "VP8X", 4) == 0) return {le24(24) + 1, le24(27) + 1};
    if (std::memcmp(b.data() + 12, "VP8L", 4) == 0 && b[20] == 0x2f) {
      const int64_t bits = le32(21) & 0x0FFFFFFF;
      return {(bits & 0x3FFF) + 1, (bits >> 14 & 0x3FFF) + 1};
    }
    if (std::memcmp(b.data() + 12, "VP8 ", 4) == 0) return {le16(26) & 0x3FFF, le16(28) & 0x3FFF};
  }
  return {0, 0};
}

bool has_image_extension(const std::filesystem::path& p) {
  auto ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const char* e : {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm", ".webp"}) {
    if (ext == e) return true;
  }
  return false;
}

}  // namespace

void ensure_gstreamer() {
  static std::once_flag once;
  std::call_once(once, [] {
    GError* err = nullptr;
    if (!gst_init_check(nullptr, nullptr, &err)) {
      const std::string why = err ? err->message : "unknown";
      g_clear_error(&err);
      throw ImageError("cannot initialise GStreamer: " + why);
    }
  });
}

// videoconvert's input caps: a 16-bit gray image keeps its 16 bits through videoconvert
// (as GRAY16_LE) for gray16_to_8; every other image converts to `filter`'s 8-bit format.
static GstPadProbeReturn keep_gray16(GstPad*, GstPadProbeInfo* info, gpointer filter) {
  GstEvent* event = GST_PAD_PROBE_INFO_EVENT(info);
  if (GST_EVENT_TYPE(event) != GST_EVENT_CAPS) return GST_PAD_PROBE_OK;
  GstCaps* caps = nullptr;
  gst_event_parse_caps(event, &caps);
  GstVideoInfo in;
  if (caps && gst_video_info_from_caps(&in, caps) &&
      (GST_VIDEO_INFO_FORMAT(&in) == GST_VIDEO_FORMAT_GRAY16_LE ||
       GST_VIDEO_INFO_FORMAT(&in) == GST_VIDEO_FORMAT_GRAY16_BE)) {
    GstCaps* wide = gst_caps_from_string("video/x-raw,format=GRAY16_LE");
    g_object_set(filter, "caps", wide, nullptr);
    gst_caps_unref(wide);
  }
  return GST_PAD_PROBE_REMOVE;
}

Image read_image(const std::string& path, PixelFormat format, int bit_depth) {
  ensure_gstreamer();
  if (bit_depth < 8 || bit_depth > 16) {
    throw ImageError("cannot read '" + path + "' with " + std::to_string(bit_depth) + " significant bits (8..16)");
  }
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) throw ImageError("'" + path + "' is not a readable file");
  const auto bytes = std::filesystem::file_size(path, ec);  // (uintmax_t)-1 on an error
  if (bytes == 0) throw ImageError("'" + path + "' is empty (0 bytes)");
  if (const auto [dw, dh] = declared_size(path); dw * dh > kMaxImagePixels) {
    throw ImageError("'" + path + "' declares " + std::to_string(dw) + "x" + std::to_string(dh) +
                     " pixels, more than the supported " + std::to_string(kMaxImagePixels) + "; not decoded");
  }
  const bool gray = format == PixelFormat::kGray;
  const std::string desc = std::string(
      "filesrc name=src ! queue ! decodebin name=dec ! videoconvert name=convert ! capsfilter name=filter caps=video/x-raw,format=") +
      (gray ? "GRAY8" : "RGB") + " ! appsink name=sink sync=false max-buffers=1";
  Pipeline pipe(parse(desc.c_str(), path));
  g_object_set(pipe.by_name("src").get(), "location", path.c_str(), nullptr);
  // A TIFF in one buffer, pushed (the queue: pulling, typefind would cut it into blocks):
  // avdec_tiff, with no parser in front, takes each buffer for a whole image and failed on
  // any TIFF larger than one default block of 4 KiB. Other formats have their parsers.
  if (bytes != static_cast<std::uintmax_t>(-1) && is_tiff(path)) {
    if (bytes > (uint64_t{1} << 30)) throw ImageError("'" + path + "' is a TIFF file over 1 GiB; not decoded");
    g_object_set(pipe.by_name("src").get(), "blocksize", static_cast<guint>(bytes), nullptr);
  }
  auto sink = pipe.by_name("sink");
  {
    auto convert = pipe.by_name("convert");
    auto filter = pipe.by_name("filter");
    GstPad* pad = gst_element_get_static_pad(convert.get(), "sink");
    // the filter outlives the probe: both belong to the pipeline, stopped before it goes
    gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM, keep_gray16, filter.get(), nullptr);
    gst_object_unref(pad);
  }

  // Preroll ends in ASYNC_DONE (a frame waits in the sink) or an ERROR; the sink itself
  // is not woken by upstream errors, so wait on the bus.
  gst_element_set_state(pipe.get(), GST_STATE_PAUSED);
  std::unique_ptr<GstBus, GstUnref> bus(gst_element_get_bus(pipe.get()));
  GstMessage* msg = gst_bus_timed_pop_filtered(
      bus.get(), 30 * GST_SECOND,
      static_cast<GstMessageType>(GST_MESSAGE_ASYNC_DONE | GST_MESSAGE_ERROR | GST_MESSAGE_EOS));
  std::string why = !msg ? "no image decoded within 30 s"
                    : GST_MESSAGE_TYPE(msg) == GST_MESSAGE_EOS ? "the file holds no image"
                                                               : "";
  if (msg && GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ERROR) why = error_text(msg);
  if (msg) gst_message_unref(msg);
  if (!why.empty()) throw ImageError("cannot decode '" + path + "': " + why);
  std::unique_ptr<GstSample, SampleUnref> sample(gst_app_sink_try_pull_preroll(GST_APP_SINK(sink.get()), GST_SECOND));
  if (!sample) throw ImageError("cannot decode '" + path + "': no frame after preroll");
  GstVideoInfo info;
  if (!gst_video_info_from_caps(&info, gst_sample_get_caps(sample.get()))) {
    throw ImageError("cannot decode '" + path + "': decoder produced unusable caps");
  }
  const int w = GST_VIDEO_INFO_WIDTH(&info), h = GST_VIDEO_INFO_HEIGHT(&info);
  if (w <= 0 || h <= 0) throw ImageError("'" + path + "' has no pixels");
  if (static_cast<int64_t>(w) * h > kMaxImagePixels) {
    throw ImageError("'" + path + "' is " + std::to_string(w) + "x" + std::to_string(h) +
                     ", larger than the supported " + std::to_string(kMaxImagePixels) + " pixels");
  }
  GstVideoFrame frame;
  if (!gst_video_frame_map(&frame, &info, gst_sample_get_buffer(sample.get()), GST_MAP_READ)) {
    throw ImageError("cannot map the decoded frame of '" + path + "'");
  }
  Image img;
  img.width = w;
  img.height = h;
  img.channels = gray ? 1 : 3;
  img.pixels.resize(static_cast<size_t>(w) * h * img.channels);
  const auto* src = static_cast<const uint8_t*>(GST_VIDEO_FRAME_PLANE_DATA(&frame, 0));
  const int stride = GST_VIDEO_FRAME_PLANE_STRIDE(&frame, 0);
  if (GST_VIDEO_INFO_FORMAT(&info) == GST_VIDEO_FORMAT_GRAY16_LE) {
    // gray replicated into R, G and B, as videoconvert turns GRAY8 into RGB
    uint8_t* out = img.pixels.data();
    for (int y = 0; y < h; ++y) {
      const uint8_t* in = src + static_cast<size_t>(y) * stride;
      for (int x = 0; x < w; ++x) {
        const uint8_t v = gray16_to_8(static_cast<uint16_t>(in[2 * x] | in[2 * x + 1] << 8), bit_depth);
        for (int c = 0; c < img.channels; ++c) *out++ = v;
      }
    }
  } else {
    const size_t row = static_cast<size_t>(w) * img.channels;
    for (int y = 0; y < h; ++y) std::memcpy(img.pixels.data() + y * row, src + static_cast<size_t>(y) * stride, row);
  }
  gst_video_frame_unmap(&frame);
  return img;
}

std::vector<uint8_t> encode_png(const Image& image) {
  ensure_gstreamer();
  if (image.width <= 0 || image.height <= 0 || (image.channels != 1 && image.channels != 3) ||
      image.pixels.size() != static_cast<size_t>(image.width) * image.height * image.channels) {
    throw ImageError("cannot encode a PNG: invalid image");
  }
  Pipeline pipe(parse("appsrc name=src ! videoconvert ! pngenc snapshot=true ! appsink name=sink sync=false", "PNG"));
  auto src = pipe.by_name("src");
  auto sink = pipe.by_name("sink");
  GstVideoInfo info;
  gst_video_info_set_format(&info, image.channels == 1 ? GST_VIDEO_FORMAT_GRAY8 : GST_VIDEO_FORMAT_RGB,
                            image.width, image.height);
  GstCaps* caps = gst_video_info_to_caps(&info);
  g_object_set(src.get(), "caps", caps, "format", GST_FORMAT_TIME, nullptr);
  gst_caps_unref(caps);
  GstBuffer* buf = gst_buffer_new_allocate(nullptr, GST_VIDEO_INFO_SIZE(&info), nullptr);
  GstVideoFrame frame;
  gst_video_frame_map(&frame, &info, buf, GST_MAP_WRITE);
  auto* dst = static_cast<uint8_t*>(GST_VIDEO_FRAME_PLANE_DATA(&frame, 0));
  const int stride = GST_VIDEO_FRAME_PLANE_STRIDE(&frame, 0);
  const size_t row = static_cast<size_t>(image.width) * image.channels;
  for (int y = 0; y < image.height; ++y) std::memcpy(dst + static_cast<size_t>(y) * stride, image.pixels.data() + y * row, row);
  gst_video_frame_unmap(&frame);
  GST_BUFFER_PTS(buf) = 0;
  gst_element_set_state(pipe.get(), GST_STATE_PLAYING);
  gst_app_src_push_buffer(GST_APP_SRC(src.get()), buf);
  gst_app_src_end_of_stream(GST_APP_SRC(src.get()));
  std::unique_ptr<GstSample, SampleUnref> sample(gst_app_sink_try_pull_sample(GST_APP_SINK(sink.get()), 30 * GST_SECOND));
  std::vector<uint8_t> out;
  if (sample) {
    GstMapInfo map;
    GstBuffer* encoded = gst_sample_get_buffer(sample.get());
    if (encoded && gst_buffer_map(encoded, &map, GST_MAP_READ)) {
      out.assign(map.data, map.data + map.size);
      gst_buffer_unmap(encoded, &map);
    }
  }
  if (out.empty()) {
    std::unique_ptr<GstBus, GstUnref> bus(gst_element_get_bus(pipe.get()));
    GstMessage* msg = gst_bus_pop_filtered(bus.get(), GST_MESSAGE_ERROR);
    const std::string why = msg ? error_text(msg) : "the encoder gave no data within 30 s";
    if (msg) gst_message_unref(msg);
    throw ImageError("cannot encode a PNG: " + why);
  }
  return out;
}

void write_png(const std::string& path, const Image& image) {
  std::vector<uint8_t> bytes;
  try {
    bytes = encode_png(image);
  } catch (const ImageError& e) {
    throw ImageError("cannot write '" + path + "': " + e.what());
  }
  const std::string tmp = path + ".tmp.png";
  bool ok = false;
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    out.close();
    ok = static_cast<bool>(out);
  }
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    std::remove(tmp.c_str());
    throw ImageError("cannot write '" + path + "': " + why);
  }
}

std::vector<std::string> list_images(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) throw ImageError("'" + dir + "' is not a folder");
  std::vector<std::string> out;
  std::filesystem::directory_iterator it(dir, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    if (!has_image_extension(it->path())) continue;
    // Only the entry's own trouble: a dangling link or a link loop is listed like any file
    // and reported by name when it fails to decode, never the whole folder.
    std::error_code entry;
    if (it->is_directory(entry)) continue;
    out.push_back(it->path().string());
  }
  if (ec) throw ImageError("cannot list '" + dir + "': " + ec.message());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace io
}  // namespace pefm
