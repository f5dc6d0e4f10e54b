#include "pefm/train_recipe.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <numeric>
#include <random>
#include <set>
#include <sstream>

#include <torch/torch.h>

#include "pefm/backbone.h"
#include "pefm/calibration_maps.h"
#include "pefm/detector.h"
#include "pefm/metrics.h"
#include "pefm/model_file.h"
#include "pefm/pe_choice.h"
#include "pefm/preprocess.h"
#include "pefm/synthetic_defect.h"
#include "pefm/tiling.h"
#include "pefm/units.h"

namespace pefm {

std::string source_key(const std::string& path) {
  std::error_code ec;
  const auto canonical = std::filesystem::weakly_canonical(path, ec);
  return ec ? path : canonical.string();
}

Json audit_json(const AuditRow& r, const char* scored_by) {
  return {{"file", r.file}, {"group", r.group.empty() ? Json() : Json(r.group)},
          {"fold", r.fold > 0 ? Json(r.fold) : Json()}, {"score", r.score}, {"rank", r.rank},
          {"scored_by", scored_by}};
}

std::string audit_record(const std::vector<AuditRow>& rows, const char* scored_by) {
  Json top = Json::array();
  for (size_t i = 0; i < rows.size() && i < kAuditShown; ++i) top.push_back(audit_json(rows[i], scored_by));
  return json_text(Json{{"scored_by", scored_by}, {"images", rows.size()}, {"top", top}}, -1);
}


namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Network input of samples[begin, end), resized as `config` says.
torch::Tensor preprocess_batch(const std::vector<TrainImage>& samples, size_t begin, size_t end, const ModelConfig& config) {
  std::vector<torch::Tensor> xs;
  for (size_t i = begin; i < end; ++i)
    xs.push_back(preprocess(samples[i].pixels.unsqueeze(0), {}, config.image_size, torch::kFloat32, config.resize));
  return torch::cat(xs);
}

// The label of a source image: its group's, or its own name.
std::string unit_label(const Groups& groups, const std::string& key) {
  const auto it = groups.find(key);
  return it == groups.end() ? key : it->second;
}

// What --resume compares: the training images' groups, not the file's name (an edited
// file would move images across the hold-out; a moved one changes nothing). Empty without
// --groups.
std::string groups_digest(const Groups& groups, const std::vector<TrainImage>& train, const std::vector<TrainImage>& val) {
  if (groups.empty()) return "";
  std::map<std::string, std::string> used;
  for (const auto* set : {&train, &val}) {
    for (const auto& s : *set) {
      const auto key = source_key(s.path);
      used.emplace(key, unit_label(groups, key));
    }
  }
  uint64_t h = 1469598103934665603ull;  // FNV-1a over "image\0group\0" in image order
  std::set<std::string> labels;
  for (const auto& [image, label] : used) {
    labels.insert(label);
    for (const auto* part : {&image, &label}) {
      for (unsigned char c : *part) h = (h ^ c) * 1099511628211ull;
      h *= 1099511628211ull;  // the 0 separator
    }
  }
  std::ostringstream s;
  s << used.size() << " images in " << labels.size() << " groups, " << std::hex << h;
  return s.str();
}

// Each source image's exchangeable unit (`keys` are source_key()s) as a number, in order of
// first appearance: the image itself, or with --groups its group. *n_units: how many.
std::vector<size_t> number_units(const std::vector<std::string>& keys, const Groups& groups, size_t* n_units) {
  std::map<std::string, size_t> ids;
  std::vector<size_t> unit(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) unit[i] = ids.emplace(unit_label(groups, keys[i]), ids.size()).first->second;
  *n_units = ids.size();
  return unit;
}

// Every sample's unit: tiles of one image, and images of one group, share it, so a split
// never puts them on both sides.
std::vector<size_t> source_groups(const std::vector<TrainImage>& samples, const Groups& groups, size_t* n_groups) {
  std::vector<std::string> keys;
  for (const auto& s : samples) keys.push_back(source_key(s.path));
  return number_units(keys, groups, n_groups);
}

// The groups in an order shuffled by `seed`.
std::vector<size_t> shuffled_groups(size_t n_groups, uint64_t seed) {
  std::vector<size_t> order(n_groups);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937_64(seed));
  return order;
}

// Maps kept for the pixel statistics (base = median normal pixel), at most: a bounded,
// evenly spread sample, so memory does not grow with the data set (all the scores are kept).
constexpr size_t kMaxCalibrationMaps = 256;

// The detector's raw maps (every `map_stride`-th sample's) and per-source-image scores (the
// maximum over an image's tiles; a tiled frame, blending overlapping tiles, scores at most
// that) of `samples`.
void score_samples(const std::shared_ptr<Model>& model, const std::string& device, const std::vector<TrainImage>& samples,
                   size_t map_stride, std::vector<torch::Tensor>* maps, std::map<std::string, double>* image_scores,
                   TrainObserver& observer) {
  Detector detector(model, {device});
  for (size_t i = 0; i < samples.size() && !observer.stop_requested(); i += 32) {
    const size_t end = std::min(samples.size(), i + 32);
    const auto r = detector.detect_preprocessed(preprocess_batch(samples, i, end, model->config));
    const auto s = r.scores.cpu().to(torch::kFloat64);
    for (size_t j = i; j < end; ++j) {
      if (j % map_stride == 0) maps->push_back(r.maps[static_cast<int64_t>(j - i)].cpu().unsqueeze(0).clone());
      const double v = s[static_cast<int64_t>(j - i)].item<double>();
      auto [it, fresh] = image_scores->emplace(source_key(samples[j].path), v);
      if (!fresh) it->second = std::max(it->second, v);
    }
  }
}

size_t map_stride_for(size_t samples) { return std::max<size_t>(1, (samples + kMaxCalibrationMaps - 1) / kMaxCalibrationMaps); }

// A model of `config` (initialised from `seed`) trained on `fit` for `epochs`, with a
// progress bar named "`what` epoch E/N"; null when interrupted. Given `features` (a
// trainer of a model with the same backbones, holding `fit`'s features), it trains on
// those instead of extracting them again. With `keep`, the trainer is handed back with its
// features; it refers to the returned model, which must outlive it.
std::shared_ptr<Model> train_model(const ModelConfig& config, const std::string& src_weights,
                                   const std::string& tgt_weights, uint64_t seed, const TrainOptions& opts,
                                   int64_t epochs, const torch::Device& device, const std::vector<TrainImage>& fit,
                                   const std::string& what, TrainObserver& observer, const Trainer* features = nullptr,
                                   std::unique_ptr<Trainer>* keep = nullptr) {
  torch::manual_seed(seed);
  auto model = std::make_shared<Model>(Model::create(config, src_weights, tgt_weights));
  auto trainer = std::make_unique<Trainer>(*model, opts, device);
  if (features) {
    trainer->share_cache(*features);
  } else {
    for (size_t i = 0; i < fit.size() && !observer.stop_requested(); i += 32)
      trainer->add_images(preprocess_batch(fit, i, std::min(fit.size(), i + 32), config));
  }
  for (int64_t epoch = 1; epoch <= epochs && !observer.stop_requested(); ++epoch) {
    const std::string stage = what + " epoch " + std::to_string(epoch) + "/" + std::to_string(epochs);
    bool started = false;
    trainer->train_epoch([&](int64_t done, int64_t total) {
      if (!started) observer.started(stage, total);
      started = true;
      observer.progress(stage, done, "");
      return !observer.stop_requested();
    });
  }
  if (observer.stop_requested()) return nullptr;
  if (keep) *keep = std::move(trainer);
  return model;
}

// Cross-fitting: each source image scored by a model trained, with the same settings,
// on the other folds only (folds of whole groups); `fold_of_image`: the fold (1-based)
// that held each image out. Returns false when interrupted.
bool cross_fit(const std::vector<TrainImage>& samples, const Groups& groups, int folds, const ModelConfig& config,
               const std::string& src_weights, const std::string& tgt_weights, const TrainOptions& opts, int64_t epochs,
               const torch::Device& device, std::vector<torch::Tensor>* maps,
               std::map<std::string, double>* image_scores, std::map<std::string, int>* fold_of_image,
               TrainObserver& observer) {
  size_t n_groups = 0;
  const auto group = source_groups(samples, groups, &n_groups);
  const auto order = shuffled_groups(n_groups, opts.seed + 1);
  std::vector<int> fold_of(n_groups);
  for (size_t r = 0; r < order.size(); ++r) fold_of[order[r]] = static_cast<int>(r % static_cast<size_t>(folds));
  for (int f = 0; f < folds && !observer.stop_requested(); ++f) {
    const auto t_fold = Clock::now();
    std::vector<TrainImage> fit, held;
    for (size_t i = 0; i < samples.size(); ++i) (fold_of[group[i]] == f ? held : fit).push_back(samples[i]);
    const auto model = train_model(config, src_weights, tgt_weights, opts.seed + 1 + static_cast<uint64_t>(f), opts, epochs,
                                   device, fit, "fold " + std::to_string(f + 1) + "/" + std::to_string(folds), observer);
    if (!model) break;
    score_samples(model, device.str(), held, map_stride_for(samples.size()), maps, image_scores, observer);
    for (const auto& s : held) (*fold_of_image)[source_key(s.path)] = f + 1;
    observer.step("fold " + std::to_string(f + 1) + "/" + std::to_string(folds) + ": trained on " +
                  std::to_string(fit.size()) + ", scored " + std::to_string(held.size()) + "  " +
                  format_duration(seconds_since(t_fold)));
  }
  return !observer.stop_requested();
}

// --pe auto: the position-code variants compared on normal images alone.
//
// A fifth of the source images (or of the --groups groups; seed-shuffled) becomes a probe
// set; each probe image gets two synthetic defects with their masks (synthetic_defect.h): one
// of appearance (the kinds in turn) and one of position (a patch of it moved within it), and
// a misaligned normal copy (a window of 85-95 % of it at a random place: the part shifted
// and a little larger). Each variant is trained with the run's settings on the other
// images for a third of the epochs, sharing one extraction of their features, and scores
// the probe images, their defective and their misaligned copies; choose_pe (pe_choice.h)
// decides on both kinds of evidence.

// The appearance defect of probe image i: those kinds in turn.
DefectKind probe_kind(size_t i) { return static_cast<DefectKind>(i % kAppearanceKinds); }

// Trains each variant on `fit` for `epochs` and scores the probe images and their
// synthetic defects. Returns an empty vector when interrupted.
std::vector<PeTrial> compare_pe(const std::vector<TrainImage>& fit, const std::vector<TrainImage>& probe, const ModelConfig& config,
                                const std::string& src_weights, const std::string& tgt_weights, const TrainOptions& opts,
                                int64_t epochs, const torch::Device& device, TrainObserver& observer) {
  // Probe set: every probe image as it is, then a copy of each with an appearance defect
  // (the kinds in turn), then a misaligned normal copy of each (the position code's risk:
  // it must not call a part placed less exactly anomalous), then a copy of each with a
  // position defect.
  std::mt19937_64 rng(opts.seed + 3), place(opts.seed + 4), moved(opts.seed + 5);
  std::vector<TrainImage> probes = probe;
  std::vector<torch::Tensor> masks;
  const int64_t S = config.image_size;
  const auto to_s = [S](const torch::Tensor& m) {
    return torch::_upsample_nearest_exact2d(m.to(torch::kFloat32).unsqueeze(0).unsqueeze(0), {S, S})[0][0].gt(0.5);
  };
  for (size_t i = 0; i < probe.size(); ++i) masks.push_back(torch::zeros({S, S}, torch::kBool));
  for (size_t i = 0; i < probe.size(); ++i) {
    const auto& donor = fit[static_cast<size_t>(rng() % fit.size())].pixels;
    const auto defect = synthetic_defect(probe[i].pixels, donor, probe_kind(i), rng());
    probes.push_back({probe[i].path, defect.image});
    masks.push_back(to_s(defect.mask));
  }
  for (size_t i = 0; i < probe.size(); ++i) {
    probes.push_back({probe[i].path, misaligned_copy(probe[i].pixels, place())});
    masks.push_back(torch::zeros({S, S}, torch::kBool));
  }
  for (size_t i = 0; i < probe.size(); ++i) {
    const auto defect = synthetic_defect(probe[i].pixels, probe[i].pixels, DefectKind::kShift, moved());
    probes.push_back({probe[i].path, defect.image});
    masks.push_back(to_s(defect.mask));
  }
  const auto mask_t = torch::stack(masks);
  const auto n_probe = static_cast<int64_t>(probe.size());
  // Resized once for the three variants (the position code does not change the input),
  // when that holds under 1 GiB; else again for each.
  const bool keep_batches = static_cast<double>(probes.size()) * 3.0 * static_cast<double>(S * S) * 4.0 < 1073741824.0;
  const auto resized_batch = [&](size_t b) {
    return preprocess_batch(probes, b * 32, std::min(probes.size(), b * 32 + 32), config);
  };
  const size_t n_batches = (probes.size() + 31) / 32;
  std::vector<torch::Tensor> probe_batches;
  for (size_t b = 0; keep_batches && b < n_batches; ++b) probe_batches.push_back(resized_batch(b));
  const auto probe_batch = [&](size_t b) { return keep_batches ? probe_batches[b] : resized_batch(b); };
  std::vector<PeTrial> trials;
  // The fit set's backbone features, extracted once: the variants differ only above them.
  std::shared_ptr<Model> first_model;      // outlives first_trainer, which refers to it
  std::unique_ptr<Trainer> first_trainer;
  for (PeMode pe : {PeMode::kAdd, PeMode::kNone, PeMode::kConcat}) {
    const auto t0 = Clock::now();
    ModelConfig c = config;
    c.pe = pe;
    std::unique_ptr<Trainer> trainer;
    const auto model = train_model(c, src_weights, tgt_weights, opts.seed, opts, epochs, device, fit, "pe " + to_string(pe),
                                   observer, first_trainer.get(), first_trainer ? nullptr : &trainer);
    if (!model) return {};
    if (!first_trainer) {
      first_model = model;
      first_trainer = std::move(trainer);
    }
    const double t_train = seconds_since(t0);
    Detector detector(model, {device.str()});
    std::vector<torch::Tensor> maps;
    for (size_t b = 0; b < n_batches; ++b) maps.push_back(detector.detect_preprocessed(probe_batch(b)).maps.cpu());
    const auto m = torch::cat(maps);
    const double t_score = seconds_since(t0) - t_train;
    PeTrial t;
    t.pe = pe;
    t.train_seconds = t_train;
    t.score_seconds = t_score;
    t.pixel_auroc = auroc(m, mask_t);
    t.aupro = aupro(m, mask_t);
    // Each defect against the normal pixels of its own copy and of the misaligned copy:
    // first the appearance defects, then the position defects.
    for (int64_t first : {n_probe, 3 * n_probe}) {
      for (int64_t i = 0; i < n_probe; ++i) {
        const auto pair = torch::stack({m[first + i], m[2 * n_probe + i]});
        t.per_image.push_back(auroc(pair, torch::stack({mask_t[first + i], mask_t[2 * n_probe + i]})));
      }
    }
    t.seconds = seconds_since(t0);
    std::ostringstream line;
    line << "pe " << to_string(pe) << ": synthetic defects pixel AUROC " << std::fixed << std::setprecision(2)
         << t.pixel_auroc * 100 << ", AUPRO " << t.aupro * 100 << "  " << format_duration(t.seconds) << " (training "
         << format_duration(t_train) << ", scoring " << format_duration(t_score) << ", metrics "
         << format_duration(t.seconds - t_train - t_score) << ")";
    observer.step(line.str());
    trials.push_back(t);
  }
  return trials;
}

// Whether a setting the checkpoint recorded is this run's: paths as files (--data d8 and
// ./d8 are one folder), numbers as values (1e-2 is 0.01).
bool same_setting(const std::string& key, const std::string& was, const std::string& now) {
  if (was == now) return true;
  const auto split = [](const std::string& joined) {
    std::vector<std::string> parts;
    std::stringstream in(joined);
    for (std::string part; std::getline(in, part, ':');) parts.push_back(source_key(part));
    return parts;
  };
  if (key == "data" || key == "source_weights" || key == "target_weights") return split(was) == split(now);
  if (key == "lr" || key == "weight_decay" || key == "val_fraction" || key == "false_alarm_rate") {
    const auto number = [](const std::string& text, double* v) {
      char* end = nullptr;
      *v = std::strtod(text.c_str(), &end);
      return !text.empty() && end == text.c_str() + text.size();
    };
    double a = 0, b = 0;
    return number(was, &a) && number(now, &b) && a == b;
  }
  return false;
}

std::vector<AuditRow> audit_rows(const std::map<std::string, double>& image_scores,
                                 const std::map<std::string, int>& fold_of_image,
                                 const std::map<std::string, std::string>& path_of, const Groups& groups) {
  std::vector<AuditRow> rows;
  for (const auto& [key, score] : image_scores) {
    const auto path = path_of.find(key);
    const auto fold = fold_of_image.find(key);
    rows.push_back({path == path_of.end() ? key : path->second, groups.empty() ? "" : unit_label(groups, key),
                    fold == fold_of_image.end() ? 0 : fold->second, score, 0});
  }
  std::stable_sort(rows.begin(), rows.end(), [](const AuditRow& a, const AuditRow& b) { return a.score > b.score; });
  for (size_t i = 0; i < rows.size(); ++i) rows[i].rank = i + 1;
  return rows;
}

// With --folds 0, a deterministic hold-out: source images shuffled by seed, the first
// val_fraction of them (all their tiles) held out.
void split(std::vector<TrainImage>* samples, const TrainRequest& r, std::vector<TrainImage>* train,
           std::vector<TrainImage>* val, TrainObserver& observer) {
  size_t n_groups = 0;
  const auto group = source_groups(*samples, r.groups, &n_groups);
  const auto order = shuffled_groups(n_groups, r.options.seed);
  size_t n_val = static_cast<size_t>(std::llround(r.val_fraction * static_cast<double>(n_groups)));
  if (r.val_fraction > 0 && n_val == 0 && n_groups >= 2) n_val = 1;
  n_val = std::min(n_val, n_groups - 1);
  std::vector<bool> held_out(n_groups, false);
  for (size_t k = 0; k < n_val; ++k) held_out[order[k]] = true;
  for (size_t i = 0; i < samples->size(); ++i) (held_out[group[i]] ? *val : *train).push_back(std::move((*samples)[i]));
  samples->clear();
  if (r.folds == 0) return;
  // Said before any training: every fold needs an image, and F needs enough of them.
  if (n_groups < static_cast<size_t>(r.folds)) {
    throw TrainSettingsError("--folds " + std::to_string(r.folds) + " needs at least " + std::to_string(r.folds) +
                             (r.groups.empty() ? " source images; the --data folders hold "
                                               : " groups; the --groups file puts the images in ") +
                             std::to_string(n_groups));
  }
  const auto supported = conformal_threshold(std::vector<double>(n_groups, 0.0), r.false_alarm_rate);
  if (!supported.enough) {
    const std::string unit = r.groups.empty() ? " images" : " groups";
    observer.note("WARNING: too few" + unit + " for a false-alarm rate of " + format_percent(r.false_alarm_rate) + ": " +
                  std::to_string(n_groups) + unit + " support " + format_percent(supported.bound) + " at best (" +
                  (r.groups.empty() ? "1/(n+1)" : "1/(m+1)") + "); " +
                  std::to_string(static_cast<int64_t>(std::ceil(1.0 / r.false_alarm_rate - 1.0))) + " are needed");
  }
}

// Every image in a group; entries for other images (a test set's) are ignored.
void check_groups(const std::vector<TrainImage>& samples, const TrainRequest& r, TrainObserver& observer) {
  std::set<std::string> keys, labels;
  std::string first_missing;
  int64_t missing = 0;
  for (const auto& sample : samples) {
    const auto key = source_key(sample.path);
    keys.insert(key);
    const auto it = r.groups.find(key);
    if (it != r.groups.end()) {
      labels.insert(it->second);
    } else if (missing++ == 0) {
      first_missing = sample.path;
    }
  }
  if (missing > 0) {
    const auto file = r.recorded.find("groups_file");
    throw TrainSettingsError("--groups '" + (file == r.recorded.end() ? std::string() : file->second) +
                             "' gives no group for " + std::to_string(missing) + " of the " +
                             std::to_string(samples.size()) + " training images, e.g. '" + first_missing +
                             "' (IMAGE is relative to the groups file's folder)");
  }
  std::string line = "groups: " + std::to_string(samples.size()) + " images in " + std::to_string(labels.size()) + " groups";
  if (r.groups.size() > keys.size())
    line += " (" + std::to_string(r.groups.size() - keys.size()) + " entries name no training image: ignored)";
  observer.note(line);
}

// Native-resolution tiles, laid out exactly as pefmfilter tile-size=N cuts frames.
std::vector<TrainImage> cut_tiles(const std::vector<TrainImage>& samples, int tile) {
  std::vector<TrainImage> tiles;
  for (const auto& s : samples) {
    const int h = static_cast<int>(s.pixels.size(0)), w = static_cast<int>(s.pixels.size(1));
    const int th = std::min(tile, h), tw = std::min(tile, w);
    for (int y0 : tile_origins(h, tile, 0)) {
      for (int x0 : tile_origins(w, tile, 0)) {
        tiles.push_back({s.path, s.pixels.slice(0, y0, y0 + th).slice(1, x0, x0 + tw).contiguous()});
      }
    }
  }
  return tiles;
}

// Bytes of backbone features one image caches at fp32.
int64_t feature_bytes(const ModelConfig& config) {
  int64_t per_image = 0;
  const auto source = make_backbone(config.source_arch);
  const auto cs = source->tap_channels(), ct = backbone_tap_channels(config.target_arch);
  for (int k = 0; k < 3; ++k) {
    const auto side = source->tap_size(k, config.image_size);
    per_image += (cs[k] + ct[k]) * side * side * 4;
  }
  return per_image;
}

// --pe auto: chooses config.pe on probe images held out of `train` and records the evidence
// in `settings`. Returns false when stopped.
bool choose_position_code(const std::vector<TrainImage>& train, TrainRequest& r, std::map<std::string, std::string>* settings,
                          double* seconds, TrainObserver& observer) {
  // Probe images: a fifth of the source images, never the tiles of one image on both sides.
  size_t n_src = 0;
  const auto src_group = source_groups(train, r.groups, &n_src);
  if (n_src < 2)
    throw TrainSettingsError(r.groups.empty() ? "--pe auto needs at least 2 source images to hold some out"
                                              : "--pe auto needs at least 2 groups (--groups) to hold some out");
  const auto src_order = shuffled_groups(n_src, r.options.seed + 2);
  // At least 2 held-out units where 4 or more exist: one gives no standard error.
  const size_t n_probe = std::clamp<size_t>(static_cast<size_t>(std::llround(0.2 * static_cast<double>(n_src))),
                                            n_src >= 4 ? 2 : 1, n_src - 1);
  std::vector<bool> is_probe(n_src, false);
  for (size_t k = 0; k < n_probe; ++k) is_probe[src_order[k]] = true;
  std::vector<TrainImage> fit, probe;
  std::vector<size_t> probe_unit;
  for (size_t i = 0; i < train.size(); ++i) {
    (is_probe[src_group[i]] ? probe : fit).push_back(train[i]);
    if (is_probe[src_group[i]]) probe_unit.push_back(src_group[i]);
  }
  const int64_t search_epochs = std::max<int64_t>(1, (r.epochs + 2) / 3);
  observer.note("pe auto: add, none and concat each trained " + std::to_string(search_epochs) + " epochs on " +
                std::to_string(fit.size()) + " images, scored on " + std::to_string(probe.size()) +
                " held-out images, a synthetic defect of appearance and one of position in each and a "
                "misaligned copy of each");
  const auto t_auto = Clock::now();
  auto trials = compare_pe(fit, probe, r.config, r.source_weights, r.target_weights, r.options, search_epochs, r.device,
                           observer);
  if (trials.empty()) return false;
  *seconds = seconds_since(t_auto);
  // per_image's order: the appearance defects, then the position defects of the same images
  std::vector<std::string> probe_kinds;
  for (size_t i = 0; i < probe.size(); ++i) probe_kinds.push_back(to_string(probe_kind(i)));
  for (size_t i = 0; i < probe.size(); ++i) probe_kinds.push_back(to_string(DefectKind::kShift));
  std::vector<size_t> defect_unit = probe_unit;
  defect_unit.insert(defect_unit.end(), probe_unit.begin(), probe_unit.end());
  r.config.pe = choose_pe(trials, defect_unit, probe_kinds);
  // The code is an assumption: evidence at chance level does not carry it.
  const auto strength = evidence_strength(trials);
  const bool weak = strength.weak;
  const PeMode by_rule = r.config.pe;
  r.config.pe = gate_weak_evidence(by_rule, strength);
  Json evidence = {{"choice", to_string(r.config.pe)}, {"rule_choice", to_string(by_rule)},
                   {"weak_evidence", weak}, {"best_pixel_auroc", strength.best_pixel_auroc},
                   {"weak_evidence_below", kWeakEvidenceAuroc},
                   {"probe_images", probe.size()}, {"fit_images", fit.size()},
                   {"probe_units", std::set<size_t>(probe_unit.begin(), probe_unit.end()).size()},
                   {"epochs", search_epochs}, {"seconds", *seconds},
                   {"features_extracted_by", to_string(trials.front().pe)},  // in its train_seconds
                   {"criterion", "none unless add or concat pools no worse (mean of pixel AUROC and AUPRO) "
                                 "and gains pixel AUROC over none (each defect against its copy's and its "
                                 "misaligned copy's normal pixels; averaged per source image or group) by "
                                 "more than 2 standard errors on the appearance defects, or on the "
                                 "position defects (shift) while losing no more than 2 standard errors on "
                                 "the appearance defects; then the larger sum of the two gains; and none "
                                 "whatever the rule says when no variant finds the probes at a pixel AUROC "
                                 "of weak_evidence_below or more"}};
  for (const auto& t : trials) {
    Json by_kind = Json::object();
    for (const auto& [kind, g] : t.gain_by_kind) by_kind[kind] = {{"gain", g.first}, {"images", g.second}};
    evidence["trials"].push_back({{"pe", to_string(t.pe)}, {"pixel_auroc", t.pixel_auroc}, {"aupro", t.aupro},
                                  {"gain_over_none", t.gain}, {"gain_se", t.gain_se},
                                  {"position_gain_over_none", t.position_gain}, {"position_gain_se", t.position_se},
                                  {"eligible", t.eligible},
                                  {"gain_by_kind", by_kind}, {"seconds", t.seconds},
                                  {"train_seconds", t.train_seconds}, {"score_seconds", t.score_seconds}});
  }
  // Each probe's own scores, so that the gains can be recomputed from the evidence.
  evidence["probes"] = Json::array();
  for (size_t i = 0; i < probe_kinds.size(); ++i) {
    Json auroc = Json::object();
    for (const auto& t : trials) auroc[to_string(t.pe)] = i < t.per_image.size() ? t.per_image[i] : NAN;
    evidence["probes"].push_back({{"file", probe[i % probe.size()].path}, {"unit", defect_unit[i]},
                                  {"kind", probe_kinds[i]}, {"pixel_auroc", auroc}});
  }
  (*settings)["pe_auto"] = to_string(r.config.pe);
  (*settings)["pe_auto_evidence"] = json_text(evidence, -1);
  std::ostringstream line;
  line << "pe auto: chose " << to_string(r.config.pe) << " (pixel AUROC / AUPRO on synthetic defects";
  for (const auto& t : trials) {
    line << "; " << to_string(t.pe) << " " << std::fixed << std::setprecision(2) << t.pixel_auroc * 100 << " / "
         << t.aupro * 100;
    if (t.pe != PeMode::kNone && std::isfinite(t.gain))
      line << ", gain over none " << t.gain * 100 << " +- " << t.gain_se * 100 << ", on moved parts "
           << t.position_gain * 100 << " +- " << t.position_se * 100
           << (!t.eligible ? " (not taken)" : weak ? " (not taken: weak evidence)" : "");
    else if (t.pe != PeMode::kNone)
      line << ", no gain: fewer than 2 held-out " << (r.groups.empty() ? "images" : "groups")
           << " with finite scores on the appearance defects (not taken)";
    line << std::defaultfloat;
  }
  line << "; " << format_duration(*seconds) << ")";
  observer.note(line.str());
  for (const auto& t : trials) {
    if (t.gain_by_kind.empty()) continue;
    std::ostringstream kinds;
    kinds << "pe auto: " << to_string(t.pe) << "'s gain over none by kind of defect:";
    for (const auto& [kind, g] : t.gain_by_kind)
      kinds << " " << kind << " " << std::showpos << std::fixed << std::setprecision(2) << g.first * 100 << std::noshowpos
            << " (" << g.second << ")";
    observer.note(kinds.str());
  }
  if (weak) {
    std::ostringstream w;
    w << "pe auto: WARNING: the synthetic defects were barely found (";
    if (std::isfinite(strength.best_pixel_auroc))
      w << "best pixel AUROC " << std::fixed << std::setprecision(2) << strength.best_pixel_auroc * 100 << " %, below "
        << kWeakEvidenceAuroc * 100 << " %";
    else
      w << "no variant has a finite pixel AUROC on them";
    w << "): too little evidence for a position code, so none"
      << (by_rule != PeMode::kNone ? " (the rule alone would take " + to_string(by_rule) + ")" : std::string())
      << ". More images or epochs help (the search trains a third of --epochs), or choose --pe yourself";
    observer.note(w.str());
  }
  return true;
}

// --resume: the checkpoint's model and trainer state, once it is shown to be this run's.
Checkpoint resume_from(TrainRequest& r, std::map<std::string, std::string>* settings) {
  const std::string& ckpt_path = r.checkpoint;
  if (!std::filesystem::exists(ckpt_path)) {
    throw TrainSettingsError("--resume: no checkpoint '" + ckpt_path + "' (it is removed once a run completes)");
  }
  auto ck = load_checkpoint(ckpt_path);
  const auto& c = ck.model.config;
  const bool ck_auto = !ck.model.training["pe_auto"].empty();
  if (r.pe_auto != ck_auto) {
    throw TrainSettingsError("--resume: '" + ckpt_path + "' was made with --pe " + (ck_auto ? "auto" : to_string(c.pe)) +
                             ", this run has --pe " + (r.pe_auto ? "auto" : to_string(r.config.pe)));
  }
  if (ck_auto) {  // the choice the interrupted run made stands, with its evidence
    r.config.pe = c.pe;
    for (const char* key : {"pe_auto", "pe_auto_evidence"}) (*settings)[key] = ck.model.training[key];
  }
  const auto latent = [](const ModelConfig& m) {
    return std::to_string(m.latent[0]) + "," + std::to_string(m.latent[1]) + "," + std::to_string(m.latent[2]);
  };
  std::string differs;
  const auto compare = [&](const char* name, const std::string& was, const std::string& now) {
    if (was != now) differs += std::string(differs.empty() ? "" : ", ") + name + " " + was + " (this run: " + now + ")";
  };
  compare("source", c.source_arch, r.config.source_arch);
  compare("target", c.target_arch, r.config.target_arch);
  compare("image-size", std::to_string(c.image_size), std::to_string(r.config.image_size));
  compare("latent", latent(c), latent(r.config));
  compare("pe", to_string(c.pe), to_string(r.config.pe));
  compare("fusion", to_string(c.fusion), to_string(r.config.fusion));
  compare("resize", to_string(c.resize), to_string(r.config.resize));
  if (!differs.empty()) {
    throw TrainSettingsError("--resume: '" + ckpt_path + "' was made with another model configuration: " + differs);
  }
  for (const char* key : {"data", "source_weights", "target_weights", "batch_size", "lr", "weight_decay", "seed",
                          "val_fraction", "train_images", "tile", "folds", "groups", "false_alarm_rate"}) {
    const auto was = ck.model.training.find(key);
    if (!same_setting(key, was == ck.model.training.end() ? std::string() : was->second, (*settings)[key])) {
      throw TrainSettingsError(std::string("--resume: '") + ckpt_path + "' was made with " + key + "=" +
                               ck.model.training[key] + ", this run has " + (*settings)[key]);
    }
  }
  // The fold models train --epochs epochs: a shipped model with more would not be the
  // model their scores calibrate.
  const auto done = ck.trainer_state.find("epochs_done");
  const int64_t held = done == ck.trainer_state.end() || done->second.numel() != 1 ? 0 : done->second.item<int64_t>();
  if (held > r.epochs) {
    throw TrainSettingsError("--resume: '" + ckpt_path + "' holds " + std::to_string(held) + " trained epochs, this run " +
                             "asks for --epochs " + std::to_string(r.epochs) + ": the model would have more epochs than " +
                             "the fold models that set its threshold; use --epochs " + std::to_string(held) +
                             " or more, or start over without --resume");
  }
  return ck;
}

// Trains `model` on `train` for the request's epochs, from `resume_state` when given, with a
// checkpoint after every epoch. Returns false when stopped.
bool train_shipped(Model& model, const std::map<std::string, torch::Tensor>& resume_state,
                   const std::vector<TrainImage>& train, const TrainRequest& r, int64_t per_image, TrainOutcome* out,
                   TrainObserver& observer) {
  const auto t_features = Clock::now();
  Trainer trainer(model, r.options, r.device);
  if (!resume_state.empty()) {
    try {
      trainer.restore(resume_state);
    } catch (const std::exception& e) {
      const std::string why = e.what();
      throw std::runtime_error("--resume: checkpoint '" + r.checkpoint + "' is unusable: " + why.substr(0, why.find('\n')));
    }
  }
  const int64_t first_epoch = trainer.epochs_done(), epochs = r.epochs;
  if (first_epoch >= epochs) observer.note("checkpoint already holds " + std::to_string(first_epoch) + " epochs");
  observer.started("features", static_cast<int64_t>(first_epoch < epochs ? train.size() : 0));
  for (size_t i = 0; i < train.size() && first_epoch < epochs && !observer.stop_requested(); i += 32) {
    const size_t end = std::min(train.size(), i + 32);
    trainer.add_images(preprocess_batch(train, i, end, r.config));
    observer.progress("features", static_cast<int64_t>(end), "");
  }
  observer.finished("features", format_bytes(static_cast<uint64_t>(per_image * static_cast<int64_t>(train.size()) /
                                                                   (r.options.half_cache ? 2 : 1))) +
                                    (r.options.half_cache ? " cached (fp16)" : " cached"));
  out->feature_seconds = seconds_since(t_features);

  const auto t_train = Clock::now();
  for (int64_t epoch = first_epoch + 1; epoch <= epochs && !observer.stop_requested(); ++epoch) {
    const auto t_epoch = Clock::now();
    const double per_epoch = epoch > first_epoch + 1 ? seconds_since(t_train) / (epoch - first_epoch - 1) : NAN;
    const std::string stage = "epoch " + std::to_string(epoch) + "/" + std::to_string(epochs);
    bool started = false;
    const auto result = trainer.train_epoch([&](int64_t done, int64_t total) {
      if (!started) observer.started(stage, total);
      started = true;
      observer.progress(stage, done, "overall ETA " + format_duration(per_epoch * (epochs - epoch + 1)));
      return !observer.stop_requested();
    });
    if (!result.completed) break;
    out->last = result;
    save_checkpoint(model, trainer.state(), r.checkpoint);
    const double done_s = seconds_since(t_train);
    observer.step(stage + "  " + loss_text(result) + "  " + format_duration(seconds_since(t_epoch)) + "  elapsed " +
                  format_duration(done_s) + "  ETA " + format_duration(done_s / (epoch - first_epoch) * (epochs - epoch)));
  }
  out->train_seconds = seconds_since(t_train);
  if (!observer.stop_requested()) return true;
  out->stopped = "\ninterrupted: no model written; '" + r.checkpoint + "' holds epoch " +
                 std::to_string(trainer.epochs_done()) + " of " + std::to_string(epochs) +
                 "; run the same command with --resume to continue";
  return false;
}

// Sets `model`'s calibration: cross-fitted scores of every image and their conformal
// quantile, or (--folds 0) the held-out images' mean + 3 std. Returns false when stopped.
bool calibrate(const std::shared_ptr<Model>& model, const std::vector<TrainImage>& train,
               const std::vector<TrainImage>& val, const TrainRequest& r, std::map<std::string, double>* image_scores,
               std::map<std::string, int>* fold_of_image, TrainOutcome* out, TrainObserver& observer) {
  std::vector<torch::Tensor> maps;
  std::vector<double> scores;
  if (r.folds > 0) {
    if (!cross_fit(train, r.groups, r.folds, r.config, r.source_weights, r.target_weights, r.options, r.epochs, r.device,
                   &maps, image_scores, fold_of_image, observer)) {
      out->stopped = "\ninterrupted during cross-fitting: no model written; '" + r.checkpoint +
                     "' holds the trained model; run the same command with --resume to calibrate and save";
      return false;
    }
    std::vector<std::string> keys;
    for (const auto& [key, v] : *image_scores) {
      scores.push_back(v);
      keys.push_back(key);
    }
    std::vector<int64_t> score_group;  // with groups: each score's group
    if (!r.groups.empty()) {
      size_t n_score_groups = 0;
      for (size_t g : number_units(keys, r.groups, &n_score_groups)) score_group.push_back(static_cast<int64_t>(g));
    }
    const auto normal_maps = torch::cat(maps);
    model->calibration = calibration_from_normal(normal_maps, torch::tensor(scores, torch::kFloat64));
    model->calibration.set_false_alarm_threshold(scores, r.false_alarm_rate, r.folds, score_group);
    set_region_threshold(model->calibration, normal_maps, scores, r.pixel_false_alarm_rate);
    return true;
  }
  // On the held-out normal images (or, without any, the training images).
  const auto& calib = val.empty() ? train : val;
  if (val.empty())
    observer.note("warning: no held-out images (--val-fraction 0); calibrating on training images, thresholds will be "
                  "optimistic");
  score_samples(model, r.device.str(), calib, map_stride_for(calib.size()), &maps, image_scores, observer);
  if (observer.stop_requested()) {
    out->stopped = "interrupted: no model written; rerun with --resume to calibrate and save";
    return false;
  }
  for (const auto& [path, v] : *image_scores) scores.push_back(v);
  if (scores.size() < 2)
    observer.note("WARNING: the threshold rests on " + std::to_string(scores.size()) +
                  " image: mean + 3 std has no spread; hold out more images (--val-fraction) or cross-fit (--folds)");
  const auto normal_maps = torch::cat(maps);
  model->calibration = calibration_from_normal(normal_maps, torch::tensor(scores, torch::kFloat64));
  set_region_threshold(model->calibration, normal_maps, scores, r.pixel_false_alarm_rate);
  return true;
}

}  // namespace

std::string loss_text(const EpochResult& r) {
  std::ostringstream s;
  s.precision(4);
  s << "loss " << r.loss[0] << " / " << r.loss[1] << " / " << r.loss[2];
  return s.str();
}

TrainOutcome train_recipe(std::vector<TrainImage> samples, TrainRequest r, TrainObserver& observer) {
  TrainOutcome out;
  if (!r.groups.empty()) check_groups(samples, r, observer);
  if (r.tile > 0) {
    auto tiles = cut_tiles(samples, r.tile);
    observer.note("tiles: " + std::to_string(samples.size()) + " images -> " + std::to_string(tiles.size()) +
                  " tiles of " + std::to_string(r.tile) + " px");
    samples = std::move(tiles);
  }
  std::vector<TrainImage> val, train;
  split(&samples, r, &train, &val, observer);
  out.train_images = train.size();
  out.val_images = val.size();

  std::map<std::string, std::string> settings = r.recorded;
  for (auto& [key, value] : std::map<std::string, std::string>{
           {"source_weights", r.source_weights}, {"target_weights", r.target_weights},
           {"batch_size", std::to_string(r.options.batch_size)}, {"seed", std::to_string(r.options.seed)},
           {"train_images", std::to_string(train.size())}, {"val_images", std::to_string(val.size())},
           {"tile", std::to_string(r.tile)}, {"folds", std::to_string(r.folds)},
           {"groups", groups_digest(r.groups, train, val)}})
    settings[key] = value;  // what the run itself decides, whatever `recorded` says
  if (r.folds > 0) settings["val_fraction"] = "0";

  // Cache in fp16 when fp32 features would take more than 4 GiB (the --pe auto search
  // caches four fifths of them).
  const int64_t per_image = feature_bytes(r.config);
  r.options.half_cache = per_image * static_cast<int64_t>(train.size()) > (int64_t{4} << 30);
  if (r.pe_auto && !r.resume && !choose_position_code(train, r, &settings, &out.pe_auto_seconds, observer)) {
    out.stopped = "interrupted while choosing the position code; nothing written";
    return out;
  }

  Model model;
  std::map<std::string, torch::Tensor> resume_state;
  if (r.resume) {
    auto ck = resume_from(r, &settings);
    model = std::move(ck.model);
    resume_state = std::move(ck.trainer_state);
  } else {
    if (std::filesystem::exists(r.checkpoint))
      observer.note("note: starting over; '" + r.checkpoint +
                    "' from an interrupted run will be replaced (use --resume to continue it)");
    torch::manual_seed(r.options.seed);
    model = Model::create(r.config, r.source_weights, r.target_weights);
  }
  model.training = settings;
  model.training["epochs"] = std::to_string(r.epochs);
  if (!train_shipped(model, resume_state, train, r, per_image, &out, observer)) return out;

  auto shared = std::make_shared<Model>(std::move(model));
  // Each calibration image's score and the fold that held it out (the training-set audit).
  std::map<std::string, double> image_scores;
  std::map<std::string, int> fold_of_image;
  out.scored_by = r.folds > 0 ? "out-of-fold" : val.empty() ? "in-sample" : "held-out";
  if (!calibrate(shared, train, val, r, &image_scores, &fold_of_image, &out, observer)) return out;
  std::map<std::string, std::string> path_of;  // source_key -> the path as found in the data folders
  for (const auto* set : {&train, &val}) {
    for (const auto& sample : *set) path_of.emplace(source_key(sample.path), sample.path);
  }
  out.audit = audit_rows(image_scores, fold_of_image, path_of, r.groups);
  shared->training["train_audit"] = audit_record(out.audit, out.scored_by);
  try {  // what the model file reader will check, checked before the file exists
    shared->calibration.validate();
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(std::string("the calibration this run made would be refused when loaded (") + e.what() +
                             "): no model written; please report this with the command");
  }
  out.model = std::move(shared);
  return out;
}

}  // namespace pefm
