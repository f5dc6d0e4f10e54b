#include "pefm/frame_detector.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>

#include <torch/torch.h>

#include "pefm-config.h"
#include "pefm/metrics.h"
#include "pefm/model_file.h"

#if PEFM_TORCH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace pefm {

struct StreamContext::Impl {
#if PEFM_TORCH_CUDA
  std::optional<c10::cuda::CUDAStream> stream;
#endif
  torch::Tensor staging;  // pinned host memory, the last frame's shape

  // Copies `host` into the pinned buffer and starts its upload on the current stream. The
  // buffer is rewritten only by the next frame, after process() has synchronised on the
  // download of this frame's map.
  torch::Tensor upload(const torch::Tensor& host, const torch::Device& device) {
#if PEFM_TORCH_CUDA
    // After an error or a cancelled frame the last upload may still be in flight.
    if (staging.defined() && stream) stream->synchronize();
#endif
    if (!staging.defined() || staging.sizes() != host.sizes() || staging.scalar_type() != host.scalar_type()) {
      staging = torch::empty(host.sizes(), host.options().pinned_memory(true));
    }
    staging.copy_(host);
    return staging.to(device, /*non_blocking=*/true);
  }
};

StreamContext::StreamContext() : impl_(std::make_unique<Impl>()) {}
StreamContext::~StreamContext() = default;

namespace {

std::mutex g_registry_mutex;
std::map<std::string, std::weak_ptr<FrameDetector>> g_registry;

// Frame -> [H, W, C] tensor and the channel map to read it with. Packed formats are
// wrapped without a copy; YUV is converted to float RGB in 0..1 with the frame's matrix.
std::pair<torch::Tensor, ChannelMap> frame_tensor(const FrameView& f) {
  if (f.width <= 0 || f.height <= 0) {
    throw std::invalid_argument("frame is empty (" + std::to_string(f.width) + "x" + std::to_string(f.height) + ")");
  }
  if (!f.planes[0] || f.strides[0] <= 0) throw std::invalid_argument("frame has no pixel data");
  const int64_t h = f.height, w = f.width;
  const auto u8 = torch::TensorOptions().dtype(torch::kUInt8);
  if (!is_yuv(f.format)) {
    const int64_t c = pixel_stride(f.format);
    auto t = torch::from_blob(f.planes[0], {h, w, c}, {f.strides[0], c, 1}, u8);
    if (f.format == FrameFormat::kGray8) return {t, ChannelMap::gray()};
    int off[3];
    rgb_offsets(f.format, off);
    return {t, ChannelMap{static_cast<int>(c), {off[0], off[1], off[2]}}};
  }
  if (!f.planes[1] || (f.format == FrameFormat::kI420 && !f.planes[2])) {
    throw std::invalid_argument("YUV frame lacks chroma planes");
  }
  const int64_t ch = (h + 1) / 2, cw = (w + 1) / 2;
  const auto y = torch::from_blob(f.planes[0], {h, w}, {f.strides[0], 1}, u8).to(torch::kFloat32);
  torch::Tensor u, v;
  if (f.format == FrameFormat::kI420) {
    u = torch::from_blob(f.planes[1], {ch, cw}, {f.strides[1], 1}, u8);
    v = torch::from_blob(f.planes[2], {ch, cw}, {f.strides[2], 1}, u8);
  } else {
    const auto uv = torch::from_blob(f.planes[1], {ch, cw, 2}, {f.strides[1], 2, 1}, u8);
    u = uv.select(2, 0);
    v = uv.select(2, 1);
  }
  const auto up = [&](const torch::Tensor& c) {
    return c.to(torch::kFloat32).repeat_interleave(2, 0).repeat_interleave(2, 1).slice(0, 0, h).slice(1, 0, w);
  };
  const double ys = f.full_range ? 255.0 : 219.0, cs = f.full_range ? 255.0 : 224.0;
  const auto Y = (y - (f.full_range ? 0.0 : 16.0)) / ys;
  const auto Cb = (up(u) - 128.0) / cs, Cr = (up(v) - 128.0) / cs;
  const auto R = Y + 2.0 * (1.0 - f.kr) * Cr;
  const auto B = Y + 2.0 * (1.0 - f.kb) * Cb;
  const auto G = (Y - f.kr * R - f.kb * B) / (1.0 - f.kr - f.kb);
  return {torch::stack({R, G, B}, 2).clamp(0.0, 1.0).contiguous(), ChannelMap::rgb_order()};
}

// Weights that fall off towards a tile's edges over `ramp` map pixels, so overlapping
// tiles blend smoothly instead of meeting at a seam.
torch::Tensor edge_ramp(int64_t n, double ramp) {
  auto i = torch::arange(n, torch::kFloat32);
  if (ramp <= 0) return torch::ones({n});
  auto d = torch::minimum(i + 0.5, n - i - 0.5);
  return (d / ramp).clamp(1e-3, 1.0);
}

}  // namespace

torch::Tensor frame_to_rgb(const FrameView& frame) {
  const auto [pixels, channels] = frame_tensor(frame);
  if (pixels.scalar_type() == torch::kFloat32) return pixels;  // YUV, converted already
  const auto order = torch::tensor({channels.rgb[0], channels.rgb[1], channels.rgb[2]}, torch::kLong);
  return pixels.index_select(2, order).to(torch::kFloat32) / 255.0;
}

std::vector<int> tile_origins(int length, int tile, int overlap) {
  if (tile <= 0 || length <= tile) return {0};
  const int step = std::max(1, tile - std::max(0, std::min(overlap, tile - 1)));
  std::vector<int> out;
  for (int o = 0;; o += step) {
    if (o + tile >= length) {
      out.push_back(length - tile);  // flush with the end
      break;
    }
    out.push_back(o);
  }
  return out;
}

void check_tiles(const TileOptions& tiles, int width, int height, int64_t input_size) {
  if (tiles.size <= 0) return;  // whole frames
  if (tiles.size < kMinTileSize) {
    throw std::invalid_argument("tile-size " + std::to_string(tiles.size) + " is below the minimum of " +
                                std::to_string(kMinTileSize) + " pixels (0: whole frames)");
  }
  if (tiles.overlap < 0 || tiles.overlap > tiles.size / 2) {
    throw std::invalid_argument("tile-overlap " + std::to_string(tiles.overlap) + " must be between 0 and half the tile-size " +
                                std::to_string(tiles.size));
  }
  const auto count = tile_origins(width, tiles.size, tiles.overlap).size() *
                     tile_origins(height, tiles.size, tiles.overlap).size();
  // Each tile is one network input of input_size^2 pixels: the bound is on their sum.
  const auto allowed = static_cast<size_t>(std::clamp<int64_t>(
      kMaxTilesPerFrame * kTileBudgetSize * kTileBudgetSize / std::max<int64_t>(1, input_size * input_size), 1,
      kMaxTilesPerFrame));
  if (count > allowed) {
    throw std::invalid_argument("tile-size " + std::to_string(tiles.size) + " with tile-overlap " +
                                std::to_string(tiles.overlap) + " cuts a " + std::to_string(width) + "x" +
                                std::to_string(height) + " frame into " + std::to_string(count) + " tiles; at most " +
                                std::to_string(allowed) + " of this model's " + std::to_string(input_size) +
                                " px inputs are allowed per frame (use larger tiles)");
  }
}

FrameDetector::FrameDetector(std::shared_ptr<Model> model, const DetectorOptions& options)
    : detector_(std::move(model), options) {
  trained_tile();  // a model whose stored tile size is unusable fails here, not at the first frame
}

std::shared_ptr<FrameDetector> FrameDetector::acquire(const std::string& model_path, const DetectorOptions& options) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const auto canonical = fs::weakly_canonical(model_path, ec).string();
  const auto mtime = fs::last_write_time(model_path, ec).time_since_epoch().count();
  const auto size = fs::file_size(model_path, ec);
  const auto key = canonical + "|" + std::to_string(mtime) + "|" + std::to_string(ec ? 0 : size) + "|" +
                   options.device + "|" + to_string(options.precision);
  std::lock_guard<std::mutex> lock(g_registry_mutex);
  if (auto existing = g_registry[key].lock()) return existing;
  auto created = std::make_shared<FrameDetector>(std::make_shared<Model>(load_model(model_path)), options);
  g_registry[key] = created;
  return created;
}

int FrameDetector::trained_tile() const {
  const auto& t = detector_.model().training;
  const auto it = t.find("tile");
  if (it == t.end()) return 0;
  int tile = -1;
  try {
    size_t used = 0;
    tile = std::stoi(it->second, &used);
    if (used != it->second.size()) tile = -1;
  } catch (const std::exception&) {
  }
  if (tile != 0 && (tile < kMinTileSize || tile > 65536)) {
    throw std::invalid_argument("the model's training.tile '" + it->second + "' is not 0 or " +
                                std::to_string(kMinTileSize) + "..65536");
  }
  return tile;
}

size_t FrameDetector::shared_instances() {
  std::lock_guard<std::mutex> lock(g_registry_mutex);
  size_t n = 0;
  for (auto it = g_registry.begin(); it != g_registry.end();) {
    if (it->second.expired()) {
      it = g_registry.erase(it);
    } else {
      ++n;
      ++it;
    }
  }
  return n;
}

void FrameDetector::inject_failures(int count, const std::string& message) {
  std::lock_guard<std::mutex> lock(injected_mutex_);
  injected_message_ = message;
  injected_failures_ = count;
}

FrameResult FrameDetector::process(const FrameView& frame, double threshold, const TileOptions& tiles,
                                   StreamContext* context) {
  if (injected_failures_.load() > 0 && injected_failures_.fetch_sub(1) > 0) {
    std::lock_guard<std::mutex> lock(injected_mutex_);
    TORCH_CHECK_WITH(OutOfMemoryError, false, injected_message_);
  }
  check_tiles(tiles, frame.width, frame.height, detector_.image_size());
  const auto stop_if_cancelled = [context] {
    if (context && context->cancelled()) throw Cancelled("frame abandoned: the element is stopping");
  };
  stop_if_cancelled();
  torch::InferenceMode guard;
  auto [pixels, channels] = frame_tensor(frame);
  const auto& device = detector_.device();
#if PEFM_TORCH_CUDA
  std::optional<c10::cuda::CUDAStreamGuard> on_stream;
  if (context && device.is_cuda()) {
    auto& impl = *context->impl_;
    if (!impl.stream) impl.stream = c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device.index());
    on_stream.emplace(*impl.stream);
  }
#endif
  if (context && device.is_cuda()) pixels = context->impl_->upload(pixels, device);
  const int64_t S = detector_.image_size();
  const int W = frame.width, H = frame.height;
  torch::Tensor raw;  // [map_h, map_w] raw scores
  if (tiles.size <= 0) {
    raw = detector_.detect(pixels.unsqueeze(0), channels).maps[0].to(torch::kCPU);
  } else {
    const int tile = tiles.size;
    const auto xs = tile_origins(W, tile, tiles.overlap), ys = tile_origins(H, tile, tiles.overlap);
    const int tw = std::min(tile, W), th = std::min(tile, H);
    const double s = static_cast<double>(S) / tile;  // map pixels per frame pixel
    const int64_t mw = std::max<int64_t>(1, std::llround(W * s)), mh = std::max<int64_t>(1, std::llround(H * s));
    const int64_t fw = std::min<int64_t>(mw, std::max<int64_t>(1, std::llround(tw * s)));
    const int64_t fh = std::min<int64_t>(mh, std::max<int64_t>(1, std::llround(th * s)));
    // Each tile's weight ramps over the whole overlap, so neighbours cross-fade linearly
    // (weights sum to one there) and a tile's edge columns, where zero padding distorts
    // the features, contribute almost nothing.
    const double ramp = tiles.overlap > 0 ? std::max(1.0, tiles.overlap * s) : 0.0;
    const auto weight = edge_ramp(fh, ramp).unsqueeze(1) * edge_ramp(fw, ramp).unsqueeze(0);
    auto acc = torch::zeros({mh, mw}), wsum = torch::zeros({mh, mw});
    std::vector<std::pair<int, int>> origins;
    for (int y0 : ys) {
      for (int x0 : xs) origins.emplace_back(y0, x0);
    }
    // Batches of about 16 inputs of 256 px: the cancellation check between batches comes
    // about as often whatever the model's input size.
    const size_t batch = static_cast<size_t>(std::clamp<int64_t>(16 * 256 * 256 / (S * S), 1, 16));
    for (size_t i = 0; i < origins.size(); i += batch) {
      stop_if_cancelled();
      std::vector<torch::Tensor> inputs;
      const size_t end = std::min(origins.size(), i + batch);
      for (size_t j = i; j < end; ++j) {
        const auto crop = pixels.slice(0, origins[j].first, origins[j].first + th)
                              .slice(1, origins[j].second, origins[j].second + tw);
        inputs.push_back(preprocess(crop.unsqueeze(0), channels, S));
      }
      const auto maps = detector_.detect_preprocessed(torch::cat(inputs)).maps.to(torch::kCPU);
      const auto fitted = torch::nn::functional::interpolate(
          maps.unsqueeze(1), torch::nn::functional::InterpolateFuncOptions()
                                 .size(std::vector<int64_t>{fh, fw})
                                 .mode(torch::kBilinear)
                                 .align_corners(false))
                              .squeeze(1);
      for (size_t j = i; j < end; ++j) {
        const int64_t oy = std::min<int64_t>(mh - fh, std::llround(origins[j].first * s));
        const int64_t ox = std::min<int64_t>(mw - fw, std::llround(origins[j].second * s));
        acc.slice(0, oy, oy + fh).slice(1, ox, ox + fw) += fitted[static_cast<int64_t>(j - i)] * weight;
        wsum.slice(0, oy, oy + fh).slice(1, ox, ox + fw) += weight;
      }
    }
    raw = acc / wsum.clamp_min(1e-6);
  }
  raw = torch::nan_to_num(raw.contiguous(), 0.0, std::numeric_limits<float>::max(), 0.0);

  FrameResult r;
  const auto& cal = detector_.calibration();
  const auto norm = torch::nan_to_num(cal.normalize(raw), 0.0, 1.0, 0.0).to(torch::kFloat32).contiguous();
  r.raw_score = raw.max().item<float>();
  r.score = static_cast<float>(cal.normalize(static_cast<double>(r.raw_score)));
  r.anomalous = r.score >= threshold;
  r.map_height = static_cast<int>(norm.size(0));
  r.map_width = static_cast<int>(norm.size(1));
  r.map.assign(norm.data_ptr<float>(), norm.data_ptr<float>() + norm.numel());
  r.map_scale_x = static_cast<double>(W) / r.map_width;
  r.map_scale_y = static_cast<double>(H) / r.map_height;

  // Regions: 8-connected areas of the map at or above the threshold, in frame pixels.
  const auto [labels, count] = label_regions(norm.ge(threshold));
  if (count > 0) {
    struct Box { int64_t x0, y0, x1, y1, n; float peak; };
    std::vector<Box> boxes(static_cast<size_t>(count), Box{INT64_MAX, INT64_MAX, -1, -1, 0, 0.0f});
    const auto* lv = labels.data_ptr<int32_t>();
    const auto* mv = norm.data_ptr<float>();
    for (int64_t y = 0; y < r.map_height; ++y) {
      for (int64_t x = 0; x < r.map_width; ++x) {
        const int32_t l = lv[y * r.map_width + x];
        if (l == 0) continue;
        auto& b = boxes[static_cast<size_t>(l - 1)];
        b.x0 = std::min(b.x0, x);
        b.y0 = std::min(b.y0, y);
        b.x1 = std::max(b.x1, x);
        b.y1 = std::max(b.y1, y);
        ++b.n;
        b.peak = std::max(b.peak, mv[y * r.map_width + x]);
      }
    }
    for (const auto& b : boxes) {
      FrameRegion g;
      g.x = static_cast<int>(std::floor(b.x0 * r.map_scale_x));
      g.y = static_cast<int>(std::floor(b.y0 * r.map_scale_y));
      g.width = std::min(W, static_cast<int>(std::ceil((b.x1 + 1) * r.map_scale_x))) - g.x;
      g.height = std::min(H, static_cast<int>(std::ceil((b.y1 + 1) * r.map_scale_y))) - g.y;
      g.area = std::llround(b.n * r.map_scale_x * r.map_scale_y);
      g.peak = b.peak;
      r.regions.push_back(g);
    }
    std::sort(r.regions.begin(), r.regions.end(), [](const auto& a, const auto& b) { return a.peak > b.peak; });
  }
  return r;
}

}  // namespace pefm
