#include "pefm/weights.h"

#include <dlfcn.h>

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
  // PEFM_MODELS_DIR_FROM_LIBDIR is relative to the folder this library is installed in
  // (absolute when meson's libdir or datadir is); then the configured folder, when another.
  Dl_info self{};
  if (dladdr(reinterpret_cast<void*>(&backbone_search_path), &self) && self.dli_fname) {
    // through symbolic links: merged-/usr systems load it as /lib/..., whose ../../share is not /usr/share
    std::error_code ec;
    const auto lib = std::filesystem::canonical(self.dli_fname, ec);
    if (!ec) dirs.push_back((lib.parent_path() / PEFM_MODELS_DIR_FROM_LIBDIR).lexically_normal().string());
  }
  if (dirs.empty() || dirs.back() != PEFM_MODELS_DIR) dirs.push_back(PEFM_MODELS_DIR);
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
