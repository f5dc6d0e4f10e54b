#include "container.h"

#include <array>
#include <cstring>
#include <sstream>

#include <torch/torch.h>

#include "pefm-config.h"
#include "pefm/model_file_format.h"

namespace pefm {

namespace {

constexpr char kMagic[8] = {'P', 'E', 'F', 'M', 'M', 'O', 'D', 'L'};
constexpr char kEnd[8] = {'P', 'E', 'F', 'M', '_', 'E', 'N', 'D'};
constexpr uint64_t kMaxMeta = 16u << 20;
constexpr uint32_t kMaxTensors = 100000;
constexpr int kMaxDims = 8;

// dtype codes on disk; the set is closed so a reader can reject anything else.
int dtype_code(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32: return 1;
    case torch::kFloat16: return 2;
    case torch::kInt64: return 3;
    case torch::kUInt8: return 4;
    case torch::kFloat64: return 5;
    default: return 0;
  }
}

bool dtype_from_code(int code, torch::ScalarType* t) {
  static const torch::ScalarType types[] = {torch::kFloat32, torch::kFloat16, torch::kInt64,
                                            torch::kUInt8, torch::kFloat64};
  if (code < 1 || code > 5) return false;
  *t = types[code - 1];
  return true;
}

template <typename T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));  // little endian hosts only
}

std::string escape(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string unescape(const std::string& v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] == '\\' && i + 1 < v.size()) {
      out += v[i + 1] == 'n' ? '\n' : v[i + 1];
      ++i;
    } else {
      out += v[i];
    }
  }
  return out;
}

class Reader {
 public:
  Reader(const std::string& bytes, const std::string& origin) : b_(bytes), origin_(origin) {}

  [[noreturn]] void fail(const std::string& why) const {
    throw ModelFileError("model file '" + origin_ + "' " + why);
  }
  void need(uint64_t n, const char* what) const {
    if (n > b_.size() - pos_) {
      fail("is truncated: " + std::string(what) + " needs " + std::to_string(n) +
           " bytes at offset " + std::to_string(pos_) + ", only " +
           std::to_string(b_.size() - pos_) + " left");
    }
  }
  template <typename T>
  T get(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, b_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string bytes(uint64_t n, const char* what) {
    need(n, what);
    auto s = b_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  const char* here() const { return b_.data() + pos_; }
  void skip(uint64_t n) { pos_ += n; }
  size_t pos() const { return pos_; }
  size_t left() const { return b_.size() - pos_; }

 private:
  const std::string& b_;
  const std::string& origin_;
  size_t pos_ = 0;
};

}  // namespace

uint32_t crc32(const void* data, size_t size, uint32_t crc) {
  static const auto table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  for (size_t i = 0; i < size; ++i) crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

std::string encode_container(const Container& c) {
  std::string meta;
  for (const auto& [k, v] : c.meta) {
    TORCH_CHECK(!k.empty() && k.find_first_of("=\n") == std::string::npos,
                "metadata key '", k, "' is empty or holds '=' or a newline");
    meta += k + "=" + escape(v) + "\n";
  }
  std::string out(kMagic, sizeof(kMagic));
  put<uint32_t>(out, kModelFormatVersion);
  put<uint32_t>(out, 0);
  put<uint64_t>(out, meta.size());
  out += meta;
  put<uint32_t>(out, static_cast<uint32_t>(c.tensors.size()));
  for (const auto& [name, tensor] : c.tensors) {
    const auto t = tensor.detach().cpu().contiguous();
    const int code = dtype_code(t.scalar_type());
    TORCH_CHECK(code != 0, "tensor '", name, "' has unsupported dtype ", t.scalar_type());
    TORCH_CHECK(name.size() < 65536 && t.dim() <= kMaxDims, "tensor '", name, "' cannot be stored");
    put<uint16_t>(out, static_cast<uint16_t>(name.size()));
    out += name;
    put<uint8_t>(out, static_cast<uint8_t>(code));
    put<uint8_t>(out, static_cast<uint8_t>(t.dim()));
    for (auto d : t.sizes()) put<int64_t>(out, d);
    const uint64_t nbytes = t.numel() * t.element_size();
    put<uint64_t>(out, nbytes);
    out.append(static_cast<const char*>(t.data_ptr()), nbytes);
  }
  put<uint32_t>(out, crc32(out.data(), out.size()));
  out.append(kEnd, sizeof(kEnd));
  return out;
}

Container decode_container(const std::string& bytes, const std::string& origin) {
  Reader r(bytes, origin);
  if (bytes.size() < sizeof(kMagic) || std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    r.fail("is not a pefm model file (no PEFMMODL header; train one with pefm-train)");
  }
  r.skip(sizeof(kMagic));
  const auto version = r.get<uint32_t>("format version");
  // Versions far beyond this one are not from a newer pefm but from a damaged file.
  constexpr uint32_t kPlausibleVersions = 1000;
  if (version == 0 || version > kModelFormatVersion + kPlausibleVersions) {
    r.fail("is corrupt (its format version field reads " + std::to_string(version) + ")");
  }
  if (version > kModelFormatVersion) {
    r.fail("has format version " + std::to_string(version) + "; this pefm " PEFM_VERSION
           " reads versions 1.." + std::to_string(kModelFormatVersion) +
           " (upgrade pefm to load it)");
  }
  const auto flags = r.get<uint32_t>("flags");
  // The checksum covers everything but the trailer: check it before trusting any size.
  if (bytes.size() < r.pos() + sizeof(uint32_t) + sizeof(kEnd)) r.fail("is truncated (no trailer)");
  const size_t body = bytes.size() - sizeof(uint32_t) - sizeof(kEnd);
  if (std::memcmp(bytes.data() + body + sizeof(uint32_t), kEnd, sizeof(kEnd)) != 0) {
    r.fail("is truncated or has trailing garbage (no PEFM_END trailer)");
  }
  uint32_t stored_crc;
  std::memcpy(&stored_crc, bytes.data() + body, sizeof(stored_crc));
  if (crc32(bytes.data(), body) != stored_crc) r.fail("is corrupt (checksum mismatch)");
  // No flag is defined: one set is a feature this pefm cannot honour, not something to ignore.
  if (flags != 0) r.fail("has header flags " + std::to_string(flags) + " set; this pefm defines none");

  Container c;
  const auto meta_len = r.get<uint64_t>("metadata length");
  if (meta_len > kMaxMeta) r.fail("has an implausible metadata length " + std::to_string(meta_len));
  std::istringstream meta(r.bytes(meta_len, "metadata"));
  for (std::string line; std::getline(meta, line);) {
    const auto eq = line.find('=');
    if (eq == std::string::npos || eq == 0) r.fail("has a malformed metadata line '" + line + "'");
    c.meta[line.substr(0, eq)] = unescape(line.substr(eq + 1));
  }
  const auto count = r.get<uint32_t>("tensor count");
  if (count > kMaxTensors) r.fail("has an implausible tensor count " + std::to_string(count));
  for (uint32_t i = 0; i < count; ++i) {
    const auto name_len = r.get<uint16_t>("tensor name length");
    const auto name = r.bytes(name_len, "tensor name");
    torch::ScalarType dtype;
    if (!dtype_from_code(r.get<uint8_t>("dtype"), &dtype)) r.fail("tensor '" + name + "' has an unknown dtype");
    const auto ndim = r.get<uint8_t>("rank");
    if (ndim > kMaxDims) r.fail("tensor '" + name + "' has rank " + std::to_string(ndim));
    std::vector<int64_t> dims(ndim);
    uint64_t numel = 1;
    for (auto& d : dims) {
      d = r.get<int64_t>("tensor shape");
      if (d < 0 || static_cast<uint64_t>(d) > bytes.size()) r.fail("tensor '" + name + "' has an invalid shape");
      // Divide instead of multiplying first, so the product cannot wrap around.
      if (d != 0 && numel > bytes.size() / static_cast<uint64_t>(d)) r.fail("tensor '" + name + "' is larger than the file");
      numel *= static_cast<uint64_t>(d);
    }
    const auto nbytes = r.get<uint64_t>("tensor size");
    if (nbytes != numel * c10::elementSize(dtype)) {
      r.fail("tensor '" + name + "' declares " + std::to_string(nbytes) + " bytes for its shape");
    }
    r.need(nbytes, "tensor data");
    auto t = torch::empty(dims, torch::TensorOptions().dtype(dtype));
    if (nbytes > 0) std::memcpy(t.data_ptr(), r.here(), nbytes);  // empty tensors have no storage
    r.skip(nbytes);
    if (t.is_floating_point() && !torch::isfinite(t).all().item<bool>()) {
      r.fail("is corrupt: tensor '" + name + "' contains NaN or Inf");
    }
    if (!c.tensors.emplace(name, t).second) r.fail("has tensor '" + name + "' twice");
  }
  if (r.pos() != body) r.fail("has " + std::to_string(body - r.pos()) + " unexplained bytes");
  return c;
}

}  // namespace pefm
