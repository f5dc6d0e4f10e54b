// Shared plumbing of the command-line tools: arguments, progress, signals, images.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <torch/types.h>

#include "pefm-io/image_io.h"

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

// Runs a tool's `run`, turning exceptions into "PROGRAM: message" on stderr: exit 2 for
// usage errors, 1 for everything else (LibTorch errors without their C++ backtrace).
int run_main(const char* program, int (*run)(int, char**), int argc, char** argv);

// "L1,L2,L3" -> three integers; UsageError naming `option` otherwise.
std::array<int64_t, 3> parse_widths(const std::string& text, const std::string& option);

// Progress (bars, per-epoch lines, skipped files) goes to stderr, results to stdout.
bool stderr_is_tty();

// --json -: the JSON is the only thing on stdout; call first thing with the --json value,
// and everything else the tool prints to std::cout moves to stderr. write_json writes the
// text to that stdout for "-", else atomically to the file (saying so).
void route_json_output(const std::string& json_path);
void write_json(const std::string& path, const std::string& text);
std::string format_duration(double seconds);  // "1:02:03" / "2:03"
std::string format_bytes(uint64_t bytes);

// SIGINT / SIGTERM set a flag instead of killing the process; a second signal kills.
void install_stop_handler();
bool stop_requested();

// Decoded image as a [H, W, C] uint8 tensor sharing nothing with `img`.
torch::Tensor to_tensor(const io::Image& img);
// [H, W, C] uint8 tensor (C = 1 or 3) back to an image.
io::Image to_image(const torch::Tensor& hwc);

// What an output file will hold: an existing file at that path is replaced only when it
// already holds the same kind, so a typo cannot overwrite an image, a weights file or the
// model being read.
enum class OutputKind { kModel, kJson };

// Checks an output file before any work: not a folder, its folder exists and is writable,
// not the same file (device and inode) as any of `inputs`, and an existing file there of
// the same kind. Throws UsageError naming `option` and the path. Empty paths pass.
void check_output_file(const std::string& option, const std::string& path, OutputKind kind,
                       const std::vector<std::string>& inputs = {});
// Checks an output folder (created later if missing): a folder or creatable in a writable
// one, and not inside any of `input_dirs`.
void check_output_dir(const std::string& option, const std::string& path,
                      const std::vector<std::string>& input_dirs);

// "arch" or "arch=path": the arch and an explicit weights path ("" if none).
std::pair<std::string, std::string> split_arch(const std::string& spec);

std::string json_escape(const std::string& s);

// A temporary file path, removed by the destructor.
class TempFile {
 public:
  TempFile(const std::string& prefix, const std::string& suffix);
  ~TempFile();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace cli
}  // namespace pefm
