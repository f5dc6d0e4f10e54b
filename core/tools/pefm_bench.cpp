// pefm-bench: detector and pipeline speed. Numbers go to bench/RESULTS.md, never into
// timed unit tests.
#include <gst/gst.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <set>

#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include "cli.h"
#include "pefm-config.h"
#include "pefm/detector.h"
#include "pefm/device.h"
#include "pefm/model_file.h"

namespace {

using namespace pefm;
using Clock = std::chrono::steady_clock;

struct Row {
  int64_t batch = 0;
  double fps = 0, median_ms = 0, p99_ms = 0;
  StageTimes stages;  // mean ms per batch
};

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  const double pos = (v.size() - 1) * p;
  const auto lo = static_cast<size_t>(std::floor(pos));
  const auto hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - lo);
}

void sync(const torch::Device& d) {
  if (d.is_cuda()) torch::cuda::synchronize(d.index());
}

// `resident`: frames already on the detector's device and the maps left there (the
// detector alone); else frames as they arrive from a camera, 8-bit RGB in host memory, and
// maps and scores brought back.
Row bench_batch(Detector& det, int64_t batch, int iterations, int warmup, bool resident) {
  const auto S = det.image_size();
  auto frames = torch::randint(0, 256, {batch, S, S, 3}, torch::kUInt8);
  if (resident) {
    frames = frames.to(det.device());
  } else if (det.device().is_cuda()) {
    frames = frames.pin_memory();
  }
  const auto run = [&](StageTimes* t) {
    det.time_stages(t);
    auto r = det.detect(frames, ChannelMap::rgb_order());
    const auto start = Clock::now();
    if (resident) {
      sync(det.device());  // the batch done, its maps where they are
    } else {
      auto maps = r.maps.to(torch::kCPU);
      auto scores = r.scores.to(torch::kCPU);
    }
    if (t && !resident) t->download += std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    det.time_stages(nullptr);
  };
  for (int i = 0; i < warmup; ++i) run(nullptr);
  sync(det.device());
  Row row;
  row.batch = batch;
  std::vector<double> latency;
  const auto t0 = Clock::now();
  for (int i = 0; i < iterations; ++i) {
    const auto s = Clock::now();
    run(nullptr);  // ends with a device-to-host copy or a sync
    latency.push_back(std::chrono::duration<double, std::milli>(Clock::now() - s).count());
  }
  const double total = std::chrono::duration<double>(Clock::now() - t0).count();
  row.fps = batch * iterations / total;
  row.median_ms = percentile(latency, 0.5);
  row.p99_ms = percentile(latency, 0.99);
  const int staged = std::max(1, std::min(iterations, 5));
  for (int i = 0; i < staged; ++i) run(&row.stages);
  for (double StageTimes::*f : {&StageTimes::preprocess, &StageTimes::backbones, &StageTimes::mapping,
                                &StageTimes::fuse, &StageTimes::download}) {
    row.stages.*f /= staged;
  }
  return row;
}

// The formats pefmfilter takes (PEFM_VIDEO_FORMATS), so that no converter is timed with it.
void check_pipeline_format(const std::string& format) {
  static const std::set<std::string> formats = {"RGB",  "BGR",  "RGBA", "BGRA", "RGBx", "BGRx", "ARGB",
                                                "ABGR", "xRGB", "xBGR", "GRAY8", "GRAY16_LE", "I420", "NV12"};
  if (!formats.count(format)) throw cli::UsageError("--pipeline-format '" + format + "' is not a format pefmfilter takes");
}

std::string pipeline_description(const std::string& model_path, const std::string& size, const std::string& format,
                                 const std::string& device, const std::string& precision, const std::string& overlay,
                                 int64_t frames, const std::string& pattern, const std::string& extra) {
  const auto x = size.find('x');
  if (x == std::string::npos || x == 0 || x + 1 == size.size()) {
    throw cli::UsageError("--pipeline needs WIDTHxHEIGHT, got '" + size + "'");
  }
  check_pipeline_format(format);
  return "videotestsrc num-buffers=" + std::to_string(frames) + " pattern=" + pattern + " ! video/x-raw,format=" + format + ",width=" +
         size.substr(0, x) + ",height=" + size.substr(x + 1) + " ! pefmfilter name=f model=\"" + model_path +
         "\" device=" + device + " precision=" + precision + " overlay=" + overlay + " " + extra +
         " ! fakesink sync=false";
}

std::string error_text(GstMessage* m) {
  GError* e = nullptr;
  gchar* dbg = nullptr;
  gst_message_parse_error(m, &e, &dbg);
  std::string why = std::string(e->message) + (dbg ? std::string(": ") + dbg : "");
  g_clear_error(&e);
  g_free(dbg);
  return why;
}

// A parsed pipeline; preroll() brings it to PAUSED (model loaded, first frame through) so
// that timing starts with frames flowing. Brought to NULL and released on destruction.
class Pipeline {
 public:
  explicit Pipeline(const std::string& desc) {
    gst_init(nullptr, nullptr);
    GError* err = nullptr;
    p_ = gst_parse_launch(desc.c_str(), &err);
    if (!p_ || err) {
      const std::string why = err ? err->message : "unknown";
      g_clear_error(&err);
      if (p_) gst_object_unref(p_);
      throw std::runtime_error("cannot build the pipeline (is the pefm plugin on GST_PLUGIN_PATH?): " + why);
    }
    bus_ = gst_element_get_bus(p_);
  }
  ~Pipeline() { release(); }
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  GstElement* get() const { return p_; }
  GstBus* bus() const { return bus_; }
  void play() { gst_element_set_state(p_, GST_STATE_PLAYING); }
  void preroll() {
    gst_element_set_state(p_, GST_STATE_PAUSED);
    GstMessage* m = gst_bus_timed_pop_filtered(bus_, 300 * GST_SECOND,
                                               static_cast<GstMessageType>(GST_MESSAGE_ASYNC_DONE | GST_MESSAGE_ERROR));
    if (!m || GST_MESSAGE_TYPE(m) == GST_MESSAGE_ERROR) {
      const std::string why = m ? error_text(m) : "preroll timed out";
      if (m) gst_message_unref(m);
      release();
      throw std::runtime_error("pipeline failed: " + why);
    }
    gst_message_unref(m);
  }

 private:
  void release() {
    if (!p_) return;
    gst_element_set_state(p_, GST_STATE_NULL);
    if (bus_) gst_object_unref(bus_);
    gst_object_unref(p_);
    p_ = nullptr;
    bus_ = nullptr;
  }
  GstElement* p_ = nullptr;
  GstBus* bus_ = nullptr;
};

struct PipelineResult {
  double fps = NAN;
  double latency_ms = NAN;         // what the element adds in the LATENCY query
  double processing_max_ms = NAN;  // its longest frame
};

PipelineResult bench_pipeline(const std::string& desc, int frames) {
  Pipeline p(desc);
  p.preroll();
  const auto t0 = Clock::now();
  p.play();
  GstMessage* m = gst_bus_timed_pop_filtered(p.bus(), GST_CLOCK_TIME_NONE,
                                             static_cast<GstMessageType>(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  const std::string why = m && GST_MESSAGE_TYPE(m) == GST_MESSAGE_ERROR ? error_text(m) : "";
  if (m) gst_message_unref(m);
  if (!why.empty()) throw std::runtime_error("pipeline stopped with an error: " + why);
  PipelineResult r;
  r.fps = frames / seconds;
  if (GstElement* f = gst_bin_get_by_name(GST_BIN(p.get()), "f")) {
    GstStructure* stats = nullptr;
    g_object_get(f, "stats", &stats, nullptr);
    guint64 latency = 0, longest = 0;
    if (stats && gst_structure_get_uint64(stats, "latency", &latency) &&
        gst_structure_get_uint64(stats, "processing-max", &longest)) {
      r.latency_ms = latency / 1e6;
      r.processing_max_ms = longest / 1e6;
    }
    if (stats) gst_structure_free(stats);
    gst_object_unref(f);
  }
  return r;
}

long rss_kib() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

struct SoakReport {
  int64_t frames = 0, messages = 0;
  double seconds = 0;
  long rss_preroll_kib = 0, rss_start_kib = 0, rss_end_kib = 0, rss_max_kib = 0;
  struct Sample {
    double seconds;
    int64_t frames;
    long rss_kib;
  };
  std::vector<Sample> samples;  // one a second
};

GstPadProbeReturn count_frame(GstPad*, GstPadProbeInfo*, gpointer user_data) {
  static_cast<std::atomic<int64_t>*>(user_data)->fetch_add(1, std::memory_order_relaxed);
  return GST_PAD_PROBE_OK;
}

// Runs the pipeline of `desc` to its end without an error, draining the per-frame
// element messages as an application would. RSS is sampled every second; "start" is taken
// once `warmup` frames have passed (allocator pools and caches settled).
SoakReport soak(const std::string& desc, int64_t warmup) {
  Pipeline p(desc);
  SoakReport r;
  std::atomic<int64_t> done{0};
  GstElement* filter = gst_bin_get_by_name(GST_BIN(p.get()), "f");
  GstPad* src = gst_element_get_static_pad(filter, "src");
  gst_pad_add_probe(src, GST_PAD_PROBE_TYPE_BUFFER, count_frame, &done, nullptr);
  gst_object_unref(src);
  gst_object_unref(filter);
  p.preroll();
  r.rss_preroll_kib = rss_kib();

  const auto t0 = Clock::now();
  auto next_sample = t0;
  std::string error;
  bool eos = false;
  p.play();
  while (!eos && error.empty()) {
    GstMessage* m = gst_bus_timed_pop(p.bus(), 100 * GST_MSECOND);
    if (m) {
      switch (GST_MESSAGE_TYPE(m)) {
        case GST_MESSAGE_EOS: eos = true; break;
        case GST_MESSAGE_ERROR: error = error_text(m); break;
        case GST_MESSAGE_ELEMENT: r.messages++; break;
        default: break;
      }
      gst_message_unref(m);
    }
    const auto now = Clock::now();
    if (now >= next_sample || eos) {
      const long rss = rss_kib();
      const int64_t n = done.load();
      if (r.rss_start_kib == 0 && n >= warmup) r.rss_start_kib = rss;
      r.rss_max_kib = std::max(r.rss_max_kib, rss);
      r.samples.push_back({std::chrono::duration<double>(now - t0).count(), n, rss});
      next_sample = now + std::chrono::seconds(1);
    }
  }
  r.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  r.frames = done.load();
  r.rss_end_kib = rss_kib();
  if (r.rss_start_kib == 0) r.rss_start_kib = r.rss_preroll_kib;
  if (!error.empty()) throw std::runtime_error("soak stopped after " + std::to_string(r.frames) + " frames: " + error);
  return r;
}

// The element loads models from files: the --model file, or else the random-weight model
// written to a temporary file that lives as long as this object.
class PipelineModel {
 public:
  PipelineModel(const std::string& given, const Model& model) : path_(given) {
    if (path_.empty()) {
      tmp_ = std::make_unique<cli::TempFile>("pefm-bench", ".pt");
      save_model(model, tmp_->path());
      path_ = tmp_->path();
    }
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::unique_ptr<cli::TempFile> tmp_;
};

int run_soak(const cli::Args& args, const Model& model, const DetectorOptions& opts) {
  const auto frames = args.integer("soak", 1, int64_t{1} << 40);
  const auto warmup = args.integer("soak-warmup", 0, frames);
  const auto max_growth_mib = args.number("soak-max-growth", 0, 1e6);
  const std::string size = args.has("pipeline") ? args.get("pipeline") : "64x48";
  const PipelineModel file(args.get("model"), model);
  // Moving content (so regions, overlays and messages vary) and one message per frame.
  const auto desc = pipeline_description(file.path(), size, args.get("pipeline-format"), opts.device, args.get("precision"),
                                         args.get("overlay"), frames,
                                         "ball", "emit-messages=true threads=" + args.get("threads"));
  const auto& cfg = model.config;
  std::cout << "pefm-bench " PEFM_VERSION " soak: " << frames << " frames of " << size << " "
            << args.get("pipeline-format") << " through pefmfilter ("
            << cfg.source_arch << " -> " << cfg.target_arch << ", " << cfg.image_size << " px, " << opts.device
            << ", overlay " << args.get("overlay") << ", a message per frame)\n" << std::flush;
  const auto r = soak(desc, warmup);
  const double growth_mib = (r.rss_end_kib - r.rss_start_kib) / 1024.0;
  // Ten rows; frames/s over each row's interval shows a slowdown as well as RSS shows growth.
  const size_t step = std::max<size_t>(1, r.samples.size() / 10);
  std::cout << "   seconds  frames done   RSS MiB  frames/s since previous row\n";
  for (size_t i = 0; i < r.samples.size(); i += step) {
    const auto& c = r.samples[i];
    std::cout << std::fixed << std::setprecision(1) << std::setw(10) << c.seconds << std::setw(13) << c.frames
              << std::setw(10) << c.rss_kib / 1024.0;
    if (i > 0) {
      const auto& p = r.samples[i - step];
      std::cout << std::setw(11) << (c.frames - p.frames) / std::max(1e-9, c.seconds - p.seconds);
    }
    std::cout << "\n";
  }
  const bool ok = r.frames == frames && growth_mib <= max_growth_mib;
  std::cout << std::fixed << std::setprecision(1) << "frames " << r.frames << " in " << r.seconds << " s ("
            << r.frames / r.seconds << " frames/s), messages after preroll " << r.messages << "\nRSS after preroll "
            << r.rss_preroll_kib / 1024.0 << " MiB, after " << warmup << " frames " << r.rss_start_kib / 1024.0
            << " MiB, at the end " << r.rss_end_kib / 1024.0 << " MiB (max " << r.rss_max_kib / 1024.0
            << "): growth " << growth_mib << " MiB, bound " << max_growth_mib << " MiB: " << (ok ? "OK" : "EXCEEDED")
            << "\n";
  if (const auto json = args.get("json"); !json.empty()) {
    cli::write_json(json,
                    {{"soak",
                      {{"frames", r.frames}, {"size", size}, {"seconds", r.seconds}, {"messages", r.messages},
                       {"rss_preroll_kib", r.rss_preroll_kib}, {"rss_start_kib", r.rss_start_kib},
                       {"rss_end_kib", r.rss_end_kib}, {"rss_max_kib", r.rss_max_kib}, {"warmup_frames", warmup},
                       {"max_growth_mib", max_growth_mib}, {"ok", ok}}}},
                    -1);
  }
  return ok ? 0 : 1;
}

int run(int argc, char** argv) {
  cli::Args args("pefm-bench", "[--model M | --source ARCH --target ARCH] [options]",
                 "Measures the detector: frames/s, latency (median, p99) and time per stage for each\n"
                 "batch size, on 8-bit RGB frames in host memory (upload and download included; with\n"
                 "--resident, on frames already on the device, maps left there). With\n"
                 "--pipeline WxH, also frames/s of videotestsrc ! pefmfilter ! fakesink at that size.\n"
                 "--soak N pushes N frames through that pipeline (default 64x48) instead and checks that\n"
                 "the process's RSS stays within --soak-max-growth MiB after the warm-up.\n"
                 "Without --model, random-init backbones and mapping networks of the given shapes.");
  args.option("model", "M", "model file (else random weights)");
  args.option("source", "ARCH", "source backbone for random weights", "resnet34");
  args.option("target", "ARCH", "target backbone for random weights", "resnet50");
  args.option("latent", "L1,L2,L3", "latent widths for random weights", "200,400,800");
  args.option("image-size", "S", "input size for random weights", "256");
  args.option("resize", "FILTER", "resize filter: the model's (with --model), else lanczos; lanczos or bilinear overrides", "");
  args.option("device", "DEV", "auto, cpu, cuda or cuda:N", "auto");
  args.option("precision", "P", "fp32; fp16 on CUDA; bf16 on CPU or CUDA", "fp32");
  args.option("batch-sizes", "LIST", "comma-separated batch sizes", "1,16,64");
  args.option("iterations", "N", "timed batches per batch size (0: 5 on CPU, 50 on CUDA)", "0");
  args.option("warmup", "N", "untimed batches first", "2");
  args.option("threads", "N", "CPU threads (0: every CPU this process may use)", "0");
  args.option("pipeline", "WxH", "also run the element pipeline at this frame size");
  args.option("pipeline-format", "FMT", "the frames' format in the pipeline and soak modes (RGB, NV12, I420, GRAY8, ...)",
              "RGB");
  args.option("pipeline-frames", "N", "frames for the pipeline mode", "50");
  args.option("overlay", "MODE", "overlay in the pipeline mode", "heatmap+contours");
  args.option("pipeline-props", "PROPS", "more pefmfilter properties in the pipeline mode (e.g. \"tile-size=256 continuous=true\")", "");
  args.option("soak", "N", "soak mode: N frames through the element, RSS tracked (no batch timing)");
  args.option("soak-warmup", "N", "frames before the starting RSS is taken", "1000");
  args.option("soak-max-growth", "MiB", "RSS growth allowed from warm-up to end (exit 1 beyond)", "16");
  args.option("layout", "L", "layout: auto (NHWC on the CPU, NCHW on CUDA), nchw or nhwc", "auto");
  args.flag("resident", "frames already on the device, maps left there: no upload, no download");
  args.flag("no-fold", "keep BatchNorm layers (measure what folding gains)");
  args.option("json", "OUT", "write the results as JSON; - for stdout");
  if (!args.parse(argc, argv)) return 0;
  check_pipeline_format(args.get("pipeline-format"));
  cli::route_json_output(args.get("json"));
  cli::check_output_file("--json", args.get("json"), cli::OutputKind::kJson, {args.get("model")});
  use_cpu_threads(static_cast<int>(args.integer("threads", 0, 1024)));

  std::shared_ptr<Model> model;
  std::string model_path = args.get("model");
  if (!model_path.empty()) {
    model = std::make_shared<Model>(load_model(model_path));
  } else {
    ModelConfig cfg;
    cfg.source_arch = args.get("source");
    cfg.target_arch = args.get("target");
    cfg.image_size = args.integer("image-size", 32, kMaxImageSize);
    cfg.latent = cli::parse_widths(args.get("latent"), "--latent");
    try {
      cfg.validate();
    } catch (const std::invalid_argument& e) {
      throw cli::UsageError(e.what());
    }
    torch::manual_seed(0);
    model = std::make_shared<Model>(Model::create(cfg));
  }
  if (!args.get("resize").empty()) {
    try {
      model->config.resize = parse_resize(args.get("resize"), "--resize");
    } catch (const std::invalid_argument& e) {
      throw cli::UsageError(e.what());
    }
  }
  DetectorOptions opts;
  opts.device = args.get("device");
  opts.precision = parse_precision(args.get("precision"), "--precision");
  opts.fold_batchnorm = !args.has("no-fold");
  const auto layout = args.get("layout");
  if (layout == "nchw") {
    opts.layout = DetectorOptions::Layout::kNchw;
  } else if (layout == "nhwc") {
    opts.layout = DetectorOptions::Layout::kNhwc;
  } else if (layout != "auto") {
    throw cli::UsageError("--layout must be auto, nchw or nhwc, got '" + layout + "'");
  }
  const auto cfg = model->config;
  if (args.has("soak")) return run_soak(args, *model, opts);
  Detector det(model, opts);
  const bool cuda = det.device().is_cuda();
  int iterations = static_cast<int>(args.integer("iterations", 0, 1000000));
  if (iterations == 0) iterations = cuda ? 50 : 5;
  const int warmup = static_cast<int>(args.integer("warmup", 0, 1000));

  std::cout << "pefm-bench " PEFM_VERSION ": " << cfg.source_arch << " -> " << cfg.target_arch << ", "
            << cfg.image_size << " px (" << to_string(cfg.resize) << " resize), latent " << cfg.latent[0] << "," << cfg.latent[1] << "," << cfg.latent[2]
            << ", " << to_string(opts.precision) << (opts.fold_batchnorm ? ", BN folded" : ", BN kept")
            << (det.channels_last() ? ", NHWC" : "") << (args.has("resident") ? ", frames and maps on the device" : "")
            << ", on "
            << device_name(det.device()) << ", LibTorch " << TORCH_VERSION << "\n\n"
            << " batch   frames/s   median ms     p99 ms | per batch, ms: preprocess  backbones    mapping       fuse   download\n";
  std::vector<Row> rows;
  std::stringstream bs(args.get("batch-sizes"));
  for (std::string b; std::getline(bs, b, ',');) {
    const auto batch = std::stoll(b);
    if (batch < 1) throw cli::UsageError("--batch-sizes must be positive");
    const auto r = bench_batch(det, batch, iterations, warmup, args.has("resident"));
    rows.push_back(r);
    std::cout << std::fixed << std::setprecision(2) << std::setw(6) << r.batch << std::setw(11) << r.fps
              << std::setw(12) << r.median_ms << std::setw(11) << r.p99_ms << " |" << std::setw(26)
              << r.stages.preprocess << std::setw(11) << r.stages.backbones << std::setw(11) << r.stages.mapping
              << std::setw(11) << r.stages.fuse << std::setw(11) << r.stages.download << "\n"
              << std::flush;
  }

  PipelineResult pipeline;
  const auto size = args.get("pipeline");
  if (!size.empty()) {
    const PipelineModel file(model_path, *model);
    const auto frames = static_cast<int>(args.integer("pipeline-frames", 1, 1000000));
    pipeline = bench_pipeline(pipeline_description(file.path(), size, args.get("pipeline-format"), opts.device,
                                                   args.get("precision"),
                                                   args.get("overlay"), frames + 1, "smpte",
                                                   "threads=" + args.get("threads") + " " + args.get("pipeline-props")),
                              frames);
    const double rows = std::stod(size.substr(size.find('x') + 1));
    std::cout << "\npipeline videotestsrc (" << size << " " << args.get("pipeline-format")
              << ") ! pefmfilter overlay=" << args.get("overlay") << " "
              << args.get("pipeline-props") << " ! fakesink: " << std::setprecision(3) << pipeline.fps << " frames/s, "
              << pipeline.fps * rows << " lines/s (" << 1000.0 / pipeline.fps
              << " ms a frame); the element reports " << pipeline.latency_ms
              << " ms latency, its longest frame took " << pipeline.processing_max_ms << " ms\n";
  }

  if (const auto json = args.get("json"); !json.empty()) {
    cli::Json batches = cli::Json::array();
    for (const auto& r : rows) {
      batches.push_back({{"batch", r.batch},
                         {"fps", r.fps},
                         {"median_ms", r.median_ms},
                         {"p99_ms", r.p99_ms},
                         {"stages_ms",
                          {{"preprocess", r.stages.preprocess}, {"backbones", r.stages.backbones},
                           {"mapping", r.stages.mapping}, {"fuse", r.stages.fuse}, {"download", r.stages.download}}}});
    }
    cli::Json report = {{"device", device_name(det.device())},
                        {"precision", to_string(opts.precision)},
                        {"image_size", cfg.image_size},
                        {"resize", to_string(cfg.resize)},
                        {"source", cfg.source_arch},
                        {"target", cfg.target_arch},
                        {"latent", cfg.latent},
                        {"bn_folded", opts.fold_batchnorm},
                        {"channels_last", det.channels_last()},
                        {"resident", args.has("resident")},
                        {"threads", at::get_num_threads()},
                        {"libtorch", TORCH_VERSION},
                        {"batches", batches}};
    if (!std::isnan(pipeline.fps)) {
      report["pipeline"] = {{"size", size}, {"format", args.get("pipeline-format")}, {"overlay", args.get("overlay")},
                            {"props", args.get("pipeline-props")},
                            {"fps", pipeline.fps},
                            {"latency_ms", pipeline.latency_ms}, {"processing_max_ms", pipeline.processing_max_ms}};
    }
    cli::write_json(json, report, -1);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return pefm::cli::run_main("pefm-bench", run, argc, argv); }
