// Where the tools' results go: JSON to a file or stdout, checked output paths,
// temporary files. No LibTorch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pefm/json_text.h"

namespace pefm {
namespace cli {

// --json -: the JSON is the only thing on stdout; call first thing with the --json value,
// and everything else the tool prints to std::cout moves to stderr. write_json writes
// json_text(value, indent) to that stdout for "-", else atomically to the file (saying so).
// JSON values keep their keys in the order they were written.
using Json = pefm::Json;

void route_json_output(const std::string& json_path);
void write_json(const std::string& path, const Json& value, int indent = 2);

// pefm::json_text(value, indent) (json_text.h: NaN as null, invalid UTF-8 as U+FFFD,
// control characters escaped; indent < 0 gives one line) and a newline.
std::string json_text(const Json& value, int indent = 2);

// A float32 array [height, width] as a NumPy .npy file (format 1.0, little-endian, C
// order), written atomically: numpy.load reads it, and so can any reader of the format.
void write_npy(const std::string& path, const float* values, int64_t height, int64_t width);
// The same for any shape (C order).
void write_npy(const std::string& path, const float* values, const std::vector<int64_t>& shape);

// The first `n` bytes of a file (fewer when it is shorter; "" when unreadable).
std::string first_bytes(const std::string& path, size_t n);

// One CSV field: quoted when it holds a comma, a quote or a line break (RFC 4180).
std::string csv_field(const std::string& v);

// What an output file will hold: an existing file at that path is replaced only when it
// already holds the same kind, so a typo cannot overwrite an image, a weights file or the
// model being read.
enum class OutputKind { kModel, kJson, kScores, kTrainScores, kHtml, kOnnx };

// Checks an output file before any work: not a folder, its folder exists and is writable,
// not the same file (device and inode) as any of `inputs`, and an existing file there of
// the same kind. Throws UsageError naming `option` and the path. Empty paths pass.
void check_output_file(const std::string& option, const std::string& path, OutputKind kind,
                       const std::vector<std::string>& inputs = {});
// Checks an output folder (created later if missing): a folder or creatable in a writable
// one, and not inside any of `input_dirs`.
void check_output_dir(const std::string& option, const std::string& path,
                      const std::vector<std::string>& input_dirs);

// A temporary file path, removed by the destructor.
class TempFile {
 public:
  TempFile(const std::string& prefix, const std::string& suffix);
  ~TempFile();
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace cli
}  // namespace pefm
