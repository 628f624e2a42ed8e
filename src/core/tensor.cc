#include "qoq/tensor.h"

#include <cstdlib>
#include <cstring>

#include "qoq/half.h"

namespace qoq {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32:
      return 4;
    case DType::F16:
      return 2;
    case DType::BF16:
      return 2;
    case DType::I8:
      return 1;
    case DType::U8:
      return 1;
    case DType::I32:
      return 4;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32:
      return "F32";
    case DType::F16:
      return "F16";
    case DType::BF16:
      return "BF16";
    case DType::I8:
      return "I8";
    case DType::U8:
      return "U8";
    case DType::I32:
      return "I32";
  }
  return "?";
}

DType dtype_from_name(const std::string& name, const std::string& context) {
  if (name == "F32") return DType::F32;
  if (name == "F16") return DType::F16;
  if (name == "BF16") return DType::BF16;
  if (name == "I8") return DType::I8;
  if (name == "U8") return DType::U8;
  if (name == "I32") return DType::I32;
  fail_input("{}: unsupported dtype '{}' (supported: F32, F16, BF16, I8, U8, I32)", context, name);
}

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

Tensor Tensor::empty(DType dtype, Shape shape) {
  for (int64_t d : shape) QOQ_CHECK(d >= 0, "negative dimension in {}", shape_str(shape));
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.defined_ = true;
  // 64-byte alignment so SIMD kernels can use aligned loads on row starts of aligned widths.
  const size_t bytes = (t.nbytes() + 63) / 64 * 64;
  void* p = bytes ? std::aligned_alloc(64, bytes) : nullptr;
  if (bytes && !p) fail("out of memory allocating {} bytes for tensor {}", bytes, t.str());
  t.storage_ = std::shared_ptr<void>(p, [](void* q) { std::free(q); });
  t.data_ = p;
  return t;
}

Tensor Tensor::zeros(DType dtype, Shape shape) {
  Tensor t = empty(dtype, std::move(shape));
  if (t.nbytes()) std::memset(t.data_, 0, t.nbytes());
  return t;
}

Tensor Tensor::view(void* data, DType dtype, Shape shape, std::shared_ptr<void> keepalive, Device device) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.device_ = device;
  t.storage_ = std::move(keepalive);
  t.data_ = data;
  t.defined_ = true;
  return t;
}

Tensor Tensor::from_vector(const std::vector<float>& v, Shape shape) {
  QOQ_CHECK(int64_t(v.size()) == shape_numel(shape), "from_vector: {} values for shape {}", v.size(), shape_str(shape));
  Tensor t = empty(DType::F32, std::move(shape));
  if (!v.empty()) std::memcpy(t.data_, v.data(), v.size() * 4);
  return t;
}

int64_t Tensor::dim(int i) const {
  const int n = ndim();
  if (i < 0) i += n;
  QOQ_CHECK(i >= 0 && i < n, "dim {} out of range for {}", i, str());
  return shape_[i];
}

Tensor Tensor::reshape(Shape shape) const {
  QOQ_CHECK(shape_numel(shape) == numel(), "reshape {} to {}", str(), shape_str(shape));
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::slice_rows(int64_t begin, int64_t end) const {
  QOQ_CHECK(ndim() >= 1 && 0 <= begin && begin <= end && end <= shape_[0], "slice_rows [{}, {}) of {}", begin, end,
            str());
  const int64_t row = shape_[0] ? numel() / shape_[0] : 0;
  Tensor t = *this;
  t.shape_[0] = end - begin;
  t.data_ = static_cast<char*>(data_) + size_t(begin * row) * dtype_size(dtype_);
  return t;
}

float Tensor::at_f32(int64_t i) const {
  QOQ_CHECK(device_ == Device::CPU && i >= 0 && i < numel(), "at_f32({}) on {}", i, str());
  switch (dtype_) {
    case DType::F32:
      return static_cast<const float*>(data_)[i];
    case DType::F16:
      return half_to_float(static_cast<const uint16_t*>(data_)[i]);
    case DType::BF16:
      return bf16_to_float(static_cast<const uint16_t*>(data_)[i]);
    case DType::I8:
      return static_cast<const int8_t*>(data_)[i];
    case DType::U8:
      return static_cast<const uint8_t*>(data_)[i];
    case DType::I32:
      return float(static_cast<const int32_t*>(data_)[i]);
  }
  return 0;
}

Tensor Tensor::to(DType dtype) const {
  QOQ_CHECK(device_ == Device::CPU, "to() on a {} tensor", "CUDA");
  Tensor out = empty(dtype, shape_);
  const int64_t n = numel();
  if (dtype == dtype_) {
    if (n) std::memcpy(out.data_, data_, nbytes());
    return out;
  }
  QOQ_CHECK(dtype == DType::F32 || dtype == DType::F16 || dtype == DType::BF16, "cannot convert {} to {}", str(),
            dtype_name(dtype));
  if (dtype == DType::F32) {
    float* o = static_cast<float*>(out.data_);
    for (int64_t i = 0; i < n; ++i) o[i] = at_f32(i);
  } else {
    uint16_t* o = static_cast<uint16_t*>(out.data_);
    for (int64_t i = 0; i < n; ++i) o[i] = dtype == DType::F16 ? float_to_half(at_f32(i)) : float_to_bf16(at_f32(i));
  }
  return out;
}

std::string Tensor::str() const { return std::string(dtype_name(dtype_)) + shape_str(shape_); }

}  // namespace qoq
