// A small GGUF v2/v3 writer: metadata of every type (nested arrays too) and raw tensor bytes. Used to make
// test fixtures and fuzz seeds; the engine itself never writes GGUF.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io/gguf.h"

namespace qoq::io {

class GgufWriter {
 public:
  explicit GgufWriter(uint32_t version = 3, uint64_t alignment = 32) : version_(version), alignment_(alignment) {}

  static GgufValue u32(uint32_t v) { return {uint64_t(v), kGgufU32}; }
  static GgufValue i32(int32_t v) { return {int64_t(v), kGgufI32}; }
  static GgufValue f32(float v) { return {double(v), kGgufF32}; }
  static GgufValue str(std::string v) { return {std::move(v), kGgufString}; }
  static GgufValue boolean(bool v) { return {v, kGgufBool}; }
  static GgufValue array(uint32_t elem_type, GgufArray elems) { return {std::move(elems), kGgufArray, elem_type}; }
  static GgufValue str_array(const std::vector<std::string>& v);

  // Keys are written in the order added. general.alignment is written by the caller if wanted.
  void add(const std::string& key, GgufValue v) { kv_.emplace_back(key, std::move(v)); }
  // dims in GGUF order (dims[0] = row length); `data` is the stored bytes of the ggml type.
  void add_tensor(const std::string& name, std::vector<int64_t> dims, uint32_t type, std::vector<uint8_t> data);
  // F32 tensor with HF shape [rows, cols] (or [n]).
  void add_f32(const std::string& name, const std::vector<int64_t>& hf_shape, const std::vector<float>& values);

  std::vector<uint8_t> bytes() const;
  void write(const std::string& path) const;

 private:
  struct T {
    std::string name;
    std::vector<int64_t> dims;
    uint32_t type;
    std::vector<uint8_t> data;
  };
  uint32_t version_;
  uint64_t alignment_;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::vector<T> tensors_;
};

}  // namespace qoq::io
