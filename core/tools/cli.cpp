#include "cli.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>

#include <torch/torch.h>
#include <torch/version.h>

#include "pefm-config.h"
#include "pefm/file_util.h"

namespace pefm {
namespace cli {

Args::Args(std::string program, std::string synopsis, std::string description)
    : program_(std::move(program)), synopsis_(std::move(synopsis)), description_(std::move(description)) {}

void Args::option(const std::string& name, const std::string& metavar, const std::string& help,
                  const std::string& fallback, bool required, bool repeatable) {
  order_.push_back(name);
  specs_[name] = Spec{metavar, help, fallback, required, repeatable, false};
}

void Args::flag(const std::string& name, const std::string& help) {
  order_.push_back(name);
  specs_[name] = Spec{"", help, "", false, false, true};
}

bool Args::parse(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << help();
      return false;
    }
    if (arg == "--version") {
      std::cout << program_ << " " << PEFM_VERSION << " (LibTorch " << TORCH_VERSION << ")\n";
      return false;
    }
    if (arg.rfind("--", 0) != 0) throw UsageError("unexpected argument '" + arg + "' (see --help)");
    std::string name = arg.substr(2), value;
    bool inline_value = false;
    if (const auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      inline_value = true;
    }
    const auto it = specs_.find(name);
    if (it == specs_.end()) throw UsageError("unknown option '--" + name + "' (see --help)");
    const auto& spec = it->second;
    if (spec.is_flag) {
      if (inline_value) throw UsageError("--" + name + " takes no value");
      values_[name] = {"1"};
      continue;
    }
    if (!inline_value) {
      if (i + 1 >= argc) throw UsageError("--" + name + " needs a value (" + spec.metavar + ")");
      value = argv[++i];
    }
    if (!spec.repeatable && values_.count(name)) throw UsageError("--" + name + " given twice");
    values_[name].push_back(value);
  }
  for (const auto& name : order_) {
    const auto& spec = specs_.at(name);
    if (spec.required && !values_.count(name)) throw UsageError("--" + name + " is required (see --help)");
  }
  return true;
}

std::string Args::get(const std::string& name) const {
  const auto it = values_.find(name);
  return it == values_.end() ? specs_.at(name).fallback : it->second.back();
}

std::vector<std::string> Args::all(const std::string& name) const {
  const auto it = values_.find(name);
  return it == values_.end() ? std::vector<std::string>{} : it->second;
}

bool Args::has(const std::string& name) const { return values_.count(name) > 0; }

int64_t Args::integer(const std::string& name, int64_t min, int64_t max) const {
  const auto text = get(name);
  try {
    size_t used = 0;
    const long long v = std::stoll(text, &used);
    if (used == text.size() && v >= min && v <= max) return v;
  } catch (const std::exception&) {
  }
  throw UsageError("--" + name + " must be an integer in " + std::to_string(min) + ".." +
                   std::to_string(max) + ", got '" + text + "'");
}

double Args::number(const std::string& name, double min, double max) const {
  const auto text = get(name);
  try {
    size_t used = 0;
    const double v = std::stod(text, &used);
    if (used == text.size() && v >= min && v <= max) return v;
  } catch (const std::exception&) {
  }
  std::ostringstream range;
  range << min << ".." << max;
  throw UsageError("--" + name + " must be a number in " + range.str() + ", got '" + text + "'");
}

std::string Args::help() const {
  std::ostringstream s;
  s << "Usage: " << program_ << " " << synopsis_ << "\n\n" << description_ << "\n\nOptions:\n";
  for (const auto& name : order_) {
    const auto& spec = specs_.at(name);
    std::string left = "  --" + name + (spec.is_flag ? "" : " " + spec.metavar);
    s << std::left << std::setw(34) << left << (left.size() >= 34 ? "\n" + std::string(34, ' ') : "")
      << spec.help;
    if (!spec.fallback.empty()) s << " [" << spec.fallback << "]";
    if (spec.required) s << " (required)";
    if (spec.repeatable) s << " (repeatable)";
    s << "\n";
  }
  s << "  --version                       the version of pefm and LibTorch\n";
  s << "  --help                          this text\n";
  return s.str();
}

int run_main(const char* program, int (*run)(int, char**), int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const UsageError& e) {
    std::cerr << program << ": " << e.what() << "\n";
    return 2;
  } catch (const c10::Error& e) {
    std::cerr << program << ": error: " << e.what_without_backtrace() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << program << ": error: " << e.what() << "\n";
    return 1;
  }
}

std::array<int64_t, 3> parse_widths(const std::string& text, const std::string& option) {
  std::array<int64_t, 3> out{};
  std::stringstream s(text);
  std::string item;
  for (int k = 0; k < 3; ++k) {
    if (!std::getline(s, item, ',')) throw UsageError(option + " needs three widths like 200,400,800, got '" + text + "'");
    try {
      size_t used = 0;
      out[k] = std::stoll(item, &used);
      if (used != item.size()) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      throw UsageError(option + ": '" + item + "' is not an integer");
    }
  }
  if (std::getline(s, item, ',')) throw UsageError(option + " needs exactly three widths, got '" + text + "'");
  return out;
}

bool stderr_is_tty() { return isatty(STDERR_FILENO) == 1; }

namespace {
std::streambuf* g_real_stdout = nullptr;  // set by route_json_output("-")
}

void route_json_output(const std::string& json_path) {
  if (json_path == "-" && !g_real_stdout) g_real_stdout = std::cout.rdbuf(std::cerr.rdbuf());
}

void write_json(const std::string& path, const std::string& text) {
  if (path == "-") {
    std::ostream out(g_real_stdout ? g_real_stdout : std::cout.rdbuf());
    out << text << std::flush;
    if (!out) throw std::runtime_error("cannot write the JSON report to stdout");
    return;
  }
  pefm::write_file_atomically(path, text);
  std::cout << "wrote " << path << "\n";
}

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

Progress::Progress(std::string label, int64_t total, bool tty)
    : label_(std::move(label)), total_(std::max<int64_t>(total, 1)), tty_(tty),
      start_(std::chrono::steady_clock::now()), last_(start_ - std::chrono::hours(1)) {}

void Progress::update(int64_t done, const std::string& extra) { draw(done, extra, false); }
void Progress::finish(const std::string& extra) { draw(total_, extra, true); }

void Progress::draw(int64_t done, const std::string& extra, bool final) {
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

torch::Tensor to_tensor(const io::Image& img) {
  return torch::from_blob(const_cast<uint8_t*>(img.pixels.data()), {img.height, img.width, img.channels},
                          torch::kUInt8)
      .clone();
}

io::Image to_image(const torch::Tensor& hwc) {
  const auto t = hwc.to(torch::kCPU, torch::kUInt8).contiguous();
  TORCH_CHECK(t.dim() == 3 && (t.size(2) == 1 || t.size(2) == 3), "to_image needs [H, W, 1|3], got ", t.sizes());
  io::Image img;
  img.height = static_cast<int>(t.size(0));
  img.width = static_cast<int>(t.size(1));
  img.channels = static_cast<int>(t.size(2));
  img.pixels.assign(t.data_ptr<uint8_t>(), t.data_ptr<uint8_t>() + t.numel());
  return img;
}

std::pair<std::string, std::string> split_arch(const std::string& spec) {
  const auto eq = spec.find('=');
  if (eq == std::string::npos) return {spec, ""};
  return {spec.substr(0, eq), spec.substr(eq + 1)};
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

std::string first_bytes(const std::string& path, size_t n) {
  std::ifstream in(path, std::ios::binary);
  std::string out(n, '\0');
  in.read(out.data(), static_cast<std::streamsize>(n));
  out.resize(static_cast<size_t>(in.gcount()));
  return out;
}

bool holds_kind(const std::string& path, OutputKind kind) {
  const auto head = first_bytes(path, 64);
  if (kind == OutputKind::kModel) return head.compare(0, 8, "PEFMMODL") == 0;
  const auto start = head.find_first_not_of(" \t\r\n");
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
                     (kind == OutputKind::kModel ? "a pefm model file" : "a JSON file") +
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

std::string json_escape(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
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
