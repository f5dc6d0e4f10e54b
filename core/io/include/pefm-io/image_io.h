// Image files in and out through GStreamer (decodebin / pngenc), so the CLIs read images
// with the same decoders and colour conversion as the element. No LibTorch here.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace pefm {
namespace io {

// Thrown for unreadable, corrupt or unsupported image files; what() names the file.
class ImageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class PixelFormat { kRgb, kGray };

struct Image {
  int width = 0;
  int height = 0;
  int channels = 0;              // 3 (RGB) or 1 (gray)
  std::vector<uint8_t> pixels;   // packed rows, no padding

  bool empty() const { return pixels.empty(); }
};

// Images larger than this many pixels are rejected before they are decoded in full.
constexpr int64_t kMaxImagePixels = int64_t{1} << 27;  // 134 M pixels, e.g. 11585 x 11585

// Initialises GStreamer once (thread-safe); every function below calls it.
void ensure_gstreamer();

// Decodes the first frame of any image GStreamer can read (PNG, JPEG, BMP, TIFF, ...;
// 8 or 16 bit; gray, RGB, RGBA, palette) and converts it to `format`. A 16-bit gray image
// of `bit_depth` significant bits (12 for a 12-bit camera's) is mapped to 8 bits as
// pefmfilter maps GRAY16_LE frames (pefm::gray16_to_8); other images as GStreamer's
// videoconvert does. Throws ImageError for a bit_depth outside 8..16.
Image read_image(const std::string& path, PixelFormat format = PixelFormat::kRgb, int bit_depth = 16);

// RGB or gray pixels as the bytes of a PNG file.
std::vector<uint8_t> encode_png(const Image& image);

// Writes RGB or gray pixels as PNG, atomically (temporary file + rename).
void write_png(const std::string& path, const Image& image);

// Regular files in `dir` with an image extension (png, jpg, jpeg, bmp, tif, tiff, pgm,
// ppm, webp; any case), sorted by name. Throws ImageError when `dir` is not a folder.
std::vector<std::string> list_images(const std::string& dir);

}  // namespace io
}  // namespace pefm
