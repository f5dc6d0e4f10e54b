#include "resample.h"

#include <algorithm>
#include <cmath>

namespace pefm {
namespace resample {

namespace {

double sinc(double x) {
  if (x == 0.0) return 1.0;
  x *= M_PI;
  return std::sin(x) / x;
}

double lanczos(double x) { return (-3.0 <= x && x < 3.0) ? sinc(x) * sinc(x / 3.0) : 0.0; }

}  // namespace

AxisTaps lanczos_taps(int in, int out) {
  AxisTaps t;
  const double scale = static_cast<double>(in) / out;
  const double filterscale = std::max(scale, 1.0);
  const double support = 3.0 * filterscale;
  t.max_taps = static_cast<int>(std::ceil(support)) * 2 + 1;
  t.lo.resize(static_cast<size_t>(out));
  t.count.resize(static_cast<size_t>(out));
  t.weights.assign(static_cast<size_t>(out) * t.max_taps, 0.0f);
  t.fixed.assign(static_cast<size_t>(out) * t.max_taps, 0);
  std::vector<double> k(static_cast<size_t>(t.max_taps));
  for (int i = 0; i < out; ++i) {
    const double center = (i + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    // C casts truncate towards zero, as PIL's (int) does.
    int lo = static_cast<int>(center - support + 0.5);
    if (lo < 0) lo = 0;
    int hi = static_cast<int>(center + support + 0.5);
    if (hi > in) hi = in;
    const int n = std::min(hi - lo, t.max_taps);
    double sum = 0.0;
    for (int x = 0; x < n; ++x) {
      k[static_cast<size_t>(x)] = lanczos((x + lo - center + 0.5) * ss);
      sum += k[static_cast<size_t>(x)];
    }
    t.lo[static_cast<size_t>(i)] = lo;
    t.count[static_cast<size_t>(i)] = n;
    for (int x = 0; x < n; ++x) {
      const double w = sum != 0.0 ? k[static_cast<size_t>(x)] / sum : 0.0;
      const size_t at = static_cast<size_t>(i) * t.max_taps + x;
      t.weights[at] = static_cast<float>(w);
      const double f = w * (1 << kPrecisionBits);
      t.fixed[at] = static_cast<int32_t>(w < 0 ? -0.5 + f : 0.5 + f);
    }
  }
  return t;
}

}  // namespace resample
}  // namespace pefm
