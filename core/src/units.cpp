#include "pefm/units.h"

#include <cmath>
#include <cstdio>
#include <iomanip>
#include <sstream>

namespace pefm {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--:--";
  const auto t = static_cast<int64_t>(seconds + 0.5);
  char buf[32];
  if (t >= 3600) {
    std::snprintf(buf, sizeof(buf), "%lld:%02lld:%02lld", static_cast<long long>(t / 3600),
                  static_cast<long long>(t / 60 % 60), static_cast<long long>(t % 60));
  } else {
    std::snprintf(buf, sizeof(buf), "%lld:%02lld", static_cast<long long>(t / 60), static_cast<long long>(t % 60));
  }
  return buf;
}

std::string format_bytes(uint64_t bytes) {
  char buf[32];
  if (bytes >= (1u << 30)) std::snprintf(buf, sizeof(buf), "%.2f GiB", bytes / double(1u << 30));
  else if (bytes >= (1u << 20)) std::snprintf(buf, sizeof(buf), "%.1f MiB", bytes / double(1u << 20));
  else std::snprintf(buf, sizeof(buf), "%.1f KiB", bytes / 1024.0);
  return buf;
}

std::string format_percent(double rate) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(2) << rate * 100 << " %";
  return s.str();
}

}  // namespace pefm
