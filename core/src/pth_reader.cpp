#include "pth_reader.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <set>

namespace pefm {
namespace pth {

// Integers in the zip and the pickle are assembled byte by byte, but storages are handed
// out as raw little-endian bytes.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "pth_reader assumes a little-endian host");

namespace {

// Hard bounds. Real state dicts stay far below them (torchvision's mobilenet_v2: 314
// tensors, a 34 KiB pickle, ~8k objects, ~2.4k memo entries, 316 zip entries).
constexpr uint64_t kMaxEocdScan = 65535 + 22;  // EOCD record plus the longest zip comment
constexpr uint64_t kMaxEntries = 1'000'000;    // zip entries
constexpr uint64_t kMaxPickleBytes = 64ull << 20;
constexpr size_t kMaxStack = 1 << 20;     // pickle stack slots
constexpr size_t kMaxMarks = 1024;        // open MARKs, i.e. how deep the stack can nest
constexpr size_t kMaxMemo = 1 << 20;      // memo indices 0..kMaxMemo-1 (4 MiB table)
constexpr size_t kMaxObjects = 1 << 20;   // objects created, ~80 bytes each
constexpr size_t kMaxItems = 1 << 22;     // slots in all tuples, lists and dicts together
constexpr uint64_t kMaxString = 1 << 20;  // one str/bytes object
constexpr size_t kMaxGlobalName = 256;    // one GLOBAL line
constexpr size_t kMaxRank = 16;
constexpr uint32_t kUnset = ~uint32_t{0};

uint64_t le(const unsigned char* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = v << 8 | p[i];
  return v;
}

std::string hex_byte(unsigned char c) {
  static const char* digits = "0123456789abcdef";
  return {digits[c >> 4], digits[c & 15]};
}

// Names from the file go into messages: keep them short and printable.
std::string printable(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < 120; ++i) {
    const unsigned char c = s[i];
    out += c >= 0x20 && c < 0x7f ? std::string(1, static_cast<char>(c)) : "\\x" + hex_byte(c);
  }
  return s.size() > 120 ? out + "..." : out;
}

struct Fail {
  const std::string& origin;
  // Not a well-formed torch.save archive (the wording callers and tests rely on).
  [[noreturn]] void corrupt(const std::string& why) const {
    throw PthError("weights file '" + origin + "' is not a PyTorch state dict saved with torch.save (" + why + ")");
  }
  // Well-formed but not loadable; `what` continues "weights file '<origin>'".
  [[noreturn]] void error(const std::string& what) const { throw PthError("weights file '" + origin + "'" + what); }
};

// ---------------------------------------------------------------------------- zip layer
// Ordered containers throughout: a file can choose its names and keys, and hashing them
// would let it pick collisions.

class Zip {
 public:
  Zip(const std::string& bytes, const Fail& fail)
      : p_(reinterpret_cast<const unsigned char*>(bytes.data())), n_(bytes.size()), fail_(fail) {
    if (n_ >= 2 && p_[0] == 0x80 && p_[1] <= 5) fail_.corrupt("the legacy pre-1.6 format is not supported");
    if (n_ < 22) fail_.corrupt("not a zip archive: too short");
    uint64_t eocd = n_;
    const uint64_t lowest = n_ > kMaxEocdScan ? n_ - kMaxEocdScan : 0;
    for (uint64_t q = n_ - 22 + 1; q-- > lowest;) {
      if (u(q, 4) == 0x06054b50 && u(q + 20, 2) <= n_ - 22 - q) { eocd = q; break; }
    }
    if (eocd == n_) fail_.corrupt("not a zip archive: no end-of-central-directory record");
    uint64_t count = u(eocd + 10, 2), cd_size = u(eocd + 12, 4), cd_off = u(eocd + 16, 4);
    uint64_t cd_limit = eocd;  // the directory ends before the records that follow it
    if (eocd >= 20 && u(eocd - 20, 4) == 0x07064b50) {  // ZIP64 locator -> ZIP64 end record
      const uint64_t z = u(eocd - 12, 8);
      if (z > eocd - 20 || eocd - 20 - z < 56 || u(z, 4) != 0x06064b50) fail_.corrupt("bad zip64 end record");
      count = u(z + 32, 8), cd_size = u(z + 40, 8), cd_off = u(z + 48, 8), cd_limit = z;
    }
    if (count > kMaxEntries) fail_.corrupt("zip archive claims " + std::to_string(count) + " entries");
    if (cd_off > cd_limit || cd_size > cd_limit - cd_off || count > cd_size / 46) {
      fail_.corrupt("zip central directory lies outside the file");
    }
    for (uint64_t i = 0, q = cd_off, end = cd_off + cd_size; i < count; ++i) {
      if (end - q < 46 || u(q, 4) != 0x02014b50) fail_.corrupt("bad zip central directory entry");
      const uint64_t flags = u(q + 8, 2), method = u(q + 10, 2), name_len = u(q + 28, 2),
                     extra_len = u(q + 30, 2), comment_len = u(q + 32, 2);
      uint64_t comp = u(q + 20, 4), size = u(q + 24, 4), header = u(q + 42, 4);
      if (end - q - 46 < name_len + extra_len + comment_len) fail_.corrupt("bad zip central directory entry");
      std::string name(reinterpret_cast<const char*>(p_ + q + 46), name_len);
      const std::string shown = "zip entry '" + printable(name) + "'";
      zip64_extra(q + 46 + name_len, extra_len, shown, {&size, &comp, &header});
      if (flags & 0x41) fail_.corrupt(shown + " is encrypted");
      if (method != 0) {
        fail_.corrupt(shown + " is compressed (method " + std::to_string(method) +
                      "); torch.save stores entries uncompressed");
      }
      if (comp != size) fail_.corrupt(shown + " has inconsistent sizes");
      if (!entries_.emplace(std::move(name), Entry{header, size}).second) {
        fail_.corrupt(shown + " appears twice");  // `name` may be moved from by now
      }
      q += 46 + name_len + extra_len + comment_len;
    }
  }

  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& e : entries_) out.push_back(e.first);
    return out;
  }

  // Entry `name` after checking its local header; nullptr if the archive lacks it.
  // Sizes come from the central directory (local ones may sit in a data descriptor).
  const unsigned char* data(const std::string& name, uint64_t* size) const {
    const auto it = entries_.find(name);
    if (it == entries_.end()) return nullptr;
    const uint64_t h = it->second.header;
    const std::string shown = "zip entry '" + printable(name) + "'";
    if (h > n_ || n_ - h < 30 || u(h, 4) != 0x04034b50 || u(h + 8, 2) != 0 || u(h + 26, 2) != name.size() ||
        n_ - h - 30 < name.size() || std::memcmp(p_ + h + 30, name.data(), name.size()) != 0) {
      fail_.corrupt(shown + " has a bad local header");
    }
    const uint64_t start = h + 30 + name.size() + u(h + 28, 2);  // a local zip64 extra is skipped whole
    if (start > n_ || it->second.size > n_ - start) fail_.corrupt(shown + " runs past the end of the file");
    *size = it->second.size;
    return p_ + start;
  }

 private:
  struct Entry {
    uint64_t header;  // local header offset
    uint64_t size;
  };

  uint64_t u(uint64_t off, int len) const {  // callers check bounds first; this is the backstop
    if (off > n_ || n_ - off < static_cast<uint64_t>(len)) fail_.corrupt("zip structure runs past the end of the file");
    return le(p_ + off, len);
  }

  // ZIP64 extra field (id 1): one 8-byte value, in this order, per saturated 32-bit field.
  void zip64_extra(uint64_t x, uint64_t len, const std::string& shown, std::initializer_list<uint64_t*> fields) const {
    std::vector<uint64_t*> wanted;
    for (uint64_t* v : fields) {
      if (*v == 0xffffffff) wanted.push_back(v);
    }
    if (wanted.empty()) return;
    for (const uint64_t end = x + len; end - x >= 4;) {
      const uint64_t id = u(x, 2), block = u(x + 2, 2);
      x += 4;
      if (block > end - x || (id == 1 && block < 8 * wanted.size())) break;
      if (id == 1) {
        for (size_t i = 0; i < wanted.size(); ++i) *wanted[i] = u(x + 8 * i, 8);
        return;
      }
      x += block;
    }
    fail_.corrupt(shown + " lacks its zip64 sizes");
  }

  const unsigned char* p_;
  uint64_t n_;
  const Fail& fail_;
  std::map<std::string, Entry> entries_;
};

// ------------------------------------------------------------------------- pickle layer

enum class Kind : uint8_t { kNone, kBool, kInt, kFloat, kStr, kBytes, kTuple, kList, kDict, kGlobal, kStorage, kTensor };
enum class Fn : uint8_t { kOrderedDict, kRebuildTensor, kRebuildParameter, kRestoreTypeTag, kBuildList, kStorageType };

const char* kind_name(Kind k) {
  static const char* names[] = {"none",  "bool", "int",  "float",  "string",  "bytes",
                                "tuple", "list", "dict", "global", "storage", "tensor"};
  return names[static_cast<int>(k)];
}

// Objects live in one arena and refer to each other by index: shared and even cyclic
// structures (a list appended to itself through the memo) own nothing, and nothing is
// ever walked recursively, so nesting cannot exhaust the C++ stack.
struct Obj {
  Kind kind = Kind::kNone;
  Fn fn = Fn::kOrderedDict;       // kGlobal
  DType dtype = DType::kFloat32;  // kGlobal (storage type), kStorage
  int64_t i = 0;                  // kBool, kInt; kStorage: numel; kTensor: arena id of the rebuild args
  std::string s;                  // kStr, kBytes; kGlobal: "module.name"; kStorage: key
  std::vector<uint32_t> items;    // kTuple, kList, kDict (key, value, key, value, ...)
  const unsigned char* data = nullptr;  // kStorage
};

const char* op_name(unsigned char op) {
  static const std::pair<unsigned char, const char*> names[] = {
      {'(', "MARK"}, {'.', "STOP"}, {'0', "POP"}, {'1', "POP_MARK"}, {'2', "DUP"}, {'F', "FLOAT"}, {'I', "INT"},
      {'J', "BININT"}, {'K', "BININT1"}, {'L', "LONG"}, {'M', "BININT2"}, {'N', "NONE"}, {'P', "PERSID"},
      {'Q', "BINPERSID"}, {'R', "REDUCE"}, {'S', "STRING"}, {'T', "BINSTRING"}, {'U', "SHORT_BINSTRING"},
      {'V', "UNICODE"}, {'X', "BINUNICODE"}, {'a', "APPEND"}, {'b', "BUILD"}, {'c', "GLOBAL"}, {'d', "DICT"},
      {'}', "EMPTY_DICT"}, {'e', "APPENDS"}, {'g', "GET"}, {'h', "BINGET"}, {'i', "INST"}, {'j', "LONG_BINGET"},
      {'l', "LIST"}, {']', "EMPTY_LIST"}, {'o', "OBJ"}, {'p', "PUT"}, {'q', "BINPUT"}, {'r', "LONG_BINPUT"},
      {'s', "SETITEM"}, {'t', "TUPLE"}, {')', "EMPTY_TUPLE"}, {'u', "SETITEMS"}, {'G', "BINFLOAT"},
      {'B', "BINBYTES"}, {'C', "SHORT_BINBYTES"}, {0x80, "PROTO"}, {0x81, "NEWOBJ"}, {0x82, "EXT1"},
      {0x83, "EXT2"}, {0x84, "EXT4"}, {0x85, "TUPLE1"}, {0x86, "TUPLE2"}, {0x87, "TUPLE3"}, {0x88, "NEWTRUE"},
      {0x89, "NEWFALSE"}, {0x8a, "LONG1"}, {0x8b, "LONG4"}, {0x8c, "SHORT_BINUNICODE"}, {0x8d, "BINUNICODE8"},
      {0x8e, "BINBYTES8"}, {0x8f, "EMPTY_SET"}, {0x90, "ADDITEMS"}, {0x91, "FROZENSET"}, {0x92, "NEWOBJ_EX"},
      {0x93, "STACK_GLOBAL"}, {0x94, "MEMOIZE"}, {0x95, "FRAME"}, {0x96, "BYTEARRAY8"}, {0x97, "NEXT_BUFFER"},
      {0x98, "READONLY_BUFFER"}};
  for (const auto& [code, name] : names) {
    if (code == op) return name;
  }
  return nullptr;
}

class Unpickler {
 public:
  Unpickler(const unsigned char* p, uint64_t n, const Zip& zip, const std::string& prefix, const Fail& fail)
      : p_(p), n_(n), zip_(zip), prefix_(prefix), fail_(fail) {}

  const Obj& obj(uint32_t id) const { return objs_[id]; }

  // Runs to STOP and returns the top object's id. Every opcode consumes input, so this ends.
  uint32_t run() {
    for (;;) {
      op_pos_ = pos_;
      if (pos_ >= n_) fail_.corrupt("data.pkl ends without a STOP opcode");
      op_ = p_[pos_++];
      switch (op_) {
        case 0x80: {  // PROTO
          const uint64_t v = uint(1);
          if (v < 2 || v > 5) bad("pickle protocol " + std::to_string(v) + " (expected 2..5)");
          break;
        }
        case 0x95: take(8); break;  // FRAME: only a read-ahead hint
        case '.': need(1); return stack_.back();
        case '(':
          if (marks_.size() >= kMaxMarks) bad("more than " + std::to_string(kMaxMarks) + " nested MARKs");
          marks_.push_back(stack_.size());
          break;
        case '0': pop(); break;
        case '1': pop_mark(); break;
        case '}': push(make(Kind::kDict)); break;
        case ']': push(make(Kind::kList)); break;
        case ')': push(make(Kind::kTuple)); break;
        case 't': push(make_seq(Kind::kTuple, pop_mark())); break;
        case 'l': push(make_seq(Kind::kList, pop_mark())); break;
        case 'd': push(make_seq(Kind::kDict, pop_mark(true))); break;
        case 0x85: case 0x86: case 0x87: {  // TUPLE1..3
          const size_t k = op_ - 0x84;
          need(k);
          std::vector<uint32_t> items(stack_.end() - k, stack_.end());
          stack_.resize(stack_.size() - k);
          push(make_seq(Kind::kTuple, std::move(items)));
          break;
        }
        case 'X': push(str(uint(4), Kind::kStr)); break;
        case 0x8c: push(str(uint(1), Kind::kStr)); break;
        case 0x8d: push(str(uint(8), Kind::kStr)); break;
        case 'T': {  // BINSTRING: signed length
          const uint64_t len = uint(4);
          if (len > 0x7fffffff) bad("negative BINSTRING length");
          push(str(len, Kind::kStr));
          break;
        }
        case 'U': push(str(uint(1), Kind::kStr)); break;
        case 'B': push(str(uint(4), Kind::kBytes)); break;
        case 'C': push(str(uint(1), Kind::kBytes)); break;
        case 0x8e: push(str(uint(8), Kind::kBytes)); break;
        case 'J': push(integer(static_cast<int32_t>(uint(4)))); break;
        case 'K': push(integer(static_cast<int64_t>(uint(1)))); break;
        case 'M': push(integer(static_cast<int64_t>(uint(2)))); break;
        case 0x8a: {  // LONG1: little-endian two's complement
          const uint64_t len = uint(1);
          if (len > 8) bad("integer of " + std::to_string(len) + " bytes does not fit 64 bits");
          uint64_t v = le(take(len), static_cast<int>(len));
          if (len > 0 && len < 8 && (v >> (8 * len - 1)) != 0) v |= ~uint64_t{0} << (8 * len);
          push(integer(static_cast<int64_t>(v)));
          break;
        }
        case 'N': push(make(Kind::kNone)); break;
        case 0x88: case 0x89: push(integer(op_ == 0x88, Kind::kBool)); break;
        case 'G': take(8), push(make(Kind::kFloat)); break;  // BINFLOAT: the value is never used
        case 'q': memo_put(uint(1)); break;
        case 'r': memo_put(uint(4)); break;
        case 0x94: memo_put(memo_count_); break;  // MEMOIZE: index = number of memo entries
        case 'h': memo_get(uint(1)); break;
        case 'j': memo_get(uint(4)); break;
        case 'c': {
          const std::string module = line();
          push(global(module, line()));
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          const uint32_t name = pop(), module = pop();
          if (objs_[module].kind != Kind::kStr || objs_[name].kind != Kind::kStr) bad("STACK_GLOBAL needs two strings");
          push(global(objs_[module].s, objs_[name].s));
          break;
        }
        case 'R': {
          const uint32_t args = pop();
          push(reduce(pop(), args));
          break;
        }
        case 0x81: {  // NEWOBJ: only OrderedDict.__new__(OrderedDict)
          const uint32_t args = pop(), cls = pop();
          if (!is_global(cls, Fn::kOrderedDict) || objs_[args].kind != Kind::kTuple || !objs_[args].items.empty()) {
            bad("NEWOBJ is only understood for collections.OrderedDict");
          }
          push(make(Kind::kDict));
          break;
        }
        case 'b':  // BUILD: OrderedDict's state (the state dict's `_metadata`) is dropped
          pop();
          need(1);
          if (objs_[stack_.back()].kind != Kind::kDict) bad(std::string("BUILD on a ") + kind_name(objs_[stack_.back()].kind));
          break;
        case 's': {
          const uint32_t value = pop(), key = pop();
          add(Kind::kDict, {key, value});
          break;
        }
        case 'u': add(Kind::kDict, pop_mark(true)); break;
        case 'a': add(Kind::kList, {pop()}); break;
        case 'e': add(Kind::kList, pop_mark()); break;
        case 'Q': push(storage(pop())); break;
        default: bad("unsupported pickle opcode 0x" + hex_byte(op_));
      }
    }
  }

 private:
  [[noreturn]] void bad(const std::string& why) const {
    const char* name = op_name(op_);
    fail_.corrupt("data.pkl: " + why + " at byte " + std::to_string(op_pos_) + (name ? std::string(" (") + name + ")" : ""));
  }

  const unsigned char* take(uint64_t len) {
    if (len > n_ - pos_) bad("truncated pickle: " + std::to_string(len) + " bytes needed, " + std::to_string(n_ - pos_) + " left");
    pos_ += len;
    return p_ + pos_ - len;
  }
  uint64_t uint(int len) { return le(take(len), len); }
  std::string line() {  // GLOBAL's newline-terminated module and name
    const uint64_t avail = std::min<uint64_t>(n_ - pos_, kMaxGlobalName + 1);
    const void* nl = std::memchr(p_ + pos_, '\n', avail);
    if (nl == nullptr) bad("GLOBAL name without a newline within " + std::to_string(kMaxGlobalName) + " bytes");
    const uint64_t len = static_cast<const unsigned char*>(nl) - (p_ + pos_);
    return std::string(reinterpret_cast<const char*>(take(len + 1)), len);
  }

  // make() may reallocate the arena: no Obj reference is held across it.
  uint32_t make(Kind k) {
    if (objs_.size() >= kMaxObjects) bad("more than " + std::to_string(kMaxObjects) + " objects");
    objs_.emplace_back();
    objs_.back().kind = k;
    return static_cast<uint32_t>(objs_.size() - 1);
  }
  uint32_t make_seq(Kind k, std::vector<uint32_t> items) {
    count_items(items.size());
    const uint32_t id = make(k);
    objs_[id].items = std::move(items);
    return id;
  }
  uint32_t integer(int64_t v, Kind k = Kind::kInt) {
    const uint32_t id = make(k);
    objs_[id].i = v;
    return id;
  }
  uint32_t str(uint64_t len, Kind k) {
    if (len > kMaxString) bad("string of " + std::to_string(len) + " bytes (limit " + std::to_string(kMaxString) + ")");
    const char* s = reinterpret_cast<const char*>(take(len));
    const uint32_t id = make(k);
    objs_[id].s.assign(s, len);
    return id;
  }
  void count_items(size_t k) {
    if (k > kMaxItems - items_) bad("more than " + std::to_string(kMaxItems) + " container items");
    items_ += k;
  }

  void push(uint32_t id) {
    if (stack_.size() >= kMaxStack) bad("pickle stack deeper than " + std::to_string(kMaxStack));
    stack_.push_back(id);
  }
  // As in Python's unpickler, a MARK hides what lies below it.
  void need(size_t k) const {
    if (stack_.size() - (marks_.empty() ? 0 : marks_.back()) < k) bad("stack underflow");
  }
  uint32_t pop() {
    need(1);
    const uint32_t id = stack_.back();
    stack_.pop_back();
    return id;
  }
  std::vector<uint32_t> pop_mark(bool pairs = false) {
    if (marks_.empty()) bad("no MARK to pop");
    std::vector<uint32_t> items(stack_.begin() + marks_.back(), stack_.end());
    stack_.resize(marks_.back());
    marks_.pop_back();
    if (pairs && items.size() % 2 != 0) bad("odd number of dict items");
    return items;
  }
  void add(Kind k, const std::vector<uint32_t>& items) {  // APPEND(S), SETITEM(S)
    need(1);
    Obj& target = objs_[stack_.back()];
    if (target.kind != k) bad(std::string("adding items to a ") + kind_name(target.kind));
    count_items(items.size());
    target.items.insert(target.items.end(), items.begin(), items.end());
  }

  // Python's memo is a dict; writers number it 0, 1, 2, ..., so a bounded table will do.
  void memo_put(uint64_t index) {
    need(1);
    if (index >= kMaxMemo) bad("memo index " + std::to_string(index) + " (limit " + std::to_string(kMaxMemo) + ")");
    if (index >= memo_.size()) memo_.resize(index + 1, kUnset);
    memo_count_ += memo_[index] == kUnset;
    memo_[index] = stack_.back();
  }
  void memo_get(uint64_t index) {
    if (index >= memo_.size() || memo_[index] == kUnset) bad("memo index " + std::to_string(index) + " was never stored");
    push(memo_[index]);
  }

  // Refuses, by name, everything a state dict does not need; nothing is ever imported.
  // By value: callers pass strings from the arena, which make() may move.
  uint32_t global(const std::string module, const std::string name) {
    static const std::pair<const char*, DType> storages[] = {
        {"FloatStorage", DType::kFloat32}, {"DoubleStorage", DType::kFloat64}, {"HalfStorage", DType::kFloat16},
        {"BFloat16Storage", DType::kBFloat16}, {"LongStorage", DType::kInt64}, {"IntStorage", DType::kInt32},
        {"ShortStorage", DType::kInt16}, {"CharStorage", DType::kInt8}, {"ByteStorage", DType::kUInt8},
        {"BoolStorage", DType::kBool}};
    Fn fn = Fn::kStorageType;
    DType dtype = DType::kFloat32;
    const auto storage = std::find_if(std::begin(storages), std::end(storages),
                                      [&](const auto& s) { return module == "torch" && name == s.first; });
    if (storage != std::end(storages)) {
      dtype = storage->second;
    } else if (module == "collections" && name == "OrderedDict") {
      fn = Fn::kOrderedDict;
    } else if (module == "torch._utils" && name == "_rebuild_tensor_v2") {
      fn = Fn::kRebuildTensor;
    } else if (module == "torch._utils" && (name == "_rebuild_parameter" || name == "_rebuild_parameter_with_state")) {
      fn = Fn::kRebuildParameter;
    } else if (module == "torch.jit._pickle" && name == "restore_type_tag") {
      fn = Fn::kRestoreTypeTag;  // LibTorch writes restore_type_tag(dict, "Dict[str, Tensor]")
    } else if (module == "torch.jit._pickle" && (name == "build_intlist" || name == "build_tensorlist" ||
                                                 name == "build_doublelist" || name == "build_boollist")) {
      fn = Fn::kBuildList;  // LibTorch's typed lists: let such a file be reported as a list
    } else {
      fail_.error(" uses the pickle global '" + printable(module + "." + name) +
                  "', which pefm does not load (only plain tensors)");
    }
    const uint32_t id = make(Kind::kGlobal);
    objs_[id].fn = fn;
    objs_[id].dtype = dtype;
    objs_[id].s = module + "." + name;
    return id;
  }
  bool is_global(uint32_t id, Fn fn) const { return objs_[id].kind == Kind::kGlobal && objs_[id].fn == fn; }

  uint32_t reduce(uint32_t callable, uint32_t args_id) {
    const Obj& f = objs_[callable];
    const Obj& args = objs_[args_id];
    if (f.kind != Kind::kGlobal) bad(std::string("REDUCE calls a ") + kind_name(f.kind));
    if (args.kind != Kind::kTuple) bad(std::string("REDUCE arguments are a ") + kind_name(args.kind) + ", not a tuple");
    const size_t argc = args.items.size();
    switch (f.fn) {
      case Fn::kOrderedDict:
        if (argc != 0) bad("collections.OrderedDict called with arguments");
        return make(Kind::kDict);
      case Fn::kRebuildTensor:  // checked once the tensor's key is known, in check_tensor
        if (argc != 6 && argc != 7) bad("_rebuild_tensor_v2 takes 6 or 7 arguments, got " + std::to_string(argc));
        return integer(args_id, Kind::kTensor);
      case Fn::kRebuildParameter:  // (tensor, requires_grad, hooks[, state]) -> the tensor
        if (argc < 3 || argc > 4 || objs_[args.items[0]].kind != Kind::kTensor) bad("bad _rebuild_parameter arguments");
        return args.items[0];
      case Fn::kRestoreTypeTag:
        if (argc < 1) bad("restore_type_tag without arguments");
        return args.items[0];
      case Fn::kBuildList:
        if (argc != 1 || objs_[args.items[0]].kind != Kind::kList) bad("bad " + f.s + " arguments");
        return args.items[0];
      case Fn::kStorageType: break;
    }
    bad("REDUCE calls " + f.s);
  }

  // BINPERSID: ('storage', <storage type>, key, location, numel) names <prefix>/data/<key>.
  uint32_t storage(uint32_t pid_id) {
    const Obj& pid = objs_[pid_id];
    const auto is = [&](size_t i, Kind k) { return objs_[pid.items[i]].kind == k; };
    if (pid.kind != Kind::kTuple || pid.items.size() != 5 || !is(0, Kind::kStr) || objs_[pid.items[0]].s != "storage" ||
        !is_global(pid.items[1], Fn::kStorageType) || !is(2, Kind::kStr) || !is(3, Kind::kStr) || !is(4, Kind::kInt)) {
      bad("persistent id is not ('storage', type, key, location, numel)");
    }
    const DType dtype = objs_[pid.items[1]].dtype;
    const std::string key = objs_[pid.items[2]].s;  // copied: make() below may move the arena
    const std::string& location = objs_[pid.items[3]].s;
    const int64_t numel = objs_[pid.items[4]].i;
    // The bytes are raw either way; the location only tells where they were saved from.
    if (location.compare(0, 3, "cpu") != 0 && location.compare(0, 4, "cuda") != 0) {
      bad("storage '" + printable(key) + "' has location '" + printable(location) + "'");
    }
    uint64_t need_bytes = 0, have = 0;
    if (numel < 0 || __builtin_mul_overflow(static_cast<uint64_t>(numel), element_size(dtype), &need_bytes)) {
      bad("storage '" + printable(key) + "' has " + std::to_string(numel) + " elements");
    }
    const unsigned char* data = zip_.data(prefix_ + "/data/" + key, &have);
    if (data == nullptr) bad("storage '" + printable(key) + "' is missing from the archive");
    // torch.save writes exactly numel * element_size bytes; more is tolerated, less is not.
    if (have < need_bytes) {
      bad("storage '" + printable(key) + "' holds " + std::to_string(have) + " bytes, less than its " +
          std::to_string(numel) + " " + dtype_name(dtype) + " elements");
    }
    const uint32_t id = integer(numel, Kind::kStorage);
    objs_[id].dtype = dtype;
    objs_[id].s = key;
    objs_[id].data = data;
    return id;
  }

  const unsigned char* p_;
  uint64_t n_, pos_ = 0, op_pos_ = 0;
  unsigned char op_ = 0;
  const Zip& zip_;
  const std::string& prefix_;
  const Fail& fail_;
  std::vector<Obj> objs_;
  std::vector<uint32_t> stack_;
  std::vector<size_t> marks_;   // stack heights at the open MARKs
  std::vector<uint32_t> memo_;  // index -> object id, kUnset where never stored
  size_t memo_count_ = 0, items_ = 0;
};

std::string shape_str(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

// Turns _rebuild_tensor_v2's arguments into a record whose every reachable element lies
// inside its storage.
TensorRecord check_tensor(const Unpickler& u, const Obj& tensor, const std::string& key, const Fail& fail) {
  const auto bad = [&](const std::string& why) { fail.error(": tensor '" + printable(key) + "' " + why); };
  const Obj& args = u.obj(static_cast<uint32_t>(tensor.i));  // 6 or 7 items, checked by reduce()
  const Obj& storage = u.obj(args.items[0]);
  const Obj& offset = u.obj(args.items[1]);
  if (storage.kind != Kind::kStorage) bad("is built on a " + std::string(kind_name(storage.kind)) + ", not a storage");
  if (offset.kind != Kind::kInt || offset.i < 0) bad("has a bad storage offset");
  TensorRecord r;
  r.name = key;
  r.dtype = storage.dtype;
  r.storage_offset = offset.i;
  r.storage = storage.data;
  r.storage_bytes = static_cast<uint64_t>(storage.i) * element_size(storage.dtype);  // no overflow: see storage()
  for (int which = 0; which < 2; ++which) {
    const char* what = which ? "strides" : "sizes";
    const Obj& t = u.obj(args.items[2 + which]);
    if (t.kind != Kind::kTuple) bad(std::string(what) + " are not a tuple");
    if (t.items.size() > kMaxRank) bad("has rank " + std::to_string(t.items.size()) + " (limit " + std::to_string(kMaxRank) + ")");
    for (uint32_t id : t.items) {
      const Obj& v = u.obj(id);
      if (v.kind != Kind::kInt) bad(std::string(what) + " hold a " + kind_name(v.kind));
      if (v.i < 0) bad(std::string("has a negative ") + (which ? "stride " : "size ") + std::to_string(v.i));
      (which ? r.strides : r.sizes).push_back(v.i);
    }
  }
  if (r.sizes.size() != r.strides.size()) {
    bad("has " + std::to_string(r.sizes.size()) + " sizes but " + std::to_string(r.strides.size()) + " strides");
  }
  // The product of the non-zero sizes and the last reachable index must fit int64, so a
  // zero size does not excuse huge others whatever order a consumer multiplies in.
  int64_t product = 1, last = 0, step = 0;
  bool empty = false;
  for (size_t d = 0; d < r.sizes.size(); ++d) {
    if (r.sizes[d] == 0) { empty = true; continue; }
    if (__builtin_mul_overflow(product, r.sizes[d], &product) ||
        __builtin_mul_overflow(r.sizes[d] - 1, r.strides[d], &step) || __builtin_add_overflow(last, step, &last)) {
      bad("has sizes " + shape_str(r.sizes) + " and strides " + shape_str(r.strides) + " that overflow");
    }
  }
  // Views that repeat elements (zero strides, overlaps) are not weights, and would let a
  // one-element storage expand into gigabytes when the tensor is materialised.
  if (!empty && product > storage.i) {
    bad("has " + std::to_string(product) + " elements but its storage '" + printable(storage.s) + "' holds only " +
        std::to_string(storage.i));
  }
  int64_t end = r.storage_offset;  // one past the last element read
  if (!empty && (__builtin_add_overflow(end, last, &end) || __builtin_add_overflow(end, 1, &end))) {
    bad("has a storage offset that overflows");
  }
  if (static_cast<uint64_t>(end) > static_cast<uint64_t>(storage.i)) {
    bad("with size " + shape_str(r.sizes) + ", strides " + shape_str(r.strides) + " and storage offset " +
        std::to_string(r.storage_offset) + " reaches element " + std::to_string(end) + " of its storage '" +
        printable(storage.s) + "', which holds " + std::to_string(storage.i) + " " + dtype_name(r.dtype) + " elements");
  }
  return r;
}

struct DTypeInfo {
  const char* name;
  size_t size;
};
// In DType's order.
constexpr DTypeInfo kDTypes[] = {{"float32", 4}, {"float64", 8}, {"float16", 2}, {"bfloat16", 2}, {"int64", 8},
                                 {"int32", 4},   {"int16", 2},   {"int8", 1},    {"uint8", 1},    {"bool", 1}};
static_assert(sizeof kDTypes / sizeof kDTypes[0] == static_cast<size_t>(DType::kBool) + 1, "one entry per DType");

}  // namespace

size_t element_size(DType t) { return kDTypes[static_cast<size_t>(t)].size; }
const char* dtype_name(DType t) { return kDTypes[static_cast<size_t>(t)].name; }

std::vector<TensorRecord> read_pth(const std::string& bytes, const std::string& origin) {
  const Fail fail{origin};
  const Zip zip(bytes, fail);

  // torch.save names the archive folder after the file's stem; LibTorch calls it "archive".
  std::string prefix;
  int found = 0;
  for (const std::string& name : zip.names()) {
    const size_t slash = name.find('/');
    if (slash != std::string::npos && slash > 0 && name.compare(slash, std::string::npos, "/data.pkl") == 0) {
      prefix = name.substr(0, slash);
      ++found;
    }
  }
  if (found != 1) fail.corrupt(found ? "zip archive holds several data.pkl" : "no data.pkl in the zip archive");
  uint64_t size = 0;
  if (const unsigned char* order = zip.data(prefix + "/byteorder", &size)) {  // torch >= 2.1 writes it
    const std::string text(reinterpret_cast<const char*>(order), size);
    if (text != "little") fail.error(" has byteorder '" + printable(text) + "'; only little-endian files load");
  }
  const unsigned char* pickle = zip.data(prefix + "/data.pkl", &size);
  if (size > kMaxPickleBytes) fail.corrupt("data.pkl is " + std::to_string(size) + " bytes (limit 64 MiB)");

  Unpickler u(pickle, size, zip, prefix, fail);
  const Obj& top = u.obj(u.run());
  if (top.kind != Kind::kDict) {
    fail.error(std::string(" holds a ") + kind_name(top.kind) +
               ", not a dict of tensors; save it with torch.save(dict(model.state_dict()), path)");
  }
  std::vector<TensorRecord> records;
  std::set<std::string> seen;
  uint64_t produced = 0;
  for (size_t i = 0; i + 1 < top.items.size(); i += 2) {
    const Obj& key = u.obj(top.items[i]);
    const Obj& value = u.obj(top.items[i + 1]);
    if (key.kind != Kind::kStr) fail.error(std::string(" has a non-string key (a ") + kind_name(key.kind) + ")");
    if (!seen.insert(key.s).second) fail.error(": key '" + printable(key.s) + "' appears twice");
    if (value.kind != Kind::kTensor) {
      fail.error(": entry '" + printable(key.s) + "' is a " + kind_name(value.kind) + ", not a tensor");
    }
    records.push_back(check_tensor(u, value, key.s, fail));
    // Materialised, the tensors take at most twice the file (tied weights may share a
    // storage): many views of one large storage cannot multiply memory or copying.
    const auto& r = records.back();
    uint64_t elements = 1;
    for (int64_t d : r.sizes) elements *= static_cast<uint64_t>(d);  // checked above: fits int64
    produced += elements * element_size(r.dtype);
    if (produced > 2 * static_cast<uint64_t>(bytes.size()) + (1u << 20)) {
      fail.error(" holds tensors of more than twice its own size (at '" + printable(key.s) + "')");
    }
  }
  return records;
}

}  // namespace pth
}  // namespace pefm
