// Progress on stderr (bars, ETA), durations and sizes for people, and the stop signal.
// No LibTorch.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "pefm/units.h"

namespace pefm {
namespace cli {

// One-line progress with elapsed time and ETA. On a terminal it redraws in place; when
// stdout is a pipe or file it prints a plain line at most every `plain_interval`.
class Progress {
 public:
  Progress(std::string label, int64_t total, bool tty);
  void update(int64_t done, const std::string& extra = "");
  void finish(const std::string& extra = "");

 private:
  void draw(int64_t done, const std::string& extra, bool final);
  std::string label_;
  int64_t total_;
  bool tty_;
  std::chrono::steady_clock::time_point start_, last_;
};

// Progress (bars, per-epoch lines, skipped files) goes to stderr, results to stdout.
bool stderr_is_tty();

using pefm::format_bytes;
using pefm::format_duration;

// SIGINT / SIGTERM set a flag instead of killing the process; a second signal kills.
void install_stop_handler();
bool stop_requested();

}  // namespace cli
}  // namespace pefm
