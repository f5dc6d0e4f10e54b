// pefm-eval: scores a model on an MVTec-AD-layout test set, as the PEFM authors do.
#include <chrono>
#include <ctime>
#include <cmath>
#include <filesystem>
#include <functional>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>

#include <torch/torch.h>

#include "cli.h"
#include "pefm-config.h"
#include "pefm/calibration_maps.h"
#include "pefm/detector.h"
#include "pefm/device.h"
#include "pefm/file_util.h"
#include "pefm/frame_batch.h"
#include "pefm/metrics.h"
#include "pefm/model_file.h"
#include "pefm/postprocess.h"
#include "render.h"
#include "report.h"

namespace {

using namespace pefm;
namespace fs = std::filesystem;

struct TestImage {
  std::string path, type, mask_path;
  bool defective = false;
};

struct Scores {
  double image_auroc = NAN, pixel_auroc = NAN, aupro = NAN;
  int64_t images = 0;
  ProCurve pro;  // overall only, for --report
};

// Masks are read from ground_truth/ when the folder exists (then every defective image needs
// one); without it the test set is scored on image decisions only.
std::vector<TestImage> discover(const std::string& root, bool with_masks) {
  const fs::path test = fs::path(root) / "test";
  if (!fs::is_directory(test)) throw cli::UsageError("--data '" + root + "' has no test/ folder (MVTec AD layout expected)");
  std::vector<std::string> types;
  for (const auto& e : fs::directory_iterator(test)) {
    if (e.is_directory()) types.push_back(e.path().filename().string());
  }
  std::sort(types.begin(), types.end());
  std::vector<TestImage> out;
  for (const auto& type : types) {
    for (const auto& path : io::list_images((test / type).string())) {
      TestImage t{path, type, "", type != "good"};
      if (t.defective && with_masks) {
        t.mask_path = (fs::path(root) / "ground_truth" / type / (fs::path(path).stem().string() + "_mask.png")).string();
        if (!fs::exists(t.mask_path)) {
          throw cli::UsageError("no ground-truth mask '" + t.mask_path + "' for '" + path + "'");
        }
      }
      out.push_back(t);
    }
  }
  if (out.empty()) throw cli::UsageError("--data '" + root + "' has no test images under test/<type>/");
  bool has_good = false, has_defect = false;
  for (const auto& t : out) (t.defective ? has_defect : has_good) = true;
  if (!has_good || !has_defect) throw cli::UsageError("--data '" + root + "' needs both test/good and defect folders");
  return out;
}

std::string pct(double v) {
  if (std::isnan(v)) return "    n/a";
  std::ostringstream o;
  o << std::fixed << std::setprecision(2) << std::setw(7) << v * 100;
  return o.str();
}

Scores score(const torch::Tensor& maps, const torch::Tensor& image_scores, const torch::Tensor& masks,
             const torch::Tensor& labels, bool with_masks, ProRegions regions, bool keep_curve = false) {
  Scores s;
  s.images = labels.numel();
  s.image_auroc = auroc(image_scores, labels);
  if (with_masks) {
    s.pixel_auroc = auroc(maps, masks);
    auto curve = pro_curve(maps, masks, 1000, regions);
    s.aupro = aupro(curve);
    if (keep_curve) s.pro = std::move(curve);
  }
  return s;
}

// The worst cases for --report: the defective images not `called` anomalous, lowest first,
// or when none is, the lowest-scoring defective ones; and the good images called anomalous,
// highest first, or the highest-scoring good ones.
std::vector<size_t> worst(const std::vector<double>& raw, const std::vector<int>& labels, int label,
                          const std::function<bool(double)>& called, size_t count, bool* beyond) {
  std::vector<size_t> idx;
  for (size_t i = 0; i < raw.size(); ++i)
    if (labels[i] == label) idx.push_back(i);
  // defective: ascending scores; good: descending
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return label ? raw[a] < raw[b] : raw[a] > raw[b]; });
  size_t wrong = 0;
  while (wrong < idx.size() && called(raw[idx[wrong]]) != (label == 1)) ++wrong;
  *beyond = wrong > 0;
  idx.resize(std::min(count, wrong > 0 ? wrong : idx.size()));
  return idx;
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::ostringstream o;
  o << std::put_time(&tm, "%Y-%m-%d %H:%M UTC");
  return o.str();
}

// A value for the JSON report: NaN (undefined for this test set) is written as null.
cli::Json decisions_json(const Decisions& d, const Calibration& cal) {
  return {{"threshold", cal.normalize(d.threshold)},
          {"raw_threshold", d.threshold},
          {"false_alarm_rate", d.false_alarm_rate()},
          {"miss_rate", d.miss_rate()},
          {"precision", d.precision()},
          {"recall", d.recall()},
          {"f1", d.f1()},
          {"false_alarms", d.false_positives},
          {"misses", d.false_negatives},
          {"good_images", d.false_positives + d.true_negatives},
          {"defective_images", d.true_positives + d.false_negatives}};
}

// The regions at the region threshold; pixel figures null without masks.
cli::Json region_json(const RegionDecisions& r, double setting, const Calibration& cal, bool with_masks) {
  const auto pixel = [&](double v) { return with_masks ? cli::Json(v) : cli::Json(nullptr); };
  const bool stated = std::isfinite(cal.region_rate_target);
  return {{"region_threshold", setting},
          {"raw_threshold", r.level},
          {"good_images_with_regions", r.good_images_with_regions},
          {"good_pixel_rate", r.good_pixel_rate},
          {"pixel_false_alarm_rate", pixel(r.pixel_false_alarm_rate)},
          {"pixel_recall", pixel(r.pixel_recall)},
          {"region_overlap", pixel(r.region_overlap)},
          {"defects_touched", pixel(r.defects_touched)},
          {"defect_regions", with_masks ? cli::Json(r.defect_regions) : cli::Json(nullptr)},
          {"asked_pixel_false_alarm_rate", stated ? cli::Json(cal.region_rate_target) : cli::Json(nullptr)},
          {"calibration_pixel_rate", stated ? cli::Json(cal.region_rate) : cli::Json(nullptr)},
          {"calibration_images_with_regions", stated ? cli::Json(cal.region_image_rate) : cli::Json(nullptr)}};
}

// A rate in percent inside a sentence: two decimals, or three significant digits below
// 0.1 % (pixel rates); "n/a" for NaN.
std::string rate_text(double v) {
  if (std::isnan(v)) return "n/a";
  std::ostringstream p;
  if (v != 0.0 && std::abs(v) < 1e-3)
    p << std::setprecision(3) << v * 100;
  else
    p << std::fixed << std::setprecision(2) << v * 100;
  return p.str();
}

std::string decisions_line(const Decisions& d) {
  const auto pct = rate_text;
  std::ostringstream o;
  o << "false alarms " << d.false_positives << "/" << d.false_positives + d.true_negatives << " ("
    << pct(d.false_alarm_rate()) << " %), misses " << d.false_negatives << "/" << d.true_positives + d.false_negatives
    << " (" << pct(d.miss_rate()) << " %), precision " << pct(d.precision()) << ", recall " << pct(d.recall())
    << ", F1 " << pct(d.f1());
  return o.str();
}

int run(int argc, char** argv) {
  cli::Args args("pefm-eval", "--model MODEL.pt --data CATEGORY_DIR [options]",
                 "Evaluates a model on an MVTec-AD-layout category: test/<type>/*.png, with\n"
                 "ground_truth/<type>/<name>_mask.png for every defect type and test/good/ without\n"
                 "(masks: nonzero pixels are the defect, 0/255 or 0/1 alike; more grey levels are refused).\n"
                 "Image AUROC, pixel AUROC and AUPRO (1000 thresholds, FPR <= 0.3, rescaled FPR,\n"
                 "8-connected regions) overall and per defect type (that type + good); the image\n"
                 "decisions at the model's own threshold (false-alarm and miss rates, precision,\n"
                 "recall, F1) and at the best-F1 threshold. Without a ground_truth/ folder: image\n"
                 "metrics only (pixel metrics reported as absent).");
  args.option("model", "MODEL.pt", "model file from pefm-train", "", true);
  args.option("data", "CATEGORY_DIR", "category folder in MVTec AD layout", "", true);
  args.option("device", "DEV", "auto, cpu, cuda or cuda:N", "auto");
  args.option("precision", "P", "fp32; fp16 on CUDA; bf16 on CPU or CUDA", "fp32");
  args.option("batch-size", "N", "images per forward pass", "16");
  args.option("json", "REPORT.json", "write the results as JSON (fractions in [0, 1]); - for stdout");
  args.option("save-maps", "DIR", "write image | ground truth | heat map PNGs per test image");
  args.option("heat-maps", "DIR", "write each test image's heat map as pefmfilter's meta holds it (float32 .npy "
              "of the map's height x width; normalised for a calibrated model, raw otherwise)");
  args.option("tile-size", "N", "as pefmfilter tile-size: -1 as the model was trained, 0 whole images resized, "
              "N tiles of N native pixels", "-1");
  args.option("tile-overlap", "N", "as pefmfilter tile-overlap: pixels shared by neighbouring tiles", "0");
  args.option("scores", "FILE", "write each image's score and decision: CSV for FILE.csv, else JSON lines");
  args.option("report", "FILE.html", "write one self-contained HTML page: curves, score histograms, per-type table, "
              "worst misses and false alarms with their heat maps");
  args.option("pro-regions", "MODE", "AUPRO overlap: filled (each region's filled image, as the PEFM authors count) "
              "or exact (the region's own pixels, as MVTec's evaluator)", "filled");
  args.option("region-threshold", "R", "where regions are cut, as pefmfilter region-threshold (normalised; 0.5 = the "
              "model's calibrated pixel threshold): their false alarms and overlap are reported", "0.5");
  args.option("bit-depth", "N", "16-bit gray images: significant bits, as pefm-train --bit-depth", "16");
  args.option("threads", "N", "CPU threads (0: every CPU this process may use)", "0");
  if (!args.parse(argc, argv)) return 0;
  cli::route_json_output(args.get("json"));
  use_cpu_threads(static_cast<int>(args.integer("threads", 0, 1024)));
  const auto batch = args.integer("batch-size", 1, 4096);
  const auto bit_depth = static_cast<int>(args.integer("bit-depth", 8, 16));
  const bool tty = cli::stderr_is_tty();
  const auto t0 = std::chrono::steady_clock::now();

  DetectorOptions dopts;
  dopts.device = args.get("device");
  try {
    dopts.precision = parse_precision(args.get("precision"), "--precision");
  } catch (const std::invalid_argument& e) {
    throw cli::UsageError(e.what());
  }
  // Outputs are checked before any work, so a typo (--json naming the model) loses nothing.
  cli::check_output_file("--json", args.get("json"), cli::OutputKind::kJson, {args.get("model")});
  cli::check_output_dir("--save-maps", args.get("save-maps"), {args.get("data")});
  cli::check_output_dir("--heat-maps", args.get("heat-maps"), {args.get("data")});
  cli::check_output_file("--scores", args.get("scores"), cli::OutputKind::kScores, {args.get("model")});
  cli::check_output_file("--report", args.get("report"), cli::OutputKind::kHtml, {args.get("model")});
  {
    // Two outputs on one path: the second would replace the first, after both said "wrote".
    std::map<std::string, std::string> taken;
    for (const char* option : {"json", "scores", "report"}) {
      const auto path = args.get(option);
      if (path.empty() || path == "-") continue;
      std::error_code ec;
      const auto key = fs::weakly_canonical(path, ec).string();
      const auto [it, fresh] = taken.emplace(ec ? path : key, option);
      if (!fresh)
        throw cli::UsageError(std::string("--") + option + " '" + path + "' is also --" + it->second +
                              "'s file: give each output a file of its own");
    }
  }
  const double region_setting = args.number("region-threshold", 0.0, 1.0);
  ProRegions pro_regions = ProRegions::kFilled;
  if (args.get("pro-regions") == "exact")
    pro_regions = ProRegions::kExact;
  else if (args.get("pro-regions") != "filled")
    throw cli::UsageError("--pro-regions '" + args.get("pro-regions") + "' is not one of: filled, exact");
  const TileOptions tiles{static_cast<int>(args.integer("tile-size", -1, 65536)),
                          static_cast<int>(args.integer("tile-overlap", 0, 65535))};
  // Every image goes the element's way (FrameDetector: tiling, blending, normalisation,
  // decision, regions), so what is measured here is what pefmfilter does with the model.
  // The detector owns the model, so only its folded inference copy stays in memory.
  FrameDetector detector(std::make_shared<Model>(load_model(args.get("model"))), dopts);
  const auto& cal = detector.calibration();
  const Thresholds thresholds{0.5, region_setting};
  // Pictures outline the regions the element would report: the region threshold on the
  // heat map's scale (uncalibrated maps, scaled to their own maximum: half of it).
  const double outline_level = cal.valid ? region_level(cal, thresholds) : 0.5;
  const auto heat_of = [&cal](const torch::Tensor& raw) {
    return cal.valid ? normalized_map(raw, cal) : raw / raw.max().clamp_min(1e-12);
  };
  const TileOptions used = detector.resolve(tiles);
  if (used.size > 0 && used.size < kMinTileSize)
    throw cli::UsageError("--tile-size " + std::to_string(used.size) + " is below the minimum of " +
                          std::to_string(kMinTileSize) + " pixels (0: whole images, -1: as the model was trained)");
  if (used.size > 0 && 2 * used.overlap > used.size)
    throw cli::UsageError("--tile-overlap " + std::to_string(used.overlap) + " must be at most half the tile size " +
                          std::to_string(used.size));
  const int64_t S = detector.input_size();
  const bool with_masks = fs::is_directory(fs::path(args.get("data")) / "ground_truth");
  const auto tests = discover(args.get("data"), with_masks);
  const std::string maps_dir = args.get("save-maps"), heat_dir = args.get("heat-maps");
  if (!maps_dir.empty()) fs::create_directories(maps_dir);
  if (!heat_dir.empty()) fs::create_directories(heat_dir);
  const std::string device = device_name(detector.detector().device());
  std::cout << "pefm-eval " PEFM_VERSION ": " << args.get("model") << " on " << args.get("data") << " ("
            << tests.size() << " test images, " << S << " px"
            << (used.size > 0 ? ", tiles of " + std::to_string(used.size) + " px" +
                                    (used.overlap > 0 ? " overlapping by " + std::to_string(used.overlap) : "")
                              : std::string())
            << ", " << device << ")\n";
  if (!with_masks) std::cout << "no ground_truth/ folder: image metrics only, pixel metrics absent\n";

  std::vector<torch::Tensor> all_maps, all_scores, all_masks;
  std::vector<int64_t> region_counts;
  std::vector<bool> called_anomalous;
  std::vector<int64_t> labels;
  std::vector<std::string> types, files;
  cli::Progress progress("evaluating", static_cast<int64_t>(tests.size()), tty);
  int64_t skipped = 0;  // unreadable test images, reported by name
  bool resized_for_metrics = false;
  for (size_t i = 0; i < tests.size(); i += static_cast<size_t>(batch)) {
    const size_t end = std::min(tests.size(), i + static_cast<size_t>(batch));
    std::vector<torch::Tensor> imgs, masks;
    std::vector<FrameView> frames;
    std::vector<size_t> kept;  // indices into tests of the images decoded in this batch
    for (size_t j = i; j < end; ++j) {
      torch::Tensor img, m;
      try {
        img = cli::to_tensor(io::read_image(tests[j].path, io::PixelFormat::kRgb, bit_depth)).contiguous();
        if (!tests[j].mask_path.empty()) m = cli::to_tensor(io::read_image(tests[j].mask_path, io::PixelFormat::kGray));
      } catch (const io::ImageError& e) {
        std::cerr << (tty ? "\r\033[K" : "") << "skipped: " << e.what() << "\n";
        ++skipped;
        continue;
      }
      const int w = static_cast<int>(img.size(1)), h = static_cast<int>(img.size(0));
      try {
        detector.check(tiles, w, h);
      } catch (const std::invalid_argument& e) {
        throw cli::UsageError("'" + tests[j].path + "' (" + std::to_string(w) + "x" + std::to_string(h) +
                              "): " + e.what());
      }
      FrameView frame;
      frame.format = FrameFormat::kRGB;
      frame.width = w;
      frame.height = h;
      frame.planes[0] = img.data_ptr<uint8_t>();
      frame.strides[0] = 3 * w;
      if (m.defined()) {
        if (m.size(0) != img.size(0) || m.size(1) != img.size(1)) {
          throw std::runtime_error("ground-truth mask '" + tests[j].mask_path + "' is " + std::to_string(m.size(1)) +
                                   "x" + std::to_string(m.size(0)) + " but its image '" + tests[j].path + "' is " +
                                   std::to_string(img.size(1)) + "x" + std::to_string(img.size(0)));
        }
        // Nonzero is defect, whatever the value (0/255 and 0/1 masks alike); more than one
        // nonzero level is no binary mask (an antialiased or a label image), so it is refused.
        const auto levels = torch::bincount(m.flatten().to(torch::kLong), {}, 256).slice(0, 1).gt(0).sum().item<int64_t>();
        if (levels > 1)
          throw cli::UsageError("ground-truth mask '" + tests[j].mask_path + "' is not binary: it holds " +
                                std::to_string(levels) + " nonzero grey levels (pefm-eval reads nonzero as defect)");
        if (levels == 0)  // e.g. a 16-bit 0/1 mask, which reads as 0 in 8 bits
          std::cerr << (tty ? "\r\033[K" : "") << "warning: ground-truth mask '" << tests[j].mask_path
                    << "' marks no defect pixel (save masks as 8-bit, defect nonzero)\n";
      }
      frames.push_back(frame);
      imgs.push_back(img);
      masks.push_back(m);
      kept.push_back(j);
    }
    if (kept.empty()) {
      progress.update(static_cast<int64_t>(end));
      continue;
    }
    const auto scored = process_frames(detector, frames, thresholds, tiles);
    for (size_t b = 0; b < kept.size(); ++b) {
      const auto& t = tests[kept[b]];
      const auto& f = scored[b];
      // The metrics need one map size. Tiled maps follow their image's size, so in a test set
      // of mixed sizes they are resized (bilinear) to the first image's map for the metrics
      // alone; pictures and --heat-maps keep each map as the element gives it.
      torch::Tensor raw = f.raw;
      if (!all_maps.empty() && (all_maps.front().size(0) != raw.size(0) || all_maps.front().size(1) != raw.size(1))) {
        raw = torch::nn::functional::interpolate(
                  raw.unsqueeze(0).unsqueeze(0),
                  torch::nn::functional::InterpolateFuncOptions()
                      .size(std::vector<int64_t>{all_maps.front().size(0), all_maps.front().size(1)})
                      .mode(torch::kBilinear)
                      .align_corners(false))
                  .squeeze(0)
                  .squeeze(0);
        if (!resized_for_metrics)
          std::cerr << (tty ? "\r\033[K" : "") << "note: '" << t.path << "' gives a " << f.raw.size(1) << "x"
                    << f.raw.size(0) << " heat map, '" << files.front() << "' a " << raw.size(1) << "x" << raw.size(0)
                    << " one: for the metrics, maps of other sizes are resized to that one\n";
        resized_for_metrics = true;
      }
      const int64_t mh = raw.size(0), mw = raw.size(1);
      // Masks at the heat map's size with PIL's NEAREST (pixel centres), as the reference
      // evaluation resizes them.
      torch::Tensor mask = torch::zeros({mh, mw}, torch::kBool);
      if (masks[b].defined())
        mask = torch::_upsample_nearest_exact2d(masks[b].gt(0).permute({2, 0, 1}).unsqueeze(0).to(torch::kFloat32),
                                                {mh, mw})
                   .squeeze(0)
                   .squeeze(0)
                   .gt(0.5);
      all_masks.push_back(mask);
      labels.push_back(t.defective ? 1 : 0);
      types.push_back(t.type);
      files.push_back(t.path);
      all_maps.push_back(raw);
      all_scores.push_back(torch::tensor(f.result.raw_score));
      region_counts.push_back(static_cast<int64_t>(f.result.regions.size()));
      called_anomalous.push_back(f.result.anomalous);
      const auto stem = t.type + "_" + fs::path(t.path).stem().string();
      if (!maps_dir.empty()) {
        io::write_png((fs::path(maps_dir) / (stem + ".png")).string(),
                      cli::side_by_side(imgs[b], mask, heat_of(f.raw), f.result.score, outline_level));
      }
      if (!heat_dir.empty())
        cli::write_npy((fs::path(heat_dir) / (stem + ".npy")).string(), f.result.map.data(), f.result.map_height,
                       f.result.map_width);
    }
    progress.update(static_cast<int64_t>(end));
  }
  progress.finish();

  if (all_maps.empty()) throw std::runtime_error("no readable test images under '" + args.get("data") + "/test'");
  if (skipped > 0) std::cout << skipped << " unreadable test image(s) skipped (named above)\n";
  const auto maps = torch::stack(all_maps), scores = torch::stack(all_scores), masks = torch::stack(all_masks);
  const auto label_t = torch::tensor(labels, torch::kLong);
  const Scores overall = score(maps, scores, masks, label_t, with_masks, pro_regions, !args.get("report").empty());
  std::map<std::string, Scores> per_type;
  for (const auto& type : types) {
    if (type == "good" || per_type.count(type)) continue;
    std::vector<int64_t> idx;
    for (size_t i = 0; i < types.size(); ++i) {
      if (types[i] == type || types[i] == "good") idx.push_back(static_cast<int64_t>(i));
    }
    const auto sel = torch::tensor(idx, torch::kLong);
    per_type[type] = score(maps.index_select(0, sel), scores.index_select(0, sel), masks.index_select(0, sel),
                           label_t.index_select(0, sel), with_masks, pro_regions);
  }
  // Image decisions: at the model's threshold (a calibrated model's; raw scores) and at the
  // best-F1 threshold of this test set, for comparison.
  const auto raw = scores.to(torch::kFloat64).contiguous();
  const std::vector<double> raw_scores(raw.data_ptr<double>(), raw.data_ptr<double>() + raw.numel());
  const std::vector<int> label_v(labels.begin(), labels.end());
  std::optional<Decisions> at_model;
  if (cal.valid) {
    // the element's decisions, reported at the raw threshold
    std::vector<double> called;
    for (bool a : called_anomalous) called.push_back(a ? 1.0 : 0.0);
    at_model = decide_at(called, label_v, 1.0);
    at_model->threshold = cal.threshold;
  }
  const Decisions at_best = best_f1(raw_scores, label_v);
  // Regions at the region threshold, as the element cuts them.
  const RegionDecisions at_regions = regions_at(maps, masks, label_v, cal.region_cut(region_setting));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  std::cout << "\n" << std::left << std::setw(14) << "type" << std::right << std::setw(8) << "images" << "  image AUROC"
            << "  pixel AUROC" << "    AUPRO\n";
  for (const auto& [type, s] : per_type) {
    std::cout << std::left << std::setw(14) << type << std::right << std::setw(8) << s.images << "      "
              << pct(s.image_auroc) << "      " << pct(s.pixel_auroc) << "  " << pct(s.aupro) << "\n";
  }
  std::cout << std::left << std::setw(14) << "overall" << std::right << std::setw(8) << overall.images << "      "
            << pct(overall.image_auroc) << "      " << pct(overall.pixel_auroc) << "  " << pct(overall.aupro) << "\n"
            << "(percent; per type: that defect type plus good; " << cli::format_duration(seconds) << ")\n";
  if (at_model) {
    std::cout << "at the model's threshold: " << decisions_line(*at_model) << "\n";
    const auto& d = *at_model;
    std::cout << "  measured false-alarm rate " << d.false_alarm_rate() * 100 << " %, 95 % upper bound "
              << clopper_pearson_upper(d.false_positives, d.false_positives + d.true_negatives) * 100 << " %";
    if (cal.method == "conformal")
      std::cout << "; the model states <= " << cal.false_alarm_bound * 100 << " % (<= " << cal.false_alarm_upper95 * 100
                << " % with 95 % confidence over its calibration " << (cal.groups < cal.images ? "groups" : "images") << ")";
    std::cout << "\n";
  }
  else
    std::cout << "the model has no calibrated threshold: no decisions at it\n";
  std::cout << "regions at region-threshold " << region_setting << " (raw " << at_regions.level << "): "
            << rate_text(at_regions.good_images_with_regions) << " % of good images hold one, "
            << rate_text(at_regions.good_pixel_rate) << " % of their pixels";
  if (with_masks)
    std::cout << "; normal pixels outlined " << rate_text(at_regions.pixel_false_alarm_rate) << " %, defect pixels "
              << rate_text(at_regions.pixel_recall) << " %, mean region overlap " << rate_text(at_regions.region_overlap)
              << " %, defect regions touched " << rate_text(at_regions.defects_touched) << " % (of "
              << at_regions.defect_regions << ")";
  if (std::isfinite(cal.region_rate_target))
    std::cout << "; set at " << rate_text(cal.region_rate) << " % of the model's normal calibration pixels";
  else if (cal.valid)
    std::cout << "; the model has no region threshold (trained before it): 0.5 is its image threshold";
  std::cout << "\n";
  std::cout << "at the best-F1 threshold of this test set (" << cal.normalize(at_best.threshold)
            << (cal.valid ? " normalised" : " raw") << "): " << decisions_line(at_best) << "\n";

  if (const auto path = args.get("scores"); !path.empty()) {
    const bool csv = fs::path(path).extension() == ".csv";
    std::ostringstream text;
    if (csv) text << "file,type,score,raw_score,decision,regions\n";
    for (size_t i = 0; i < files.size(); ++i) {
      const double shown = cal.normalize(raw_scores[i]);
      const std::string decision = !cal.valid ? "undecided" : called_anomalous[i] ? "anomalous" : "normal";
      if (csv) {
        text << cli::csv_field(files[i]) << "," << cli::csv_field(types[i]) << "," << pefm::json_text(shown) << ","
             << pefm::json_text(raw_scores[i]) << "," << decision << "," << region_counts[i] << "\n";
      } else {
        text << pefm::json_text(cli::Json{{"file", files[i]}, {"type", types[i]}, {"score", shown},
                                          {"raw_score", raw_scores[i]}, {"decision", decision},
                                          {"regions", region_counts[i]}})
             << "\n";
      }
    }
    write_file_atomically(path, text.str());
    std::cout << "wrote " << path << "\n";
  }

  if (const auto path = args.get("report"); !path.empty()) {
    cli::ReportData rep;
    rep.model = args.get("model");
    rep.data = args.get("data");
    rep.device = device;
    rep.created = utc_now();
    rep.image_size = S;
    rep.calibrated = cal.valid;
    for (const auto& [type, s] : per_type) rep.rows.push_back({type, s.images, s.image_auroc, s.pixel_auroc, s.aupro});
    rep.rows.push_back({"overall", overall.images, overall.image_auroc, overall.pixel_auroc, overall.aupro});
    // The calibrated scale, not clamped to 0..1 (the histogram would pile up at both ends).
    const auto scale = [&cal](double v) { return cal.normalize_unclamped(v); };
    for (double v : raw_scores) rep.scores.push_back(scale(v));
    rep.labels = label_v;
    rep.roc = roc_curve(raw_scores, label_v);
    rep.pro = overall.pro;
    const auto shown = [&](Decisions d) {
      if (!std::isnan(d.threshold)) d.threshold = scale(d.threshold);
      return d;
    };
    if (at_model) rep.at_model = shown(*at_model);
    rep.at_best = shown(at_best);
    if (cal.method == "conformal") {
      std::ostringstream o;
      o << std::fixed << std::setprecision(2);
      o << "The model states: " << (cal.groups < cal.images ? "a normal image of a new part" : "a new normal image")
        << " exceeds its threshold with probability at most "
        << cal.false_alarm_bound * 100 << " % (asked " << cal.false_alarm_target * 100 << " %; at most "
        << cal.false_alarm_upper95 * 100 << " % with 95 % confidence over its " << cal.images << " calibration images"
        << (cal.groups < cal.images ? " in " + std::to_string(cal.groups) + " groups" : std::string())
        << "). Measured here: " << at_model->false_alarm_rate() * 100 << " %, 95 % upper bound "
        << clopper_pearson_upper(at_model->false_positives, at_model->false_positives + at_model->true_negatives) * 100
        << " %.";
      rep.stated_rate = o.str();
    }
    const auto called = [&](double raw) { return at_model ? cal.anomalous(raw) : raw >= at_best.threshold; };
    const auto picture = [&](size_t i) {
      // the score the element would report (normalised, clamped) for a calibrated model
      cli::ReportExample e{files[i], types[i], cal.normalize(raw_scores[i]), {}};
      const auto k = static_cast<int64_t>(i);
      try {
        const auto img = cli::to_tensor(io::read_image(files[i], io::PixelFormat::kRgb, bit_depth));
        const auto heat = heat_of(maps[k]);
        e.png = io::encode_png(cli::side_by_side(img, masks[k], heat, e.score, outline_level));
      } catch (const io::ImageError& err) {  // gone or changed since it was scored: the page says so
        std::cerr << "--report: no picture: " << err.what() << "\n";
      }
      return e;
    };
    bool beyond = false;
    for (size_t i : worst(raw_scores, label_v, 1, called, 4, &beyond)) rep.misses.push_back(picture(i));
    rep.misses_title = beyond ? "Worst misses (defective, scored below the threshold)"
                              : "Lowest-scoring defective images (none missed)";
    for (size_t i : worst(raw_scores, label_v, 0, called, 4, &beyond)) rep.false_alarms.push_back(picture(i));
    rep.false_alarms_title = beyond ? "Worst false alarms (good, scored at or above the threshold)"
                                    : "Highest-scoring good images (no false alarm)";
    if (!at_model) {
      rep.misses_title += " at the best-F1 threshold";
      rep.false_alarms_title += " at the best-F1 threshold";
    }
    write_file_atomically(path, cli::html_report(rep));
    std::cout << "wrote " << path << "\n";
  }

  if (const auto json = args.get("json"); !json.empty()) {
    // Metrics that are undefined for this test set (NaN) are written as null.
    cli::Json per_type_json = cli::Json::object();
    for (const auto& [type, s] : per_type) {
      per_type_json[type] = {{"image_auroc", s.image_auroc}, {"pixel_auroc", s.pixel_auroc}, {"aupro", s.aupro},
                             {"images", s.images}};
    }
    cli::Json operating_point = nullptr;
    if (at_model) {
      operating_point = decisions_json(*at_model, cal);
      // What the model file states about its own threshold: the false-alarm rate it
      // guarantees and its out-of-sample estimate (pefm-train --false-alarm-rate), or for a
      // mean + 3 std threshold no stated rate.
      operating_point["calibration_method"] = cal.method;
      const bool stated = cal.method == "conformal";
      operating_point["stated_false_alarm_rate"] = stated ? cli::Json(cal.false_alarm_bound) : cli::Json(nullptr);
      operating_point["asked_false_alarm_rate"] = stated ? cli::Json(cal.false_alarm_target) : cli::Json(nullptr);
      operating_point["stated_false_alarm_upper95"] = stated ? cli::Json(cal.false_alarm_upper95) : cli::Json(nullptr);
      // the rate measured here, with its 95 % Clopper-Pearson upper bound
      operating_point["false_alarm_rate_upper95"] =
          clopper_pearson_upper(at_model->false_positives, at_model->false_positives + at_model->true_negatives);
      operating_point["calibration_images"] = cal.images;
      operating_point["calibration_groups"] = stated ? cli::Json(cal.groups) : cli::Json(nullptr);
    }
    cli::write_json(json, {{"model", args.get("model")},
                           {"data", args.get("data")},
                           {"image_size", S},
                           {"tile_size", used.size > 0 ? cli::Json(used.size) : cli::Json(nullptr)},
                           {"tile_overlap", used.size > 0 ? cli::Json(used.overlap) : cli::Json(nullptr)},
                           {"map_size", {maps.size(2), maps.size(1)}},
                           {"maps_resized_for_metrics", resized_for_metrics},
                           {"device", device},
                           {"pixel_metrics", with_masks ? "measured" : "absent (no ground_truth/ folder)"},
                           {"image_auroc", overall.image_auroc},
                           {"pixel_auroc", overall.pixel_auroc},
                           {"aupro", overall.aupro},
                           {"aupro_regions", args.get("pro-regions")},
                           {"operating_point", operating_point},
                           {"best_f1", decisions_json(at_best, cal)},
                           {"region_operating_point", region_json(at_regions, region_setting, cal, with_masks)},
                           {"per_type", per_type_json},
                           {"images", overall.images},
                           {"skipped_images", skipped},
                           {"seconds", seconds}});
  }
  if (!maps_dir.empty()) std::cout << "wrote " << tests.size() << " pictures to " << maps_dir << "/\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return pefm::cli::run_main("pefm-eval", run, argc, argv); }
