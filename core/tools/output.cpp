#include "output.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <stdexcept>

#include "args.h"
#include "pefm/file_util.h"

namespace pefm {
namespace cli {

namespace {
std::streambuf* g_real_stdout = nullptr;  // set by route_json_output("-")
}

void route_json_output(const std::string& json_path) {
  if (json_path == "-" && !g_real_stdout) g_real_stdout = std::cout.rdbuf(std::cerr.rdbuf());
}

std::string json_text(const Json& value, int indent) {
  return pefm::json_text(value, indent) + "\n";
}

std::string csv_field(const std::string& v) {
  if (v.find_first_of(",\"\r\n") == std::string::npos) return v;
  std::string q = "\"";
  for (char c : v) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

void write_json(const std::string& path, const Json& value, int indent) {
  const auto text = json_text(value, indent);
  if (path == "-") {
    std::ostream out(g_real_stdout ? g_real_stdout : std::cout.rdbuf());
    out << text << std::flush;
    if (!out) throw std::runtime_error("cannot write the JSON report to stdout");
    return;
  }
  pefm::write_file_atomically(path, text);
  std::cout << "wrote " << path << "\n";
}

std::string first_bytes(const std::string& path, size_t n) {
  std::ifstream in(path, std::ios::binary);
  std::string out(n, '\0');
  in.read(out.data(), static_cast<std::streamsize>(n));
  out.resize(static_cast<size_t>(in.gcount()));
  return out;
}

void write_npy(const std::string& path, const float* values, const std::vector<int64_t>& shape) {
  static_assert(sizeof(float) == 4, "npy '<f4' needs 32-bit floats");
  std::string dims;  // "3," for one axis (a Python tuple), "2, 3" for more
  int64_t count = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    dims += (i > 0 ? ", " : "") + std::to_string(shape[i]);
    count *= shape[i];
  }
  if (shape.size() == 1) dims += ",";
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  // magic (6) + version (2) + length (2) + header + '\n', padded with spaces to 64 bytes
  const size_t total = (10 + header.size() + 1 + 63) / 64 * 64;
  header.append(total - 10 - header.size() - 1, ' ');
  header += '\n';
  std::string text("\x93NUMPY\x01\x00", 8);
  text += static_cast<char>(header.size() & 0xff);
  text += static_cast<char>(header.size() >> 8);
  text += header;
  const auto bytes = static_cast<size_t>(count) * sizeof(float);
  const size_t at = text.size();
  text.resize(at + bytes);
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the floats are copied as '<f4' says");
  if (bytes > 0) std::memcpy(&text[at], values, bytes);
  pefm::write_file_atomically(path, text);
}

void write_npy(const std::string& path, const float* values, int64_t height, int64_t width) {
  write_npy(path, values, std::vector<int64_t>{height, width});
}

namespace {

std::string parent_of(const std::string& path) {
  const auto parent = std::filesystem::path(path).parent_path();
  return parent.empty() ? "." : parent.string();
}

bool same_file(const std::string& a, const std::string& b) {
  struct stat sa {}, sb {};
  return ::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

bool holds_kind(const std::string& path, OutputKind kind) {
  const auto head = first_bytes(path, 64);
  if (kind == OutputKind::kModel) return head.compare(0, 8, "PEFMMODL") == 0;
  // pefm-export's own ONNX files: ir_version (field 1), then producer_name (field 2).
  if (kind == OutputKind::kOnnx) return head.size() > 2 && head[0] == '\x08' && head.find("pefm-export") < 16;
  const auto start = head.find_first_not_of(" \t\r\n");
  if (kind == OutputKind::kScores)  // pefm-eval --scores: its CSV header, or JSON lines
    return start == std::string::npos || head.compare(start, 16, "file,type,score,") == 0 || head[start] == '{';
  if (kind == OutputKind::kTrainScores)  // pefm-train --train-scores: its CSV header, or JSON lines
    return start == std::string::npos || head.compare(start, 17, "file,group,fold,s") == 0 || head[start] == '{';
  if (kind == OutputKind::kHtml) {  // an HTML page (pefm-eval --report writes "<!DOCTYPE html>")
    std::string lower = head.substr(start == std::string::npos ? head.size() : start);
    for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return start == std::string::npos || lower.compare(0, 9, "<!doctype") == 0 || lower.compare(0, 5, "<html") == 0;
  }
  return start == std::string::npos || head[start] == '{' || head[start] == '[';
}

void check_writable_dir(const std::string& option, const std::string& what, const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    throw UsageError(option + " '" + what + "': the folder '" + dir + "' does not exist");
  }
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    throw UsageError(option + " '" + what + "': the folder '" + dir + "' is not writable (" + std::strerror(errno) + ")");
  }
}

}  // namespace

void check_output_file(const std::string& option, const std::string& path, OutputKind kind,
                       const std::vector<std::string>& inputs) {
  if (path.empty() || (path == "-" && kind == OutputKind::kJson)) return;  // stdout
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (std::filesystem::is_directory(status)) throw UsageError(option + " '" + path + "' is a folder, not a file name");
  check_writable_dir(option, path, parent_of(path));
  if (!std::filesystem::exists(status)) return;
  for (const auto& in : inputs) {
    if (!in.empty() && same_file(path, in)) {
      throw UsageError(option + " '" + path + "' is the input '" + in + "'; refusing to overwrite it");
    }
  }
  if (!std::filesystem::is_regular_file(status) || !holds_kind(path, kind)) {
    throw UsageError(option + " '" + path + "' exists and is not " +
                     (kind == OutputKind::kModel  ? "a pefm model file"
                      : kind == OutputKind::kOnnx ? "an ONNX file pefm-export wrote"
                      : kind == OutputKind::kJson ? "a JSON file"
                      : kind == OutputKind::kHtml ? "an HTML page"
                      : kind == OutputKind::kTrainScores ? "a pefm-train scores file"
                                                  : "a pefm-eval scores file") +
                     "; refusing to replace it (remove it first if that is what you want)");
  }
}

void check_output_dir(const std::string& option, const std::string& path, const std::vector<std::string>& input_dirs) {
  if (path.empty()) return;
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) {
    if (!std::filesystem::is_directory(path, ec)) throw UsageError(option + " '" + path + "' exists and is not a folder");
    check_writable_dir(option, path, path);
  } else {
    // The nearest existing ancestor must be writable, so create_directories can succeed.
    auto dir = std::filesystem::absolute(path, ec).parent_path();
    while (!dir.empty() && !std::filesystem::exists(dir, ec) && dir != dir.root_path()) dir = dir.parent_path();
    check_writable_dir(option, path, dir.string());
  }
  const auto out = std::filesystem::weakly_canonical(path, ec).string() + "/";
  for (const auto& in_dir : input_dirs) {
    const auto in = std::filesystem::weakly_canonical(in_dir, ec).string() + "/";
    if (out.compare(0, in.size(), in) == 0) {
      throw UsageError(option + " '" + path + "' lies inside the input folder '" + in_dir +
                       "'; choose a folder outside it");
    }
  }
}

TempFile::TempFile(const std::string& prefix, const std::string& suffix) {
  const char* dir = std::getenv("TMPDIR");
  std::string tmpl = std::string(dir && *dir ? dir : "/tmp") + "/" + prefix + "-XXXXXX" + suffix;
  const int fd = mkstemps(tmpl.data(), static_cast<int>(suffix.size()));
  if (fd < 0) throw std::runtime_error("cannot create a temporary file in " + tmpl);
  ::close(fd);
  path_ = tmpl;
}

TempFile::~TempFile() { std::remove(path_.c_str()); }

}  // namespace cli
}  // namespace pefm
