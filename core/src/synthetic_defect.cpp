#include "pefm/synthetic_defect.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <random>
#include <utility>
#include <vector>

#include <c10/util/Exception.h>
#include <torch/torch.h>

namespace pefm {
namespace {

using Rng = std::mt19937_64;
constexpr double kPi = 3.14159265358979323846;

double uniform(Rng& rng, double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng); }

int64_t uniform_index(Rng& rng, int64_t n) {  // 0 .. n - 1
  return std::min<int64_t>(n - 1, static_cast<int64_t>(uniform(rng, 0.0, 1.0) * static_cast<double>(n)));
}

bool is_grey(const torch::Tensor& image) {
  return image.select(2, 0).equal(image.select(2, 1)) && image.select(2, 0).equal(image.select(2, 2));
}

// [3] float: one brightness gain of 0.7-1.3 for a grey image, one per channel for colour.
torch::Tensor gain(Rng& rng, bool grey) {
  std::vector<float> g(3);
  for (auto& v : g) v = static_cast<float>(uniform(rng, 0.7, 1.3));
  if (grey) g[1] = g[2] = g[0];
  return torch::tensor(g, torch::kFloat32);
}

// Row and column coordinates of an h x w image, [h, w] float each.
std::pair<torch::Tensor, torch::Tensor> grid(int64_t h, int64_t w) {
  return {torch::arange(h, torch::kFloat32).view({-1, 1}).expand({h, w}),
          torch::arange(w, torch::kFloat32).view({1, -1}).expand({h, w})};
}

using Drawn = std::pair<torch::Tensor, torch::Tensor>;  // float [H, W, 3] image, bool [H, W] mask

// A box of 8-25 % of each side at a random place: {y0, x0, dh, dw}.
std::array<int64_t, 4> box(Rng& rng, int64_t h, int64_t w) {
  const int64_t dh = std::max<int64_t>(2, static_cast<int64_t>(static_cast<double>(h) * uniform(rng, 0.08, 0.25)));
  const int64_t dw = std::max<int64_t>(2, static_cast<int64_t>(static_cast<double>(w) * uniform(rng, 0.08, 0.25)));
  return {uniform_index(rng, h - dh + 1), uniform_index(rng, w - dw + 1), dh, dw};
}

Drawn cut_paste(const torch::Tensor& image, const torch::Tensor& donor, bool grey, Rng& rng) {
  const auto [y0, x0, dh, dw] = box(rng, image.size(0), image.size(1));
  const int64_t sh = std::min(dh, donor.size(0)), sw = std::min(dw, donor.size(1));
  const int64_t sy = uniform_index(rng, donor.size(0) - sh + 1), sx = uniform_index(rng, donor.size(1) - sw + 1);
  auto out = image.clone();
  out.slice(0, y0, y0 + sh).slice(1, x0, x0 + sw).copy_(donor.slice(0, sy, sy + sh).slice(1, sx, sx + sw) * gain(rng, grey));
  auto mask = torch::zeros({image.size(0), image.size(1)}, torch::kBool);
  mask.slice(0, y0, y0 + sh).slice(1, x0, x0 + sw).fill_(true);
  return {out, mask};
}

Drawn blotch(const torch::Tensor& image, bool grey, Rng& rng) {
  const auto [y0, x0, dh, dw] = box(rng, image.size(0), image.size(1));
  const auto [yy, xx] = grid(dh, dw);
  const auto inside = ((yy - (dh - 1) / 2.0) / (dh / 2.0)).pow(2).add(((xx - (dw - 1) / 2.0) / (dw / 2.0)).pow(2)).le(1.0);
  const double alpha = uniform(rng, 0.4, 0.8);
  std::vector<float> colour(3);
  for (auto& v : colour) v = static_cast<float>(uniform(rng, 0.0, 255.0));
  if (grey) colour[1] = colour[2] = colour[0];
  auto out = image.clone();
  auto region = out.slice(0, y0, y0 + dh).slice(1, x0, x0 + dw);
  const auto blended = region * (1 - alpha) + torch::tensor(colour, torch::kFloat32) * alpha;
  region.copy_(torch::where(inside.unsqueeze(2), blended, region));
  auto mask = torch::zeros({image.size(0), image.size(1)}, torch::kBool);
  mask.slice(0, y0, y0 + dh).slice(1, x0, x0 + dw).copy_(inside);
  return {out, mask};
}

Drawn flip(const torch::Tensor& image, Rng& rng) {
  const auto [y0, x0, dh, dw] = box(rng, image.size(0), image.size(1));
  auto out = image.clone();
  auto region = out.slice(0, y0, y0 + dh).slice(1, x0, x0 + dw);
  region.copy_(region.flip({0, 1}).clone());
  auto mask = torch::zeros({image.size(0), image.size(1)}, torch::kBool);
  mask.slice(0, y0, y0 + dh).slice(1, x0, x0 + dw).fill_(true);
  return {out, mask};
}

// The pixels within a disc of radius r (6-14 % of the shorter side, at least 6 pixels)
// turned about its centre by s (1 - d/r)^2 radians, |s| of 0.8-1.6: no turn at the rim, the
// most at d = r/3, where a pixel moves by about 0.15 r |s| (at least 0.7 pixel). The mask
// holds the pixels moved by at least half a pixel.
Drawn warp(const torch::Tensor& image, Rng& rng) {
  const int64_t h = image.size(0), w = image.size(1);
  const double m = static_cast<double>(std::min(h, w));
  const double r = std::max(6.0, m * uniform(rng, 0.06, 0.14));
  const double cy = uniform(rng, 0.0, static_cast<double>(h - 1));
  const double cx = uniform(rng, 0.0, static_cast<double>(w - 1));
  const double turn = uniform(rng, 0.8, 1.6);
  const double s = uniform(rng, 0.0, 1.0) < 0.5 ? -turn : turn;
  const auto [yy, xx] = grid(h, w);
  const auto dy = yy - cy, dx = xx - cx;
  const auto d = (dy * dy + dx * dx).sqrt();
  const auto theta = (1.0 - d / r).clamp_min(0.0).pow(2) * s;
  const auto src_y = dy * theta.cos() + dx * theta.sin() + cy;
  const auto src_x = dx * theta.cos() - dy * theta.sin() + cx;
  // grid_sampler's coordinates: -1 and 1 at the outer edges of the corner pixels.
  const auto sample_at = torch::stack({(src_x * 2 + 1) / static_cast<double>(w) - 1,
                                       (src_y * 2 + 1) / static_cast<double>(h) - 1}, 2).unsqueeze(0);
  const auto warped = torch::grid_sampler(image.permute({2, 0, 1}).unsqueeze(0).contiguous(), sample_at,
                                          /*bilinear*/ 0, /*border*/ 1, /*align_corners=*/false)[0].permute({1, 2, 0});
  const auto moved = d * (theta.abs() / 2).sin() * 2;
  const auto mask = moved.ge(0.5);
  return {torch::where(d.lt(r).unsqueeze(2), warped, image), mask};
}

// A band 15-40 % of the shorter side long and 1.2-3 % of it wide (at least 2 pixels) at a
// random angle, filled with another normal image (stretched to this one's size, shifted at
// random) at a jittered brightness.
Drawn scar(const torch::Tensor& image, const torch::Tensor& donor, bool grey, Rng& rng) {
  const int64_t h = image.size(0), w = image.size(1);
  const double m = static_cast<double>(std::min(h, w));
  const double len = m * uniform(rng, 0.15, 0.4);
  const double half = std::max(1.0, m * uniform(rng, 0.006, 0.015));
  const double phi = uniform(rng, 0.0, kPi);
  const double vy = len * std::sin(phi), vx = len * std::cos(phi);
  const double y0 = uniform(rng, 0.0, static_cast<double>(h - 1)) - vy / 2;
  const double x0 = uniform(rng, 0.0, static_cast<double>(w - 1)) - vx / 2;
  const int64_t shift_y = uniform_index(rng, h);
  const int64_t shift_x = uniform_index(rng, w);
  const auto brightness = gain(rng, grey);
  const auto [yy, xx] = grid(h, w);
  const auto t = (((yy - y0) * vy + (xx - x0) * vx) / (len * len)).clamp(0.0, 1.0);
  const auto mask = (yy - y0 - t * vy).pow(2).add((xx - x0 - t * vx).pow(2)).sqrt().le(half);
  const auto stretched = torch::upsample_bilinear2d(donor.permute({2, 0, 1}).unsqueeze(0).contiguous(), {h, w},
                                                    /*align_corners=*/false)[0].permute({1, 2, 0});
  const auto fill = stretched.roll({shift_y, shift_x}, {0, 1}) * brightness;
  return {torch::where(mask.unsqueeze(2), fill, image), mask};
}

// A patch of 15-30 % of each side of the image itself, copied over another place of it:
// every pixel is one the part shows somewhere, only its place is wrong (a part missing
// there, or one where none belongs).
Drawn shift(const torch::Tensor& image, Rng& rng) {
  const int64_t h = image.size(0), w = image.size(1);
  const int64_t dh = std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(h) * uniform(rng, 0.15, 0.3)));
  const int64_t dw = std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(w) * uniform(rng, 0.15, 0.3)));
  const int64_t y0 = uniform_index(rng, h - dh + 1);
  const int64_t x0 = uniform_index(rng, w - dw + 1);
  const int64_t sy = uniform_index(rng, h - dh + 1);
  const int64_t sx = uniform_index(rng, w - dw + 1);
  auto out = image.clone();
  out.slice(0, y0, y0 + dh).slice(1, x0, x0 + dw).copy_(image.slice(0, sy, sy + dh).slice(1, sx, sx + dw));
  auto mask = torch::zeros({h, w}, torch::kBool);
  mask.slice(0, y0, y0 + dh).slice(1, x0, x0 + dw).fill_(true);
  return {out, mask};
}

}  // namespace

std::string to_string(DefectKind kind) {
  switch (kind) {
    case DefectKind::kCutPaste: return "cut-paste";
    case DefectKind::kBlotch: return "blotch";
    case DefectKind::kFlip: return "flip";
    case DefectKind::kWarp: return "warp";
    case DefectKind::kScar: return "scar";
    case DefectKind::kShift: return "shift";
  }
  return "unknown";
}

SyntheticDefect synthetic_defect(const torch::Tensor& image, const torch::Tensor& donor, DefectKind kind,
                                 uint64_t seed) {
  TORCH_CHECK(image.dim() == 3 && image.size(2) == 3 && image.scalar_type() == torch::kUInt8 && image.size(0) >= 2 &&
                  image.size(1) >= 2,
              "synthetic_defect: image must be [H >= 2, W >= 2, 3] uint8, got ", image.sizes(), " ", image.scalar_type());
  TORCH_CHECK(donor.dim() == 3 && donor.size(2) == 3 && donor.scalar_type() == torch::kUInt8 && donor.size(0) >= 1 &&
                  donor.size(1) >= 1,
              "synthetic_defect: donor must be [H, W, 3] uint8, got ", donor.sizes(), " ", donor.scalar_type());
  Rng rng(seed);
  const bool grey = is_grey(image);
  const auto original = image.to(torch::kFloat32);
  auto lender = donor.to(torch::kFloat32);
  if (grey) lender = lender.mean(2, /*keepdim=*/true).round().expand({-1, -1, 3});
  SyntheticDefect best;
  double best_change = -1;
  for (int attempt = 0; attempt < 8 && best_change < 4.0; ++attempt) {
    Drawn drawn;
    switch (kind) {
      case DefectKind::kCutPaste: drawn = cut_paste(original, lender, grey, rng); break;
      case DefectKind::kBlotch: drawn = blotch(original, grey, rng); break;
      case DefectKind::kFlip: drawn = flip(original, rng); break;
      case DefectKind::kWarp: drawn = warp(original, rng); break;
      case DefectKind::kScar: drawn = scar(original, lender, grey, rng); break;
      case DefectKind::kShift: drawn = shift(original, rng); break;
    }
    SyntheticDefect d{drawn.first.round().clamp(0, 255).to(torch::kUInt8).contiguous(), drawn.second.contiguous()};
    // The mean change over the mask's pixels (0 for an empty mask); the most visible draw is kept.
    const auto n = d.mask.sum().item<int64_t>();
    const double change =
        n == 0 ? 0.0 : (d.image.to(torch::kFloat32) - original).abs().mean(2).masked_select(d.mask).mean().item<double>();
    if (change > best_change) {
      best = std::move(d);
      best_change = change;
    }
  }
  return best;
}

torch::Tensor misaligned_copy(const torch::Tensor& image, uint64_t seed) {
  TORCH_CHECK(image.dim() == 3 && image.size(0) >= 1 && image.size(1) >= 1,
              "misaligned_copy: image must be [H, W, C], got ", image.sizes());
  Rng rng(seed);
  const double side = uniform(rng, 0.85, 0.95);
  const int64_t h = image.size(0), w = image.size(1);
  const int64_t ch = std::max<int64_t>(1, std::llround(side * static_cast<double>(h)));
  const int64_t cw = std::max<int64_t>(1, std::llround(side * static_cast<double>(w)));
  const int64_t y0 = uniform_index(rng, h - ch + 1), x0 = uniform_index(rng, w - cw + 1);
  return image.slice(0, y0, y0 + ch).slice(1, x0, x0 + cw).contiguous();
}

}  // namespace pefm
