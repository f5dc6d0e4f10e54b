// pefm-train: trains a PEFM model from folders of normal images. The recipe is the
// library's (pefm/train_recipe.h); this file reads the command, decodes the images, and
// writes and reports what the recipe made.
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <optional>
#include <sstream>

#include <torch/torch.h>

#include "cli.h"
#include "pefm-config.h"
#include "pefm/backbone.h"
#include "pefm/device.h"
#include "pefm/file_util.h"
#include "pefm/groups.h"
#include "pefm/model_file.h"
#include "pefm/tiling.h"
#include "pefm/train_recipe.h"
#include "pefm/units.h"
#include "pefm/weights.h"

namespace {

using namespace pefm;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::vector<TrainImage> load_images(const std::vector<std::string>& dirs, int bit_depth, int64_t* skipped) {
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
  std::vector<TrainImage> samples;
  const bool tty = cli::stderr_is_tty();
  cli::Progress progress("decoding", static_cast<int64_t>(files.size()), tty);
  for (size_t i = 0; i < files.size() && !cli::stop_requested(); ++i) {
    try {
      samples.push_back({files[i], cli::to_tensor(io::read_image(files[i], io::PixelFormat::kRgb, bit_depth))});
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

// The recipe's progress as pefm-train shows it: notes on stdout, bars and finished steps
// on stderr, Ctrl-C as the stop.
class CliObserver : public TrainObserver {
 public:
  void note(const std::string& line) override { std::cout << line << "\n"; }
  void step(const std::string& line) override { std::cerr << (tty_ ? "\r\033[K" : "") << line << std::endl; }
  void started(const std::string& stage, int64_t total) override {
    bar_.emplace(stage, total, tty_);
    stage_ = stage;
  }
  void progress(const std::string& stage, int64_t done, const std::string& detail) override {
    if (bar_ && stage == stage_) bar_->update(done, detail);
  }
  void finished(const std::string& stage, const std::string& summary) override {
    if (bar_ && stage == stage_) bar_->finish(summary);
    bar_.reset();
  }
  bool stop_requested() override { return cli::stop_requested(); }

 private:
  const bool tty_ = cli::stderr_is_tty();
  std::optional<cli::Progress> bar_;
  std::string stage_;
};

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
                << (cal.anomalous(r.score) ? ", at or above the threshold" : "") << ")";
    }
    if (r.fold > 0) std::cout << "  fold " << r.fold;
    if (!r.group.empty()) std::cout << "  group " << r.group;
    std::cout << "\n";
  }
  std::cout << "               check these are really good parts: a defective one in the good folders raises the "
               "threshold\n";
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
  args.option("bit-depth", "N", "16-bit gray images: significant bits (12 for a 12-bit camera); as pefmfilter bit-depth maps GRAY16_LE", "16");
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

  // Parsed straight into what the recipe takes.
  TrainRequest request;
  ModelConfig& config = request.config;
  TrainOptions& opts = request.options;
  auto [src_arch, src_weights] = cli::split_arch(args.get("source"));
  auto [tgt_arch, tgt_weights] = cli::split_arch(args.get("target"));
  config.source_arch = src_arch;
  config.target_arch = tgt_arch;
  config.image_size = args.integer("image-size", 32, kMaxImageSize);
  config.latent = cli::parse_widths(args.get("latent"), "--latent");
  const bool pe_auto = request.pe_auto = args.get("pe") == "auto";
  try {
    config.pe = pe_auto ? PeMode::kAdd : parse_pe_mode(args.get("pe"), "--pe");
    config.fusion = parse_fusion(args.get("fusion"), "--fusion");
    config.resize = parse_resize(args.get("resize"), "--resize");
    config.validate();
  } catch (const std::invalid_argument& e) {
    const std::string why = e.what();
    throw cli::UsageError(why.find("--pe") != std::string::npos ? why + " (or auto)" : why);
  }
  request.epochs = args.integer("epochs", 1, 100000);
  opts.batch_size = args.integer("batch-size", 1, 65536);
  opts.lr = args.number("lr", 1e-12, 10.0);
  opts.weight_decay = args.number("weight-decay", 0.0, 1.0);
  opts.seed = static_cast<uint64_t>(args.integer("seed", 0, INT64_MAX));
  const int folds = request.folds = static_cast<int>(args.integer("folds", 0, 100));
  if (folds == 1) throw cli::UsageError("--folds 1 cannot cross-fit: use 2 or more, or 0 for a hold-out");
  request.false_alarm_rate = args.number("false-alarm-rate", 1e-6, 0.5);
  request.pixel_false_alarm_rate = args.number("pixel-false-alarm-rate", 1e-6, 0.5);
  if (folds > 0 && args.has("val-fraction"))
    throw cli::UsageError("--val-fraction applies with --folds 0 only (cross-fitting trains on every image)");
  request.val_fraction = folds > 0 ? 0.0 : args.number("val-fraction", 0.0, 0.9);
  use_cpu_threads(static_cast<int>(args.integer("threads", 0, 1024)));
  const std::string output = args.get("output");
  const std::string& ckpt_path = request.checkpoint = output + ".ckpt";
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
  torch::Device& device = request.device;
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
  const auto t_start = Clock::now();
  const int tile = request.tile = static_cast<int>(args.integer("tile", 0, 65536));
  if (tile > 0 && tile < kMinTileSize) {
    throw cli::UsageError("--tile " + std::to_string(tile) + " is below the minimum of " + std::to_string(kMinTileSize) +
                          " pixels (pefmfilter refuses smaller tiles)");
  }
  std::cout << "pefm-train " PEFM_VERSION ": " << src_arch << " -> " << tgt_arch << ", " << config.image_size
            << " px, latent " << config.latent[0] << "," << config.latent[1] << "," << config.latent[2] << ", pe "
            << (pe_auto ? std::string("auto") : to_string(config.pe)) << ", " << to_string(config.resize) << " resize, on " << device_name(device) << "\n";

  int64_t skipped = 0;
  request.groups = args.has("groups") ? read_groups(args.get("groups")) : Groups{};
  auto images = load_images(args.all("data"), static_cast<int>(args.integer("bit-depth", 8, 16)), &skipped);
  if (cli::stop_requested()) {
    std::cout << "interrupted before training; nothing written\n";
    return 130;
  }
  request.source_weights = src_weights;
  request.target_weights = tgt_weights;
  request.resume = args.has("resume");
  std::string data;
  for (const auto& dir : args.all("data")) data += (data.empty() ? "" : ":") + dir;
  request.recorded = {{"data", data}, {"lr", args.get("lr")}, {"weight_decay", args.get("weight-decay")},
                      {"val_fraction", args.get("val-fraction")}, {"skipped_images", std::to_string(skipped)},
                      {"groups_file", args.has("groups") ? args.get("groups") : ""},
                      {"false_alarm_rate", args.get("false-alarm-rate")},
                      {"pixel_false_alarm_rate", args.get("pixel-false-alarm-rate")}};
  const bool grouped = !request.groups.empty();
  CliObserver observer;
  TrainOutcome out;
  try {
    out = train_recipe(std::move(images), request, observer);  // a copy: ckpt_path and the rest refer into it
  } catch (const TrainSettingsError& e) {
    throw cli::UsageError(e.what());
  }
  if (!out.stopped.empty()) {
    std::cout << out.stopped << "\n";
    return 130;
  }
  save_model(*out.model, output);
  std::filesystem::remove(ckpt_path);
  if (args.has("train-scores"))
    write_train_scores(args.get("train-scores"), out.audit, out.scored_by, out.model->calibration);

  const auto& cal = out.model->calibration;
  std::cout << "\nsummary\n"
            << "  images       " << out.train_images << " train, " << out.val_images << " held out, " << skipped << " skipped"
            << (folds > 0 ? ", " + std::to_string(folds) + " cross-fitting folds" : std::string()) << "\n"
            << "  features     " << cli::format_duration(out.feature_seconds) << "\n"
            << "  training     " << cli::format_duration(out.train_seconds) << " (" << request.epochs << " epochs)";
  if (out.last.epoch > 0) std::cout << ", final " << loss_text(out.last);
  if (pe_auto)
    std::cout << "\n  pe           " << to_string(out.model->config.pe) << " (auto"
              << (out.pe_auto_seconds > 0 ? ", chosen in " + cli::format_duration(out.pe_auto_seconds) : std::string(", from the checkpoint"))
              << ")";
  if (cal.method == "conformal") {
        std::cout << "\n  threshold    " << cal.threshold << " (raw): a new normal image" << (grouped ? " of a new group" : "")
              << " exceeds it with probability <= " << format_percent(cal.false_alarm_bound) << " (asked: "
              << format_percent(cal.false_alarm_target) << "; conformal, " << cal.images << " images"
              << (grouped ? " in " + std::to_string(cal.groups) + " groups," : "") << " each scored by a model of "
              << cal.folds << " folds that did not train on " << (grouped ? "its group" : "it") << ")\n";
    if (cal.false_alarm_bound > cal.false_alarm_target + 1e-12) {
      const char* unit = grouped ? " groups" : " images";
      std::cout << "  WARNING      too few" << unit << " for " << format_percent(cal.false_alarm_target) << ": " << cal.groups
                << unit << " support " << format_percent(cal.false_alarm_bound) << " at best (" << (grouped ? "1/(m+1)" : "1/(n+1)")
                << "); "
                << static_cast<int64_t>(std::ceil(1.0 / cal.false_alarm_target - 1.0)) << " are needed\n";
    }
    std::cout << "  confidence   with 95 % probability over these calibration " << (grouped ? "groups" : "images")
              << " the rate is <= " << format_percent(cal.false_alarm_upper95) << (grouped ? " (approximate)" : "") << "\n"
              << "               (both hold for scores of the fold models; the shipped model, trained on all images,\n"
              << "               may score new normal images differently: pefm-eval measures the rate on good test images)\n";
  } else {
    std::cout << "\n  calibration  threshold " << cal.threshold << " (raw), mean + 3 std of " << cal.images
              << (out.val_images == 0 ? " training" : " held-out") << " images, no stated false-alarm rate (--folds 0); above it: "
              << cal.val_false_positive_rate * 100 << " % of them\n";
  }
  std::cout << "  regions      threshold " << cal.region_threshold << " (raw): " << small_percent(cal.region_rate)
            << " of " << cal.region_pixels << " normal pixels at or above it (asked: " << small_percent(cal.region_rate_target)
            << "); " << format_percent(cal.region_image_rate) << " of the " << cal.images
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
  print_audit(out.audit, out.scored_by, cal);
  std::cout
            << "  output       " << output << " (" << cli::format_bytes(std::filesystem::file_size(output)) << ")\n"
            << "  total        " << cli::format_duration(seconds_since(t_start)) << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return pefm::cli::run_main("pefm-train", run, argc, argv); }
