#include "io/gguf.h"

#include <cstring>
#include <limits>

#include "core/thread_pool.h"
#include "io/mapped_file.h"
#include "qoq/half.h"

namespace qoq {
namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" little-endian
constexpr int kMaxArrayDepth = 8;            // the spec allows nested arrays; bound the recursion
constexpr int kMaxDims = 4;                  // GGML_MAX_DIMS
constexpr uint64_t kMaxAlignment = uint64_t(1) << 20;

struct TypeTraits {
  const char* name;
  int64_t block;  // elements per block
  int64_t bytes;  // bytes per block
  bool supported;
};

const TypeTraits* type_traits(uint32_t t) {
  static const TypeTraits kF32{"F32", 1, 4, true}, kF16{"F16", 1, 2, true}, kQ4_0{"Q4_0", 32, 18, true},
      kQ4_1{"Q4_1", 32, 20, true}, kQ5_0{"Q5_0", 32, 22, false}, kQ5_1{"Q5_1", 32, 24, false},
      kQ8_0{"Q8_0", 32, 34, true}, kQ8_1{"Q8_1", 32, 36, false}, kQ2_K{"Q2_K", 256, 84, false},
      kQ3_K{"Q3_K", 256, 110, false}, kQ4_K{"Q4_K", 256, 144, false}, kQ5_K{"Q5_K", 256, 176, false},
      kQ6_K{"Q6_K", 256, 210, false}, kQ8_K{"Q8_K", 256, 292, false}, kI8{"I8", 1, 1, false}, kI16{"I16", 1, 2, false},
      kI32{"I32", 1, 4, false}, kI64{"I64", 1, 8, false}, kF64{"F64", 1, 8, false}, kBF16{"BF16", 1, 2, true};
  switch (t) {
    case kGgmlF32:
      return &kF32;
    case kGgmlF16:
      return &kF16;
    case kGgmlQ4_0:
      return &kQ4_0;
    case kGgmlQ4_1:
      return &kQ4_1;
    case kGgmlQ5_0:
      return &kQ5_0;
    case kGgmlQ5_1:
      return &kQ5_1;
    case kGgmlQ8_0:
      return &kQ8_0;
    case kGgmlQ8_1:
      return &kQ8_1;
    case kGgmlQ2_K:
      return &kQ2_K;
    case kGgmlQ3_K:
      return &kQ3_K;
    case kGgmlQ4_K:
      return &kQ4_K;
    case kGgmlQ5_K:
      return &kQ5_K;
    case kGgmlQ6_K:
      return &kQ6_K;
    case kGgmlQ8_K:
      return &kQ8_K;
    case kGgmlI8:
      return &kI8;
    case kGgmlI16:
      return &kI16;
    case kGgmlI32:
      return &kI32;
    case kGgmlI64:
      return &kI64;
    case kGgmlF64:
      return &kF64;
    case kGgmlBF16:
      return &kBF16;
    default:
      return nullptr;
  }
}

const char* value_type_name(uint32_t t) {
  static const char* kNames[] = {"UINT8", "INT8",   "UINT16", "INT16",  "UINT32", "INT32",  "FLOAT32",
                                 "BOOL",  "STRING", "ARRAY",  "UINT64", "INT64",  "FLOAT64"};
  return t <= kGgufF64 ? kNames[t] : "unknown";
}

// Fixed size of a scalar value type; 0 for string/array.
size_t scalar_size(uint32_t t) {
  switch (t) {
    case kGgufU8:
    case kGgufI8:
    case kGgufBool:
      return 1;
    case kGgufU16:
    case kGgufI16:
      return 2;
    case kGgufU32:
    case kGgufI32:
    case kGgufF32:
      return 4;
    case kGgufU64:
    case kGgufI64:
    case kGgufF64:
      return 8;
    default:
      return 0;
  }
}

// Bounds-checked little-endian reader over the mapped bytes.
class Cursor {
 public:
  Cursor(const uint8_t* p, size_t size, const std::string& path) : p_(p), size_(size), path_(path) {}

  size_t pos() const { return pos_; }
  size_t left() const { return size_ - pos_; }

  void need(uint64_t n, const std::string& what) const {
    if (n > left())
      fail_input("{}: truncated: {} needs {} bytes at offset {} but only {} remain (file size {})", path_, what, n,
                 pos_, left(), size_);
  }
  template <typename T>
  T read(const std::string& what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string read_string(const std::string& what) {
    const uint64_t len = read<uint64_t>(what + " (string length)");
    need(len, what);
    std::string s(reinterpret_cast<const char*>(p_ + pos_), size_t(len));
    pos_ += size_t(len);
    return s;
  }

 private:
  const uint8_t* p_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& path_;
};

GgufValue read_value(Cursor& c, uint32_t type, const std::string& key, const std::string& path, int depth) {
  GgufValue val;
  val.type = type;
  switch (type) {
    case kGgufU8:
      val.v = uint64_t(c.read<uint8_t>(key));
      break;
    case kGgufI8:
      val.v = int64_t(c.read<int8_t>(key));
      break;
    case kGgufU16:
      val.v = uint64_t(c.read<uint16_t>(key));
      break;
    case kGgufI16:
      val.v = int64_t(c.read<int16_t>(key));
      break;
    case kGgufU32:
      val.v = uint64_t(c.read<uint32_t>(key));
      break;
    case kGgufI32:
      val.v = int64_t(c.read<int32_t>(key));
      break;
    case kGgufU64:
      val.v = c.read<uint64_t>(key);
      break;
    case kGgufI64:
      val.v = c.read<int64_t>(key);
      break;
    case kGgufF32:
      val.v = double(c.read<float>(key));
      break;
    case kGgufF64:
      val.v = c.read<double>(key);
      break;
    case kGgufBool: {
      const uint8_t b = c.read<uint8_t>(key);
      if (b > 1) fail_input("{}: metadata '{}': bool value {} is neither 0 nor 1", path, key, b);
      val.v = b != 0;
      break;
    }
    case kGgufString:
      val.v = c.read_string(key);
      break;
    case kGgufArray: {
      if (depth >= kMaxArrayDepth)
        fail_input("{}: metadata '{}': arrays nested deeper than {} levels", path, key, kMaxArrayDepth);
      const uint32_t et = c.read<uint32_t>(key + " (array element type)");
      if (et > kGgufF64) fail_input("{}: metadata '{}': unknown array element type {}", path, key, et);
      const uint64_t n = c.read<uint64_t>(key + " (array length)");
      // Every element takes at least this many bytes, so a count the file cannot hold is rejected before
      // any memory is reserved for it.
      const uint64_t min_elem = et == kGgufString ? 8 : et == kGgufArray ? 12 : scalar_size(et);
      if (n > c.left() / min_elem)
        fail_input("{}: metadata '{}': array of {} {} elements does not fit in the {} bytes left", path, key, n,
                   value_type_name(et), c.left());
      val.elem_type = et;
      GgufArray arr;
      arr.reserve(size_t(n));
      for (uint64_t i = 0; i < n; ++i) arr.push_back(read_value(c, et, key, path, depth + 1));
      val.v = std::move(arr);
      break;
    }
    default:
      fail_input("{}: metadata '{}': unknown value type {}", path, key, type);
  }
  return val;
}

bool is_int_type(uint32_t t) {
  return t == kGgufU8 || t == kGgufI8 || t == kGgufU16 || t == kGgufI16 || t == kGgufU32 || t == kGgufI32 ||
         t == kGgufU64 || t == kGgufI64;
}

int64_t value_as_int(const GgufValue& v, const std::string& path, const std::string& key) {
  if (const auto* u = std::get_if<uint64_t>(&v.v)) {
    if (*u > uint64_t(std::numeric_limits<int64_t>::max()))
      fail_input("{}: metadata '{}': value {} exceeds the int64 range", path, key, *u);
    return int64_t(*u);
  }
  if (const auto* i = std::get_if<int64_t>(&v.v)) return *i;
  fail_input("{}: metadata '{}' has type {}, expected an integer", path, key, value_type_name(v.type));
}

double value_as_float(const GgufValue& v, const std::string& path, const std::string& key) {
  if (const auto* d = std::get_if<double>(&v.v)) return *d;
  if (is_int_type(v.type)) return double(value_as_int(v, path, key));
  fail_input("{}: metadata '{}' has type {}, expected a number", path, key, value_type_name(v.type));
}

const GgufArray& value_as_array(const GgufValue& v, const std::string& path, const std::string& key) {
  const auto* a = std::get_if<GgufArray>(&v.v);
  if (!a) fail_input("{}: metadata '{}' has type {}, expected an array", path, key, value_type_name(v.type));
  return *a;
}

inline uint16_t load_u16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return h;
}

}  // namespace

int64_t GgufTensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

std::string ggml_type_name(uint32_t type) {
  const TypeTraits* t = type_traits(type);
  return t ? t->name : "type#" + std::to_string(type);
}

bool ggml_type_supported(uint32_t type) {
  const TypeTraits* t = type_traits(type);
  return t && t->supported;
}

void ggml_dequantize(uint32_t type, const uint8_t* src, float* dst, int64_t n) {
  const TypeTraits* tt = type_traits(type);
  QOQ_CHECK(tt && tt->supported && n % tt->block == 0, "ggml_dequantize: type {} n {}", type, n);
  switch (type) {
    case kGgmlF32:
      std::memcpy(dst, src, size_t(n) * 4);
      return;
    case kGgmlF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = half_to_float(load_u16(src + 2 * i));
      return;
    case kGgmlBF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_float(load_u16(src + 2 * i));
      return;
    case kGgmlQ4_0:  // {fp16 d; u8 qs[16]}: x[j] = d*(lo nibble - 8), x[j+16] = d*(hi nibble - 8)
      for (int64_t b = 0; b < n / 32; ++b, src += 18, dst += 32) {
        const float d = half_to_float(load_u16(src));
        for (int j = 0; j < 16; ++j) {
          dst[j] = d * float(int(src[2 + j] & 0xF) - 8);
          dst[j + 16] = d * float(int(src[2 + j] >> 4) - 8);
        }
      }
      return;
    case kGgmlQ4_1:  // {fp16 d; fp16 m; u8 qs[16]}: x = d*q + m
      for (int64_t b = 0; b < n / 32; ++b, src += 20, dst += 32) {
        const float d = half_to_float(load_u16(src));
        const float m = half_to_float(load_u16(src + 2));
        for (int j = 0; j < 16; ++j) {
          dst[j] = d * float(src[4 + j] & 0xF) + m;
          dst[j + 16] = d * float(src[4 + j] >> 4) + m;
        }
      }
      return;
    case kGgmlQ8_0:  // {fp16 d; i8 qs[32]}: x = d*q
      for (int64_t b = 0; b < n / 32; ++b, src += 34, dst += 32) {
        const float d = half_to_float(load_u16(src));
        for (int j = 0; j < 32; ++j) dst[j] = d * float(int8_t(src[2 + j]));
      }
      return;
    default:
      fail("ggml_dequantize: unhandled type {}", type);
  }
}

GgufFile GgufFile::open(const std::string& path) {
  auto m = io::MappedFile::open(path);
  const uint8_t* data = m->data();
  const size_t size = m->size();
  return parse(std::move(m), data, size, path);
}

GgufFile GgufFile::from_memory(const uint8_t* data, size_t size, std::shared_ptr<void> owner, const std::string& name) {
  return parse(std::move(owner), data, size, name);
}

GgufFile GgufFile::parse(std::shared_ptr<void> map, const uint8_t* base, size_t size, const std::string& path) {
  GgufFile f;
  f.path_ = path;
  f.map_ = std::move(map);
  f.base_ = base;
  f.size_ = size;
  Cursor c(base, size, path);

  if (size < 4 || c.read<uint32_t>("magic") != kGgufMagic)
    fail_input("{}: not a GGUF file (magic is not 'GGUF')", path);
  f.version_ = c.read<uint32_t>("version");
  if (f.version_ != 2 && f.version_ != 3) {
    if (f.version_ == 1) fail_input("{}: GGUF version 1 is not supported (only versions 2 and 3)", path);
    fail_input("{}: unsupported GGUF version {} (supported: 2, 3; a big-endian file also shows here)", path,
               f.version_);
  }
  const uint64_t n_tensors = c.read<uint64_t>("tensor count");
  const uint64_t n_kv = c.read<uint64_t>("metadata count");
  // Each key/value takes at least 8 (key length) + 4 (type) + 1 bytes; each tensor info at least 8+4+8+4+8.
  if (n_kv > c.left() / 13) fail_input("{}: metadata count {} cannot fit in the {} bytes left", path, n_kv, c.left());

  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = c.read_string(fmt::format("metadata key #{}", i));
    const uint32_t type = c.read<uint32_t>(key + " (type)");
    GgufValue v = read_value(c, type, key, path, 0);
    if (!f.meta_.emplace(key, std::move(v)).second) fail_input("{}: metadata key '{}' appears twice", path, key);
  }

  if (auto it = f.meta_.find("general.alignment"); it != f.meta_.end()) {
    if (!is_int_type(it->second.type))
      fail_input("{}: metadata 'general.alignment' has type {}, expected an integer", path,
                 value_type_name(it->second.type));
    const int64_t a = value_as_int(it->second, path, "general.alignment");
    if (a <= 0 || uint64_t(a) > kMaxAlignment || (a & (a - 1)) != 0)
      fail_input("{}: metadata 'general.alignment' = {} must be a power of two in [1, {}]", path, a, kMaxAlignment);
    f.alignment_ = uint64_t(a);
  }

  if (n_tensors > c.left() / 32)
    fail_input("{}: tensor count {} cannot fit in the {} bytes left", path, n_tensors, c.left());
  f.tensors_.reserve(size_t(n_tensors));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t;
    t.name = c.read_string(fmt::format("tensor #{} name", i));
    const uint32_t nd = c.read<uint32_t>(t.name + " (n_dims)");
    if (nd < 1 || nd > kMaxDims) fail_input("{}: tensor '{}': n_dims = {} (must be 1..{})", path, t.name, nd, kMaxDims);
    int64_t numel = 1;
    for (uint32_t d = 0; d < nd; ++d) {
      const uint64_t dim = c.read<uint64_t>(t.name + " (dims)");
      if (dim == 0 || dim > uint64_t(std::numeric_limits<int64_t>::max()) ||
          __builtin_mul_overflow(numel, int64_t(dim), &numel))
        fail_input("{}: tensor '{}': dimension {} = {} is zero or overflows the element count", path, t.name, d, dim);
      t.dims.push_back(int64_t(dim));
    }
    t.type = c.read<uint32_t>(t.name + " (type)");
    t.offset = c.read<uint64_t>(t.name + " (offset)");
    const TypeTraits* tt = type_traits(t.type);
    if (!tt) fail_input("{}: tensor '{}': unknown ggml type {}", path, t.name, t.type);
    if (t.dims[0] % tt->block != 0)
      fail_input("{}: tensor '{}': row length {} is not a multiple of the {} block size {}", path, t.name, t.dims[0],
                 tt->name, tt->block);
    const int64_t blocks = numel / tt->block;
    if (blocks > std::numeric_limits<int64_t>::max() / tt->bytes)
      fail_input("{}: tensor '{}': byte size overflows", path, t.name);
    t.nbytes = uint64_t(blocks * tt->bytes);
    if (t.offset % f.alignment_ != 0)
      fail_input("{}: tensor '{}': offset {} is not a multiple of the alignment {}", path, t.name, t.offset,
                 f.alignment_);
    if (!f.index_.emplace(t.name, f.tensors_.size()).second) fail_input("{}: tensor '{}' appears twice", path, t.name);
    f.tensors_.push_back(std::move(t));
  }

  const uint64_t pos = c.pos();
  f.data_offset_ = size_t((pos + f.alignment_ - 1) / f.alignment_ * f.alignment_);
  const uint64_t data_size = f.data_offset_ <= size ? size - f.data_offset_ : 0;
  for (const GgufTensorInfo& t : f.tensors_) {
    if (f.data_offset_ > size || t.offset > data_size || t.nbytes > data_size - t.offset)
      fail_input("{}: tensor '{}': data [{}, {}) of the data section lies past the end of the file ({} data bytes)",
                 path, t.name, t.offset, t.offset + t.nbytes, data_size);
  }
  return f;
}

const GgufValue& GgufFile::get(const std::string& key) const {
  auto it = meta_.find(key);
  if (it == meta_.end()) fail_input("{}: metadata key '{}' is missing", path_, key);
  return it->second;
}

std::string GgufFile::get_string(const std::string& key) const {
  const GgufValue& v = get(key);
  const auto* s = std::get_if<std::string>(&v.v);
  if (!s) fail_input("{}: metadata '{}' has type {}, expected STRING", path_, key, value_type_name(v.type));
  return *s;
}

int64_t GgufFile::get_int(const std::string& key) const { return value_as_int(get(key), path_, key); }

double GgufFile::get_float(const std::string& key) const { return value_as_float(get(key), path_, key); }

bool GgufFile::get_bool(const std::string& key) const {
  const GgufValue& v = get(key);
  const auto* b = std::get_if<bool>(&v.v);
  if (!b) fail_input("{}: metadata '{}' has type {}, expected BOOL", path_, key, value_type_name(v.type));
  return *b;
}

std::vector<std::string> GgufFile::get_string_array(const std::string& key) const {
  const GgufArray& a = value_as_array(get(key), path_, key);
  std::vector<std::string> out;
  out.reserve(a.size());
  for (const GgufValue& e : a) {
    const auto* s = std::get_if<std::string>(&e.v);
    if (!s) fail_input("{}: metadata '{}': element of type {}, expected STRING", path_, key, value_type_name(e.type));
    out.push_back(*s);
  }
  return out;
}

std::vector<int64_t> GgufFile::get_int_array(const std::string& key) const {
  const GgufArray& a = value_as_array(get(key), path_, key);
  std::vector<int64_t> out;
  out.reserve(a.size());
  for (const GgufValue& e : a) out.push_back(value_as_int(e, path_, key));
  return out;
}

std::vector<double> GgufFile::get_float_array(const std::string& key) const {
  const GgufArray& a = value_as_array(get(key), path_, key);
  std::vector<double> out;
  out.reserve(a.size());
  for (const GgufValue& e : a) out.push_back(value_as_float(e, path_, key));
  return out;
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

std::span<const uint8_t> GgufFile::tensor_bytes(const GgufTensorInfo& info) const {
  return {base_ + data_offset_ + info.offset, size_t(info.nbytes)};
}

Tensor GgufFile::load_tensor_f32(const std::string& name) const {
  const GgufTensorInfo* info = find_tensor(name);
  if (!info) fail_input("{}: tensor '{}' not found", path_, name);
  if (!ggml_type_supported(info->type))
    fail_input(
        "{}: tensor '{}' has type {}, which this reader cannot dequantize (supported: F32, F16, BF16, Q4_0, "
        "Q4_1, Q8_0)",
        path_, name, ggml_type_name(info->type));
  Shape shape(info->dims.rbegin(), info->dims.rend());
  Tensor out = Tensor::empty(DType::F32, shape);
  const TypeTraits* tt = type_traits(info->type);
  const int64_t cols = info->dims[0];
  const int64_t rows = info->numel() / cols;
  const int64_t row_bytes = cols / tt->block * tt->bytes;
  const uint8_t* src = tensor_bytes(*info).data();
  float* dst = out.data<float>();
  parallel_for(
      rows,
      [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) ggml_dequantize(info->type, src + r * row_bytes, dst + r * cols, cols);
      },
      std::max<int64_t>(1, 16384 / cols));
  return out;
}

}  // namespace qoq
