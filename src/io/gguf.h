// GGUF v2/v3 reader: mmap, full validation of the header, metadata of every value type, tensors
// F32/F16/BF16/Q4_0/Q4_1/Q8_0 dequantized to float. Errors name the file and the key/tensor.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "qoq/tensor.h"

namespace qoq {

struct GgufValue;
using GgufArray = std::vector<GgufValue>;
struct GgufValue {
  // uint8..int64, float32/64, bool, string, array (arrays of arrays allowed by the spec).
  std::variant<uint64_t, int64_t, double, bool, std::string, GgufArray> v;
  uint32_t type = 0;  // the GGUF type id as stored (0 UINT8 .. 12 FLOAT64)
};

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> dims;  // GGUF order: dims[0] is the fastest-varying (row length)
  uint32_t type = 0;          // ggml type id: 0 F32, 1 F16, 2 Q4_0, 3 Q4_1, 8 Q8_0, 30 BF16
  uint64_t offset = 0;        // relative to the data section
  uint64_t nbytes = 0;
};

class GgufFile {
 public:
  static GgufFile open(const std::string& path);  // throws InputError on any inconsistency

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  const std::map<std::string, GgufValue>& metadata() const { return meta_; }
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }

  bool has(const std::string& key) const { return meta_.count(key) != 0; }
  // Typed getters: throw InputError naming the file and key when missing or of the wrong type.
  std::string get_string(const std::string& key) const;
  int64_t get_int(const std::string& key) const;  // any integer type
  double get_float(const std::string& key) const;  // float or integer types
  bool get_bool(const std::string& key) const;
  std::vector<std::string> get_string_array(const std::string& key) const;
  std::vector<int64_t> get_int_array(const std::string& key) const;
  std::vector<double> get_float_array(const std::string& key) const;

  const GgufTensorInfo* find_tensor(const std::string& name) const;
  // Dequantized to F32 with HF shape order (reversed dims: [rows, cols]).
  Tensor load_tensor_f32(const std::string& name) const;

 private:
  std::string path_;
  uint32_t version_ = 0;
  std::map<std::string, GgufValue> meta_;
  std::vector<GgufTensorInfo> tensors_;
  std::shared_ptr<void> map_;  // the mmap'ed file
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  size_t data_offset_ = 0;
};

}  // namespace qoq
