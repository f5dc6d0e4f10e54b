// Self-test of core/src/pth_reader.cpp on its own (no gtest, no LibTorch), run by meson as
// the `pth-reader` test (and under ASan + UBSan in tests/sanitize/run.sh):
//   build/tests/pth-reader-selftest [extra .pth files to parse and list...]
// Real files: models/ of $PEFM_SHARED_DIR or ../shared ($PEFM_MODELS_DIR overrides; skipped
// with a message when absent, a failure under PEFM_REQUIRE_SHARED=1) and tests/data/golden.
// Crafted files are assembled in memory: about 90 hand-built pickles, zip damage, every
// opcode in every stack state, truncations and fixed-seed byte flips.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "pth_reader.h"
#include "sanitized.h"

using pefm::pth::DType;
using pefm::pth::PthError;
using pefm::pth::TensorRecord;
using pefm::pth::dtype_name;
using pefm::pth::read_pth;

namespace {

using pefm_test::kSanitized;

int g_cases = 0, g_failed = 0;

void check(bool ok, const std::string& what) {
  ++g_cases;
  if (!ok) {
    ++g_failed;
    std::printf("FAIL: %s\n", what.c_str());
  }
}

std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v ? v : fallback;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::printf("cannot read %s\n", path.c_str());
    std::exit(2);
  }
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// ------------------------------------------------------------------- zip build / unzip

uint32_t crc32(const std::string& s) {
  uint32_t c = 0xffffffffu;
  for (unsigned char b : s) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
  }
  return ~c;
}

struct Entry {
  std::string name, data;
  uint16_t method = 0, flags = 0;
};

void put(std::string& s, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) s += static_cast<char>(v >> (8 * i));
}
uint64_t get(const std::string& s, size_t off, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = v << 8 | static_cast<unsigned char>(s.at(off + i));
  return v;
}

// Stored entries. CRCs are written for entries under 1 MiB and left 0 above, as torch >= 2.5
// does with compute_crc32 off; the reader ignores them either way, like torch.load.
std::string make_zip(const std::vector<Entry>& entries, bool zip64 = false) {
  std::string out, cd;
  size_t total = 0;
  for (const auto& e : entries) total += 2 * e.name.size() + e.data.size() + 200;
  out.reserve(total);
  for (const auto& e : entries) {
    const uint64_t off = out.size();
    const uint32_t small = zip64 ? 0xffffffffu : 0;
    const uint32_t crc = e.data.size() < (1u << 20) ? crc32(e.data) : 0;
    put(out, 0x04034b50, 4); put(out, 45, 2); put(out, e.flags, 2); put(out, e.method, 2);
    put(out, 0, 4); put(out, crc, 4);
    put(out, small ? small : e.data.size(), 4); put(out, small ? small : e.data.size(), 4);
    put(out, e.name.size(), 2); put(out, zip64 ? 20 : 0, 2);
    out += e.name;
    if (zip64) { put(out, 1, 2); put(out, 16, 2); put(out, e.data.size(), 8); put(out, e.data.size(), 8); }
    out += e.data;
    put(cd, 0x02014b50, 4); put(cd, 45, 2); put(cd, 45, 2); put(cd, e.flags, 2); put(cd, e.method, 2);
    put(cd, 0, 4); put(cd, crc, 4);
    put(cd, small ? small : e.data.size(), 4); put(cd, small ? small : e.data.size(), 4);
    put(cd, e.name.size(), 2); put(cd, zip64 ? 28 : 0, 2); put(cd, 0, 2); put(cd, 0, 2); put(cd, 0, 2);
    put(cd, 0, 4); put(cd, small ? small : off, 4);
    cd += e.name;
    if (zip64) { put(cd, 1, 2); put(cd, 24, 2); put(cd, e.data.size(), 8); put(cd, e.data.size(), 8); put(cd, off, 8); }
  }
  const uint64_t cd_off = out.size();
  out += cd;
  if (zip64) {
    const uint64_t z = out.size();
    put(out, 0x06064b50, 4); put(out, 44, 8); put(out, 45, 2); put(out, 45, 2); put(out, 0, 4); put(out, 0, 4);
    put(out, entries.size(), 8); put(out, entries.size(), 8); put(out, cd.size(), 8); put(out, cd_off, 8);
    put(out, 0x07064b50, 4); put(out, 0, 4); put(out, z, 8); put(out, 1, 4);
  }
  put(out, 0x06054b50, 4); put(out, 0, 2); put(out, 0, 2);
  put(out, zip64 ? 0xffff : entries.size(), 2); put(out, zip64 ? 0xffff : entries.size(), 2);
  put(out, zip64 ? 0xffffffffu : cd.size(), 4); put(out, zip64 ? 0xffffffffu : cd_off, 4); put(out, 0, 2);
  return out;
}

// Test-side unzip of well-formed, non-zip64 archives (the real files).
std::vector<Entry> unzip(const std::string& z) {
  const size_t eocd = z.size() - 22;
  if (get(z, eocd, 4) != 0x06054b50) { std::printf("unzip: no EOCD\n"); std::exit(2); }
  std::vector<Entry> out;
  size_t q = get(z, eocd + 16, 4);
  for (uint64_t i = 0, n = get(z, eocd + 10, 2); i < n; ++i) {
    const size_t nl = get(z, q + 28, 2), xl = get(z, q + 30, 2), cl = get(z, q + 32, 2);
    const size_t size = get(z, q + 24, 4), lh = get(z, q + 42, 4);
    Entry e;
    e.name = z.substr(q + 46, nl);
    e.data = z.substr(lh + 30 + get(z, lh + 26, 2) + get(z, lh + 28, 2), size);
    out.push_back(e);
    q += 46 + nl + xl + cl;
  }
  return out;
}

std::string& entry_data(std::vector<Entry>& es, const std::string& suffix) {
  for (auto& e : es) {
    if (e.name.size() >= suffix.size() && e.name.compare(e.name.size() - suffix.size(), suffix.size(), suffix) == 0) return e.data;
  }
  std::printf("no entry *%s\n", suffix.c_str());
  std::exit(2);
}

// ------------------------------------------------------------------------ pickle build

struct P {
  std::string b;
  P& op(unsigned char c) { b += static_cast<char>(c); return *this; }
  P& raw(const std::string& s) { b += s; return *this; }
  P& n(uint64_t v, int bytes) { put(b, v, bytes); return *this; }
  P& proto(int v = 2) { return op(0x80).n(v, 1); }
  P& str(const std::string& s) { return op('X').n(s.size(), 4).raw(s); }
  P& integer(int64_t v) {
    if (v >= 0 && v < 256) return op('K').n(v, 1);
    if (v >= 0 && v < 65536) return op('M').n(v, 2);
    if (v >= INT32_MIN && v <= INT32_MAX) return op('J').n(static_cast<uint32_t>(v), 4);
    return op(0x8a).n(8, 1).n(static_cast<uint64_t>(v), 8);
  }
  P& global(const std::string& mod, const std::string& name) { return op('c').raw(mod + "\n" + name + "\n"); }
  P& ints(const std::vector<int64_t>& v) {
    op('(');
    for (int64_t x : v) integer(x);
    return op('t');
  }
  P& pid(const std::string& key, const std::string& type, int64_t numel, const std::string& loc = "cpu") {
    op('(').str("storage").global("torch", type).str(key).str(loc).integer(numel).op('t');
    return op('Q');
  }
  // _rebuild_tensor_v2(storage, offset, sizes, strides, False, OrderedDict())
  P& tensor(const std::string& key, const std::string& type, int64_t numel, int64_t offset,
            const std::vector<int64_t>& sizes, const std::vector<int64_t>& strides) {
    global("torch._utils", "_rebuild_tensor_v2");
    op('(').op('(').str("storage").global("torch", type).str(key).str("cpu").integer(numel).op('t').op('Q');
    integer(offset).ints(sizes).ints(strides).op(0x89).global("collections", "OrderedDict").op(')').op('R');
    return op('t').op('R');
  }
};

std::string archive(const std::string& pkl, const std::vector<std::pair<std::string, std::string>>& storages = {},
                    bool zip64 = false, const std::string& prefix = "archive") {
  std::vector<Entry> es;
  es.push_back({prefix + "/data.pkl", pkl});
  es.push_back({prefix + "/byteorder", "little"});
  for (const auto& [k, v] : storages) es.push_back({prefix + "/data/" + k, v});
  es.push_back({prefix + "/version", "3\n"});
  return make_zip(es, zip64);
}

std::string floats(std::initializer_list<float> v) {
  std::string s(v.size() * 4, '\0');
  std::memcpy(&s[0], v.begin(), s.size());
  return s;
}

// ------------------------------------------------------------------------ expectations

// What read_pth promises for every record it returns, checked independently.
bool record_in_bounds(const TensorRecord& r, const std::string& bytes) {
  const auto begin = reinterpret_cast<uintptr_t>(bytes.data()), at = reinterpret_cast<uintptr_t>(r.storage);
  if (at < begin || r.storage_bytes > bytes.size() || at - begin > bytes.size() - r.storage_bytes) return false;
  if (r.sizes.size() != r.strides.size() || r.sizes.size() > 16 || r.storage_offset < 0) return false;
  const __int128 element = pefm::pth::element_size(r.dtype);
  __int128 last = 0;
  for (size_t d = 0; d < r.sizes.size(); ++d) {
    if (r.sizes[d] < 0 || r.strides[d] < 0) return false;
    if (r.sizes[d] == 0) return r.storage_offset * element <= r.storage_bytes;  // nothing is read
    last += static_cast<__int128>(r.sizes[d] - 1) * r.strides[d];
  }
  return (r.storage_offset + last + 1) * element <= r.storage_bytes;
}

// Records point into the bytes they were read from, so those are kept for the whole run.
std::deque<std::string> g_kept;

std::vector<TensorRecord> expect_ok(const std::string& what, std::string bytes) {
  g_kept.push_back(std::move(bytes));
  try {
    auto r = read_pth(g_kept.back(), "crafted.pth");
    bool ok = true;
    for (const auto& t : r) ok = ok && record_in_bounds(t, g_kept.back());
    check(ok, what + ": records in bounds");
    return r;
  } catch (const std::exception& e) {
    check(false, what + ": unexpected error: " + e.what());
    return {};
  }
}

void expect_error(const std::string& what, const std::string& bytes, const std::vector<std::string>& subs) {
  try {
    read_pth(bytes, "crafted.pth");
    check(false, what + ": no error");
  } catch (const PthError& e) {
    const std::string msg = e.what();
    bool ok = msg.rfind("weights file 'crafted.pth'", 0) == 0;
    for (const auto& s : subs) ok = ok && msg.find(s) != std::string::npos;
    check(ok, what + ": message '" + msg + "'");
    if (std::getenv("PTH_VERBOSE")) std::printf("  [%s] %s\n", what.c_str(), msg.c_str());
  } catch (const std::exception& e) {
    check(false, what + ": not a PthError: " + e.what());
  }
}

// Fuzz outcome: success with in-bounds records, or a PthError naming the file.
int g_fuzz_ok = 0, g_fuzz_err = 0;
void survive(const std::string& what, const std::string& bytes, bool must_fail = false) {
  try {
    const auto rs = read_pth(bytes, "fuzz.pth");
    ++g_fuzz_ok;
    check(!must_fail, what + ": parsed although it must fail");
    for (const auto& r : rs) check(record_in_bounds(r, bytes), what + ": record '" + r.name + "' out of bounds");
  } catch (const PthError& e) {
    ++g_fuzz_err;
    check(std::string(e.what()).rfind("weights file 'fuzz.pth'", 0) == 0, what + ": message " + e.what());
  } catch (const std::exception& e) {
    check(false, what + ": not a PthError: " + e.what());
  }
}

const TensorRecord* find(const std::vector<TensorRecord>& rs, const std::string& name) {
  for (const auto& r : rs) {
    if (r.name == name) return &r;
  }
  return nullptr;
}

int64_t numel(const TensorRecord& r) {
  int64_t n = 1;
  for (int64_t s : r.sizes) n *= s;
  return n;
}

// ------------------------------------------------------------------------------ tests

void test_real_files(const std::string& models, const std::string& golden) {
  for (const char* stem : {"mobilenet_v2_torchvision_imagenet", "mobilenet_v2_tfslim_imagenet"}) {
    const std::string bytes = slurp(models + "/" + stem + ".pth");
    std::vector<TensorRecord> rs;
    try {
      rs = read_pth(bytes, stem);
    } catch (const std::exception& e) {
      check(false, std::string(stem) + ": " + e.what());
      continue;
    }
    int ints = 0, floats32 = 0, bad_values = 0;
    double max_abs = 0;
    for (const auto& r : rs) {
      const bool nbt = r.name.size() > 20 && r.name.compare(r.name.size() - 20, 20, ".num_batches_tracked") == 0;
      if (nbt) {
        ints += r.dtype == DType::kInt64 && r.sizes.empty() && r.strides.empty();
        continue;
      }
      if (r.dtype != DType::kFloat32) continue;
      ++floats32;
      for (int64_t i = 0; i < numel(r); ++i) {  // these tensors are contiguous
        float v;
        std::memcpy(&v, r.storage + 4 * (r.storage_offset + i), 4);
        if (!std::isfinite(v)) ++bad_values;
        max_abs = std::max(max_abs, static_cast<double>(std::fabs(v)));
      }
    }
    std::printf("%s: %zu tensors, %d float32, %d int64 scalars, max |w| %.3f\n", stem, rs.size(), floats32, ints, max_abs);
    check(rs.size() == 314 && floats32 == 262 && ints == 52, std::string(stem) + ": tensor counts");
    check(bad_values == 0 && max_abs > 0.5 && max_abs < 1000, std::string(stem) + ": finite plausible weights");
    check(!rs.empty() && rs[0].name == "features.0.0.weight", std::string(stem) + ": file order");
    if (const TensorRecord* w = find(rs, "features.0.0.weight")) {
      float v[5];
      std::memcpy(v, w->storage, sizeof v);
      std::printf("  features.0.0.weight %s [%lld,%lld,%lld,%lld]: %.5f %.5f %.5f %.5f %.5f\n", dtype_name(w->dtype),
                  (long long)w->sizes[0], (long long)w->sizes[1], (long long)w->sizes[2], (long long)w->sizes[3],
                  v[0], v[1], v[2], v[3], v[4]);
      check(w->sizes == std::vector<int64_t>({32, 3, 3, 3}) && w->strides == std::vector<int64_t>({27, 9, 3, 1}),
            std::string(stem) + ": features.0.0.weight shape");
    }
    if (const TensorRecord* t = find(rs, "features.1.conv.0.1.num_batches_tracked")) {
      int64_t v;
      std::memcpy(&v, t->storage, 8);
      std::printf("  features.1.conv.0.1.num_batches_tracked = %lld\n", (long long)v);
    }
    if (std::string(stem) == "mobilenet_v2_torchvision_imagenet") {
      // The same archive rewritten with ZIP64 records and extra fields reads the same.
      const auto again = expect_ok("zip64 rewrite of the torchvision file", make_zip(unzip(bytes), true));
      bool same = again.size() == rs.size();
      for (size_t i = 0; same && i < rs.size(); ++i) {
        same = again[i].name == rs[i].name && again[i].sizes == rs[i].sizes && again[i].storage_bytes == rs[i].storage_bytes &&
               std::memcmp(again[i].storage, rs[i].storage, rs[i].storage_bytes) == 0;
      }
      check(same, "zip64 rewrite yields the same tensors");
    }
  }
  for (const char* name : {"formula_mobilenet_v2", "formula_resnet18", "formula_resnet34", "formula_resnet50",
                           "formula_wide_resnet50_2", "metrics", "mobilenet_v2_real"}) {
    const std::string path = golden + "/" + name + ".pt";
    try {
      const auto rs = read_pth(slurp(path), path);
      std::printf("%s.pt: %zu tensors:", name, rs.size());
      for (const auto& r : rs) std::printf(" %s(%s)", r.name.c_str(), dtype_name(r.dtype));
      std::printf("\n");
      check(!rs.empty(), path + ": has tensors");
    } catch (const std::exception& e) {
      check(false, path + ": " + e.what());
    }
  }
}

// Splices a real data.pkl: the first tensor of the torchvision file, features.0.0.weight
// (32x3x3x3, strides 27,9,3,1, offset 0, storage '0' of 864 floats).
void test_real_file_mutations(const std::string& models) {
  const auto entries = unzip(slurp(models + "/mobilenet_v2_torchvision_imagenet.pth"));
  const auto with_pkl = [&](const std::string& from, const std::string& to) {  // first occurrence
    auto es = entries;
    std::string& pkl = entry_data(es, "/data.pkl");
    const size_t at = pkl.find(from);
    if (at == std::string::npos) { std::printf("pattern not found\n"); std::exit(2); }
    pkl.replace(at, from.size(), to);
    return make_zip(es);
  };
  const std::string sizes4 = "(K\x20K\x03K\x03K\x03t";  // MARK 32 3 3 3 TUPLE
  const std::string head_q("QK\x00", 3);              // BINPERSID, storage offset 0
  const std::string strides = "(K\x1bK\x09K\x03K\x01t";
  const auto sizes = [](std::vector<int64_t> v) { P p; p.ints(v); return p.b; };
  const auto offset = [](int64_t v) { P p; p.integer(v); return p.b; };

  expect_error("real: size 33 > storage", with_pkl(sizes4, sizes({33, 3, 3, 3})),
               {"tensor 'features.0.0.weight'", "has 891 elements but its storage '0' holds only 864"});
  expect_error("real: offset past the end", with_pkl(head_q, "Q" + offset(1000)), {"features.0.0.weight", "storage offset 1000"});
  expect_error("real: offset 2^62", with_pkl(head_q, "Q" + offset(int64_t{1} << 62)), {"features.0.0.weight", "reaches element"});
  expect_error("real: offset INT64_MAX", with_pkl(head_q, "Q" + offset(INT64_MAX)), {"features.0.0.weight", "overflows"});
  expect_error("real: size 2^62", with_pkl(sizes4, sizes({int64_t{1} << 62, 3, 3, 3})),
               {"features.0.0.weight", "overflow"});
  expect_error("real: negative stride", with_pkl(strides, sizes({27, -9, 3, 1})), {"features.0.0.weight", "negative stride -9"});
  expect_error("real: negative size", with_pkl(sizes4, sizes({32, -3, 3, 3})),
               {"features.0.0.weight", "negative size"});
  std::vector<int64_t> hundred(100, 1);
  {
    auto es = entries;
    std::string& pkl = entry_data(es, "/data.pkl");
    pkl.replace(pkl.find(strides), strides.size(), sizes(hundred));
    pkl.replace(pkl.find(sizes4), sizes4.size(), sizes(hundred));
    expect_error("real: rank 100", make_zip(es), {"features.0.0.weight", "rank 100"});
  }
  expect_error("real: rank mismatch", with_pkl(strides, sizes({27, 9, 3})), {"features.0.0.weight", "4 sizes but 3 strides"});
  expect_error("real: os.system", with_pkl("collections\nOrderedDict", "os\nsystem"),
               {"uses the pickle global 'os.system', which pefm does not load (only plain tensors)"});
  expect_error("real: builtins.eval", with_pkl("torch._utils\n_rebuild_tensor_v2", "builtins\neval"),
               {"pickle global 'builtins.eval'"});
  expect_error("real: torch.load", with_pkl("torch\nFloatStorage", "torch\nload"), {"pickle global 'torch.load'"});
  expect_error("real: storage key missing", with_pkl(std::string("X\x01\x00\x00\x00" "0", 6), std::string("X\x01\x00\x00\x00" "Z", 6)),
               {"storage 'Z' is missing"});
  expect_error("real: location xla", with_pkl("cpu", "xla"), {"location 'xla'"});
  {
    auto es = entries;
    entry_data(es, "/data/0").resize(100);
    expect_error("real: storage shorter than declared", make_zip(es), {"storage '0' holds 100 bytes"});
    es = entries;
    es.push_back({es[0].name.substr(0, es[0].name.find('/')) + "/byteorder", "big"});  // torch 1.x wrote none
    expect_error("real: big-endian", make_zip(es), {"byteorder 'big'"});
  }
  {  // a state dict whose top is a list: '}' (EMPTY_DICT) -> ']' then SETITEMS fails
    expect_error("real: dict became list", with_pkl("\x80\x02}", "\x80\x02]"), {"adding items to a list"});
  }
}

void test_crafted_pickles() {
  const std::string w = floats({1, 2, 3, 4, 5, 6});
  const std::vector<std::pair<std::string, std::string>> st = {{"0", w}};
  const auto dict_of = [](const std::function<void(P&)>& body) {
    P p;
    p.proto().op('}').op('(');
    body(p);
    p.op('u').op('.');
    return p.b;
  };
  // Valid variants.
  {
    const auto rs = expect_ok("plain dict", archive(dict_of([](P& p) {
      p.str("a").tensor("0", "FloatStorage", 6, 0, {2, 3}, {3, 1});
      p.str("b").tensor("0", "FloatStorage", 6, 2, {2, 2}, {1, 2});  // shares storage '0'
      p.str("e").tensor("0", "FloatStorage", 6, 6, {0, 5}, {5, 1});  // empty, offset at the end
    }), st));
    check(rs.size() == 3 && rs[0].name == "a" && rs[1].name == "b" && rs[0].storage == rs[1].storage &&
              rs[1].storage_offset == 2 && rs[0].storage_bytes == 24,
          "shared storage and order");
    if (rs.size() == 3) {
      float v[6];
      std::memcpy(v, rs[0].storage, 24);
      check(v[0] == 1 && v[5] == 6, "float values");
    }
  }
  {  // OrderedDict top object with _metadata via BUILD, a Parameter, and protocol-4 framing.
    P p;
    p.proto(4).op(0x95).n(0, 8).op(0x8c).n(11, 1).raw("collections").op(0x94).op(0x8c).n(11, 1).raw("OrderedDict");
    p.op(0x93).op(0x94).op(')').op('R').op(0x94).op('(');
    p.op(0x8c).n(1, 1).raw("w").global("torch._utils", "_rebuild_parameter").op('(');
    p.tensor("0", "FloatStorage", 6, 0, {6}, {1}).op(0x88).global("collections", "OrderedDict").op(')').op('R').op('t').op('R');
    p.op('u').op('}').str("_metadata").op('}').op('s').op('b').op('.');
    const auto rs = expect_ok("OrderedDict + BUILD + parameter + protocol 4", archive(p.b, st));
    check(rs.size() == 1 && rs[0].sizes == std::vector<int64_t>{6}, "OrderedDict content");
  }
  {  // What LibTorch 1.13's torch::pickle_save writes: restore_type_tag(dict, 'Dict[str, Tensor]').
    P p;
    p.proto().global("torch.jit._pickle", "restore_type_tag").op('q').n(0, 1).op('}').op('(');
    p.str("a.weight").global("torch._utils", "_rebuild_tensor_v2").op('(');
    p.pid("0", "FloatStorage", 6).op('q').n(7, 1).integer(0).ints({2, 3}).ints({3, 1}).op(0x89);
    p.global("collections", "OrderedDict").op(')').op('R').op('t').op('R');
    p.str("b.num").global("torch._utils", "_rebuild_tensor_v2").op('(');
    p.pid("1", "LongStorage", 1).integer(0).op('(').op('t').op('(').op('t').op(0x89);
    p.global("collections", "OrderedDict").op(')').op('R').op('t').op('R');
    p.op('u').str("Dict[str, Tensor]").op(0x86).op('R').op('.');
    const auto rs = expect_ok("LibTorch pickle_save layout", archive(p.b, {{"0", w}, {"1", std::string(8, '\0')}}));
    check(rs.size() == 2 && rs[1].dtype == DType::kInt64 && rs[1].sizes.empty(), "LibTorch scalar int64");
  }
  expect_ok("empty dict", archive(dict_of([](P&) {})));
  expect_ok("all dtypes", archive(dict_of([](P& p) {
    const char* types[] = {"FloatStorage", "DoubleStorage", "HalfStorage", "BFloat16Storage", "LongStorage",
                           "IntStorage", "ShortStorage", "CharStorage", "ByteStorage", "BoolStorage"};
    for (const char* t : types) p.str(t).tensor("0", t, 2, 0, {2}, {1});
  }), st));
  expect_ok("prefix named after the file", archive(dict_of([](P& p) { p.str("a").tensor("0", "FloatStorage", 6, 0, {6}, {1}); }),
                                                   st, false, "my_model"));
  expect_ok("zip64 crafted", archive(dict_of([](P& p) { p.str("a").tensor("0", "FloatStorage", 6, 0, {6}, {1}); }), st, true));

  // Top object and entries.
  expect_error("top is a tensor", archive(P().proto().tensor("0", "FloatStorage", 6, 0, {6}, {1}).op('.').b, st),
               {"holds a tensor, not a dict of tensors; save it with torch.save(dict(model.state_dict()), path)"});
  expect_error("top is a list", archive(P().proto().op(']').integer(1).op('a').op('.').b), {"holds a list, not a dict"});
  expect_error("build_intlist list", archive(P().proto().global("torch.jit._pickle", "build_intlist").op('(').op(']').op('(')
                                                 .integer(1).integer(2).op('e').op('t').op('R').op('.').b),
               {"holds a list, not a dict of tensors"});
  expect_error("entry int", archive(dict_of([](P& p) { p.str("x").integer(3); })), {": entry 'x' is a int, not a tensor"});
  expect_error("entry none", archive(dict_of([](P& p) { p.str("x").op('N'); })), {"entry 'x' is a none"});
  expect_error("non-string key", archive(dict_of([](P& p) { p.integer(1).tensor("0", "FloatStorage", 6, 0, {6}, {1}); }), st),
               {"non-string key (a int)"});
  expect_error("duplicate key", archive(dict_of([](P& p) {
    p.str("a").tensor("0", "FloatStorage", 6, 0, {6}, {1}).str("a").tensor("0", "FloatStorage", 6, 0, {6}, {1});
  }), st), {"key 'a' appears twice"});
  expect_error("unprintable key", archive(dict_of([](P& p) { p.str(std::string("k\n\x01", 3)).integer(1); })),
               {"entry 'k\\x0a\\x01'"});

  // Tensors.
  const auto one = [&](int64_t numel, int64_t off, std::vector<int64_t> sz, std::vector<int64_t> sd, const char* type = "FloatStorage") {
    return archive(dict_of([&](P& p) { p.str("t").tensor("0", type, numel, off, sz, sd); }), st);
  };
  expect_error("numel > storage bytes", one(7, 0, {7}, {1}), {"holds 24 bytes, less than its 7 float32"});
  expect_error("double storage too short", one(6, 0, {6}, {1}, "DoubleStorage"), {"less than its 6 float64"});
  expect_error("extent past storage", one(6, 1, {6}, {1}), {"tensor 't'", "reaches element 7", "holds 6 float32"});
  expect_error("stride past storage", one(6, 0, {2, 3}, {4, 1}), {"tensor 't'", "reaches element 7"});
  expect_error("empty tensor offset past end", one(6, 7, {0}, {1}), {"tensor 't'", "storage offset 7"});
  expect_error("huge zero-size companion", one(6, 0, {0, int64_t{1} << 62, 8}, {1, 1, 1}), {"tensor 't'", "overflow"});
  expect_error("extent overflow", one(6, 0, {2, 2}, {INT64_MAX, 1}), {"tensor 't'", "overflow"});
  expect_error("rank 17", one(6, 0, std::vector<int64_t>(17, 1), std::vector<int64_t>(17, 1)), {"rank 17 (limit 16)"});
  expect_error("negative numel", one(-1, 0, {1}, {1}), {"storage '0' has -1 elements"});
  expect_error("numel overflow", one(int64_t{1} << 62, 0, {1}, {1}, "DoubleStorage"), {"storage '0' has"});
  expect_error("bad location", archive(dict_of([](P& p) {
    p.str("t").global("torch._utils", "_rebuild_tensor_v2").op('(').pid("0", "FloatStorage", 6, "meta");
    p.integer(0).ints({6}).ints({1}).op(0x89).op('N').op('t').op('R');
  }), st), {"location 'meta'"});
  expect_error("persistent id shape", archive(dict_of([](P& p) { p.str("t").op('(').str("storage").op('t').op('Q'); })),
               {"persistent id is not"});
  expect_error("storage type called", archive(P().proto().global("torch", "FloatStorage").op(')').op('R').op('.').b),
               {"REDUCE calls torch.FloatStorage"});
  expect_error("rebuild with 5 args", archive(dict_of([](P& p) {
    p.str("t").global("torch._utils", "_rebuild_tensor_v2").op('(').pid("0", "FloatStorage", 6);
    p.integer(0).ints({6}).ints({1}).op(0x89).op('t').op('R');
  }), st), {"takes 6 or 7 arguments, got 5"});
  expect_error("tensor on an int", archive(dict_of([](P& p) {
    p.str("t").global("torch._utils", "_rebuild_tensor_v2").op('(').integer(5);
    p.integer(0).ints({6}).ints({1}).op(0x89).op('N').op('t').op('R');
  })), {"tensor 't' is built on a int"});
  expect_error("sizes not tuple", archive(dict_of([](P& p) {
    p.str("t").global("torch._utils", "_rebuild_tensor_v2").op('(').pid("0", "FloatStorage", 6);
    p.integer(0).op(']').ints({1}).op(0x89).op('N').op('t').op('R');
  }), st), {"sizes are not a tuple"});
  expect_error("float size", archive(dict_of([](P& p) {
    p.str("t").global("torch._utils", "_rebuild_tensor_v2").op('(').pid("0", "FloatStorage", 6);
    p.integer(0).op('G').n(0, 8).op(0x85).ints({1}).op(0x89).op('N').op('t').op('R');
  }), st), {"sizes hold a float"});
  expect_error("parameter of an int", archive(dict_of([](P& p) {
    p.str("t").global("torch._utils", "_rebuild_parameter").op('(').integer(1).op(0x89).op('N').op('t').op('R');
  })), {"bad _rebuild_parameter arguments"});

  // Globals.
  for (const auto& g : std::vector<std::pair<std::string, std::string>>{
           {"os", "system"}, {"builtins", "eval"}, {"posix", "system"}, {"torch._utils", "_rebuild_tensor"},
           {"torch", "UntypedStorage"}, {"torch", "ComplexFloatStorage"}, {"collections", "OrderedDict\x01"}}) {
    expect_error("global " + g.first + "." + g.second, archive(P().proto().global(g.first, g.second).op('.').b),
                 {"uses the pickle global '", "which pefm does not load (only plain tensors)"});
  }
  expect_error("STACK_GLOBAL os.system", archive(P().proto(4).op(0x8c).n(2, 1).raw("os").op(0x8c).n(6, 1).raw("system").op(0x93).op('.').b),
               {"pickle global 'os.system'"});
  expect_error("STACK_GLOBAL of ints", archive(P().proto(4).integer(1).integer(2).op(0x93).op('.').b), {"STACK_GLOBAL needs two strings"});
  expect_error("GLOBAL without newline", archive(P().proto().op('c').raw("collections\nOrderedDict").b), {"without a newline"});
  expect_error("GLOBAL name too long", archive(P().proto().op('c').raw(std::string(300, 'a') + "\nb\n.").b), {"without a newline"});
  expect_error("REDUCE on a string", archive(P().proto().str("x").op(')').op('R').op('.').b), {"REDUCE calls a string"});
  expect_error("REDUCE args a list", archive(P().proto().global("collections", "OrderedDict").op(']').op('R').op('.').b),
               {"not a tuple"});
  expect_error("OrderedDict with args", archive(P().proto().global("collections", "OrderedDict").op(']').op(0x85).op('R').op('.').b),
               {"called with arguments"});
  expect_error("NEWOBJ other", archive(P().proto().global("torch", "FloatStorage").op(')').op(0x81).op('.').b), {"NEWOBJ"});
  expect_error("BUILD on a list", archive(P().proto().op(']').op('}').op('b').op('.').b), {"BUILD on a list"});

  // VM structure and bounds.
  const auto vm = [](const std::string& what, const std::string& pkl, const std::vector<std::string>& subs) {
    expect_error(what, archive(pkl), subs);
  };
  vm("memo get out of range", P().proto().op('h').n(5, 1).op('.').b, {"memo index 5 was never stored"});
  vm("long memo get", P().proto().op('N').op('r').n(0, 4).op('j').n(0xffffffff, 4).op('.').b, {"memo index 4294967295"});
  vm("memo put on empty stack", P().proto().op('q').n(0, 1).op('.').b, {"stack underflow"});
  vm("TUPLE without MARK", P().proto().integer(1).op('t').op('.').b, {"no MARK to pop"});
  vm("TUPLE3 across a MARK", P().proto().integer(1).op('(').integer(1).integer(2).op(0x87).op('.').b, {"stack underflow", "TUPLE3"});
  vm("APPEND across a MARK", P().proto().op(']').op('(').integer(1).op('a').op('.').b, {"stack underflow"});
  vm("SETITEMS without dict", P().proto().op('(').str("k").integer(1).op('u').op('.').b, {"stack underflow"});
  vm("SETITEMS odd", P().proto().op('}').op('(').str("k").op('u').op('.').b, {"odd number of dict items"});
  vm("DICT odd", P().proto().op('(').str("k").op('d').op('.').b, {"odd number"});
  vm("STOP on empty stack", P().proto().op('.').b, {"stack underflow", "STOP"});
  vm("no STOP", P().proto().op('}').b, {"ends without a STOP"});
  vm("empty pickle", "", {"ends without a STOP"});
  vm("protocol 1", P().proto(1).op('}').op('.').b, {"pickle protocol 1"});
  vm("protocol 6", P().proto(6).op('}').op('.').b, {"pickle protocol 6"});
  vm("INST", P().proto().op('i').raw("os\nsystem\n").op('.').b, {"unsupported pickle opcode 0x69 at byte 2 (INST)"});
  vm("unknown opcode", P().proto().op(0xfe).b, {"unsupported pickle opcode 0xfe"});
  vm("BINUNICODE past end", P().proto().op('X').n(1000, 4).raw("abc").b, {"truncated pickle: 1000 bytes needed, 3 left"});
  vm("BINUNICODE8 2^63", P().proto().op(0x8d).n(uint64_t{1} << 63, 8).b, {"string of 9223372036854775808 bytes"});
  vm("BINSTRING negative", P().proto().op('T').n(0xffffffff, 4).b, {"negative BINSTRING"});
  vm("LONG1 of 9 bytes", P().proto().op(0x8a).n(9, 1).raw(std::string(9, '\1')).op('.').b, {"integer of 9 bytes"});
  vm("FRAME past end", P().proto(4).op(0x95).n(1, 4).b, {"truncated"});
  vm("cyclic list", P().proto().op(']').op('q').n(0, 1).op('h').n(0, 1).op('a').op('.').b, {"holds a list"});
  vm("dict holding itself", P().proto().op('}').op('q').n(0, 1).str("k").op('h').n(0, 1).op('s').op('.').b,
     {"entry 'k' is a dict, not a tensor"});
  {
    P p;
    p.proto();
    for (int i = 0; i < 100000; ++i) p.op(']');
    for (int i = 0; i < 99999; ++i) p.op('a');
    vm("100k nested lists", p.op('.').b, {"holds a list"});
  }
  {
    P p;
    p.proto();
    for (int i = 0; i < 2000; ++i) p.op('(');
    vm("2000 MARKs", p.op('.').b, {"more than 1024 nested MARKs"});
  }
  // The floods build a million objects each: minutes under AddressSanitizer, whose run
  // leaves them to the normal build (the fuzzers cover the same code under ASan).
  if (kSanitized) {
    std::printf("skipped under ASan: the memo, object, stack and item floods\n");
  } else {
    {
      P p;
      p.proto().op('N');
      p.b.append(1100000, static_cast<char>(0x94));
      vm("memo flood", p.op('.').b, {"memo index 1048576 (limit 1048576)"});
    }
    {
      P p;
      p.proto().op(']');
      for (int i = 0; i < 1100000; ++i) p.op('N').op('a');
      vm("object flood", p.op('.').b, {"more than 1048576 objects"});
    }
    {
      P p;
      p.proto().op('N').op('q').n(0, 1);
      for (int i = 0; i < 1100000; ++i) p.op('h').n(0, 1);
      vm("stack flood", p.op('.').b, {"pickle stack deeper than 1048576"});
    }
    {
      P p;
      p.proto().op(']').op('N').op('q').n(1, 1).op('0');
      for (int i = 0; i < 4200000; ++i) p.op('h').n(1, 1).op('a');
      vm("item flood", p.op('.').b, {"more than 4194304 container items"});
    }
  }
  vm("huge memo index", P().proto().op('N').op('r').n(0xfffffffe, 4).op('.').b, {"memo index 4294967294 (limit"});
  vm("memo reuse", P().proto().op('N').op('r').n(70000, 4).op('j').n(70000, 4).op(0x85).op('.').b, {"holds a tuple"});
}

void test_zip_layer() {
  const std::string pkl = P().proto().op('}').op('.').b;
  expect_error("text file", "this is not a zip archive at all, just text",
               {"is not a PyTorch state dict saved with torch.save (", "no end-of-central-directory"});
  expect_error("empty file", "", {"is not a PyTorch state dict saved with torch.save (not a zip archive: too short)"});
  expect_error("legacy format", P().proto().integer(1).b + std::string(100, 'x'), {"legacy pre-1.6"});
  expect_error("no data.pkl", make_zip({{"archive/version", "3"}}), {"no data.pkl"});
  expect_error("nested data.pkl only", make_zip({{"a/b/data.pkl", pkl}}), {"no data.pkl"});
  expect_error("two data.pkl", make_zip({{"a/data.pkl", pkl}, {"b/data.pkl", pkl}}), {"several data.pkl"});
  expect_error("duplicate entry", make_zip({{"a/data.pkl", pkl}, {"a/data.pkl", pkl}}), {"zip entry 'a/data.pkl' appears twice"});
  expect_error("deflated entry", make_zip({{"a/data.pkl", pkl, 8}}), {"zip entry 'a/data.pkl' is compressed (method 8)"});
  expect_error("encrypted entry", make_zip({{"a/data.pkl", pkl, 0, 1}}), {"zip entry 'a/data.pkl' is encrypted"});
  expect_ok("minimal archive", make_zip({{"a/data.pkl", pkl}}));
  {
    std::string z = make_zip({{"a/data.pkl", pkl}});
    z[0] = 'X';
    expect_error("bad local signature", z, {"zip entry 'a/data.pkl' has a bad local header"});
    z = make_zip({{"a/data.pkl", pkl}});
    z[30] = 'b';  // local name differs from the central one
    expect_error("local name mismatch", z, {"bad local header"});
    z = make_zip({{"a/data.pkl", pkl}});
    z[28] = '\xff';  // local extra length runs the data past the end
    expect_error("local extra too long", z, {"runs past the end"});
    z = make_zip({{"a/data.pkl", pkl}});
    const size_t eocd = z.size() - 22, cd = get(z, eocd + 16, 4);
    std::string z2 = z;
    z2[cd + 24] = z2[cd + 20] = '\x7f';  // central sizes beyond the file
    expect_error("entry past end", z2, {"runs past the end"});
    z2 = z;
    z2[eocd + 10] = '\x09';  // more entries than the directory can hold
    expect_error("entry count", z2, {"central directory lies outside"});
    z2 = z;
    z2[eocd + 16] = '\x70';
    expect_error("directory offset", z2, {"central directory lies outside"});
    z2 = z;
    z2[cd + 42] = '\xff', z2[cd + 43] = '\xff', z2[cd + 44] = '\xff', z2[cd + 45] = '\xff';  // offset -> zip64 marker
    expect_error("zip64 marker without extra", z2, {"lacks its zip64 sizes"});
    z2 = z;
    z2.insert(eocd, std::string("PK\x06\x07\0\0\0\0\xff\xff\xff\xff\0\0\0\0\1\0\0\0", 20));  // locator to nowhere
    expect_error("zip64 locator to nowhere", z2, {"bad zip64 end record"});
    z2 = z + std::string("comment");
    z2[eocd + 20] = 7;
    expect_ok("zip comment", z2);
  }
  {
    std::string big = P().proto().op('}').op('.').b;
    big.resize((64u << 20) + 1, '.');
    expect_error("data.pkl over 64 MiB", make_zip({{"a/data.pkl", big}}), {"limit 64 MiB"});
  }
}

// Every byte value as an opcode, in several stack contexts and with several argument
// patterns: nothing may crash, only succeed or throw PthError.
void test_opcode_sweep() {
  const std::vector<std::string> contexts = {"", "(", "K\x01", "}X\x01\x00\x00\x00k", "]", ")", "(K\x01K\x02", "N(", "c" "collections\nOrderedDict\n"};
  const std::vector<std::string> args = {std::string(16, '\0'), std::string(16, '\xff'), std::string("\x01\x00\x00\x00\x00\x00\x00\x00.", 9),
                                         std::string("\x08") + std::string(15, '\x80'), ""};
  int n = 0;
  for (int op = 0; op < 256; ++op) {
    for (const auto& c : contexts) {
      for (const auto& a : args) {
        survive("opcode sweep", archive(P().proto().raw(c).op(op).raw(a).op('.').b));
        ++n;
      }
    }
  }
  std::printf("opcode sweep: %d pickles\n", n);
}

void test_truncation_and_flips(const std::string& models, const std::string& golden) {
  auto t0 = std::chrono::steady_clock::now();
  const auto seconds = [&] {
    const auto t = std::chrono::steady_clock::now();
    const double s = std::chrono::duration<double>(t - t0).count();
    t0 = t;
    return s;
  };
  // Without ../shared the large file's rounds run on the small one.
  const std::string small = slurp(golden + "/metrics.pt");
  const std::string big = models.empty() ? small : slurp(models + "/mobilenet_v2_torchvision_imagenet.pth");
  int cuts = 0;
  std::string buf;
  for (const std::string* f : {&big, &small}) {
    const size_t step = f->size() > (1u << 20) ? 9973 : 997;  // ~1,400 cuts of the 14 MB file
    for (size_t cut = 0; cut < f->size(); cut += step) {
      buf.assign(*f, 0, cut);
      survive("cut at " + std::to_string(cut), buf, true);
      ++cuts;
    }
    for (size_t cut = f->size() - 200; cut < f->size(); ++cut) {
      buf.assign(*f, 0, cut);
      survive("cut at " + std::to_string(cut), buf, true);
      ++cuts;
    }
  }
  std::printf("file truncations: %d, all refused (%.1f s)\n", cuts, seconds());

  // Truncated data.pkl inside an otherwise valid archive.
  cuts = 0;
  for (const std::string* f : {&small, &big}) {
    auto es = unzip(*f);  // data.pkl is edited in place and restored: copies of 14 MB add up
    std::string& pkl = entry_data(es, "/data.pkl");
    const std::string original = pkl;
    const size_t step = f == &small ? 1 : 2003;  // each big round rebuilds a 14 MB archive
    for (size_t cut = 0; cut < original.size(); cut += step) {
      pkl.assign(original, 0, cut);
      survive("pickle cut at " + std::to_string(cut), make_zip(es), true);
      ++cuts;
    }
  }
  std::printf("data.pkl truncations: %d, all refused (%.1f s)\n", cuts, seconds());

  std::mt19937 rng(12345);
  const unsigned char interesting[] = {0x00, 0x01, 0x7f, 0x80, 0xff, '(', 't', 'R', 'Q', 'h', 'q', 'u', 'a', '.', 0x8a, 'X'};
  const auto mutate = [&](std::string& s) {
    const int flips = 1 + rng() % 4;
    for (int k = 0; k < flips && !s.empty(); ++k) {
      const size_t at = rng() % s.size();
      s[at] = rng() % 2 ? static_cast<char>(s[at] ^ (1u << (rng() % 8))) : static_cast<char>(interesting[rng() % sizeof interesting]);
    }
  };
  g_fuzz_ok = g_fuzz_err = 0;
  for (const std::string* f : {&small, &big}) {
    auto es = unzip(*f);
    std::string& pkl = entry_data(es, "/data.pkl");
    const std::string original = pkl;
    const int iterations = f == &small ? 4000 : 20;
    for (int i = 0; i < iterations; ++i) {
      pkl = original;
      mutate(pkl);
      survive("data.pkl flip", make_zip(es));
    }
  }
  std::printf("data.pkl byte flips: 4020 (%d still parse, %d refused) (%.1f s)\n", g_fuzz_ok, g_fuzz_err, seconds());
  g_fuzz_ok = g_fuzz_err = 0;
  for (int i = 0; i < 4000; ++i) {  // flips anywhere, zip structure included
    std::string s = small;
    mutate(s);
    survive("file flip", s);
  }
  std::printf("whole-file byte flips: 4000 (%d still parse, %d refused) (%.1f s)\n", g_fuzz_ok, g_fuzz_err, seconds());
}

}  // namespace

int main(int argc, char** argv) {
  const std::string source = env_or("PEFM_SOURCE_DIR", ".");
  // the shared folder as the other suites find it (tests/common.cpp): $PEFM_SHARED_DIR, else ../shared
  const char* shared_env = std::getenv("PEFM_SHARED_DIR");
  const std::string shared = shared_env && *shared_env ? shared_env : source + "/../shared";
  std::string models = env_or("PEFM_MODELS_DIR", (shared + "/models").c_str());
  const std::string golden = source + "/tests/data/golden";
  if (!std::ifstream(models + "/mobilenet_v2_torchvision_imagenet.pth")) {
    if (std::getenv("PEFM_REQUIRE_SHARED") && std::string(std::getenv("PEFM_REQUIRE_SHARED")) == "1") {
      std::printf("FAIL: PEFM_REQUIRE_SHARED=1 but %s/mobilenet_v2_*.pth are absent\n", models.c_str());
      return 1;
    }
    std::printf("skipped: the real-file checks (%s/mobilenet_v2_*.pth absent)\n", models.c_str());
    models.clear();
  }
  for (int i = 1; i < argc; ++i) {  // extra files: parse and list
    try {
      const auto rs = read_pth(slurp(argv[i]), argv[i]);
      std::printf("%s: %zu tensors\n", argv[i], rs.size());
      for (const auto& r : rs) {
        std::printf("  %-12s %-9s sizes %zu-d offset %lld bytes %llu\n", r.name.c_str(), dtype_name(r.dtype), r.sizes.size(),
                    (long long)r.storage_offset, (unsigned long long)r.storage_bytes);
      }
    } catch (const PthError& e) {
      std::printf("%s: %s\n", argv[i], e.what());
    }
  }
  const auto timed = [](const char* name, const std::function<void()>& f) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    std::printf("-- %s: %.1f s\n", name, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  };
  if (!models.empty()) {
    timed("real files", [&] { test_real_files(models, golden); });
    timed("real-file mutations", [&] { test_real_file_mutations(models); });
  }
  timed("crafted pickles", [&] { test_crafted_pickles(); });
  timed("zip layer", [&] { test_zip_layer(); });
  timed("opcode sweep", [&] { test_opcode_sweep(); });
  timed("truncation and flips", [&] { test_truncation_and_flips(models, golden); });
  std::printf("pth-reader: %d passed, %d failed\n", g_cases - g_failed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
