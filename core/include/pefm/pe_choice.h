// pefm-train --pe auto's rule: the position code is an assumption (parts sit at the same
// place in every image), so it is taken only on evidence from synthetic defects in
// held-out normal images. No LibTorch.
#pragma once

#include <cmath>
#include <cstddef>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "pefm/config.h"

namespace pefm {

// One variant's scores on the probe set.
struct PeTrial {
  PeMode pe = PeMode::kNone;
  double pixel_auroc = NAN, aupro = NAN, seconds = 0;  // pooled over the whole probe set
  double train_seconds = 0, score_seconds = 0;
  std::vector<double> per_image;  // each probe defect's pixel AUROC (against its image and misaligned copy)
  // Filled by choose_pe:
  double gain = NAN, gain_se = NAN;  // mean paired gain over none per unit, its standard error
  std::map<std::string, std::pair<double, int>> gain_by_kind;  // per defect kind: mean paired gain, images
  bool eligible = false;
  double merit() const { return (pixel_auroc + aupro) / 2.0; }
};

// None, unless add or concat gains over none on the probe defects (the paired per-image
// gain averaged per unit, `unit[i]` being probe i's source image or group, its mean above
// two standard errors over the units) and pools no worse (merit); of those, the larger
// gain. `kind[i]` names probe i's defect kind, for gain_by_kind. Fills each trial's gain,
// standard error, gains by kind and eligibility. Without a finite none, the best finite
// merit; throws std::runtime_error when no trial has one.
PeMode choose_pe(std::vector<PeTrial>& trials, const std::vector<size_t>& unit, const std::vector<std::string>& kind);

}  // namespace pefm
