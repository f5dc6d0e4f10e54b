// pefm-train: trains a PEFM model from folders of normal images.
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <numeric>
#include <optional>
#include <random>
#include <sstream>

#include <torch/torch.h>

#include "cli.h"
#include "pefm-config.h"
#include "pefm/detector.h"
#include "pefm/device.h"
#include "pefm/model_file.h"
#include "pefm/preprocess.h"
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

torch::Tensor preprocess_batch(const std::vector<Sample>& samples, size_t begin, size_t end, int64_t size) {
  std::vector<torch::Tensor> xs;
  for (size_t i = begin; i < end; ++i) xs.push_back(preprocess(samples[i].pixels.unsqueeze(0), {}, size));
  return torch::cat(xs);
}

std::string losses(const EpochResult& r) {
  std::ostringstream s;
  s.precision(4);
  s << "loss " << r.loss[0] << " / " << r.loss[1] << " / " << r.loss[2];
  return s.str();
}

int run(int argc, char** argv) {
  cli::Args args("pefm-train", "--data DIR [--data DIR ...] --output MODEL.pt [options]",
                 "Trains a PEFM anomaly detector from folders of normal (defect-free) images.\n"
                 "Backbone features are computed once and cached; each epoch trains only the\n"
                 "mapping networks. A held-out part of the images calibrates the scores.\n"
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
  args.option("pe", "MODE", "position encoding: add, concat or none", "add");
  args.option("fusion", "MODE", "scale fusion: mean or product", "mean");
  args.option("device", "DEV", "auto, cpu, cuda or cuda:N", "auto");
  args.option("seed", "N", "random seed (initialisation, split, batch order)", "888");
  args.option("val-fraction", "F", "share of images held out for calibration", "0.1");
  args.option("threads", "N", "CPU threads (0: every CPU this process may use)", "0");
  args.option("tile", "N", "train on N x N tiles of native pixels (line-scan / high resolution; use the same tile-size in pefmfilter)", "0");
  args.flag("resume", "continue an interrupted run from MODEL.pt.ckpt");
  if (!args.parse(argc, argv)) return 0;

  ModelConfig config;
  auto [src_arch, src_weights] = cli::split_arch(args.get("source"));
  auto [tgt_arch, tgt_weights] = cli::split_arch(args.get("target"));
  config.source_arch = src_arch;
  config.target_arch = tgt_arch;
  config.image_size = args.integer("image-size", 32, kMaxImageSize);
  config.latent = cli::parse_widths(args.get("latent"), "--latent");
  try {
    config.pe = parse_pe_mode(args.get("pe"), "--pe");
    config.fusion = parse_fusion(args.get("fusion"), "--fusion");
    config.validate();
  } catch (const std::invalid_argument& e) {
    throw cli::UsageError(e.what());
  }
  const int64_t epochs = args.integer("epochs", 1, 100000);
  TrainOptions opts;
  opts.batch_size = args.integer("batch-size", 1, 65536);
  opts.lr = args.number("lr", 1e-12, 10.0);
  opts.weight_decay = args.number("weight-decay", 0.0, 1.0);
  opts.seed = static_cast<uint64_t>(args.integer("seed", 0, INT64_MAX));
  const double val_fraction = args.number("val-fraction", 0.0, 0.9);
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
            << to_string(config.pe) << ", on " << device_name(device) << "\n";

  int64_t skipped = 0;
  auto samples = load_images(args.all("data"), &skipped);
  if (cli::stop_requested()) {
    std::cout << "interrupted before training; nothing written\n";
    return 130;
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
  // Deterministic split: shuffle by seed, hold out the first val_fraction.
  std::vector<size_t> order(samples.size());
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937_64(opts.seed));
  size_t n_val = static_cast<size_t>(std::llround(val_fraction * samples.size()));
  if (val_fraction > 0 && n_val == 0 && samples.size() >= 2) n_val = 1;
  n_val = std::min(n_val, samples.size() - 1);
  std::vector<Sample> val, train;
  for (size_t i = 0; i < order.size(); ++i) (i < n_val ? val : train).push_back(std::move(samples[order[i]]));
  samples.clear();

  std::map<std::string, std::string> settings = {
      {"data", [&] { std::string d; for (const auto& x : args.all("data")) d += (d.empty() ? "" : ":") + x; return d; }()},
      {"source_weights", src_weights}, {"target_weights", tgt_weights},
      {"batch_size", std::to_string(opts.batch_size)}, {"lr", args.get("lr")},
      {"weight_decay", args.get("weight-decay")}, {"seed", std::to_string(opts.seed)},
      {"val_fraction", args.get("val-fraction")}, {"train_images", std::to_string(train.size())},
      {"val_images", std::to_string(val.size())}, {"skipped_images", std::to_string(skipped)},
      {"tile", std::to_string(tile)},
  };

  Model model;
  std::map<std::string, torch::Tensor> resume_state;
  if (args.has("resume")) {
    if (!std::filesystem::exists(ckpt_path)) {
      throw cli::UsageError("--resume: no checkpoint '" + ckpt_path + "' (it is removed once a run completes)");
    }
    auto ck = load_checkpoint(ckpt_path);
    const auto& c = ck.model.config;
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
    if (!differs.empty()) {
      throw cli::UsageError("--resume: '" + ckpt_path + "' was made with another model configuration: " + differs);
    }
    for (const char* key : {"data", "batch_size", "lr", "weight_decay", "seed", "val_fraction", "train_images", "tile"}) {
      if (ck.model.training[key] != settings[key]) {
        throw cli::UsageError(std::string("--resume: '") + ckpt_path + "' was made with " + key + "=" +
                              ck.model.training[key] + ", this run has " + settings[key]);
      }
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

  // Cache in fp16 when fp32 features would take more than 4 GiB.
  int64_t per_image = 0;
  const auto cs = model.net->source().tap_channels(), ct = model.net->target().tap_channels();
  for (int k = 0; k < 3; ++k) {
    const auto s = model.net->source().tap_size(k, config.image_size);
    per_image += (cs[k] + ct[k]) * s * s * 4;
  }
  opts.half_cache = per_image * static_cast<int64_t>(train.size()) > (int64_t{4} << 30);

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
    cli::Progress fp("features", static_cast<int64_t>(train.size()), tty);
    for (size_t i = 0; i < train.size() && !cli::stop_requested(); i += 32) {
      const size_t end = std::min(train.size(), i + 32);
      trainer.add_images(preprocess_batch(train, i, end, config.image_size));
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

  // Calibration on the held-out normal images (or, without any, the training images).
  const auto& calib = val.empty() ? train : val;
  if (val.empty()) std::cout << "warning: no held-out images (--val-fraction 0); calibrating on training images, thresholds will be optimistic\n";
  auto shared = std::make_shared<Model>(std::move(model));
  Detector detector(shared, {device.str()});
  std::vector<torch::Tensor> maps, scores;
  cli::Progress cp("calibration", static_cast<int64_t>(calib.size()), tty);
  for (size_t i = 0; i < calib.size() && !cli::stop_requested(); i += 32) {
    const size_t end = std::min(calib.size(), i + 32);
    const auto r = detector.detect_preprocessed(preprocess_batch(calib, i, end, config.image_size));
    maps.push_back(r.maps.cpu());
    scores.push_back(r.scores.cpu());
    cp.update(static_cast<int64_t>(end));
  }
  cp.finish();
  if (cli::stop_requested()) {
    std::cout << "interrupted: no model written; rerun with --resume to calibrate and save\n";
    return 130;
  }
  shared->calibration = Calibration::from_normal(torch::cat(maps), torch::cat(scores));
  save_model(*shared, output);
  std::filesystem::remove(ckpt_path);

  const auto& cal = shared->calibration;
  std::cout << "\nsummary\n"
            << "  images       " << train.size() << " train, " << val.size() << " held out, " << skipped << " skipped\n"
            << "  features     " << cli::format_duration(feature_seconds) << "\n"
            << "  training     " << cli::format_duration(train_seconds) << " (" << epochs << " epochs)";
  if (last.epoch > 0) std::cout << ", final " << losses(last);
  std::cout << "\n  calibration  threshold " << cal.threshold << " (raw), base " << cal.base << ", held-out false positives "
            << cal.val_false_positive_rate * 100 << " %\n"
            << "  output       " << output << " (" << cli::format_bytes(std::filesystem::file_size(output)) << ")\n"
            << "  total        " << cli::format_duration(seconds_since(t_start)) << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return pefm::cli::run_main("pefm-train", run, argc, argv); }
