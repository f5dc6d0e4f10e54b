#include "progress.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <sstream>

namespace pefm {
namespace cli {

bool stderr_is_tty() { return isatty(STDERR_FILENO) == 1; }

Progress::Progress(std::string label, int64_t total, bool tty)
    : label_(std::move(label)), total_(std::max<int64_t>(total, 1)), tty_(tty),
      start_(std::chrono::steady_clock::now()), last_(start_ - std::chrono::hours(1)) {}

void Progress::update(int64_t done, const std::string& extra) { draw(done, extra, false); }
void Progress::finish(const std::string& extra) { draw(total_, extra, true); }

void Progress::draw(int64_t done, const std::string& extra, bool final) {
  done = std::clamp<int64_t>(done, 0, total_);  // a miscount must not break the bar
  const auto now = std::chrono::steady_clock::now();
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const int percent = static_cast<int>(100 * done / total_);
  const auto since = std::chrono::duration<double>(now - last_).count();
  if (!final) {
    // A terminal redraws up to 10 times a second; a log gets a line every 10 s.
    if (tty_ && since < 0.1) return;
    if (!tty_ && since < 10.0) return;
  }
  last_ = now;
  const double eta = done > 0 ? elapsed * (total_ - done) / done : NAN;
  std::ostringstream line;
  line << label_ << " ";
  if (tty_) {
    const int width = 24, fill = static_cast<int>(width * done / total_);
    line << "[" << std::string(fill, '#') << std::string(width - fill, '.') << "] ";
  }
  line << std::setw(3) << percent << "% " << done << "/" << total_ << " " << format_duration(elapsed);
  if (!final) line << " ETA " << format_duration(eta);
  if (!extra.empty()) line << "  " << extra;
  if (tty_) {
    std::cerr << "\r\033[K" << line.str() << (final ? "\n" : "") << std::flush;
  } else {
    std::cerr << line.str() << "\n" << std::flush;
  }
}

namespace {
std::atomic<int> g_signals{0};
extern "C" void on_stop_signal(int sig) {
  if (g_signals.fetch_add(1) >= 1) {
    std::signal(sig, SIG_DFL);
    std::raise(sig);
  }
}
}  // namespace

void install_stop_handler() {
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
}

bool stop_requested() { return g_signals.load() > 0; }

}  // namespace cli
}  // namespace pefm
