// Durations, sizes and rates as people read them, in the tools' output and the training
// recipe's notes. No LibTorch.
#pragma once

#include <cstdint>
#include <string>

namespace pefm {

std::string format_duration(double seconds);  // "1:02:03" / "2:03"; "--:--" when unknown
std::string format_bytes(uint64_t bytes);      // "1.5 MiB"
std::string format_percent(double rate);       // 0.0123 -> "1.23 %"

}  // namespace pefm
