// Command-line arguments of the tools: options, usage errors, the main wrapper.
// No LibTorch.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace pefm {
namespace cli {

// A user error: printed as "PROGRAM: message" with exit status 2, without a stack of
// LibTorch detail.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Args {
 public:
  Args(std::string program, std::string synopsis, std::string description);

  // --name VALUE (or --name=VALUE); `fallback` is used when absent ("" = required when
  // `required`). Repeatable options keep every value.
  void option(const std::string& name, const std::string& metavar, const std::string& help,
              const std::string& fallback = "", bool required = false, bool repeatable = false);
  void flag(const std::string& name, const std::string& help);

  // Returns false after printing --help (the caller exits 0); throws UsageError.
  bool parse(int argc, char** argv);

  std::string get(const std::string& name) const;
  std::vector<std::string> all(const std::string& name) const;
  bool has(const std::string& name) const;
  int64_t integer(const std::string& name, int64_t min, int64_t max) const;
  double number(const std::string& name, double min, double max) const;
  std::string help() const;

 private:
  struct Spec {
    std::string metavar, help, fallback;
    bool required = false, repeatable = false, is_flag = false;
  };
  std::string program_, synopsis_, description_;
  std::vector<std::string> order_;
  std::map<std::string, Spec> specs_;
  std::map<std::string, std::vector<std::string>> values_;
};

// Runs a tool's `run`, turning exceptions into "PROGRAM: message" on stderr: exit 2 for
// usage errors, 1 for everything else (LibTorch errors without their C++ backtrace).
int run_main(const char* program, int (*run)(int, char**), int argc, char** argv);

// "L1,L2,L3" -> three integers; UsageError naming `option` otherwise.
std::array<int64_t, 3> parse_widths(const std::string& text, const std::string& option);

// "arch" or "arch=path": the arch and an explicit weights path ("" if none).
std::pair<std::string, std::string> split_arch(const std::string& spec);

}  // namespace cli
}  // namespace pefm
