// pefm-export: a model as an ONNX graph (pefm/onnx_export.h), and optionally pefm's own
// inputs and outputs on some images, to check another runtime against.
#include <filesystem>
#include <iostream>
#include <memory>
#include <vector>

#include <torch/torch.h>

#include "cli.h"
#include "pefm/detector.h"
#include "pefm/file_util.h"
#include "pefm/model_file.h"
#include "pefm/onnx_export.h"
#include "pefm/postprocess.h"

namespace {

using namespace pefm;
namespace fs = std::filesystem;

// A check is a handful of images, held decoded and as network inputs at once: a folder of
// thousands would take gigabytes, so it is refused before any work.
constexpr size_t kMaxCheckImages = 256;

// The images named by --check-images: files as given, folders' images by name.
std::vector<std::string> check_images(const std::vector<std::string>& paths) {
  std::vector<std::string> files;
  for (const auto& p : paths) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      const auto listed = io::list_images(p);
      if (listed.empty()) throw cli::UsageError("--check-images '" + p + "': the folder holds no images");
      files.insert(files.end(), listed.begin(), listed.end());
    } else if (fs::exists(p, ec)) {
      files.push_back(p);
    } else {
      throw cli::UsageError("--check-images '" + p + "': no such file or folder");
    }
  }
  if (files.size() > kMaxCheckImages) {
    throw cli::UsageError("--check-images names " + std::to_string(files.size()) + " images; a check takes at most " +
                          std::to_string(kMaxCheckImages));
  }
  return files;
}

// What --check-out holds, and the first line of its files.txt.
const char* const kCheckFiles[] = {"image.npy", "anomaly_map.npy", "score.npy", "files.txt"};
constexpr const char* kCheckMarker = "# pefm-export --check-out: the images, in the order of the .npy files";

// --check-out is a new or empty folder, or one this tool filled before (its four files and
// nothing else): never a folder whose files it would replace.
void check_check_dir(const std::string& dir) {
  std::error_code ec;
  if (dir.empty() || !fs::exists(dir, ec)) return;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const auto name = entry.path().filename().string();
    bool ours = false;
    for (const char* f : kCheckFiles) ours = ours || name == f;
    const auto head = cli::first_bytes(entry.path().string(), 80);
    if (!ours || !entry.is_regular_file(ec) ||
        (name == "files.txt" ? head.rfind(kCheckMarker, 0) != 0 : head.rfind("\x93NUMPY", 0) != 0)) {
      throw cli::UsageError("--check-out '" + dir + "' holds '" + name +
                            "', which pefm-export did not write; give a new or empty folder");
    }
  }
}

// pefm's preprocessed inputs, calibrated maps and scores of the decoded `frames` ([H, W, 3]
// uint8 each; CPU, fp32, as the element runs a model there), written as .npy beside a list
// of their files.
void write_check(const Model& model, const std::vector<torch::Tensor>& frames, const std::vector<std::string>& files,
                 const std::string& dir) {
  const auto s = model.config.image_size;
  DetectorOptions opts;
  opts.device = "cpu";
  Detector detector(std::make_shared<Model>(model), opts);
  const auto n = static_cast<int64_t>(frames.size());
  auto inputs = torch::empty({n, 3, s, s});
  auto maps = torch::empty({n, 1, s, s});
  auto scores = torch::empty({n, 1});
  std::string list = std::string(kCheckMarker) + "\n";
  for (int64_t i = 0; i < n; ++i) {
    const auto x = preprocess(frames[i].unsqueeze(0), ChannelMap::rgb_order(), s, torch::kFloat32, model.config.resize);
    const auto d = detector.detect_preprocessed(x);
    inputs[i] = x[0];
    maps[i][0] = normalized_map(d.maps[0], model.calibration);
    scores[i][0] = model.calibration.score(d.scores[0].item<float>());
    list += files[i] + "\n";
  }
  fs::create_directories(dir);
  const auto npy = [&dir](const char* name, const torch::Tensor& t) {
    const auto c = t.contiguous();
    cli::write_npy((fs::path(dir) / name).string(), c.data_ptr<float>(), c.sizes().vec());
  };
  npy("image.npy", inputs);
  npy("anomaly_map.npy", maps);
  npy("score.npy", scores);
  write_file_atomically((fs::path(dir) / "files.txt").string(), list);
}

int run(int argc, char** argv) {
  cli::Args args("pefm-export", "MODEL.pt --onnx OUT.onnx [options]",
                 "Writes a model as one ONNX graph (opset " + std::to_string(kOnnxOpset) +
                     ") for ONNX Runtime, OpenCV dnn, TensorRT or OpenVINO:\n"
                     "  image        float32 [N, 3, S, S], preprocessed as pefm does (resize, then ImageNet\n"
                     "               mean and std; the model's metadata says which)\n"
                     "  anomaly_map  float32 [N, 1, S, S], calibrated 0..1 (0.5: the model's threshold)\n"
                     "  score        float32 [N, 1], the map's maximum\n"
                     "N is open. The model's settings and calibration are the file's metadata (pefm.*).\n"
                     "--check-images writes pefm's own input tensors, maps and scores for those images,\n"
                     "so that another runtime's results can be compared with pefm's.");
  args.option("model", "MODEL.pt", "model file from pefm-train (or give it first, without --model)");
  args.option("onnx", "OUT.onnx", "ONNX file to write", "", true);
  args.option("check-images", "PATH", "an image or a folder of images (repeatable) for --check-out", "", false, true);
  args.option("check-out", "DIR", "folder for image.npy [N,3,S,S], anomaly_map.npy [N,1,S,S], score.npy [N,1] "
              "and files.txt: pefm's results on --check-images");
  // `pefm-export MODEL --onnx OUT`: a first argument that is not an option is the model.
  std::vector<std::string> words(argv, argv + argc);
  if (words.size() > 1 && words[1].rfind("-", 0) != 0) words.insert(words.begin() + 1, "--model");
  std::vector<char*> ptrs;
  for (auto& w : words) ptrs.push_back(w.data());
  if (!args.parse(static_cast<int>(ptrs.size()), ptrs.data())) return 0;
  const auto model_path = args.get("model");
  if (model_path.empty()) throw cli::UsageError("no model given (pefm-export MODEL.pt --onnx OUT.onnx)");
  const auto images = args.all("check-images");
  if (images.empty() != args.get("check-out").empty()) {
    throw cli::UsageError("--check-images and --check-out go together");
  }
  cli::check_output_file("--onnx", args.get("onnx"), cli::OutputKind::kOnnx, {model_path});
  std::vector<std::string> image_dirs;
  for (const auto& p : images) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) image_dirs.push_back(p);
  }
  cli::check_output_dir("--check-out", args.get("check-out"), image_dirs);
  check_check_dir(args.get("check-out"));
  const auto files = check_images(images);

  const auto model = load_model(model_path);
  // Every image decoded before anything is written: a broken one leaves no output behind.
  std::vector<torch::Tensor> frames;
  for (const auto& f : files) frames.push_back(cli::to_tensor(io::read_image(f)));
  const auto bytes = onnx_model_bytes(model);
  write_file_atomically(args.get("onnx"), bytes);
  const auto s = std::to_string(model.config.image_size);
  std::cout << "wrote " << args.get("onnx") << " (" << (bytes.size() + 500000) / 1000000 << " MB, opset "
            << kOnnxOpset << "): image [N, 3, " << s << ", " << s << "] -> anomaly_map [N, 1, " << s << ", " << s
            << "], score [N, 1]" << (model.calibration.valid ? "" : "; the model is not calibrated: raw values")
            << "\n";
  if (!files.empty()) {
    const auto tile = model.training.find("tile");
    if (tile != model.training.end() && tile->second != "0") {
      std::cout << "note: the model was trained on " << tile->second << " px tiles; --check-out holds whole images "
                << "resized to " << s << " px, as the graph sees them, not pefmfilter's tiled maps\n";
    }
    write_check(model, frames, files, args.get("check-out"));
    std::cout << "wrote pefm's results on " << files.size() << " image(s) to " << args.get("check-out") << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return pefm::cli::run_main("pefm-export", run, argc, argv); }
