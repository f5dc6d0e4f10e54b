// Where backbone weights are found when a user names only the architecture.
#pragma once

#include <string>
#include <vector>

namespace pefm {

// Folders searched for ARCH.pth, in order: $PEFM_BACKBONE_DIR (':'-separated), then the
// installed models folder (<datadir>/pefm/models beside the installed library), then the
// configured <prefix>/<datadir>/pefm/models when that is another folder.
std::vector<std::string> backbone_search_path();

// Path of ARCH.pth in the search path. Throws std::runtime_error listing the folders
// looked in and how to produce the file (models/export_backbones.py).
std::string find_backbone_weights(const std::string& arch);

}  // namespace pefm
