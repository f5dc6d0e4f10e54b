#include "pefm/pe_choice.h"

#include <stdexcept>

namespace pefm {

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
  for (auto& t : trials) {
    if (t.pe == PeMode::kNone) continue;
    std::map<size_t, std::pair<double, int>> per_unit;  // sum of gains, count
    std::map<std::string, std::pair<double, int>> per_kind;
    for (size_t i = 0; i < t.per_image.size() && i < none->per_image.size() && i < unit.size(); ++i) {
      if (!std::isfinite(t.per_image[i]) || !std::isfinite(none->per_image[i])) continue;
      const double gain = t.per_image[i] - none->per_image[i];
      auto& u = per_unit[unit[i]];
      u.first += gain;
      ++u.second;
      if (i < kind.size()) {
        auto& k = per_kind[kind[i]];
        k.first += gain;
        ++k.second;
      }
    }
    for (const auto& [name, sc] : per_kind) t.gain_by_kind[name] = {sc.first / sc.second, sc.second};
    std::vector<double> d;
    for (const auto& [u, sc] : per_unit) d.push_back(sc.first / sc.second);
    if (d.size() < 2) continue;
    double mean = 0, var = 0;
    for (double v : d) mean += v;
    mean /= static_cast<double>(d.size());
    for (double v : d) var += (v - mean) * (v - mean);
    var /= static_cast<double>(d.size() - 1);
    t.gain = mean;
    t.gain_se = std::sqrt(var / static_cast<double>(d.size()));
    t.eligible = mean > 2.0 * t.gain_se && std::isfinite(t.merit()) && t.merit() >= none->merit();
    if (t.eligible && (chosen == none || t.gain > chosen->gain)) chosen = &t;
  }
  return chosen->pe;
}

}  // namespace pefm
