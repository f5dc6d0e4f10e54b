#include "pefm/weights.h"

#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <stdexcept>

#include "pefm-config.h"

namespace pefm {

std::vector<std::string> backbone_search_path() {
  std::vector<std::string> dirs;
  if (const char* env = std::getenv("PEFM_BACKBONE_DIR"); env && *env) {
    std::stringstream s(env);
    for (std::string dir; std::getline(s, dir, ':');) {
      if (!dir.empty()) dirs.push_back(dir);
    }
  }
  dirs.push_back(PEFM_MODELS_DIR);
  return dirs;
}

std::string find_backbone_weights(const std::string& arch) {
  const auto dirs = backbone_search_path();
  for (const auto& dir : dirs) {
    const auto path = std::filesystem::path(dir) / (arch + ".pth");
    if (std::filesystem::is_regular_file(path)) return path.string();
  }
  std::string looked;
  for (const auto& dir : dirs) looked += "\n  " + dir + "/" + arch + ".pth";
  throw std::runtime_error(
      "no weights for backbone '" + arch + "'; looked in:" + looked +
      "\nExport them on a machine with torchvision and internet access:\n"
      "  python3 models/export_backbones.py --out DIR --arch " + arch +
      "\nthen set PEFM_BACKBONE_DIR=DIR, or give the file as " + arch + "=PATH.pth");
}

}  // namespace pefm
