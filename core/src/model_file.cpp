#include "pefm/model_file.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <iomanip>
#include <sstream>

#include <torch/torch.h>

#include "container.h"
#include "pefm-config.h"
#include "pefm/file_util.h"
#include "pefm/mapping_net.h"
#include "pefm/position_encoding.h"
#include "pefm/state_dict.h"

namespace pefm {

namespace {

std::string fmt(double v) {
  std::ostringstream s;
  s << std::setprecision(17) << v;
  return s.str();
}

std::string join(const std::vector<double>& v) {
  std::string out;
  for (double x : v) out += (out.empty() ? "" : ",") + fmt(x);
  return out;
}

class MetaReader {
 public:
  MetaReader(const std::map<std::string, std::string>& meta, const std::string& origin)
      : meta_(meta), origin_(origin) {}

  bool has(const std::string& key) const { return meta_.count(key) > 0; }
  const std::string& str(const std::string& key) const {
    const auto it = meta_.find(key);
    if (it == meta_.end()) throw ModelFileError("model file '" + origin_ + "' lacks '" + key + "'");
    return it->second;
  }
  double num(const std::string& key) const {
    const auto& s = str(key);
    try {
      size_t used = 0;
      const double v = std::stod(s, &used);
      if (used == s.size() && std::isfinite(v)) return v;
    } catch (const std::exception&) {
    }
    throw ModelFileError("model file '" + origin_ + "': '" + key + "' is not a finite number: '" + s + "'");
  }
  int64_t integer(const std::string& key) const {
    const double v = num(key);
    if (v != std::floor(v) || std::abs(v) > 1e15) {
      throw ModelFileError("model file '" + origin_ + "': '" + key + "' is not an integer");
    }
    return static_cast<int64_t>(v);
  }
  std::vector<double> list(const std::string& key) const {
    constexpr size_t kMaxItems = 100000;
    std::vector<double> out;
    std::stringstream s(str(key));
    for (std::string item; std::getline(s, item, ',');) {
      size_t used = 0;
      double v = NAN;
      try {
        v = std::stod(item, &used);
      } catch (const std::exception&) {
      }
      if (used != item.size() || !std::isfinite(v) || out.size() >= kMaxItems) {
        throw ModelFileError("model file '" + origin_ + "': '" + key + "' is not a list of at most " +
                             std::to_string(kMaxItems) + " finite numbers");
      }
      out.push_back(v);
    }
    return out;
  }

 private:
  const std::map<std::string, std::string>& meta_;
  const std::string& origin_;
};

// The calibration's scalar statistics, stored as "calibration.<name>".
constexpr std::pair<const char*, double Calibration::*> kCalibrationFields[] = {
    {"threshold", &Calibration::threshold},
    {"base", &Calibration::base},
    {"image_mean", &Calibration::image_mean},
    {"image_std", &Calibration::image_std},
    {"image_min", &Calibration::image_min},
    {"image_max", &Calibration::image_max},
    {"pixel_mean", &Calibration::pixel_mean},
    {"pixel_std", &Calibration::pixel_std},
    {"val_false_positive_rate", &Calibration::val_false_positive_rate},
};

// read_bounded_file for model and checkpoint files, throwing ModelFileError.
std::string read_model_file(const std::string& path) {
  try {
    return read_bounded_file(path, "model file", kMaxModelFileBytes);
  } catch (const std::runtime_error& e) {
    throw ModelFileError(e.what());
  }
}

}  // namespace

std::map<std::string, std::string> model_metadata(const Model& model) {
  std::map<std::string, std::string> meta;
  const auto& cfg = model.config;
  meta["created_by"] = "pefm " PEFM_VERSION;
  meta["config.source_arch"] = cfg.source_arch;
  meta["config.target_arch"] = cfg.target_arch;
  meta["config.source_taps"] = backbone_tap_names(cfg.source_arch);
  meta["config.target_taps"] = backbone_tap_names(cfg.target_arch);
  meta["config.image_size"] = std::to_string(cfg.image_size);
  meta["config.pe"] = to_string(cfg.pe);
  meta["config.latent"] = std::to_string(cfg.latent[0]) + "," + std::to_string(cfg.latent[1]) +
                            "," + std::to_string(cfg.latent[2]);
  meta["config.fusion"] = to_string(cfg.fusion);
  meta["config.resize"] = to_string(cfg.resize);
  const auto& cal = model.calibration;
  meta["calibration.valid"] = cal.valid ? "1" : "0";
  if (cal.valid) {
    meta["calibration.images"] = std::to_string(cal.images);
    for (const auto& [name, field] : kCalibrationFields) meta[std::string("calibration.") + name] = fmt(cal.*field);
    meta["calibration.image_quantiles"] = join(cal.image_quantiles);
    meta["calibration.pixel_quantiles"] = join(cal.pixel_quantiles);
    meta["calibration.method"] = cal.method;
    if (cal.method == "conformal") {
      meta["calibration.false_alarm_target"] = fmt(cal.false_alarm_target);
      meta["calibration.false_alarm_bound"] = fmt(cal.false_alarm_bound);
      meta["calibration.folds"] = std::to_string(cal.folds);
      meta["calibration.groups"] = std::to_string(cal.groups);
      meta["calibration.false_alarm_upper95"] = fmt(cal.false_alarm_upper95);
    }
    if (std::isfinite(cal.region_threshold)) {
      meta["calibration.region_threshold"] = fmt(cal.region_threshold);
      meta["calibration.region_rate_target"] = fmt(cal.region_rate_target);
      meta["calibration.region_rate"] = fmt(cal.region_rate);
      meta["calibration.region_image_rate"] = fmt(cal.region_image_rate);
      meta["calibration.region_pixels"] = std::to_string(cal.region_pixels);
    }
  }
  for (const auto& [k, v] : model.training) meta["training." + k] = v;
  return meta;
}

namespace {

Container model_container(const Model& model, const char* format) {
  Container c;
  c.meta = model_metadata(model);
  c.meta["format"] = format;
  for (const auto& [name, t] : module_state(*model.net)) c.tensors["net." + name] = t;
  return c;
}

std::string shape_text(c10::IntArrayRef shape) {
  std::ostringstream s;
  s << shape;
  return s.str();
}

// Before the network is built, the file must hold each backbone's tensors (count and
// elements of its architecture) and every mapping tensor its latent widths imply, with
// exactly that shape: the metadata can then never make pefm allocate more than the file
// itself holds.
void check_backbone_sizes(const Container& c, const ModelConfig& cfg, const std::string& origin) {
  for (const auto& [side, arch] : {std::pair<std::string, std::string>{"source", cfg.source_arch},
                                   {"target", cfg.target_arch}}) {
    const auto want = backbone_state_size(arch);
    const auto prefix = "net." + side + ".";
    BackboneStateSize have;
    for (auto it = c.tensors.lower_bound(prefix); it != c.tensors.end() && it->first.rfind(prefix, 0) == 0; ++it) {
      ++have.tensors;
      have.elements += it->second.numel();
    }
    if (have.tensors != want.tensors || have.elements != want.elements) {
      throw ModelFileError("model file '" + origin + "' stores " + std::to_string(have.tensors) + " " + side +
                           " backbone tensors of " + std::to_string(have.elements) + " elements; " + arch + " has " +
                           std::to_string(want.tensors) + " of " + std::to_string(want.elements));
    }
  }
}

void check_mapping_shapes(const Container& c, const ModelConfig& cfg, const std::string& origin) {
  const auto cs = backbone_tap_channels(cfg.source_arch), ct = backbone_tap_channels(cfg.target_arch);
  for (int k = 0; k < 3; ++k) {
    const auto prefix = "net.mapping." + std::to_string(k) + ".";
    const auto shapes = dual_mapping_shapes(cs[k], ct[k], encoded_channels(cs[k], cfg.pe),
                                            encoded_channels(ct[k], cfg.pe), cfg.latent[k]);
    for (const auto& [name, shape] : shapes) {
      const auto it = c.tensors.find(prefix + name);
      const auto needed = shape_text(shape);
      if (it == c.tensors.end()) {
        throw ModelFileError("model file '" + origin + "' lacks tensor '" + prefix + name + "' (" + needed +
                             " for config.latent " + std::to_string(cfg.latent[k]) + ")");
      }
      if (it->second.sizes() != c10::IntArrayRef(shape)) {
        throw ModelFileError("model file '" + origin + "': tensor '" + prefix + name + "' is " +
                             shape_text(it->second.sizes()) + ", but config.latent " + std::to_string(cfg.latent[k]) +
                             " needs " + needed);
      }
    }
  }
}

// Model files of pefm's first writer (commit eb2a775, 2026-11-28, format version 1) name
// their tensors after the network's modules ("source.features.0.0.weight"), where later
// writers put them under "net.", and record no tap names: those are the taps that version
// always used. Users' files of that layout load as they did then
// (tests/data/models/v1-2026-11-28-first.pefm).
Container upgrade_first_layout(Container c) {
  if (c.meta.count("format") && c.meta.at("format") == "pefm-model" &&
      std::none_of(c.tensors.begin(), c.tensors.end(), [](const auto& t) { return t.first.rfind("net.", 0) == 0; })) {
    TensorDict renamed;
    for (auto& [name, t] : c.tensors) renamed.emplace("net." + name, std::move(t));
    c.tensors = std::move(renamed);
    for (const char* side : {"source", "target"}) {
      const auto arch = c.meta.find(std::string("config.") + side + "_arch");
      if (arch == c.meta.end()) continue;
      c.meta.emplace(std::string("config.") + side + "_taps",
                     arch->second == "mobilenet_v2" ? "features.3,features.6,features.13" : "layer1,layer2,layer3");
    }
  }
  return c;
}

Model container_model(const Container& c, const std::string& origin, const char* format) {
  const MetaReader meta(c.meta, origin);
  if (meta.str("format") != format) {
    throw ModelFileError("model file '" + origin + "' holds a '" + meta.str("format") +
                         "', not a " + format);
  }
  ModelConfig cfg;
  try {
    cfg.source_arch = meta.str("config.source_arch");
    cfg.target_arch = meta.str("config.target_arch");
    cfg.image_size = meta.integer("config.image_size");
    cfg.pe = parse_pe_mode(meta.str("config.pe"), "config.pe");
    cfg.fusion = parse_fusion(meta.str("config.fusion"), "config.fusion");
    // Files from before format version 2 were trained on bilinear resizing.
    cfg.resize = meta.has("config.resize") ? parse_resize(meta.str("config.resize"), "config.resize") : Resize::kBilinear;
    const auto latent = meta.list("config.latent");
    if (latent.size() != 3) throw std::invalid_argument("config.latent needs three widths");
    for (int k = 0; k < 3; ++k) {
      // Range-check before converting: a double such as 1e300 has no int64 value.
      if (!(latent[k] >= 1 && latent[k] <= kMaxLatent)) {
        throw std::invalid_argument("config.latent width " + std::to_string(latent[k]) + " is not in 1.." +
                                    std::to_string(kMaxLatent));
      }
      cfg.latent[k] = static_cast<int64_t>(latent[k]);
    }
    cfg.validate();
    for (const auto& [key, arch] : {std::pair<std::string, std::string>{"config.source_taps", cfg.source_arch},
                                    {"config.target_taps", cfg.target_arch}}) {
      if (meta.str(key) != backbone_tap_names(arch)) {
        throw std::invalid_argument(key + " '" + meta.str(key) + "' is not what this pefm taps from " + arch +
                                    " ('" + backbone_tap_names(arch) + "')");
      }
    }
  } catch (const ModelFileError&) {
    throw;
  } catch (const std::exception& e) {
    throw ModelFileError("model file '" + origin + "' has an invalid configuration: " + e.what());
  }

  check_backbone_sizes(c, cfg, origin);
  check_mapping_shapes(c, cfg, origin);
  Model model;
  model.config = cfg;
  model.net = PefmNet(cfg);
  TensorDict weights;
  for (const auto& [name, t] : c.tensors) {
    if (name.rfind("net.", 0) == 0) weights[name.substr(4)] = t;
  }
  try {
    load_state_dict(*model.net, weights, origin);
  } catch (const std::runtime_error& e) {
    throw ModelFileError(std::string("model file ") + e.what());
  }
  model.net->eval();

  auto& cal = model.calibration;
  const std::string valid = meta.str("calibration.valid");
  if (valid != "0" && valid != "1")
    throw ModelFileError("model file '" + origin + "': calibration.valid '" + valid.substr(0, 20) + "' is not 0 or 1");
  cal.valid = valid == "1";
  if (cal.valid) {
    cal.images = meta.integer("calibration.images");
    if (cal.images < 1 || cal.images > 1000000000) {
      throw ModelFileError("model file '" + origin + "': calibration.images " + std::to_string(cal.images) +
                           " is not in 1..1e9");
    }
    for (const auto& [name, field] : kCalibrationFields) cal.*field = meta.num(std::string("calibration.") + name);
    cal.image_quantiles = meta.list("calibration.image_quantiles");
    cal.pixel_quantiles = meta.list("calibration.pixel_quantiles");
    if (!(cal.threshold > cal.base)) {
      throw ModelFileError("model file '" + origin + "' has an invalid calibration (threshold <= base)");
    }
    // Raw scores are distances of unit vectors: a few units at most. Far larger values are
    // no calibration pefm wrote, and would overflow the float maps they are compared with.
    constexpr double kMaxRaw = 1e6;
    if (std::abs(cal.threshold) > kMaxRaw || std::abs(cal.base) > kMaxRaw) {
      throw ModelFileError("model file '" + origin + "': calibration.threshold or calibration.base is beyond " +
                           "any raw score (|value| > 1e6)");
    }
    // A stated false-alarm rate (files from before it have none: "mean+3std").
    if (meta.has("calibration.method")) cal.method = meta.str("calibration.method");
    const auto rate = [&](const char* key) {
      const double v = meta.num(key);
      if (!(v >= 0.0 && v <= 1.0)) throw ModelFileError("model file '" + origin + "': '" + key + "' is not a rate in 0..1");
      return v;
    };
    if (cal.method == "conformal") {
      cal.false_alarm_target = rate("calibration.false_alarm_target");
      cal.false_alarm_bound = rate("calibration.false_alarm_bound");
      cal.folds = meta.integer("calibration.folds");
      if (cal.folds < 2 || cal.folds > 1000)
        throw ModelFileError("model file '" + origin + "': calibration.folds " + std::to_string(cal.folds) + " is not in 2..1000");
      cal.false_alarm_upper95 = rate("calibration.false_alarm_upper95");
      // Files from before --groups: every image stood alone.
      cal.groups = meta.has("calibration.groups") ? meta.integer("calibration.groups") : cal.images;
      if (cal.groups < 1 || cal.groups > cal.images)
        throw ModelFileError("model file '" + origin + "': calibration.groups " + std::to_string(cal.groups) +
                             " is not in 1.." + std::to_string(cal.images) + " (calibration.images)");
    } else if (cal.method != "mean+3std") {
      throw ModelFileError("model file '" + origin + "': unknown calibration.method '" + cal.method + "'");
    }
    // The region threshold (files from before it have none: regions at `threshold`).
    if (meta.has("calibration.region_threshold")) {
      cal.region_threshold = meta.num("calibration.region_threshold");
      if (!(cal.region_threshold > cal.base) || cal.region_threshold > kMaxRaw)
        throw ModelFileError("model file '" + origin + "' has an invalid calibration.region_threshold (not in base..1e6)");
      cal.region_rate_target = rate("calibration.region_rate_target");
      if (!(cal.region_rate_target > 0.0 && cal.region_rate_target <= 0.5))
        throw ModelFileError("model file '" + origin + "': 'calibration.region_rate_target' is not in (0, 0.5]");
      cal.region_rate = rate("calibration.region_rate");
      cal.region_image_rate = rate("calibration.region_image_rate");
      cal.region_pixels = meta.integer("calibration.region_pixels");
      if (cal.region_pixels < 1)
        throw ModelFileError("model file '" + origin + "': calibration.region_pixels " +
                             std::to_string(cal.region_pixels) + " is not positive");
    }
    try {
      cal.validate();
    } catch (const std::invalid_argument& e) {
      throw ModelFileError("model file '" + origin + "': " + e.what());
    }
  }
  for (const auto& [k, v] : c.meta) {
    if (k.rfind("training.", 0) == 0) model.training[k.substr(9)] = v;
  }
  return model;
}

}  // namespace

void save_model(const Model& model, const std::string& path) {
  write_file_atomically(path, encode_container(model_container(model, "pefm-model")));
}

Model load_model_from_bytes(const std::string& bytes, const std::string& origin) {
  return container_model(upgrade_first_layout(decode_container(bytes, origin)), origin, "pefm-model");
}

Model load_model(const std::string& path) { return load_model_from_bytes(read_model_file(path), path); }

void save_checkpoint(const Model& model, const std::map<std::string, torch::Tensor>& trainer_state,
                     const std::string& path) {
  auto c = model_container(model, "pefm-checkpoint");
  for (const auto& [name, t] : trainer_state) c.tensors["trainer." + name] = t;
  write_file_atomically(path, encode_container(c));
}

Checkpoint load_checkpoint(const std::string& path) {
  const auto c = decode_container(read_model_file(path), path);
  Checkpoint ck{container_model(c, path, "pefm-checkpoint"), {}};
  for (const auto& [name, t] : c.tensors) {
    if (name.rfind("trainer.", 0) == 0) ck.trainer_state[name.substr(8)] = t;
  }
  return ck;
}

}  // namespace pefm
