#include "pefm/pe_choice.h"

#include <cmath>
#include <stdexcept>
#include <tuple>

namespace pefm {

namespace {

// The mean over units of the per-unit mean gains, and its standard error; NaN with fewer
// than two units.
std::pair<double, double> unit_mean(const std::map<size_t, std::pair<double, int>>& per_unit) {
  std::vector<double> d;
  for (const auto& [u, sc] : per_unit) d.push_back(sc.first / sc.second);
  if (d.size() < 2) return {NAN, NAN};
  double mean = 0, var = 0;
  for (double v : d) mean += v;
  mean /= static_cast<double>(d.size());
  for (double v : d) var += (v - mean) * (v - mean);
  var /= static_cast<double>(d.size() - 1);
  return {mean, std::sqrt(var / static_cast<double>(d.size()))};
}

}  // namespace

PeMode choose_pe(std::vector<PeTrial>& trials, const std::vector<size_t>& unit, const std::vector<std::string>& kind) {
  const PeTrial* none = nullptr;
  for (const auto& t : trials) {
    if (t.pe == PeMode::kNone) none = &t;
  }
  if (!none || !std::isfinite(none->merit())) {
    const PeTrial* best = nullptr;
    for (const auto& t : trials) {
      if (std::isfinite(t.merit()) && (!best || t.merit() > best->merit())) best = &t;
    }
    if (!best) throw std::runtime_error("--pe auto: no variant gave finite scores on the synthetic defects");
    return best->pe;
  }
  const PeTrial* chosen = none;
  double chosen_gain = 0;
  for (auto& t : trials) {
    if (t.pe == PeMode::kNone) continue;
    std::map<size_t, std::pair<double, int>> appearance, position;  // per unit: sum of gains, count
    std::map<std::string, std::pair<double, int>> per_kind;
    for (size_t i = 0; i < t.per_image.size() && i < none->per_image.size() && i < unit.size(); ++i) {
      if (!std::isfinite(t.per_image[i]) || !std::isfinite(none->per_image[i])) continue;
      const double gain = t.per_image[i] - none->per_image[i];
      const bool moved = i < kind.size() && kind[i] == "shift";
      auto& u = (moved ? position : appearance)[unit[i]];
      u.first += gain;
      ++u.second;
      if (i < kind.size()) {
        auto& k = per_kind[kind[i]];
        k.first += gain;
        ++k.second;
      }
    }
    for (const auto& [name, sc] : per_kind) t.gain_by_kind[name] = {sc.first / sc.second, sc.second};
    std::tie(t.gain, t.gain_se) = unit_mean(appearance);
    std::tie(t.position_gain, t.position_se) = unit_mean(position);
    const bool appearance_gain = t.gain > 2.0 * t.gain_se;
    const bool position_gain = t.position_gain > 2.0 * t.position_se && t.position_gain >= kMinPositionGain &&
                               t.gain >= -2.0 * t.gain_se;
    t.eligible = (appearance_gain || position_gain) && std::isfinite(t.merit()) && t.merit() >= none->merit();
    const double total = (std::isfinite(t.gain) ? t.gain : 0) + (std::isfinite(t.position_gain) ? t.position_gain : 0);
    if (t.eligible && (chosen == none || total > chosen_gain)) chosen = &t, chosen_gain = total;
  }
  return chosen->pe;
}

PeEvidenceStrength evidence_strength(const std::vector<PeTrial>& trials) {
  PeEvidenceStrength s;
  for (const auto& t : trials)
    if (std::isfinite(t.pixel_auroc) && !(t.pixel_auroc <= s.best_pixel_auroc)) s.best_pixel_auroc = t.pixel_auroc;
  s.weak = !(s.best_pixel_auroc >= kWeakEvidenceAuroc);
  return s;
}

}  // namespace pefm
