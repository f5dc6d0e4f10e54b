// pefm-train: trains a PEFM model from folders of normal images.
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <random>
#include <set>
#include <sstream>

#include <torch/torch.h>

#include "cli.h"
#include "pefm-config.h"
#include "pefm/backbone.h"
#include "pefm/calibration.h"
#include "pefm/detector.h"
#include "pefm/device.h"
#include "pefm/file_util.h"
#include "pefm/groups.h"
#include "pefm/metrics.h"
#include "pefm/model_file.h"
#include "pefm/pe_choice.h"
#include "pefm/preprocess.h"
#include "pefm/synthetic_defect.h"
#include "pefm/tiling.h"
#include "pefm/trainer.h"
#include "pefm/weights.h"

namespace {

using namespace pefm;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

struct Sample {
  std::string path;
  torch::Tensor pixels;  // [H, W, 3] uint8
};

std::vector<Sample> load_images(const std::vector<std::string>& dirs, int64_t* skipped) {
  std::vector<std::string> files;
  for (const auto& dir : dirs) {
    std::vector<std::string> found;
    try {
      found = io::list_images(dir);
    } catch (const io::ImageError& e) {
      throw cli::UsageError(std::string("--data ") + e.what());
    }
    if (found.empty()) {
      throw cli::UsageError("--data '" + dir + "' holds no image files (png, jpg, jpeg, bmp, tif, tiff, pgm, ppm, webp)");
    }
    files.insert(files.end(), found.begin(), found.end());
  }
  std::vector<Sample> samples;
  const bool tty = cli::stderr_is_tty();
  cli::Progress progress("decoding", static_cast<int64_t>(files.size()), tty);
  for (size_t i = 0; i < files.size() && !cli::stop_requested(); ++i) {
    try {
      samples.push_back({files[i], cli::to_tensor(io::read_image(files[i]))});
    } catch (const io::ImageError& e) {
      std::cerr << (tty ? "\r\033[K" : "") << "skipped: " << e.what() << "\n";
      ++*skipped;
    }
    progress.update(static_cast<int64_t>(i + 1));
  }
  progress.finish(std::to_string(samples.size()) + " images, " + std::to_string(*skipped) + " skipped");
  if (samples.empty() && !cli::stop_requested()) {
    throw cli::UsageError("no readable images in the --data folders (" + std::to_string(*skipped) + " skipped)");
  }
  return samples;
}

// Network input of samples[begin, end), resized as `config` says.
torch::Tensor preprocess_batch(const std::vector<Sample>& samples, size_t begin, size_t end, const ModelConfig& config) {
  std::vector<torch::Tensor> xs;
  for (size_t i = begin; i < end; ++i)
    xs.push_back(preprocess(samples[i].pixels.unsqueeze(0), {}, config.image_size, torch::kFloat32, config.resize));
  return torch::cat(xs);
}

std::string losses(const EpochResult& r) {
  std::ostringstream s;
  s.precision(4);
  s << "loss " << r.loss[0] << " / " << r.loss[1] << " / " << r.loss[2];
  return s.str();
}

// The file a sample came from, one name per file whatever path named it (--data good and
// --data ./good are the same images).
std::string source_key(const std::string& path) {
  std::error_code ec;
  const auto canonical = std::filesystem::weakly_canonical(path, ec);
  return ec ? path : canonical.string();
}

// --groups: the group of each source image (source_key -> label); empty: each image its own.
using Groups = std::map<std::string, std::string>;

// The label of a source image: its group's, or its own name.
std::string unit_label(const Groups& groups, const std::string& key) {
  const auto it = groups.find(key);
  return it == groups.end() ? key : it->second;
}

// Reads a --groups file (pefm/groups.h: bounded, a regular file, text): each image's group,
// the image relative to the file's folder or absolute. Throws cli::UsageError naming the
// file and line.
Groups read_groups(const std::string& path) {
  const std::string origin = "--groups '" + path + "'";
  std::vector<GroupEntry> entries;
  try {
    entries = parse_groups(read_bounded_file(path, "--groups file", kMaxGroupsFileBytes), origin);
  } catch (const std::exception& e) {
    throw cli::UsageError(e.what());
  }
  const auto folder = std::filesystem::path(path).parent_path();
  Groups groups;
  for (const auto& e : entries) {
    const auto image = std::filesystem::path(e.image).is_absolute() ? std::filesystem::path(e.image) : folder / e.image;
    const auto [it, fresh] = groups.emplace(source_key(image.string()), e.group);
    if (!fresh && it->second != e.group)
      throw cli::UsageError(origin + " line " + std::to_string(e.line) + ": '" + e.image + "' is already in group '" +
                            it->second + "'");
  }
  return groups;
}

// What --resume compares: the training images' groups, not the file's name (an edited
// file would move images across the hold-out; a moved one changes nothing). Empty without
// --groups.
std::string groups_digest(const Groups& groups, const std::vector<Sample>& train, const std::vector<Sample>& val) {
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
std::vector<size_t> source_groups(const std::vector<Sample>& samples, const Groups& groups, size_t* n_groups) {
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
void score_samples(const std::shared_ptr<Model>& model, const std::string& device, const std::vector<Sample>& samples,
                   size_t map_stride, std::vector<torch::Tensor>* maps,
                   std::map<std::string, double>* image_scores) {
  Detector detector(model, {device});
  for (size_t i = 0; i < samples.size() && !cli::stop_requested(); i += 32) {
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
                                   int64_t epochs, const torch::Device& device, const std::vector<Sample>& fit,
                                   const std::string& what, const Trainer* features = nullptr,
                                   std::unique_ptr<Trainer>* keep = nullptr) {
  const bool tty = cli::stderr_is_tty();
  torch::manual_seed(seed);
  auto model = std::make_shared<Model>(Model::create(config, src_weights, tgt_weights));
  auto trainer = std::make_unique<Trainer>(*model, opts, device);
  if (features) {
    trainer->share_cache(*features);
  } else {
    for (size_t i = 0; i < fit.size() && !cli::stop_requested(); i += 32)
      trainer->add_images(preprocess_batch(fit, i, std::min(fit.size(), i + 32), config));
  }
  for (int64_t epoch = 1; epoch <= epochs && !cli::stop_requested(); ++epoch) {
    std::optional<cli::Progress> bar;
    trainer->train_epoch([&](int64_t done, int64_t total) {
      if (!bar) bar.emplace(what + " epoch " + std::to_string(epoch) + "/" + std::to_string(epochs), total, tty);
      bar->update(done);
      return !cli::stop_requested();
    });
  }
  if (cli::stop_requested()) return nullptr;
  if (keep) *keep = std::move(trainer);
  return model;
}

// Cross-fitting: each source image scored by a model trained, with the same settings,
// on the other folds only (folds of whole groups); `fold_of_image`: the fold (1-based)
// that held each image out. Returns false when interrupted.
bool cross_fit(const std::vector<Sample>& samples, const Groups& groups, int folds, const ModelConfig& config,
               const std::string& src_weights, const std::string& tgt_weights, const TrainOptions& opts, int64_t epochs,
               const torch::Device& device, std::vector<torch::Tensor>* maps,
               std::map<std::string, double>* image_scores, std::map<std::string, int>* fold_of_image) {
  size_t n_groups = 0;
  const auto group = source_groups(samples, groups, &n_groups);
  const auto order = shuffled_groups(n_groups, opts.seed + 1);
  std::vector<int> fold_of(n_groups);
  for (size_t r = 0; r < order.size(); ++r) fold_of[order[r]] = static_cast<int>(r % static_cast<size_t>(folds));
  const bool tty = cli::stderr_is_tty();
  for (int f = 0; f < folds && !cli::stop_requested(); ++f) {
    const auto t_fold = Clock::now();
    std::vector<Sample> fit, held;
    for (size_t i = 0; i < samples.size(); ++i) (fold_of[group[i]] == f ? held : fit).push_back(samples[i]);
    const auto model = train_model(config, src_weights, tgt_weights, opts.seed + 1 + static_cast<uint64_t>(f), opts, epochs,
                                   device, fit, "fold " + std::to_string(f + 1) + "/" + std::to_string(folds));
    if (!model) break;
    score_samples(model, device.str(), held, map_stride_for(samples.size()), maps, image_scores);
    for (const auto& s : held) (*fold_of_image)[source_key(s.path)] = f + 1;
    std::cerr << (tty ? "\r\033[K" : "") << "fold " << f + 1 << "/" << folds << ": trained on " << fit.size()
              << ", scored " << held.size() << "  " << cli::format_duration(seconds_since(t_fold)) << std::endl;
  }
  return !cli::stop_requested();
}

// --pe auto: the position-code variants compared on normal images alone.
//
// A fifth of the source images (or of the --groups groups; seed-shuffled) becomes a probe
// set; each probe image gets one synthetic defect with its mask (synthetic_defect.h, the
// kinds in turn) and a misaligned normal copy (a window of 85-95 % of it at a random place:
// the part shifted and a little larger). Each variant is trained with the run's settings on
// the other images for a third of the epochs, sharing one extraction of their features,
// and scores the probe images, their defective and their misaligned copies; choose_pe
// (pe_choice.h) decides.

// The kind of synthetic defect of probe image i: the kinds in turn.
DefectKind probe_kind(size_t i) { return static_cast<DefectKind>(i % kDefectKinds); }

// Trains each variant on `fit` for `epochs` and scores the probe images and their
// synthetic defects. Returns an empty vector when interrupted.
std::vector<PeTrial> compare_pe(const std::vector<Sample>& fit, const std::vector<Sample>& probe, const ModelConfig& config,
                                const std::string& src_weights, const std::string& tgt_weights, const TrainOptions& opts,
                                int64_t epochs, const torch::Device& device) {
  // Probe set: every probe image as it is, then a defective copy of each (the kinds in
  // turn), then a misaligned normal copy of each: the position code's risk, it must not call
  // a part placed less exactly anomalous.
  std::mt19937_64 rng(opts.seed + 3), place(opts.seed + 4);
  std::vector<Sample> probes = probe;
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
  const bool tty = cli::stderr_is_tty();
  // The fit set's backbone features, extracted once: the variants differ only above them.
  std::shared_ptr<Model> first_model;      // outlives first_trainer, which refers to it
  std::unique_ptr<Trainer> first_trainer;
  for (PeMode pe : {PeMode::kAdd, PeMode::kNone, PeMode::kConcat}) {
    const auto t0 = Clock::now();
    ModelConfig c = config;
    c.pe = pe;
    std::unique_ptr<Trainer> trainer;
    const auto model = train_model(c, src_weights, tgt_weights, opts.seed, opts, epochs, device, fit, "pe " + to_string(pe),
                                   first_trainer.get(), first_trainer ? nullptr : &trainer);
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
    // Each defect against the normal pixels of its own image and of its misaligned copy.
    for (int64_t i = 0; i < n_probe; ++i) {
      const auto pair = torch::stack({m[n_probe + i], m[2 * n_probe + i]});
      t.per_image.push_back(auroc(pair, torch::stack({mask_t[n_probe + i], mask_t[2 * n_probe + i]})));
    }
    t.seconds = seconds_since(t0);
    std::cerr << (tty ? "\r\033[K" : "") << "pe " << to_string(pe) << ": synthetic defects pixel AUROC "
              << std::fixed << std::setprecision(2) << t.pixel_auroc * 100 << ", AUPRO " << t.aupro * 100 << "  "
              << cli::format_duration(t.seconds) << " (training " << cli::format_duration(t_train) << ", scoring "
              << cli::format_duration(t_score) << ", metrics " << cli::format_duration(t.seconds - t_train - t_score)
              << ")" << std::defaultfloat << std::endl;
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

// The training-set audit: every calibration image's score, ranked from the most
// anomalous-looking. A defective part in the good folders shows at the top, where it
// also raises the threshold.
struct AuditRow {
  std::string file, group;  // group: empty without --groups
  int fold = 0;             // the fold that held the image out (1-based); 0: no cross-fitting
  double score = 0;
  size_t rank = 0;          // 1: the highest score
};

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

constexpr size_t kAuditShown = 5;

cli::Json audit_json(const AuditRow& r, const char* scored_by) {
  return {{"file", r.file}, {"group", r.group.empty() ? cli::Json() : cli::Json(r.group)},
          {"fold", r.fold > 0 ? cli::Json(r.fold) : cli::Json()}, {"score", r.score}, {"rank", r.rank},
          {"scored_by", scored_by}};
}

// What the model file keeps of the audit: the few highest-scoring images.
cli::Json audit_record(const std::vector<AuditRow>& rows, const char* scored_by) {
  cli::Json top = cli::Json::array();
  for (size_t i = 0; i < rows.size() && i < kAuditShown; ++i) top.push_back(audit_json(rows[i], scored_by));
  return {{"scored_by", scored_by}, {"images", rows.size()}, {"top", top}};
}

void write_train_scores(const std::string& path, const std::vector<AuditRow>& rows, const char* scored_by,
                        const Calibration& cal) {
  const bool csv = std::filesystem::path(path).extension() == ".csv";
  std::ostringstream text;
  if (csv) text << "file,group,fold,score,normalised,rank,scored_by\n";
  for (const auto& r : rows) {
    const double normalised = cal.valid ? cal.normalize(r.score) : NAN;
    if (csv) {
      text << cli::csv_field(r.file) << "," << cli::csv_field(r.group) << "," << (r.fold > 0 ? std::to_string(r.fold) : "")
           << "," << pefm::json_text(r.score) << "," << pefm::json_text(normalised) << "," << r.rank << "," << scored_by
           << "\n";
    } else {
      auto line = audit_json(r, scored_by);
      line["normalised"] = normalised;
      text << pefm::json_text(line, -1) << "\n";
    }
  }
  write_file_atomically(path, text.str());
  std::cout << "wrote " << path << "\n";
}

void print_audit(const std::vector<AuditRow>& rows, const char* scored_by, const Calibration& cal) {
  const std::string what = std::string(scored_by) == "out-of-fold" ? "each scored by the fold model that did not train on it"
                           : std::string(scored_by) == "held-out" ? "held-out images, scored by the shipped model"
                                                                  : "scored by the shipped model, which trained on them";
  std::cout << "  audit        the most anomalous-looking training images (" << what << "):\n";
  for (size_t i = 0; i < rows.size() && i < kAuditShown; ++i) {
    const auto& r = rows[i];
    std::cout << "               " << r.rank << ". " << r.file << "  score " << r.score;
    if (cal.valid) {
      const double n = cal.normalize(r.score);
      std::cout << " (normalised " << std::fixed << std::setprecision(3) << n << std::defaultfloat
                << (r.score >= cal.threshold ? ", at or above the threshold" : "") << ")";
    }
    if (r.fold > 0) std::cout << "  fold " << r.fold;
    if (!r.group.empty()) std::cout << "  group " << r.group;
    std::cout << "\n";
  }
  std::cout << "               check these are really good parts: a defective one in the good folders raises the "
               "threshold\n";
}

std::string percent(double v) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(2) << v * 100 << " %";
  return s.str();
}

// A rate that can be far below 0.01 %, in three significant digits.
std::string small_percent(double v) {
  std::ostringstream s;
  s << std::setprecision(3) << v * 100 << " %";
  return s.str();
}

int run(int argc, char** argv) {
  cli::Args args("pefm-train", "--data DIR [--data DIR ...] --output MODEL.pt [options]",
                 "Trains a PEFM anomaly detector from folders of normal (defect-free) images.\n"
                 "Backbone features are computed once and cached; each epoch trains only the\n"
                 "mapping networks. The decision threshold has a stated false-alarm rate: each\n"
                 "image is scored by a model trained on the other folds (cross-fitting), the\n"
                 "threshold is a conformal quantile of those scores, and the shipped model is\n"
                 "trained on every image.\n"
                 "Ctrl-C stops cleanly: no partial model is written, --resume continues.");
  args.option("data", "DIR", "folder of normal images (png, jpg, bmp, tif; 8/16-bit; gray, RGB, RGBA)", "", true, true);
  args.option("output", "MODEL.pt", "model file to write (atomically)", "", true);
  args.option("source", "ARCH[=WEIGHTS]", "source backbone; weights default to ARCH.pth in $PEFM_BACKBONE_DIR, then the installed models/; ARCH=random: untrained (plumbing demos only)", "resnet34");
  args.option("target", "ARCH[=WEIGHTS]", "target backbone", "resnet50");
  args.option("image-size", "S", "network input size (multiple of 16)", "256");
  args.option("epochs", "N", "training epochs", "200");
  args.option("batch-size", "N", "training batch size", "16");
  args.option("lr", "X", "Adam learning rate", "3e-4");
  args.option("weight-decay", "X", "Adam weight decay", "1e-5");
  args.option("latent", "L1,L2,L3", "latent widths of the three mapping networks", "200,400,800");
  args.option("pe", "MODE", "position encoding: add, concat, none, or auto (chosen from synthetic defects in held-out "
              "normal images; recorded in the model)", "add");
  args.option("fusion", "MODE", "scale fusion: mean or product", "mean");
  args.option("resize", "FILTER", "how images are resized to S x S: lanczos (PIL's, as the authors' runs) or bilinear "
              "(antialiased, a third of the taps); recorded in the model, used by pefmfilter and pefm-eval", "lanczos");
  args.option("device", "DEV", "auto, cpu, cuda or cuda:N", "auto");
  args.option("seed", "N", "random seed (initialisation, split, batch order)", "888");
  args.option("false-alarm-rate", "F", "the rate at which a new normal image may be called anomalous, at most", "0.01");
  args.option("pixel-false-alarm-rate", "P", "the fraction of normal area the regions may cover: the region threshold "
              "is this quantile of normal pixel scores (pefmfilter region-threshold 0.5)", "0.0001");
  args.option("folds", "K", "cross-fitting folds for the threshold (K extra trainings on (K-1)/K of the images); "
              "0: hold out --val-fraction instead, threshold mean + 3 std, no stated rate", "5");
  args.option("val-fraction", "F", "with --folds 0: share of images held out for calibration", "0.1");
  args.option("groups", "FILE", "IMAGE,GROUP lines (IMAGE relative to FILE's folder): images of one part or one pass "
              "(several captures, neighbouring video frames) stay on one side of every split, and the stated rate "
              "counts groups, not images; every training image needs a group", "");
  args.option("threads", "N", "CPU threads (0: every CPU this process may use)", "0");
  args.option("tile", "N", "train on N x N tiles of native pixels (line-scan / high resolution; use the same tile-size in pefmfilter)", "0");
  args.option("train-scores", "FILE", "write every training image's calibration score (out-of-fold with cross-fitting, "
              "held-out with --folds 0), its group, fold and rank: CSV for FILE.csv, else JSON lines", "");
  args.flag("resume", "continue an interrupted run from MODEL.pt.ckpt");
  if (!args.parse(argc, argv)) return 0;

  ModelConfig config;
  auto [src_arch, src_weights] = cli::split_arch(args.get("source"));
  auto [tgt_arch, tgt_weights] = cli::split_arch(args.get("target"));
  config.source_arch = src_arch;
  config.target_arch = tgt_arch;
  config.image_size = args.integer("image-size", 32, kMaxImageSize);
  config.latent = cli::parse_widths(args.get("latent"), "--latent");
  const bool pe_auto = args.get("pe") == "auto";
  try {
    config.pe = pe_auto ? PeMode::kAdd : parse_pe_mode(args.get("pe"), "--pe");
    config.fusion = parse_fusion(args.get("fusion"), "--fusion");
    config.resize = parse_resize(args.get("resize"), "--resize");
    config.validate();
  } catch (const std::invalid_argument& e) {
    const std::string why = e.what();
    throw cli::UsageError(why.find("--pe") != std::string::npos ? why + " (or auto)" : why);
  }
  const int64_t epochs = args.integer("epochs", 1, 100000);
  TrainOptions opts;
  opts.batch_size = args.integer("batch-size", 1, 65536);
  opts.lr = args.number("lr", 1e-12, 10.0);
  opts.weight_decay = args.number("weight-decay", 0.0, 1.0);
  opts.seed = static_cast<uint64_t>(args.integer("seed", 0, INT64_MAX));
  const int folds = static_cast<int>(args.integer("folds", 0, 100));
  if (folds == 1) throw cli::UsageError("--folds 1 cannot cross-fit: use 2 or more, or 0 for a hold-out");
  const double false_alarm_rate = args.number("false-alarm-rate", 1e-6, 0.5);
  const double pixel_rate = args.number("pixel-false-alarm-rate", 1e-6, 0.5);
  if (folds > 0 && args.has("val-fraction"))
    throw cli::UsageError("--val-fraction applies with --folds 0 only (cross-fitting trains on every image)");
  const double val_fraction = folds > 0 ? 0.0 : args.number("val-fraction", 0.0, 0.9);
  use_cpu_threads(static_cast<int>(args.integer("threads", 0, 1024)));
  const std::string output = args.get("output");
  const std::string ckpt_path = output + ".ckpt";
  // Before any work: a typo in --output (a folder, a training image, a weights file, a
  // missing folder) is found now, not after the last epoch.
  {
    std::vector<std::string> inputs;
    for (const auto& spec : {args.get("source"), args.get("target")}) inputs.push_back(cli::split_arch(spec).second);
    for (const auto& dir : args.all("data")) {
      std::error_code ec;
      if (std::filesystem::is_directory(dir, ec)) {
        for (const auto& e : std::filesystem::directory_iterator(dir, ec)) inputs.push_back(e.path().string());
      }
    }
    cli::check_output_file("--output", output, cli::OutputKind::kModel, inputs);
    cli::check_output_file("--output", ckpt_path, cli::OutputKind::kModel, inputs);
    if (args.has("train-scores")) {
      const auto scores = source_key(args.get("train-scores"));
      if (scores == source_key(output) || scores == source_key(ckpt_path))
        throw cli::UsageError("--train-scores '" + args.get("train-scores") + "' is the model's own path");
      inputs.insert(inputs.end(), {output, ckpt_path});
      cli::check_output_file("--train-scores", args.get("train-scores"), cli::OutputKind::kTrainScores, inputs);
    }
  }
  torch::Device device = torch::kCPU;
  try {
    device = resolve_device(args.get("device"));
  } catch (const std::invalid_argument& e) {
    throw cli::UsageError(e.what());
  }
  // "random": untrained backbones, for demonstrating the plumbing without weights.
  for (auto* w : {&src_weights, &tgt_weights}) {
    if (*w == "random") {
      std::cout << "WARNING: " << (w == &src_weights ? src_arch : tgt_arch)
                << " backbone is RANDOMLY INITIALISED: the model demonstrates the plumbing only; its scores mean "
                   "little. Export real ImageNet weights with models/export_backbones.py.\n";
      *w = "";
    } else if (w->empty()) {
      *w = find_backbone_weights(w == &src_weights ? src_arch : tgt_arch);
    }
  }

  cli::install_stop_handler();
  const bool tty = cli::stderr_is_tty();
  const auto t_start = Clock::now();
  const int tile = static_cast<int>(args.integer("tile", 0, 65536));
  if (tile > 0 && tile < kMinTileSize) {
    throw cli::UsageError("--tile " + std::to_string(tile) + " is below the minimum of " + std::to_string(kMinTileSize) +
                          " pixels (pefmfilter refuses smaller tiles)");
  }
  std::cout << "pefm-train " PEFM_VERSION ": " << src_arch << " -> " << tgt_arch << ", " << config.image_size
            << " px, latent " << config.latent[0] << "," << config.latent[1] << "," << config.latent[2] << ", pe "
            << (pe_auto ? std::string("auto") : to_string(config.pe)) << ", " << to_string(config.resize) << " resize, on " << device_name(device) << "\n";

  int64_t skipped = 0;
  const Groups groups = args.has("groups") ? read_groups(args.get("groups")) : Groups{};
  auto samples = load_images(args.all("data"), &skipped);
  if (cli::stop_requested()) {
    std::cout << "interrupted before training; nothing written\n";
    return 130;
  }
  if (!groups.empty()) {
    // Every image in a group; entries for other images (a test set's) are ignored.
    std::set<std::string> keys, labels;
    std::string first_missing;
    int64_t missing = 0;
    for (const auto& sample : samples) {
      const auto key = source_key(sample.path);
      keys.insert(key);
      const auto it = groups.find(key);
      if (it != groups.end()) {
        labels.insert(it->second);
      } else if (missing++ == 0) {
        first_missing = sample.path;
      }
    }
    if (missing > 0) {
      throw cli::UsageError("--groups '" + args.get("groups") + "' gives no group for " + std::to_string(missing) + " of the " +
                            std::to_string(samples.size()) + " training images, e.g. '" + first_missing +
                            "' (IMAGE is relative to the groups file's folder)");
    }
    std::cout << "groups: " << samples.size() << " images in " << labels.size() << " groups";
    if (groups.size() > keys.size()) std::cout << " (" << groups.size() - keys.size() << " entries name no training image: ignored)";
    std::cout << "\n";
  }
  if (tile > 0) {
    // Native-resolution tiles, laid out exactly as pefmfilter tile-size=N cuts frames.
    std::vector<Sample> tiles;
    for (const auto& s : samples) {
      const int h = static_cast<int>(s.pixels.size(0)), w = static_cast<int>(s.pixels.size(1));
      const int th = std::min(tile, h), tw = std::min(tile, w);
      for (int y0 : tile_origins(h, tile, 0)) {
        for (int x0 : tile_origins(w, tile, 0)) {
          tiles.push_back({s.path, s.pixels.slice(0, y0, y0 + th).slice(1, x0, x0 + tw).contiguous()});
        }
      }
    }
    std::cout << "tiles: " << samples.size() << " images -> " << tiles.size() << " tiles of " << tile << " px\n";
    samples = std::move(tiles);
  }
  // With --folds 0, a deterministic hold-out: source images shuffled by seed, the first
  // val_fraction of them (all their tiles) held out.
  size_t n_groups = 0;
  const auto group = source_groups(samples, groups, &n_groups);
  const auto order = shuffled_groups(n_groups, opts.seed);
  size_t n_val = static_cast<size_t>(std::llround(val_fraction * static_cast<double>(n_groups)));
  if (val_fraction > 0 && n_val == 0 && n_groups >= 2) n_val = 1;
  n_val = std::min(n_val, n_groups - 1);
  std::vector<bool> held_out(n_groups, false);
  for (size_t r = 0; r < n_val; ++r) held_out[order[r]] = true;
  std::vector<Sample> val, train;
  for (size_t i = 0; i < samples.size(); ++i) (held_out[group[i]] ? val : train).push_back(std::move(samples[i]));
  samples.clear();
  if (folds > 0) {
    // Said before any training: every fold needs an image, and F needs enough of them.
    if (n_groups < static_cast<size_t>(folds)) {
      throw cli::UsageError("--folds " + std::to_string(folds) + " needs at least " + std::to_string(folds) +
                            (groups.empty() ? " source images; the --data folders hold "
                                            : " groups; the --groups file puts the images in ") +
                            std::to_string(n_groups));
    }
    const auto supported = conformal_threshold(std::vector<double>(n_groups, 0.0), false_alarm_rate);
    if (!supported.enough) {
      const char* unit = groups.empty() ? " images" : " groups";
      std::cout << "WARNING: too few" << unit << " for a false-alarm rate of " << percent(false_alarm_rate) << ": "
                << n_groups << unit << " support " << percent(supported.bound) << " at best ("
                << (groups.empty() ? "1/(n+1)" : "1/(m+1)") << "); "
                << static_cast<int64_t>(std::ceil(1.0 / false_alarm_rate - 1.0)) << " are needed\n";
    }
  }

  std::map<std::string, std::string> settings = {
      {"data", [&] { std::string d; for (const auto& x : args.all("data")) d += (d.empty() ? "" : ":") + x; return d; }()},
      {"source_weights", src_weights}, {"target_weights", tgt_weights},
      {"batch_size", std::to_string(opts.batch_size)}, {"lr", args.get("lr")},
      {"weight_decay", args.get("weight-decay")}, {"seed", std::to_string(opts.seed)},
      {"val_fraction", folds > 0 ? "0" : args.get("val-fraction")}, {"train_images", std::to_string(train.size())},
      {"val_images", std::to_string(val.size())}, {"skipped_images", std::to_string(skipped)},
      {"tile", std::to_string(tile)}, {"folds", std::to_string(folds)},
      {"groups", groups_digest(groups, train, val)}, {"groups_file", args.has("groups") ? args.get("groups") : ""},
      {"false_alarm_rate", args.get("false-alarm-rate")},
      {"pixel_false_alarm_rate", args.get("pixel-false-alarm-rate")},
  };

  // Cache in fp16 when fp32 features would take more than 4 GiB (the --pe auto search
  // caches four fifths of them).
  int64_t per_image = 0;
  {
    const auto source = make_backbone(config.source_arch);
    const auto cs = source->tap_channels(), ct = backbone_tap_channels(config.target_arch);
    for (int k = 0; k < 3; ++k) {
      const auto side = source->tap_size(k, config.image_size);
      per_image += (cs[k] + ct[k]) * side * side * 4;
    }
  }
  opts.half_cache = per_image * static_cast<int64_t>(train.size()) > (int64_t{4} << 30);
  double pe_auto_seconds = 0;
  if (pe_auto && !args.has("resume")) {
    // Probe images: a fifth of the source images, never the tiles of one image on both sides.
    size_t n_src = 0;
    const auto src_group = source_groups(train, groups, &n_src);
    if (n_src < 2)
      throw cli::UsageError(groups.empty() ? "--pe auto needs at least 2 source images to hold some out"
                                           : "--pe auto needs at least 2 groups (--groups) to hold some out");
    const auto src_order = shuffled_groups(n_src, opts.seed + 2);
    // At least 2 held-out units where 4 or more exist: one gives no standard error.
    const size_t n_probe = std::clamp<size_t>(static_cast<size_t>(std::llround(0.2 * static_cast<double>(n_src))),
                                              n_src >= 4 ? 2 : 1, n_src - 1);
    std::vector<bool> is_probe(n_src, false);
    for (size_t r = 0; r < n_probe; ++r) is_probe[src_order[r]] = true;
    std::vector<Sample> fit, probe;
    std::vector<size_t> probe_unit;
    for (size_t i = 0; i < train.size(); ++i) {
      (is_probe[src_group[i]] ? probe : fit).push_back(train[i]);
      if (is_probe[src_group[i]]) probe_unit.push_back(src_group[i]);
    }
    const int64_t search_epochs = std::max<int64_t>(1, (epochs + 2) / 3);
    std::cout << "pe auto: add, none and concat each trained " << search_epochs << " epochs on " << fit.size()
              << " images, scored on " << probe.size() << " held-out images, a synthetic defect in each and a "
              << "misaligned copy of each\n";
    const auto t_auto = Clock::now();
    auto trials = compare_pe(fit, probe, config, src_weights, tgt_weights, opts, search_epochs, device);
    if (trials.empty()) {
      std::cout << "interrupted while choosing the position code; nothing written\n";
      return 130;
    }
    pe_auto_seconds = seconds_since(t_auto);
    std::vector<std::string> probe_kinds;
    for (size_t i = 0; i < probe.size(); ++i) probe_kinds.push_back(to_string(probe_kind(i)));
    config.pe = choose_pe(trials, probe_unit, probe_kinds);
    cli::Json evidence = {{"choice", to_string(config.pe)}, {"probe_images", probe.size()}, {"fit_images", fit.size()},
                          {"probe_units", std::set<size_t>(probe_unit.begin(), probe_unit.end()).size()},
                          {"epochs", search_epochs}, {"seconds", pe_auto_seconds},
                          {"features_extracted_by", to_string(trials.front().pe)},  // in its train_seconds
                          {"criterion", "none unless add or concat gains pixel AUROC over none on the synthetic "
                                        "defects (each against its image's and its misaligned copy's normal "
                                        "pixels; averaged per source image or group) by more than 2 standard "
                                        "errors and pools no worse (mean of pixel AUROC and AUPRO); then the "
                                        "larger gain"}};
    for (const auto& t : trials) {
      cli::Json by_kind = cli::Json::object();
      for (const auto& [kind, g] : t.gain_by_kind) by_kind[kind] = {{"gain", g.first}, {"images", g.second}};
      evidence["trials"].push_back({{"pe", to_string(t.pe)}, {"pixel_auroc", t.pixel_auroc}, {"aupro", t.aupro},
                                    {"gain_over_none", t.gain}, {"gain_se", t.gain_se}, {"eligible", t.eligible},
                                    {"gain_by_kind", by_kind}, {"seconds", t.seconds},
                                    {"train_seconds", t.train_seconds}, {"score_seconds", t.score_seconds}});
    }
    // Each probe's own scores, so that the gains can be recomputed from the evidence.
    evidence["probes"] = cli::Json::array();
    for (size_t i = 0; i < probe.size(); ++i) {
      cli::Json auroc = cli::Json::object();
      for (const auto& t : trials) auroc[to_string(t.pe)] = i < t.per_image.size() ? t.per_image[i] : NAN;
      evidence["probes"].push_back({{"file", probe[i].path}, {"unit", probe_unit[i]}, {"kind", probe_kinds[i]},
                                    {"pixel_auroc", auroc}});
    }
    settings["pe_auto"] = to_string(config.pe);
    settings["pe_auto_evidence"] = pefm::json_text(evidence, -1);
    const auto precision = std::cout.precision();
    std::cout << "pe auto: chose " << to_string(config.pe) << " (pixel AUROC / AUPRO on synthetic defects";
    for (const auto& t : trials) {
      std::cout << "; " << to_string(t.pe) << " " << std::fixed << std::setprecision(2) << t.pixel_auroc * 100 << " / "
                << t.aupro * 100;
      if (t.pe != PeMode::kNone && std::isfinite(t.gain))
        std::cout << ", gain over none " << t.gain * 100 << " +- " << t.gain_se * 100 << (t.eligible ? "" : " (not taken)");
      else if (t.pe != PeMode::kNone)
        std::cout << ", no gain: fewer than 2 held-out " << (groups.empty() ? "images" : "groups") << " (not taken)";
      std::cout << std::defaultfloat;
    }
    std::cout << "; " << cli::format_duration(pe_auto_seconds) << ")\n";
    for (const auto& t : trials) {
      if (t.gain_by_kind.empty()) continue;
      std::cout << "pe auto: " << to_string(t.pe) << "'s gain over none by kind of defect:";
      for (const auto& [kind, g] : t.gain_by_kind)
        std::cout << " " << kind << " " << std::showpos << std::fixed << std::setprecision(2) << g.first * 100
                  << std::noshowpos << " (" << g.second << ")";
      std::cout << std::defaultfloat << "\n";
    }
    std::cout.precision(precision);
  }

  Model model;
  std::map<std::string, torch::Tensor> resume_state;
  if (args.has("resume")) {
    if (!std::filesystem::exists(ckpt_path)) {
      throw cli::UsageError("--resume: no checkpoint '" + ckpt_path + "' (it is removed once a run completes)");
    }
    auto ck = load_checkpoint(ckpt_path);
    const auto& c = ck.model.config;
    const bool ck_auto = !ck.model.training["pe_auto"].empty();
    if (pe_auto != ck_auto) {
      throw cli::UsageError("--resume: '" + ckpt_path + "' was made with --pe " + (ck_auto ? "auto" : to_string(c.pe)) +
                            ", this run has --pe " + args.get("pe"));
    }
    if (ck_auto) {  // the choice the interrupted run made stands, with its evidence
      config.pe = c.pe;
      for (const char* key : {"pe_auto", "pe_auto_evidence"}) settings[key] = ck.model.training[key];
    }
    const auto latent = [](const ModelConfig& m) {
      return std::to_string(m.latent[0]) + "," + std::to_string(m.latent[1]) + "," + std::to_string(m.latent[2]);
    };
    std::string differs;
    const auto compare = [&](const char* name, const std::string& was, const std::string& now) {
      if (was != now) differs += std::string(differs.empty() ? "" : ", ") + name + " " + was + " (this run: " + now + ")";
    };
    compare("source", c.source_arch, config.source_arch);
    compare("target", c.target_arch, config.target_arch);
    compare("image-size", std::to_string(c.image_size), std::to_string(config.image_size));
    compare("latent", latent(c), latent(config));
    compare("pe", to_string(c.pe), to_string(config.pe));
    compare("fusion", to_string(c.fusion), to_string(config.fusion));
    compare("resize", to_string(c.resize), to_string(config.resize));
    if (!differs.empty()) {
      throw cli::UsageError("--resume: '" + ckpt_path + "' was made with another model configuration: " + differs);
    }
    for (const char* key : {"data", "source_weights", "target_weights", "batch_size", "lr", "weight_decay", "seed",
                            "val_fraction", "train_images", "tile", "folds", "groups", "false_alarm_rate"}) {
      const auto was = ck.model.training.find(key);
      if (!same_setting(key, was == ck.model.training.end() ? std::string() : was->second, settings[key])) {
        throw cli::UsageError(std::string("--resume: '") + ckpt_path + "' was made with " + key + "=" +
                              ck.model.training[key] + ", this run has " + settings[key]);
      }
    }
    // The fold models train --epochs epochs: a shipped model with more would not be the
    // model their scores calibrate.
    const auto done = ck.trainer_state.find("epochs_done");
    const int64_t held = done == ck.trainer_state.end() || done->second.numel() != 1 ? 0 : done->second.item<int64_t>();
    if (held > epochs) {
      throw cli::UsageError("--resume: '" + ckpt_path + "' holds " + std::to_string(held) + " trained epochs, this run " +
                            "asks for --epochs " + std::to_string(epochs) + ": the model would have more epochs than " +
                            "the fold models that set its threshold; use --epochs " + std::to_string(held) +
                            " or more, or start over without --resume");
    }
    model = std::move(ck.model);
    resume_state = std::move(ck.trainer_state);
  } else {
    if (std::filesystem::exists(ckpt_path)) {
      std::cout << "note: starting over; '" << ckpt_path << "' from an interrupted run will be replaced (use --resume to continue it)\n";
    }
    torch::manual_seed(opts.seed);
    model = Model::create(config, src_weights, tgt_weights);
  }
  model.training = settings;
  model.training["epochs"] = std::to_string(epochs);

  const auto t_features = Clock::now();
  double train_seconds = 0, feature_seconds = 0;
  EpochResult last;
  {
    Trainer trainer(model, opts, device);
    if (!resume_state.empty()) {
      try {
        trainer.restore(resume_state);
      } catch (const std::exception& e) {
        const std::string why = e.what();
        throw std::runtime_error("--resume: checkpoint '" + ckpt_path + "' is unusable: " + why.substr(0, why.find('\n')));
      }
    }
    const int64_t first_epoch = trainer.epochs_done();
    if (first_epoch >= epochs) {
      std::cout << "checkpoint already holds " << first_epoch << " epochs\n";
    }
    cli::Progress fp("features", static_cast<int64_t>(first_epoch < epochs ? train.size() : 0), tty);
    for (size_t i = 0; i < train.size() && first_epoch < epochs && !cli::stop_requested(); i += 32) {
      const size_t end = std::min(train.size(), i + 32);
      trainer.add_images(preprocess_batch(train, i, end, config));
      fp.update(static_cast<int64_t>(end));
    }
    fp.finish(cli::format_bytes(static_cast<uint64_t>(per_image * train.size() / (opts.half_cache ? 2 : 1))) +
              (opts.half_cache ? " cached (fp16)" : " cached"));
    feature_seconds = seconds_since(t_features);

    const auto t_train = Clock::now();
    for (int64_t epoch = first_epoch + 1; epoch <= epochs && !cli::stop_requested(); ++epoch) {
      const auto t_epoch = Clock::now();
      const double per_epoch = epoch > first_epoch + 1 ? seconds_since(t_train) / (epoch - first_epoch - 1) : NAN;
      std::optional<cli::Progress> bar;
      const auto result = trainer.train_epoch([&](int64_t done, int64_t total) {
        if (!bar) bar.emplace("epoch " + std::to_string(epoch) + "/" + std::to_string(epochs), total, tty);
        bar->update(done, "overall ETA " + cli::format_duration(per_epoch * (epochs - epoch + 1)));
        return !cli::stop_requested();
      });
      if (!result.completed) break;
      last = result;
      save_checkpoint(model, trainer.state(), ckpt_path);
      const double done_s = seconds_since(t_train);
      std::cerr << (tty ? "\r\033[K" : "") << "epoch " << epoch << "/" << epochs << "  " << losses(result) << "  "
                << cli::format_duration(seconds_since(t_epoch)) << "  elapsed " << cli::format_duration(done_s)
                << "  ETA " << cli::format_duration(done_s / (epoch - first_epoch) * (epochs - epoch)) << std::endl;
    }
    train_seconds = seconds_since(t_train);
    if (cli::stop_requested()) {
      std::cout << "\ninterrupted: no model written; '" << ckpt_path << "' holds epoch " << trainer.epochs_done()
                << " of " << epochs << "; run the same command with --resume to continue\n";
      return 130;
    }
  }

  auto shared = std::make_shared<Model>(std::move(model));
  // Each calibration image's score and the fold that held it out (the training-set audit).
  std::map<std::string, double> image_scores;
  std::map<std::string, int> fold_of_image;
  const char* scored_by = folds > 0 ? "out-of-fold" : val.empty() ? "in-sample" : "held-out";
  if (folds > 0) {
    // Cross-fitted scores of every image; the threshold is their conformal quantile.
    std::vector<torch::Tensor> maps;
    if (!cross_fit(train, groups, folds, config, src_weights, tgt_weights, opts, epochs, device, &maps, &image_scores,
                   &fold_of_image)) {
      std::cout << "\ninterrupted during cross-fitting: no model written; '" << ckpt_path
                << "' holds the trained model; run the same command with --resume to calibrate and save\n";
      return 130;
    }
    std::vector<double> scores;
    std::vector<std::string> keys;
    for (const auto& [key, v] : image_scores) {
      scores.push_back(v);
      keys.push_back(key);
    }
    std::vector<int64_t> score_group;  // with --groups: each score's group
    if (!groups.empty()) {
      size_t n_score_groups = 0;
      for (size_t g : number_units(keys, groups, &n_score_groups)) score_group.push_back(static_cast<int64_t>(g));
    }
    const auto score_t = torch::tensor(scores, torch::kFloat64);
    const auto normal_maps = torch::cat(maps);
    shared->calibration = Calibration::from_normal(normal_maps, score_t);
    shared->calibration.set_false_alarm_threshold(scores, false_alarm_rate, folds, score_group);
    shared->calibration.set_region_threshold(normal_maps, scores, pixel_rate);
  } else {
    // Calibration on the held-out normal images (or, without any, the training images).
    const auto& calib = val.empty() ? train : val;
    if (val.empty()) std::cout << "warning: no held-out images (--val-fraction 0); calibrating on training images, thresholds will be optimistic\n";
    std::vector<torch::Tensor> maps;
    score_samples(shared, device.str(), calib, map_stride_for(calib.size()), &maps, &image_scores);
    if (cli::stop_requested()) {
      std::cout << "interrupted: no model written; rerun with --resume to calibrate and save\n";
      return 130;
    }
    std::vector<double> scores;
    for (const auto& [path, v] : image_scores) scores.push_back(v);
    if (scores.size() < 2)
      std::cout << "WARNING: the threshold rests on " << scores.size() << " image: mean + 3 std has no spread; hold out "
                << "more images (--val-fraction) or cross-fit (--folds)\n";
    const auto normal_maps = torch::cat(maps);
    shared->calibration = Calibration::from_normal(normal_maps, torch::tensor(scores, torch::kFloat64));
    shared->calibration.set_region_threshold(normal_maps, scores, pixel_rate);
  }
  std::map<std::string, std::string> path_of;  // source_key -> the path as found in --data
  for (const auto* set : {&train, &val}) {
    for (const auto& sample : *set) path_of.emplace(source_key(sample.path), sample.path);
  }
  const auto audit = audit_rows(image_scores, fold_of_image, path_of, groups);
  shared->training["train_audit"] = pefm::json_text(audit_record(audit, scored_by), -1);
  try {  // what the model file reader will check, checked before the file exists
    shared->calibration.validate();
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(std::string("the calibration this run made would be refused when loaded (") + e.what() +
                             "): no model written; please report this with the command");
  }
  save_model(*shared, output);
  std::filesystem::remove(ckpt_path);
  if (args.has("train-scores")) write_train_scores(args.get("train-scores"), audit, scored_by, shared->calibration);

  const auto& cal = shared->calibration;
  std::cout << "\nsummary\n"
            << "  images       " << train.size() << " train, " << val.size() << " held out, " << skipped << " skipped"
            << (folds > 0 ? ", " + std::to_string(folds) + " cross-fitting folds" : std::string()) << "\n"
            << "  features     " << cli::format_duration(feature_seconds) << "\n"
            << "  training     " << cli::format_duration(train_seconds) << " (" << epochs << " epochs)";
  if (last.epoch > 0) std::cout << ", final " << losses(last);
  if (pe_auto)
    std::cout << "\n  pe           " << to_string(config.pe) << " (auto"
              << (pe_auto_seconds > 0 ? ", chosen in " + cli::format_duration(pe_auto_seconds) : std::string(", from the checkpoint"))
              << ")";
  if (cal.method == "conformal") {
    const bool grouped = !groups.empty();
    std::cout << "\n  threshold    " << cal.threshold << " (raw): a new normal image" << (grouped ? " of a new group" : "")
              << " exceeds it with probability <= " << percent(cal.false_alarm_bound) << " (asked: "
              << percent(cal.false_alarm_target) << "; conformal, " << cal.images << " images"
              << (grouped ? " in " + std::to_string(cal.groups) + " groups," : "") << " each scored by a model of "
              << cal.folds << " folds that did not train on " << (grouped ? "its group" : "it") << ")\n";
    if (cal.false_alarm_bound > cal.false_alarm_target + 1e-12) {
      const char* unit = grouped ? " groups" : " images";
      std::cout << "  WARNING      too few" << unit << " for " << percent(cal.false_alarm_target) << ": " << cal.groups
                << unit << " support " << percent(cal.false_alarm_bound) << " at best (" << (grouped ? "1/(m+1)" : "1/(n+1)")
                << "); "
                << static_cast<int64_t>(std::ceil(1.0 / cal.false_alarm_target - 1.0)) << " are needed\n";
    }
    std::cout << "  confidence   with 95 % probability over these calibration " << (grouped ? "groups" : "images")
              << " the rate is <= " << percent(cal.false_alarm_upper95) << (grouped ? " (approximate)" : "") << "\n"
              << "               (both hold for scores of the fold models; the shipped model, trained on all images,\n"
              << "               may score new normal images differently: pefm-eval measures the rate on good test images)\n";
  } else {
    std::cout << "\n  calibration  threshold " << cal.threshold << " (raw), mean + 3 std of " << cal.images
              << (val.empty() ? " training" : " held-out") << " images, no stated false-alarm rate (--folds 0); above it: "
              << cal.val_false_positive_rate * 100 << " % of them\n";
  }
  std::cout << "  regions      threshold " << cal.region_threshold << " (raw): " << small_percent(cal.region_rate)
            << " of " << cal.region_pixels << " normal pixels at or above it (asked: " << small_percent(cal.region_rate_target)
            << "); " << percent(cal.region_image_rate) << " of the " << cal.images
            << " normal images hold a region\n"
            << "               (pefmfilter region-threshold 0.5; lower outlines more of a defect and of the surface)\n";
  if (cal.region_threshold > 2 * cal.threshold - cal.base) {
    std::cout << "  WARNING      the region threshold lies above the top of the heat map's scale (normalised 1, raw "
              << 2 * cal.threshold - cal.base << "): regions are cut there, outlining more than the asked rate\n";
  }
  if (cal.region_rate_target * static_cast<double>(cal.region_pixels + 1) < 1.0) {
    std::cout << "  WARNING      too few normal pixels for " << small_percent(cal.region_rate_target) << ": "
              << cal.region_pixels << " support " << small_percent(1.0 / static_cast<double>(cal.region_pixels + 1))
              << " at best; the region threshold is the largest normal pixel score\n";
  }
  print_audit(audit, scored_by, shared->calibration);
  std::cout
            << "  output       " << output << " (" << cli::format_bytes(std::filesystem::file_size(output)) << ")\n"
            << "  total        " << cli::format_duration(seconds_since(t_start)) << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return pefm::cli::run_main("pefm-train", run, argc, argv); }
