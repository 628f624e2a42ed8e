// A small tensor: dtype, shape, device, and storage that is either owned or a view kept alive by an owner
// (e.g. an mmap'ed file). Row-major and contiguous always; views never stride.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "qoq/error.h"

namespace qoq {

enum class DType : uint8_t { F32, F16, BF16, I8, U8, I32 };
enum class Device : uint8_t { CPU, CUDA };

size_t dtype_size(DType t);
const char* dtype_name(DType t);
// Parses "F32", "F16", "BF16", "I8", "U8", "I32" (safetensors names); throws InputError naming `context`.
DType dtype_from_name(const std::string& name, const std::string& context);

template <typename T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() {
  return DType::F32;
}
template <>
constexpr DType dtype_of<int8_t>() {
  return DType::I8;
}
template <>
constexpr DType dtype_of<uint8_t>() {
  return DType::U8;
}
template <>
constexpr DType dtype_of<int32_t>() {
  return DType::I32;
}
// fp16 and bf16 are both stored as uint16_t; data<uint16_t>() accepts either.

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);
int64_t shape_numel(const Shape& s);

class Tensor {
 public:
  Tensor() = default;

  // Owning CPU tensor, uninitialized / zero-filled.
  static Tensor empty(DType dtype, Shape shape);
  static Tensor zeros(DType dtype, Shape shape);
  // Non-owning view of `data`; `keepalive` (may be null) owns the memory behind it.
  static Tensor view(void* data, DType dtype, Shape shape, std::shared_ptr<void> keepalive,
                     Device device = Device::CPU);
  static Tensor from_vector(const std::vector<float>& v, Shape shape);

  bool defined() const { return defined_; }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return int(shape_.size()); }
  int64_t dim(int i) const;  // negative i counts from the end
  int64_t numel() const { return shape_numel(shape_); }
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype_); }

  void* raw() { return data_; }
  const void* raw() const { return data_; }
  template <typename T>
  T* data() {
    check_type<T>();
    return static_cast<T*>(data_);
  }
  template <typename T>
  const T* data() const {
    check_type<T>();
    return static_cast<const T*>(data_);
  }
  template <typename T>
  std::span<T> span() {
    return {data<T>(), size_t(numel())};
  }
  template <typename T>
  std::span<const T> span() const {
    return {data<T>(), size_t(numel())};
  }

  // Same storage, new shape (numel must match).
  Tensor reshape(Shape shape) const;
  // Rows [begin, end) of the first dimension, sharing storage.
  Tensor slice_rows(int64_t begin, int64_t end) const;
  // Converted copy (F32/F16/BF16 among themselves; integer types to F32); a copy even when dtype matches.
  Tensor to(DType dtype) const;
  Tensor clone() const { return to(dtype_); }
  // Element i as float (any dtype); slow, for tests and tools.
  float at_f32(int64_t i) const;

  std::string str() const;  // "F16[576, 576]"

 private:
  template <typename T>
  void check_type() const {
    if constexpr (std::is_same_v<std::remove_const_t<T>, uint16_t>) {
      QOQ_CHECK(dtype_ == DType::F16 || dtype_ == DType::BF16, "tensor {} is not 16-bit float", str());
    } else {
      QOQ_CHECK(dtype_ == dtype_of<std::remove_const_t<T>>(), "tensor {} accessed as {}", str(),
                dtype_name(dtype_of<std::remove_const_t<T>>()));
    }
  }

  std::shared_ptr<void> storage_;
  void* data_ = nullptr;
  DType dtype_ = DType::F32;
  Device device_ = Device::CPU;
  Shape shape_;
  bool defined_ = false;
};

}  // namespace qoq
