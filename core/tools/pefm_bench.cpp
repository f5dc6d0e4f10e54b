// pefm-bench: detector and pipeline speed. Numbers go to bench/RESULTS.md, never into
// timed unit tests.
#include <gst/gst.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <sstream>

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

Row bench_batch(Detector& det, int64_t batch, int iterations, int warmup) {
  const auto S = det.image_size();
  // Frames as they arrive from a camera: 8-bit RGB in host memory.
  auto frames = torch::randint(0, 256, {batch, S, S, 3}, torch::kUInt8);
  if (det.device().is_cuda()) frames = frames.pin_memory();
  const auto run = [&](StageTimes* t) {
    auto r = det.detect(frames, ChannelMap::rgb_order(), t);
    const auto start = Clock::now();
    auto maps = r.maps.to(torch::kCPU);
    auto scores = r.scores.to(torch::kCPU);
    if (t) t->download += std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  };
  for (int i = 0; i < warmup; ++i) run(nullptr);
  sync(det.device());
  Row row;
  row.batch = batch;
  std::vector<double> latency;
  const auto t0 = Clock::now();
  for (int i = 0; i < iterations; ++i) {
    const auto s = Clock::now();
    run(nullptr);  // ends with a device-to-host copy: synchronous
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

double bench_pipeline(const std::string& model_path, const std::string& size, const std::string& device,
                      const std::string& precision, const std::string& overlay, int frames) {
  gst_init(nullptr, nullptr);
  const auto x = size.find('x');
  if (x == std::string::npos) throw cli::UsageError("--pipeline needs WIDTHxHEIGHT, got '" + size + "'");
  const std::string desc = "videotestsrc num-buffers=" + std::to_string(frames + 1) +
                           " pattern=smpte ! video/x-raw,format=RGB,width=" + size.substr(0, x) + ",height=" +
                           size.substr(x + 1) + " ! pefmfilter name=f model=\"" + model_path + "\" device=" + device +
                           " precision=" + precision + " overlay=" + overlay + " ! fakesink sync=false";
  GError* err = nullptr;
  GstElement* p = gst_parse_launch(desc.c_str(), &err);
  if (!p || err) {
    const std::string why = err ? err->message : "unknown";
    g_clear_error(&err);
    throw std::runtime_error("cannot build the pipeline (is the pefm plugin on GST_PLUGIN_PATH?): " + why);
  }
  // Preroll first: model loading and the first frame are not part of the rate.
  gst_element_set_state(p, GST_STATE_PAUSED);
  GstBus* bus = gst_element_get_bus(p);
  GstMessage* m = gst_bus_timed_pop_filtered(bus, 300 * GST_SECOND,
                                             static_cast<GstMessageType>(GST_MESSAGE_ASYNC_DONE | GST_MESSAGE_ERROR));
  if (!m || GST_MESSAGE_TYPE(m) == GST_MESSAGE_ERROR) {
    std::string why = "preroll timed out";
    if (m) {
      GError* e = nullptr;
      gchar* dbg = nullptr;
      gst_message_parse_error(m, &e, &dbg);
      why = std::string(e->message) + (dbg ? std::string(": ") + dbg : "");
      g_clear_error(&e);
      g_free(dbg);
    }
    if (m) gst_message_unref(m);
    gst_object_unref(bus);
    gst_element_set_state(p, GST_STATE_NULL);
    gst_object_unref(p);
    throw std::runtime_error("pipeline failed: " + why);
  }
  gst_message_unref(m);
  const auto t0 = Clock::now();
  gst_element_set_state(p, GST_STATE_PLAYING);
  m = gst_bus_timed_pop_filtered(bus, GST_CLOCK_TIME_NONE,
                                 static_cast<GstMessageType>(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  const bool ok = m && GST_MESSAGE_TYPE(m) == GST_MESSAGE_EOS;
  if (m) gst_message_unref(m);
  gst_object_unref(bus);
  gst_element_set_state(p, GST_STATE_NULL);
  gst_object_unref(p);
  if (!ok) throw std::runtime_error("pipeline stopped with an error");
  return frames / seconds;
}

int run(int argc, char** argv) {
  cli::Args args("pefm-bench", "[--model M | --source ARCH --target ARCH] [options]",
                 "Measures the detector: frames/s, latency (median, p99) and time per stage for each\n"
                 "batch size, on 8-bit RGB frames in host memory (upload and download included). With\n"
                 "--pipeline WxH, also frames/s of videotestsrc ! pefmfilter ! fakesink at that size.\n"
                 "Without --model, random-init backbones and mapping networks of the given shapes.");
  args.option("model", "M", "model file (else random weights)");
  args.option("source", "ARCH", "source backbone for random weights", "resnet34");
  args.option("target", "ARCH", "target backbone for random weights", "resnet50");
  args.option("latent", "L1,L2,L3", "latent widths for random weights", "200,400,800");
  args.option("image-size", "S", "input size for random weights", "256");
  args.option("device", "DEV", "auto, cpu, cuda or cuda:N", "auto");
  args.option("precision", "P", "fp32, or fp16 on CUDA", "fp32");
  args.option("batch-sizes", "LIST", "comma-separated batch sizes", "1,16,64");
  args.option("iterations", "N", "timed batches per batch size (0: 5 on CPU, 50 on CUDA)", "0");
  args.option("warmup", "N", "untimed batches first", "2");
  args.option("threads", "N", "CPU threads (0: LibTorch's default)", "0");
  args.option("pipeline", "WxH", "also run the element pipeline at this frame size");
  args.option("pipeline-frames", "N", "frames for the pipeline mode", "50");
  args.option("overlay", "MODE", "overlay in the pipeline mode", "heatmap+contours");
  args.flag("no-fold", "keep BatchNorm layers (measure what folding gains)");
  args.option("json", "OUT", "write the results as JSON");
  if (!args.parse(argc, argv)) return 0;
  if (const auto t = args.integer("threads", 0, 1024); t > 0) at::set_num_threads(static_cast<int>(t));

  std::shared_ptr<Model> model;
  std::string model_path = args.get("model");
  if (!model_path.empty()) {
    model = std::make_shared<Model>(load_model(model_path));
  } else {
    ModelConfig cfg;
    cfg.source_arch = args.get("source");
    cfg.target_arch = args.get("target");
    cfg.image_size = args.integer("image-size", 32, 4096);
    cfg.latent = cli::parse_widths(args.get("latent"), "--latent");
    try {
      cfg.validate();
    } catch (const std::invalid_argument& e) {
      throw cli::UsageError(e.what());
    }
    torch::manual_seed(0);
    model = std::make_shared<Model>(Model::create(cfg));
  }
  DetectorOptions opts;
  opts.device = args.get("device");
  opts.precision = parse_precision(args.get("precision"), "--precision");
  opts.fold_batchnorm = !args.has("no-fold");
  const auto cfg = model->config;
  Detector det(model, opts);
  const bool cuda = det.device().is_cuda();
  int iterations = static_cast<int>(args.integer("iterations", 0, 1000000));
  if (iterations == 0) iterations = cuda ? 50 : 5;
  const int warmup = static_cast<int>(args.integer("warmup", 0, 1000));

  std::cout << "pefm-bench " PEFM_VERSION ": " << cfg.source_arch << " -> " << cfg.target_arch << ", "
            << cfg.image_size << " px, latent " << cfg.latent[0] << "," << cfg.latent[1] << "," << cfg.latent[2]
            << ", " << to_string(opts.precision) << (opts.fold_batchnorm ? ", BN folded" : ", BN kept") << ", on "
            << device_name(det.device()) << ", LibTorch " << TORCH_VERSION << "\n\n"
            << " batch   frames/s   median ms     p99 ms | per batch, ms: preprocess  backbones    mapping       fuse   download\n";
  std::vector<Row> rows;
  std::stringstream bs(args.get("batch-sizes"));
  for (std::string b; std::getline(bs, b, ',');) {
    const auto batch = std::stoll(b);
    if (batch < 1) throw cli::UsageError("--batch-sizes must be positive");
    const auto r = bench_batch(det, batch, iterations, warmup);
    rows.push_back(r);
    std::cout << std::fixed << std::setprecision(2) << std::setw(6) << r.batch << std::setw(11) << r.fps
              << std::setw(12) << r.median_ms << std::setw(11) << r.p99_ms << " |" << std::setw(26)
              << r.stages.preprocess << std::setw(11) << r.stages.backbones << std::setw(11) << r.stages.mapping
              << std::setw(11) << r.stages.fuse << std::setw(11) << r.stages.download << "\n"
              << std::flush;
  }

  double pipeline_fps = NAN;
  const auto size = args.get("pipeline");
  if (!size.empty()) {
    std::string path = model_path;
    std::unique_ptr<cli::TempFile> tmp;
    if (path.empty()) {
      tmp = std::make_unique<cli::TempFile>("pefm-bench", ".pt");
      save_model(*model, tmp->path());
      path = tmp->path();
    }
    pipeline_fps = bench_pipeline(path, size, opts.device, args.get("precision"), args.get("overlay"),
                                  static_cast<int>(args.integer("pipeline-frames", 1, 1000000)));
    std::cout << "\npipeline videotestsrc (" << size << " RGB) ! pefmfilter overlay=" << args.get("overlay")
              << " ! fakesink: " << std::setprecision(2) << pipeline_fps << " frames/s\n";
  }

  if (const auto json = args.get("json"); !json.empty()) {
    std::ostringstream j;
    j << "{\"device\": \"" << cli::json_escape(device_name(det.device())) << "\", \"precision\": \""
      << to_string(opts.precision) << "\", \"image_size\": " << cfg.image_size << ", \"source\": \""
      << cfg.source_arch << "\", \"target\": \"" << cfg.target_arch << "\", \"latent\": [" << cfg.latent[0] << ", "
      << cfg.latent[1] << ", " << cfg.latent[2] << "], \"bn_folded\": " << (opts.fold_batchnorm ? "true" : "false")
      << ", \"threads\": " << at::get_num_threads() << ", \"libtorch\": \"" << TORCH_VERSION << "\", \"batches\": [";
    for (size_t i = 0; i < rows.size(); ++i) {
      const auto& r = rows[i];
      j << (i ? ", " : "") << "{\"batch\": " << r.batch << ", \"fps\": " << r.fps << ", \"median_ms\": " << r.median_ms
        << ", \"p99_ms\": " << r.p99_ms << ", \"stages_ms\": {\"preprocess\": " << r.stages.preprocess
        << ", \"backbones\": " << r.stages.backbones << ", \"mapping\": " << r.stages.mapping
        << ", \"fuse\": " << r.stages.fuse << ", \"download\": " << r.stages.download << "}}";
    }
    j << "]";
    if (!std::isnan(pipeline_fps)) j << ", \"pipeline\": {\"size\": \"" << size << "\", \"fps\": " << pipeline_fps << "}";
    j << "}\n";
    write_file_atomically(json, j.str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return pefm::cli::run_main("pefm-bench", run, argc, argv); }
