// GGUF v2/v3 reader: mmap, full validation of the header, metadata of every value type, tensors
// F32/F16/BF16/Q4_0/Q4_1/Q8_0 dequantized to float. Errors name the file and the key/tensor.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "qoq/tensor.h"

namespace qoq {

// GGUF metadata value type ids.
enum GgufType : uint32_t {
  kGgufU8 = 0,
  kGgufI8 = 1,
  kGgufU16 = 2,
  kGgufI16 = 3,
  kGgufU32 = 4,
  kGgufI32 = 5,
  kGgufF32 = 6,
  kGgufBool = 7,
  kGgufString = 8,
  kGgufArray = 9,
  kGgufU64 = 10,
  kGgufI64 = 11,
  kGgufF64 = 12,
};

// ggml tensor type ids this reader knows the storage size of.
enum GgmlType : uint32_t {
  kGgmlF32 = 0,
  kGgmlF16 = 1,
  kGgmlQ4_0 = 2,
  kGgmlQ4_1 = 3,
  kGgmlQ5_0 = 6,
  kGgmlQ5_1 = 7,
  kGgmlQ8_0 = 8,
  kGgmlQ8_1 = 9,
  kGgmlQ2_K = 10,
  kGgmlQ3_K = 11,
  kGgmlQ4_K = 12,
  kGgmlQ5_K = 13,
  kGgmlQ6_K = 14,
  kGgmlQ8_K = 15,
  kGgmlI8 = 24,
  kGgmlI16 = 25,
  kGgmlI32 = 26,
  kGgmlI64 = 27,
  kGgmlF64 = 28,
  kGgmlBF16 = 30,
};

struct GgufValue;
using GgufArray = std::vector<GgufValue>;
struct GgufValue {
  // uint8..int64, float32/64, bool, string, array (arrays of arrays allowed by the spec).
  std::variant<uint64_t, int64_t, double, bool, std::string, GgufArray> v;
  uint32_t type = 0;       // the GGUF type id as stored (0 UINT8 .. 12 FLOAT64)
  uint32_t elem_type = 0;  // for arrays: the element type id as stored
};

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> dims;  // GGUF order: dims[0] is the fastest-varying (row length)
  uint32_t type = 0;          // ggml type id: 0 F32, 1 F16, 2 Q4_0, 3 Q4_1, 8 Q8_0, 30 BF16
  uint64_t offset = 0;        // relative to the data section
  uint64_t nbytes = 0;
  int64_t numel() const;
};

// "Q4_1" etc.; "type#N" for ids this reader does not know.
std::string ggml_type_name(uint32_t type);
// Whether load_tensor_f32 can dequantize this type.
bool ggml_type_supported(uint32_t type);
// Dequantizes `n` elements (a multiple of the type's block size) of `type` from `src` to `dst`.
void ggml_dequantize(uint32_t type, const uint8_t* src, float* dst, int64_t n);

class GgufFile {
 public:
  static GgufFile open(const std::string& path);  // throws InputError on any inconsistency
  // Parses bytes in memory (fuzzing, tests); `owner` keeps them alive; `name` stands for the path in errors.
  static GgufFile from_memory(const uint8_t* data, size_t size, std::shared_ptr<void> owner, const std::string& name);

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const std::map<std::string, GgufValue>& metadata() const { return meta_; }
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }

  bool has(const std::string& key) const { return meta_.count(key) != 0; }
  // Typed getters: throw InputError naming the file and key when missing or of the wrong type.
  std::string get_string(const std::string& key) const;
  int64_t get_int(const std::string& key) const;   // any integer type
  double get_float(const std::string& key) const;  // float or integer types
  bool get_bool(const std::string& key) const;
  std::vector<std::string> get_string_array(const std::string& key) const;
  std::vector<int64_t> get_int_array(const std::string& key) const;
  std::vector<double> get_float_array(const std::string& key) const;

  const GgufTensorInfo* find_tensor(const std::string& name) const;
  // The stored bytes of a tensor (validated to lie inside the file).
  std::span<const uint8_t> tensor_bytes(const GgufTensorInfo& info) const;
  // Dequantized to F32 with HF shape order (reversed dims: [rows, cols]).
  Tensor load_tensor_f32(const std::string& name) const;

 private:
  static GgufFile parse(std::shared_ptr<void> map, const uint8_t* base, size_t size, const std::string& path);
  const GgufValue& get(const std::string& key) const;

  std::string path_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::map<std::string, GgufValue> meta_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> index_;  // tensor name -> position in tensors_
  std::shared_ptr<void> map_;            // the mmap'ed file
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  size_t data_offset_ = 0;
};

}  // namespace qoq
