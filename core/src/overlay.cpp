#include "pefm/overlay.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace pefm {

namespace {

struct Yuv {
  double y, u, v;
};

Yuv to_yuv(const uint8_t rgb[3], const YuvMatrix& m) {
  const double unit[3] = {rgb[0] / 255.0, rgb[1] / 255.0, rgb[2] / 255.0};
  double yuv[3];
  m.to_yuv(unit, yuv);
  return {yuv[0], yuv[1], yuv[2]};
}

uint8_t mix(uint8_t dst, double src, double a) {
  return static_cast<uint8_t>(std::clamp(dst + (src - dst) * a + 0.5, 0.0, 255.0));
}

double smoothstep(double lo, double hi, double x) {
  const double t = std::clamp((x - lo) / (hi - lo), 0.0, 1.0);
  return t * t * (3.0 - 2.0 * t);
}

// Bilinear lookup of the map at frame pixel centres, with per-axis tables so the inner
// loop is a few multiplies.
class MapSampler {
 public:
  MapSampler(const FrameResult& r, int width, int height, int step) : r_(r) {
    axis(width, step, r.map_width, r.map_scale_x, &x0_, &x1_, &wx_);
    axis(height, step, r.map_height, r.map_scale_y, &y0_, &y1_, &wy_);
  }
  // Value at pixel (i * step, j * step) of the frame (i, j index the tables).
  double at(size_t i, size_t j) const {
    const float* row0 = r_.map.data() + static_cast<size_t>(y0_[j]) * r_.map_width;
    const float* row1 = r_.map.data() + static_cast<size_t>(y1_[j]) * r_.map_width;
    const double top = row0[x0_[i]] + (row0[x1_[i]] - row0[x0_[i]]) * wx_[i];
    const double bottom = row1[x0_[i]] + (row1[x1_[i]] - row1[x0_[i]]) * wx_[i];
    return top + (bottom - top) * wy_[j];
  }

 private:
  static void axis(int n, int step, int map_n, double scale, std::vector<int>* a, std::vector<int>* b,
                   std::vector<double>* w) {
    for (int p = 0; p < n; p += step) {
      const double m = std::clamp((p + step / 2.0) / scale - 0.5, 0.0, map_n - 1.0);
      const int lo = static_cast<int>(m);
      a->push_back(lo);
      b->push_back(std::min(lo + 1, map_n - 1));
      w->push_back(m - lo);
    }
  }
  const FrameResult& r_;
  std::vector<int> x0_, x1_, y0_, y1_;
  std::vector<double> wx_, wy_;
};

}  // namespace

void heat_colour(double v, uint8_t rgb[3]) {
  v = std::clamp(v, 0.0, 1.0);
  const auto ch = [&](double centre) {
    return static_cast<uint8_t>(255.0 * std::clamp(1.5 - std::abs(4.0 * v - centre), 0.0, 1.0));
  };
  rgb[0] = ch(3.0);
  rgb[1] = ch(2.0);
  rgb[2] = ch(1.0);
}

void draw_overlay(const FrameView& f, const FrameResult& r, OverlayMode mode, double alpha, double level) {
  if (mode == OverlayMode::kNone || r.map.empty() || f.width <= 0 || f.height <= 0) return;
  const bool heat = mode == OverlayMode::kHeatmap || mode == OverlayMode::kHeatmapContours;
  const bool contours = mode == OverlayMode::kContours || mode == OverlayMode::kHeatmapContours;
  alpha = std::clamp(alpha, 0.0, 1.0);
  const int W = f.width, H = f.height;
  const MapSampler luma(r, W, H, 1);
  // 256-entry colour tables: blending works on the frame's own representation.
  uint8_t lut_rgb[256][3];
  Yuv lut_yuv[256];
  const YuvMatrix matrix(f);
  for (int i = 0; i < 256; ++i) {
    heat_colour(i / 255.0, lut_rgb[i]);
    lut_yuv[i] = to_yuv(lut_rgb[i], matrix);
  }
  const auto index = [](double v) { return static_cast<int>(std::clamp(v, 0.0, 1.0) * 255.0 + 0.5); };
  const uint8_t red[3] = {255, 32, 32};
  const Yuv red_yuv = to_yuv(red, matrix);

  std::vector<uint8_t> inside, edge;
  if (contours) {
    inside.resize(static_cast<size_t>(W) * H);
    for (int y = 0; y < H; ++y) {
      for (int x = 0; x < W; ++x) inside[static_cast<size_t>(y) * W + x] = luma.at(x, y) >= level;
    }
    edge.assign(inside.size(), 0);
    const auto in = [&](int x, int y) {
      return x >= 0 && y >= 0 && x < W && y < H && inside[static_cast<size_t>(y) * W + x];
    };
    for (int y = 0; y < H; ++y) {
      for (int x = 0; x < W; ++x) {
        if (!in(x, y)) continue;
        bool border = false;
        for (int d = 1; d <= 2 && !border; ++d) border = !in(x - d, y) || !in(x + d, y) || !in(x, y - d) || !in(x, y + d);
        edge[static_cast<size_t>(y) * W + x] = border;
      }
    }
  }
  const auto is_edge = [&](int x, int y) { return contours && edge[static_cast<size_t>(y) * W + x]; };

  if (!is_yuv(f.format)) {
    const int ps = pixel_stride(f.format);
    int off[3];
    rgb_offsets(f.format, off);
    const bool gray = f.format == FrameFormat::kGray8;
    // GRAY16_LE: the 8-bit drawing scaled to the camera's range (bit_depth bits)
    const bool gray16 = f.format == FrameFormat::kGray16;
    const double max16 = gray16 ? static_cast<double>((1u << std::clamp(f.bit_depth, 8, 16)) - 1u) : 0.0;
    const auto put16 = [](uint8_t* p, double v) {
      const auto w = static_cast<uint16_t>(std::lround(std::clamp(v, 0.0, 65535.0)));
      p[0] = static_cast<uint8_t>(w & 0xFF);
      p[1] = static_cast<uint8_t>(w >> 8);
    };
    for (int y = 0; y < H; ++y) {
      uint8_t* row = f.planes[0] + static_cast<size_t>(y) * f.strides[0];
      for (int x = 0; x < W; ++x) {
        uint8_t* p = row + static_cast<size_t>(x) * ps;
        if (gray16) {
          if (is_edge(x, y)) {
            put16(p, max16);
            continue;
          }
          const double v = heat ? luma.at(x, y) : 0.0;
          const double a = heat ? alpha * smoothstep(0.3, 0.5, v) : 0.0;
          if (a <= 0.0) continue;
          const double old = p[0] | p[1] << 8;
          put16(p, old + a * (lut_yuv[index(v)].y * max16 / 255.0 - old));
          continue;
        }
        if (is_edge(x, y)) {
          if (gray) *p = 255;
          else for (int c = 0; c < 3; ++c) p[off[c]] = red[c];
          continue;
        }
        if (!heat) continue;
        const double v = luma.at(x, y);
        const double a = alpha * smoothstep(0.3, 0.5, v);
        if (a <= 0.0) continue;
        const int i = index(v);
        if (gray) *p = mix(*p, lut_yuv[i].y, a);
        else for (int c = 0; c < 3; ++c) p[off[c]] = mix(p[off[c]], lut_rgb[i][c], a);
      }
    }
    return;
  }

  // YUV: luma at full resolution, chroma at its own (halved) resolution.
  for (int y = 0; y < H; ++y) {
    uint8_t* row = f.planes[0] + static_cast<size_t>(y) * f.strides[0];
    for (int x = 0; x < W; ++x) {
      if (is_edge(x, y)) {
        row[x] = static_cast<uint8_t>(red_yuv.y);
        continue;
      }
      if (!heat) continue;
      const double v = luma.at(x, y);
      const double a = alpha * smoothstep(0.3, 0.5, v);
      if (a > 0.0) row[x] = mix(row[x], lut_yuv[index(v)].y, a);
    }
  }
  const MapSampler chroma(r, W, H, 2);
  const int cw = (W + 1) / 2, ch = (H + 1) / 2;
  for (int cy = 0; cy < ch; ++cy) {
    for (int cx = 0; cx < cw; ++cx) {
      uint8_t *u, *v;
      if (f.format == FrameFormat::kI420) {
        u = f.planes[1] + static_cast<size_t>(cy) * f.strides[1] + cx;
        v = f.planes[2] + static_cast<size_t>(cy) * f.strides[2] + cx;
      } else {
        u = f.planes[1] + static_cast<size_t>(cy) * f.strides[1] + 2 * cx;
        v = u + 1;
      }
      bool on_edge = false;
      for (int dy = 0; dy < 2 && contours; ++dy) {
        for (int dx = 0; dx < 2; ++dx) {
          const int x = 2 * cx + dx, y = 2 * cy + dy;
          if (x < W && y < H && is_edge(x, y)) on_edge = true;
        }
      }
      if (on_edge) {
        *u = static_cast<uint8_t>(red_yuv.u);
        *v = static_cast<uint8_t>(red_yuv.v);
        continue;
      }
      if (!heat) continue;
      const double val = chroma.at(cx, cy);
      const double a = alpha * smoothstep(0.3, 0.5, val);
      if (a <= 0.0) continue;
      const auto& c = lut_yuv[index(val)];
      *u = mix(*u, c.u, a);
      *v = mix(*v, c.v, a);
    }
  }
}

}  // namespace pefm
