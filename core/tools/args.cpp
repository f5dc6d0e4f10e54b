#include "args.h"

#include <iomanip>
#include <iostream>
#include <sstream>

#include <c10/util/Exception.h>

#include "pefm-config.h"
#include "pefm/device.h"

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
      std::cout << program_ << " " << PEFM_VERSION << "\n" << runtime_report();
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

std::pair<std::string, std::string> split_arch(const std::string& spec) {
  const auto eq = spec.find('=');
  if (eq == std::string::npos) return {spec, ""};
  return {spec.substr(0, eq), spec.substr(eq + 1)};
}

}  // namespace cli
}  // namespace pefm
